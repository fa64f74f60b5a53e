"""Models ready for :func:`geotiler.predict.predict_scene`: torch checkpoints and ONNX exports.

A checkpoint (``best.pt``) or an exported ``model.onnx`` carries everything inference needs: band
names and their normalisation, the class table and the tile size. :func:`load_predictor` picks the
runtime by file suffix. On CUDA the torch path runs in channels-last layout under autocast (fp16).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geotiler.catalog import ClassTable
from geotiler.errors import InputError
from geotiler.io import atomic_output

ONNX_META_KEY = "geotiler"


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

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], device: torch.device) -> None:
        super().__init__(meta)
        self.device = device
        self.model = model.to(device).eval()
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(self.normalise(batch))
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
            tensor = tensor.contiguous(memory_format=torch.channels_last)
            autocast: contextlib.AbstractContextManager[Any] = torch.autocast("cuda", torch.float16)
        else:
            autocast = contextlib.nullcontext()
        with autocast:
            logits = self.model(tensor)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


class OnnxPredictor(_Normalised):
    """An exported model run by onnxruntime (CUDA provider first when available)."""

    def __init__(self, path: Path) -> None:
        ort = _onnxruntime()
        try:
            self.session = ort.InferenceSession(str(path), providers=ort.get_available_providers())
        except Exception as exc:
            raise InputError(f"{path}: not a readable ONNX model ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map.get(ONNX_META_KEY)
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


def load_predictor(
    path: str | os.PathLike[str], *, device: str = "auto", allow_unfinished: bool = False
) -> TorchPredictor | OnnxPredictor:
    """A predictor from a checkpoint (``.pt``) or an ONNX export (``.onnx``).

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
    from geotiler.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(where)
    return TorchPredictor(model, meta, resolve_device(device))


def export_onnx(
    checkpoint: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Export a checkpoint to ONNX with dynamic batch and spatial axes and geotiler metadata."""
    onnx = _import_or_explain("onnx")
    _import_or_explain("onnxscript")
    from geotiler.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    tile = int(meta.get("tile_size") or 256)
    example = torch.zeros(2, len(meta["bands"]), tile, tile)
    dynamic = torch.export.Dim.DYNAMIC
    with atomic_output(output, overwrite=overwrite, inputs=[checkpoint]) as temporary:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},),
        )
        if program is None:  # pragma: no cover - dynamo export always returns a program
            raise InputError(f"{checkpoint}: ONNX export produced nothing")
        proto = program.model_proto
        plain = {
            k: v
            for k, v in meta.items()
            if k
            in ("bands", "band_mean", "band_std", "num_classes", "tile_size", "nodata", "model")
        }
        plain["classes"] = meta["classes"].model_dump(mode="json")
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_META_KEY, json.dumps(plain, default=_to_plain)
        onnx.save(proto, str(temporary))
    return Path(output)


def _to_plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor | np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in ONNX metadata")


def _onnxruntime() -> Any:
    return _import_or_explain("onnxruntime")


def _import_or_explain(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise InputError(f"{name} is not installed: pip install 'geotiler[onnx]'") from None
