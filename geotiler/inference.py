"""Models ready for :func:`geotiler.predict.predict_scene`: checkpoints, TorchScript and ONNX.

A checkpoint (``best.pt``), an exported ``model.onnx`` or ``model.ts`` (TorchScript) carries
everything inference needs: band names and their normalisation, the class table and the tile size
(see :mod:`geotiler.export`). :func:`load_predictor` picks the runtime: ``.onnx`` by suffix, a
TorchScript archive by its content (whatever its suffix), anything else as a checkpoint. On CUDA
the checkpoint path runs in channels-last layout under autocast (fp16).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geotiler.catalog import ClassTable
from geotiler.errors import InputError
from geotiler.export import META_KEY, TORCHSCRIPT_META_FILE, import_or_explain


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"--device {device}: no CUDA device is available here (torch {torch.__version__}); "
            "use --device cpu or auto"
        )
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise InputError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s); "
            "use --device cuda:0 or auto"
        )
    return chosen


class _Normalised:
    """Shared input contract: bands, normalisation, classes, tile size from checkpoint metadata."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.bands: tuple[str, ...] = tuple(meta["bands"])
        self.num_classes: int = int(meta["num_classes"])
        self.tile_size: int = int(meta.get("tile_size") or 256)
        self.classes: ClassTable = (
            meta["classes"]
            if isinstance(meta["classes"], ClassTable)
            else ClassTable.model_validate(meta["classes"])
        )
        self.mean = np.asarray(meta["band_mean"], np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(meta["band_std"], np.float32).reshape(1, -1, 1, 1)
        self.std = np.where(std > 0, std, 1.0).astype(np.float32)  # as in training: constant bands

    def normalise(self, batch: np.ndarray) -> np.ndarray:
        return ((batch - self.mean) / self.std).astype(np.float32, copy=False)


class TorchPredictor(_Normalised):
    """A torch model from a checkpoint; returns softmax probabilities."""

    def __init__(
        self,
        model: torch.nn.Module,
        meta: dict[str, Any],
        device: torch.device,
        *,
        amp: bool = True,
    ) -> None:
        super().__init__(meta)
        self.device = device
        self.amp = amp and device.type == "cuda"
        self.model = model.to(device).eval()
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(self.normalise(batch))
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        autocast: contextlib.AbstractContextManager[Any] = (
            torch.autocast("cuda", torch.float16) if self.amp else contextlib.nullcontext()
        )
        with autocast:
            logits = self.model(tensor)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


class OnnxPredictor(_Normalised):
    """An exported model run by onnxruntime (CUDA provider first when available)."""

    def __init__(self, path: Path) -> None:
        ort = import_or_explain("onnxruntime")
        try:
            self.session = ort.InferenceSession(str(path), providers=ort.get_available_providers())
        except Exception as exc:
            raise InputError(f"{path}: not a readable ONNX model ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if meta is None:
            raise InputError(
                f"{path}: an ONNX model without geotiler metadata (use geotiler export)"
            )
        super().__init__(json.loads(meta))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: self.normalise(batch)})[0]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def load_torchscript(path: Path, device: torch.device) -> TorchPredictor:
    """A TorchScript export with its geotiler metadata (fp32 on CUDA too: no JIT autocast)."""
    files = {TORCHSCRIPT_META_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit: torch.export is next
            module = torch.jit.load(str(path), map_location=device, _extra_files=files)
    except Exception as exc:
        raise InputError(f"{path}: not a readable TorchScript model ({exc})") from exc
    if not files[TORCHSCRIPT_META_FILE]:
        raise InputError(
            f"{path}: a TorchScript model without geotiler metadata (use geotiler export)"
        )
    return TorchPredictor(module, json.loads(files[TORCHSCRIPT_META_FILE]), device, amp=False)


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (a zip with compiled ``code/``), not a pickled checkpoint."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def load_predictor(
    path: str | os.PathLike[str], *, device: str = "auto", allow_unfinished: bool = False
) -> TorchPredictor | OnnxPredictor:
    """A predictor from a checkpoint (``.pt``), a TorchScript (``.ts``) or ONNX (``.onnx``) file.

    A checkpoint of a run that did not finish (its ``run.json`` says so) is refused unless
    ``allow_unfinished``.
    """
    where = Path(path)
    if not allow_unfinished:
        from geotiler.train.run_state import check_finished

        check_finished(where)
    if where.suffix == ".onnx":
        if not where.is_file():
            raise InputError(f"{where}: ONNX model not found")
        return OnnxPredictor(where)
    if where.suffix in (".ts", ".torchscript") or (where.is_file() and is_torchscript(where)):
        if not where.is_file():
            raise InputError(f"{where}: TorchScript model not found (write one: geotiler export)")
        return load_torchscript(where, resolve_device(device))
    from geotiler.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(where)
    return TorchPredictor(model, meta, resolve_device(device))
