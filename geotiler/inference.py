"""Models ready for :func:`geotiler.predict.predict_scene`: checkpoints, TorchScript and ONNX.

A checkpoint (``best.pt``), an exported ``model.onnx`` or ``model.ts`` (TorchScript) carries
everything inference needs: band names and their normalisation, the class table and the tile size
(see :mod:`geotiler.export`). :func:`load_predictor` picks the runtime from the file's content
(:func:`geotiler.model_files.model_format`, which refuses a raster or any other file given by
mistake in one line), and for a
checkpoint the member it predicts with: the network, the pixel baseline (:class:`PixelPredictor`)
or their average (:class:`EnsemblePredictor`), as validation chose at training time unless
``use`` says otherwise. On CUDA the checkpoint path runs in channels-last layout under autocast.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from geotiler.catalog import ClassTable
from geotiler.errors import InputError
from geotiler.export import META_KEY, TORCHSCRIPT_META_FILE, import_or_explain
from geotiler.model_files import model_format

if TYPE_CHECKING:
    from geotiler.predict_array import ArrayPrediction

PIXEL_TILE_PX = 256
Member = Literal["auto", "network", "baseline", "ensemble"]
MEMBERS: tuple[str, ...] = ("auto", "network", "baseline", "ensemble")
_MEMBER_KEYS = {"network": "network", "baseline": "pixel-gbm", "ensemble": "ensemble"}


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


class _InMemory:
    """``predictor.predict(array)``: see :func:`geotiler.predict_array.predict_array`."""

    def predict(self, data: Any, **options: Any) -> ArrayPrediction:
        """Class ids and probabilities for an in-memory image (numpy or xarray, bands first).

        Args:
            data: ``(bands, rows, cols)`` values; a DataArray keeps its coordinates and CRS.
            **options: ``bands``, ``nodata``, ``overlap``, ``batch_size``, ``tta`` of
                :func:`geotiler.predict_array.predict_array`.

        Returns:
            ``classes`` (rows x cols class ids) and ``probabilities`` (one plane per class).

        Examples:
            >>> predictor = load_predictor("run/best.pt")
            >>> result = predictor.predict(rioxarray.open_rasterio("scene.tif"))
            >>> result.classes.plot()
        """
        from geotiler.predict_array import predict_array

        return predict_array(self, data, **options)  # type: ignore[arg-type]


class _Normalised(_InMemory):
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
        low, high = meta.get("band_low"), meta.get("band_high")
        self.clip = (
            None
            if low is None or high is None
            else (
                np.asarray(low, np.float32).reshape(1, -1, 1, 1),
                np.asarray(high, np.float32).reshape(1, -1, 1, 1),
            )
        )

    def normalise(self, batch: np.ndarray) -> np.ndarray:
        if self.clip is not None:
            batch = np.clip(batch, *self.clip)
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


class PixelPredictor(_Normalised):
    """The pixel baseline of a checkpoint: per-tile features of raw values, then LightGBM.

    Alone it slides windows of at least ``PIXEL_TILE_PX``: its neighbourhood features then see
    their whole window more often than in small training tiles, and overlapping windows (which
    only a network needs for seamless blending) cost less.
    """

    def __init__(self, meta: dict[str, Any]) -> None:
        from geotiler.train.baseline import PixelBaseline

        super().__init__(meta)
        self.baseline = PixelBaseline.from_checkpoint(meta["baseline"])
        self.tile_size = max(self.tile_size, PIXEL_TILE_PX)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.baseline.predict_proba(batch.astype(np.float32, copy=False))


class EnsemblePredictor(_InMemory):
    """The network's and the pixel baseline's probabilities, averaged with ``network_weight``.

    It slides the pixel predictor's (larger) windows: the network is fully convolutional, and
    the baseline's cost grows with every overlapping window.
    """

    def __init__(
        self, network: TorchPredictor, pixel: PixelPredictor, network_weight: float = 0.5
    ) -> None:
        self.network, self.pixel, self.network_weight = network, pixel, network_weight
        self.bands, self.num_classes = network.bands, network.num_classes
        self.tile_size, self.classes = pixel.tile_size, network.classes

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        weight = self.network_weight
        return weight * self.network(batch) + (1 - weight) * self.pixel(batch)


def checkpoint_member(content: dict[str, Any], use: str, where: Path) -> str:
    """What a checkpoint predicts with: ``network``, ``pixel-gbm`` or ``ensemble``.

    ``use`` ``auto`` is the member validation chose in training (the network for checkpoints
    from before the pixel baseline). Asking for a member the checkpoint lacks is an InputError.
    """
    if use not in MEMBERS:
        raise InputError(f"--use {use!r}: use one of {', '.join(MEMBERS)}")
    has_network = content["model"].get("architecture") != "pixel-gbm"
    has_baseline = content.get("baseline") is not None
    chosen = (content.get("ensemble") or {}).get("use", "network")
    member = chosen if use == "auto" else _MEMBER_KEYS[use]
    if member != "network" and not has_baseline:
        raise InputError(
            f"{where}: has no pixel baseline (trained with --no-baseline or before it existed); "
            "use --use network"
        )
    if member != "pixel-gbm" and not has_network:
        raise InputError(f"{where}: a pixel-gbm checkpoint has no network; use --use baseline")
    return str(member)


def load_predictor(
    path: str | os.PathLike[str],
    *,
    device: str = "auto",
    allow_unfinished: bool = False,
    use: Member | str = "auto",
) -> TorchPredictor | OnnxPredictor | PixelPredictor | EnsemblePredictor:
    """A predictor from a checkpoint (``.pt``), a TorchScript (``.ts``) or ONNX (``.onnx``) file.

    A checkpoint of a run that did not finish (its ``run.json`` says so) is refused unless
    ``allow_unfinished``. ``use`` picks the member of a checkpoint: ``auto`` (what validation
    chose), ``network``, ``baseline`` or ``ensemble``.
    """
    where = Path(path)
    if not allow_unfinished:
        from geotiler.train.run_state import check_finished

        check_finished(where)
    kind = model_format(where)
    if kind == "onnx":
        if not where.is_file():
            raise InputError(f"{where}: ONNX model not found")
        if use not in ("auto", "network"):
            raise InputError(f"{where}: an ONNX model holds a network only; drop --use {use}")
        return OnnxPredictor(where)
    if kind == "torchscript":
        if not where.is_file():
            raise InputError(f"{where}: TorchScript model not found (write one: geotiler export)")
        return load_torchscript(where, resolve_device(device))
    from geotiler.train.checkpoint import read_checkpoint, rebuild_model

    content = read_checkpoint(where)
    member = checkpoint_member(content, use, where)
    if member == "pixel-gbm":
        meta = {k: v for k, v in content.items() if k not in ("state_dict", "resume")}
        return PixelPredictor(meta)
    model, meta = rebuild_model(content, where)
    network = TorchPredictor(model, meta, resolve_device(device))
    if member == "ensemble":
        weight = float((content.get("ensemble") or {}).get("network_weight", 0.5))
        return EnsemblePredictor(network, PixelPredictor(meta), weight)
    return network
