"""What a model file is, told from its first bytes, and what it holds, for ``geotiler info``.

:func:`model_format` tells a geotiler checkpoint (a torch zip or pickle), a TorchScript archive
(a zip with compiled code) and an ONNX model apart without loading them, and refuses anything else
(a GeoTIFF given to ``--model``, a text file) with one line that says what the file is and what
to give instead, before torch sees it. :func:`describe_model` reads what a model carries
(architecture, bands, classes, tile size, metrics, training settings) without rebuilding the
network; torch and onnx are imported only when such a file is read.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from geotiler.errors import InputError

ModelFormat = Literal["checkpoint", "torchscript", "onnx"]
MODEL_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".onnx")
WHAT_TO_GIVE = (
    "give a checkpoint (best.pt of a training run), a TorchScript (.ts) or an ONNX (.onnx) "
    "file written by geotiler export"
)

# First bytes of files people give by mistake, and what to call them.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "a GeoTIFF (a raster)"),
    (b"MM\x00*", "a GeoTIFF (a raster)"),
    (b"II+\x00", "a BigTIFF (a raster)"),
    (b"MM\x00+", "a BigTIFF (a raster)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"\x89HDF", "an HDF5 file"),
    (b"SQLite format 3", "an SQLite database (a GeoPackage?)"),
    (b"PAR1", "a Parquet file"),
)


def model_format(path: str | os.PathLike[str]) -> ModelFormat:
    """The format of the model file at ``path``, from its content (its suffix when absent).

    Raises:
        InputError: the file exists but is no model geotiler reads (naming what it looks like).
    """
    where = Path(path)
    suffix = where.suffix.lower()
    if where.is_dir():
        raise InputError(f"{where}: is a folder, not a model; {WHAT_TO_GIVE}")
    if not where.is_file():
        if suffix == ".onnx":
            return "onnx"
        return "torchscript" if suffix in (".ts", ".torchscript") else "checkpoint"
    with where.open("rb") as handle:
        head = handle.read(16)
    if zipfile.is_zipfile(where):
        with zipfile.ZipFile(where) as archive:
            names = archive.namelist()
        if any(name.endswith("/constants.pkl") for name in names):
            return "torchscript"
        if any(name.endswith("/data.pkl") for name in names):
            return "checkpoint"
        raise InputError(f"{where}: is a zip archive, not a model; {WHAT_TO_GIVE}")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "checkpoint"  # torch.save's legacy pickle format
    if suffix == ".onnx" or head[:1] == b"\x08":  # ONNX: protobuf, ir_version first
        return "onnx"
    raise InputError(f"{where}: is {_looks_like(head)}, not a model; {WHAT_TO_GIVE}")


def _looks_like(head: bytes) -> str:
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if not head:
        return "empty"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "a file of unknown kind"
    return "a text file"


def looks_like_model(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has a model suffix or a model's content (for routing ``info``)."""
    where = Path(path)
    if where.suffix.lower() in MODEL_SUFFIXES:
        return True
    try:
        model_format(where)
    except InputError:
        return False
    return where.is_file()


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself."""

    path: Path
    format: ModelFormat
    meta: dict[str, Any]
    classes: dict[int, str] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        """``(key, value)`` lines for a table, the plainest facts first."""
        meta = self.meta
        spec = meta.get("model") or {}
        rows = [("format", _FORMAT_NAMES[self.format] + _how(meta))]
        arguments = spec.get("arguments") or {}
        architecture = str(spec.get("architecture", "unknown"))
        if spec.get("preset") and spec.get("preset") != architecture:
            architecture += f" (preset {spec['preset']})"
        if arguments:
            architecture += ", " + ", ".join(f"{k}={v}" for k, v in arguments.items())
        rows.append(("architecture", architecture))
        bands = list(meta.get("bands") or [])
        rows.append(("bands", f"{len(bands)} ({', '.join(map(str, bands))})"))
        rows.append(("tile size", f"{meta['tile_size']} px" if meta.get("tile_size") else "?"))
        nodata = meta.get("nodata")
        rows.append(("nodata class", "none" if nodata is None else str(nodata)))
        rows.append(("classes", f"{len(self.classes)}"))
        if meta.get("encoder_weights"):
            weights = meta["encoder_weights"]
            source = (
                weights.get("path") or weights.get("name") if isinstance(weights, dict) else weights
            )
            rows.append(("encoder weights", str(source)))
        ensemble = meta.get("ensemble") or {}
        if ensemble.get("use"):
            rows.append(("predicts with", str(ensemble["use"])))
        if meta.get("epoch") is not None:
            rows.append(("epochs done", str(meta["epoch"])))
        best = meta.get("best") or {}
        if best:
            rows.append(("best epoch", f"{int(best.get('epoch') or 0)}: {_metrics(best)}"))
        last = meta.get("metrics")
        if last and int(best.get("epoch") or -1) != int(meta.get("epoch") or 0):
            rows.append(("last epoch", _metrics(last)))
        if meta.get("store"):
            rows.append(("trained on", str(meta["store"])))
        if meta.get("geotiler_version"):
            rows.append(("written by", f"geotiler {meta['geotiler_version']}"))
        return rows

    def class_iou(self) -> dict[int, float]:
        """Each class's validation IoU at the best epoch (empty when the model does not say)."""
        best = self.meta.get("best") or {}
        found = {c: best.get(f"val_iou_{c}") for c in self.classes}
        return {c: float(v) for c, v in found.items() if isinstance(v, int | float)}

    def settings(self) -> dict[str, Any]:
        """The training settings the model was trained with (empty when it does not carry them)."""
        settings = self.meta.get("settings")
        return dict(settings) if isinstance(settings, dict) else {}


_PER_CLASS = re.compile(r"_\d+$")

_FORMAT_NAMES: dict[ModelFormat, str] = {
    "checkpoint": "geotiler checkpoint",
    "torchscript": "TorchScript",
    "onnx": "ONNX",
}


def _how(meta: dict[str, Any]) -> str:
    return f" ({meta['torchscript']})" if meta.get("torchscript") else ""


def _metrics(metrics: dict[str, Any]) -> str:
    """The headline metrics; per-class ones (``val_iou_3``) go to the class table."""
    shown = []
    for key, value in metrics.items():
        if key == "epoch" or not isinstance(value, int | float) or _PER_CLASS.search(key):
            continue
        shown.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(shown) or "none"


def describe_model(path: str | os.PathLike[str]) -> ModelInfo:
    """Read what the model file at ``path`` carries, without building its network.

    Raises:
        InputError: missing, unreadable, or not a model geotiler wrote.
    """
    where = Path(path)
    if not where.exists():
        raise InputError(f"{where}: model file not found")
    kind = model_format(where)
    if kind == "checkpoint":
        from geotiler.train.checkpoint import read_checkpoint

        meta = {
            k: v for k, v in read_checkpoint(where).items() if k not in ("state_dict", "resume")
        }
    elif kind == "torchscript":
        meta = _torchscript_meta(where)
    else:
        meta = _onnx_meta(where)
    return ModelInfo(where, kind, meta, _class_names(meta.get("classes")))


def _class_names(classes: Any) -> dict[int, str]:
    if not isinstance(classes, dict):
        return {}
    return {int(c["id"]): str(c.get("name", "")) for c in classes.get("classes", [])}


def _torchscript_meta(path: Path) -> dict[str, Any]:
    from geotiler.export import TORCHSCRIPT_META_FILE

    # The extra file sits in the archive beside the code; no need to load the module.
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(f"extra/{TORCHSCRIPT_META_FILE}")]
        if not names:
            raise InputError(
                f"{path}: a TorchScript model without geotiler metadata (use geotiler export)"
            )
        return _json(path, archive.read(names[0]).decode("utf-8"))


def _onnx_meta(path: Path) -> dict[str, Any]:
    from geotiler.export import META_KEY, import_or_explain

    onnx = import_or_explain("onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc
    for entry in proto.metadata_props:
        if entry.key == META_KEY:
            return _json(path, entry.value)
    raise InputError(f"{path}: an ONNX model without geotiler metadata (use geotiler export)")


def _json(path: Path, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(
            f"{path}: its geotiler metadata is not valid JSON; export it again"
        ) from exc
    if not isinstance(value, dict):
        raise InputError(f"{path}: its geotiler metadata is not an object; export it again")
    return value
