"""A checkpoint exported for inference elsewhere: ONNX, TorchScript or a slim checkpoint.

:func:`export_model` picks the format by the output's suffix (:data:`FORMATS`); an unknown suffix
is an error, never a silent default. ONNX and TorchScript exports carry the same metadata as JSON
(bands, their normalisation, the class table, the tile size, the model spec, the pretrained
weights' record; for ``geotiler info`` the epoch, metrics and training settings): in the ONNX
model's ``metadata_props`` under ``geotiler``, in the TorchScript archive as the extra file
``geotiler.json``. ``geotiler predict --model`` reads all three.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geotiler.errors import InputError
from geotiler.io import atomic_output

log = logging.getLogger(__name__)

META_KEY = "geotiler"
TORCHSCRIPT_META_FILE = "geotiler.json"
ONNX_AXES = {0: "batch", 2: "height", 3: "width"}
_META_KEYS = (
    "bands", "band_mean", "band_std", "band_low", "band_high", "num_classes", "tile_size",
    "nodata", "model", "encoder_weights", "epoch", "metrics", "best", "settings",
    "geotiler_version",
)  # fmt: skip


def inference_metadata(meta: dict[str, Any], **extra: Any) -> str:
    """The JSON an export carries: what predict needs from the checkpoint, plus ``extra``."""
    plain = {k: v for k, v in meta.items() if k in _META_KEYS}
    classes = meta["classes"]
    plain["classes"] = classes if isinstance(classes, dict) else classes.model_dump(mode="json")
    return json.dumps({**plain, **extra}, default=_to_plain)


def _to_plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor | np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in export metadata")


def export_onnx(
    checkpoint: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """ONNX with dynamic ``batch``, ``height`` and ``width`` axes and geotiler metadata."""
    onnx = import_or_explain("onnx")
    import_or_explain("onnxscript")
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
            dynamic_shapes=(dict.fromkeys(ONNX_AXES, dynamic),),
        )
        if program is None:  # pragma: no cover - dynamo export always returns a program
            raise InputError(f"{checkpoint}: ONNX export produced nothing")
        proto = program.model_proto
        name_axes(proto.graph)
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, inference_metadata(meta)
        onnx.save(proto, str(temporary))
    return Path(output)


def name_axes(graph: Any) -> None:
    """Rename the exporter's symbols (``s77``) of the image's axes to ``batch/height/width``.

    The logits have the image's size, so their axes get the same names.
    """
    image = graph.input[0].type.tensor_type.shape.dim
    renamed = {image[i].dim_param: name for i, name in ONNX_AXES.items() if image[i].dim_param}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renamed:
                dim.dim_param = renamed[dim.dim_param]
    for value in [graph.input[0], *graph.output]:
        dims = value.type.tensor_type.shape.dim
        for i, name in ONNX_AXES.items():
            if i < len(dims):
                dims[i].dim_param = name


def export_torchscript(
    checkpoint: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """TorchScript: scripted (any input size) or, where scripting fails, traced at the tile size."""
    from geotiler.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    tile = int(meta.get("tile_size") or 256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
        try:
            module = torch.jit.script(model)
            how = "scripted"
        except Exception as exc:
            log.info("%s: scripting failed (%s); tracing at %d px", checkpoint, exc, tile)
            example = torch.zeros(1, len(meta["bands"]), tile, tile)
            with torch.no_grad():
                module = torch.jit.trace(model, example, check_trace=False)
            how = "traced"
    files = {TORCHSCRIPT_META_FILE: inference_metadata(meta, torchscript=how)}
    with atomic_output(output, overwrite=overwrite, inputs=[checkpoint]) as temporary:
        torch.jit.save(module, str(temporary), _extra_files=files)
    return Path(output)


def export_slim_checkpoint(
    checkpoint: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """The checkpoint without its resume state (optimiser, RNG): what predict needs."""
    from geotiler.train.checkpoint import export_for_inference

    return export_for_inference(checkpoint, output, overwrite=overwrite)


Exporter = Callable[..., Path]

FORMATS: dict[str, tuple[str, Exporter]] = {
    ".onnx": ("ONNX", export_onnx),
    ".ts": ("TorchScript", export_torchscript),
    ".torchscript": ("TorchScript", export_torchscript),
    ".pt": ("slim checkpoint", export_slim_checkpoint),
}


def export_model(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    use: str = "auto",
) -> Path:
    """Export ``checkpoint`` in the format of ``output``'s suffix (InputError when unknown)."""
    suffix = Path(output).suffix.lower()
    if Path(output).resolve() == Path(checkpoint).resolve():
        raise InputError(f"{output}: is the checkpoint itself; export to another file")
    if suffix not in FORMATS:
        known = ", ".join(f"{s} ({name})" for s, (name, _) in FORMATS.items())
        raise InputError(
            f"{output}: unknown export format {suffix or '(no suffix)'!r}: use {known}"
        )
    if suffix != ".pt":
        _check_network_only(Path(checkpoint), use)
    return FORMATS[suffix][1](checkpoint, output, overwrite=overwrite)


def _check_network_only(checkpoint: Path, use: str) -> None:
    """ONNX and TorchScript hold a network only: refuse to drop what predict would use."""
    from geotiler.inference import checkpoint_member
    from geotiler.train.checkpoint import read_checkpoint

    content = read_checkpoint(checkpoint)
    if content["model"].get("architecture") == "pixel-gbm":
        raise InputError(
            f"{checkpoint}: a pixel-gbm model (LightGBM) has no ONNX export (nor TorchScript); "
            "export it to .pt (geotiler export CHECKPOINT -o model.pt) and predict with that"
        )
    member = checkpoint_member(content, "network" if use == "network" else "auto", checkpoint)
    if member != "network":
        raise InputError(
            f"{checkpoint}: predicts with {member} (chosen on validation); ONNX and TorchScript "
            "hold only the network: pass --use network to export it alone, or export to .pt "
            "to keep both"
        )


def import_or_explain(name: str) -> Any:
    """Import an optional dependency or raise InputError saying what to install."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise InputError(f"{name} is not installed: pip install 'geotiler[onnx]'") from None
