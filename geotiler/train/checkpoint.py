"""Self-describing checkpoints (``best.pt``, ``last.pt``) and loading them back.

A checkpoint is one dict of plain values (tensors, dicts, lists, strings, numbers) so that
``torch.load(path, weights_only=True)`` reads it. Keys:

- ``format`` ("geotiler-checkpoint"), ``version``, ``geotiler_version``
- ``state_dict``: the model's weights
- ``model``: ``{"preset", "architecture", "arguments"}`` (rebuilt by :func:`build_model`)
- ``bands``, ``band_mean``, ``band_std`` (and ``band_low``, ``band_high`` when values are clipped
  first): inputs and their normalisation
- ``classes``: the class table as a plain dict; ``num_classes``; ``nodata``; ``tile_size``
- ``encoder_weights``: None, or the pretrained file the encoder started from, the bands it was
  trained on, the normalisation it expects and ``mapping`` (input band -> pretrained band or None)
- ``settings``: the training settings; ``store``: the store trained on
- ``epoch`` (epochs completed), ``metrics`` (that epoch's), ``best`` (best epoch and its metrics)
- ``baseline``: the pixel baseline (:meth:`~geotiler.train.baseline.PixelBaseline.to_checkpoint`)
  or None; ``ensemble``: ``{"use": network | pixel-gbm | ensemble, "network_weight", "scores"}``,
  what predict uses by default and the validation mIoU of each member; ``plan``: the recipe's plan
- a ``pixel-gbm`` checkpoint (``--model pixel-gbm``) has an empty ``state_dict`` and
  ``model.architecture`` ``pixel-gbm``: it has no network to rebuild
- ``resume``: optimiser, scheduler, grad-scaler and RNG states, early-stopping counter

Files are written under a temporary name and moved into place, so a crash never leaves half a
checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geotiler import __version__
from geotiler.catalog import ClassTable
from geotiler.errors import InputError
from geotiler.io import atomic_output
from geotiler.limits import check_checkpoint
from geotiler.train.models import get_model

FORMAT = "geotiler-checkpoint"
VERSION = 1
REQUIRED = ("state_dict", "model", "bands", "band_mean", "band_std", "classes", "num_classes")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format markers) atomically to ``path``."""
    content = _plain(
        {"format": FORMAT, "version": VERSION, "geotiler_version": __version__, **payload}
    )
    with atomic_output(path, overwrite=True) as temporary:
        torch.save(content, temporary)
    return path


def _plain(value: Any) -> Any:
    """Numpy scalars/arrays and tuples as Python values (what ``weights_only`` loading accepts)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dict at ``path``; InputError when missing, corrupt or not ours."""
    where = Path(path)
    if not where.is_file():
        raise InputError(f"{where}: checkpoint not found (best.pt or last.pt of a training run)")
    try:
        content = torch.load(where, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{where}: not a readable checkpoint ({reason}); it may be truncated or corrupt: "
            "use the other checkpoint of the run or train again"
        ) from exc
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise InputError(f"{where}: not a geotiler checkpoint (written by `geotiler train`)")
    missing = [key for key in REQUIRED if key not in content]
    if missing:
        raise InputError(f"{where}: checkpoint lacks {', '.join(missing)}; train again")
    return content


def build_model(meta: dict[str, Any]) -> nn.Module:
    """The architecture a checkpoint describes, with freshly initialised weights."""
    spec = meta["model"]
    return get_model(
        spec["architecture"],
        in_channels=len(meta["bands"]),
        num_classes=int(meta["num_classes"]),
        **dict(spec.get("arguments") or {}),
    )


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint with its weights (eval mode) and return its metadata.

    The metadata is the checkpoint dict without ``state_dict`` and ``resume``; its ``classes``
    entry is a :class:`~geotiler.catalog.ClassTable`.
    """
    return rebuild_model(read_checkpoint(path), path, map_location=map_location)


def rebuild_model(
    content: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_checkpoint` of a checkpoint dict already read from ``path``."""
    if content["model"].get("architecture") == "pixel-gbm":
        raise InputError(
            f"{path}: a pixel-gbm checkpoint holds no network; predict with it through "
            "geotiler.inference.load_predictor or `geotiler predict --model`"
        )
    check_checkpoint(content, str(path))
    model = build_model(content)
    try:
        model.load_state_dict(content["state_dict"])
    except RuntimeError as exc:
        raise InputError(
            f"{path}: weights do not fit model {content['model'].get('architecture')!r} "
            f"({str(exc).splitlines()[0]}); train again"
        ) from exc
    model.to(map_location).eval()
    meta = {k: v for k, v in content.items() if k not in ("state_dict", "resume")}
    meta["classes"] = ClassTable.model_validate(content["classes"])
    return model, meta


def export_for_inference(
    checkpoint: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """A copy of ``checkpoint`` without its resume state (optimiser, RNG): what predict needs."""
    content = read_checkpoint(checkpoint)
    content.pop("resume", None)
    with atomic_output(output, overwrite=overwrite, inputs=[checkpoint]) as temporary:
        torch.save(content, temporary)
    return Path(output)
