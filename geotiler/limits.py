"""Sanity limits checked before anything is allocated: hostile or corrupt headers fail fast.

A small file can declare an enormous raster, and a checkpoint's metadata can ask for a model or
a tile size its weights do not have. These checks compare what a file declares with what it can
hold, and what a stage would hold in memory at once with the memory there is, so such files end
in one line naming the file instead of a multi-gigabyte allocation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from geotiler.errors import InputError, RasterError

MAX_COMPRESSION = 100_000
"""Declared pixel bytes per byte of GeoTIFF: beyond any codec on real data (deflate tops ~1000)."""
MAX_TILE_PX = 16_384
MAX_LIST_ARGUMENT = 64
"""Longest list a model argument (e.g. ``widths``) may have in a checkpoint's metadata."""
MEMORY_SHARE = 0.9
"""Share of the available memory a stage may plan to hold at once."""


def human_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"


def check_declared_size(dataset: Any, name: str) -> None:
    """Refuse a GeoTIFF whose header declares more pixels than its file could ever hold.

    Raises:
        RasterError: naming the file, its declared size and its real size.
    """
    if dataset.driver not in ("GTiff", "COG") or "://" in name or name.startswith("/vsi"):
        return  # VRTs and remote files legitimately declare more than their bytes
    try:
        size = os.path.getsize(name)
    except OSError:
        return
    itemsize = max(np.dtype(dtype).itemsize for dtype in dataset.dtypes)
    declared = int(dataset.width) * int(dataset.height) * int(dataset.count) * itemsize
    if declared > MAX_COMPRESSION * max(size, 1):
        raise RasterError(
            f"{name}: declares {dataset.width:,} x {dataset.height:,} px x {dataset.count} "
            f"band(s) ({human_bytes(declared)}) in a file of {human_bytes(size)}, more than any "
            "compression holds: its header is corrupt or hostile; re-create or re-download it"
        )


def available_bytes() -> int:
    """Memory a stage may plan to use: a share of what the system has available now."""
    import psutil

    return int(psutil.virtual_memory().available * MEMORY_SHARE)


def check_hold(name: str, *, stage: str, what: str, nbytes: int, fix: str) -> None:
    """Refuse to start when ``stage`` would hold ``nbytes`` at once, more than is available.

    Raises:
        InputError: naming the file, what would be held, both sizes and ``fix``.
    """
    budget = available_bytes()
    if nbytes > budget:
        raise InputError(
            f"{name}: {stage} would hold {what} at once ({human_bytes(nbytes)}), more than the "
            f"{human_bytes(budget)} of memory available; {fix}"
        )


def check_predict_memory(
    name: str, *, cols: int, bands: int, classes: int, tile_px: int, batch: int, tta: bool
) -> None:
    """Predict holds a band of tile rows across the scene's width, and a batch of tiles."""
    band = tile_px * cols * (bands * 12 + classes * 16 + 8)
    tiles = batch * tile_px * tile_px * (bands + classes) * 4 * (2 if tta else 1)
    check_hold(
        name,
        stage="predict",
        what=f"{tile_px} rows x {cols:,} px of {bands} bands and {classes} class probabilities",
        nbytes=band + tiles + tile_px * tile_px * 4,
        fix="crop the scene into narrower pieces (gdal_translate -srcwin) or use a model with "
        "smaller tiles",
    )


def check_tile_memory(
    name: str,
    *,
    rows: int,
    cols: int,
    bands: int,
    itemsize: int,
    size_px: int,
    units: int,
    unit_bytes: int,
    shard_bytes: int,
) -> None:
    """Tile holds at least one band of ``size_px`` rows across the scene, ``units`` units of cut
    tiles and a shard being encoded (about three times over), none more than the scene itself."""
    held_rows = min(rows, size_px)
    scene = rows * cols * bands * itemsize
    working = units * min(unit_bytes, scene) + 3 * min(shard_bytes, scene)
    check_hold(
        name,
        stage="tile",
        what=f"{held_rows} rows x {cols:,} px of {bands} bands",
        nbytes=held_rows * cols * (bands * itemsize + 3) + working,
        fix="crop the scene into narrower pieces (gdal_translate -srcwin) or use smaller --size",
    )


def check_checkpoint(content: Mapping[str, Any], where: str) -> None:
    """Check a checkpoint's metadata against itself and its weights, allocating nothing.

    The model the metadata describes is built on PyTorch's ``meta`` device (shapes only) and its
    parameter shapes compared with the stored weights'.

    Raises:
        InputError: naming the checkpoint and the first disagreement.
    """
    bands = list(content.get("bands") or [])
    for key in ("band_mean", "band_std"):
        if len(content.get(key) or []) != len(bands):
            raise InputError(
                f"{where}: {key} has {len(content.get(key) or [])} values for {len(bands)} bands; "
                "the checkpoint is corrupt: use another one or train again"
            )
    tile = content.get("tile_size")
    if tile is not None and not (isinstance(tile, int) and 8 <= tile <= MAX_TILE_PX):
        raise InputError(
            f"{where}: tile_size {tile!r} is outside 8..{MAX_TILE_PX} px; the checkpoint is "
            "corrupt or not made by `geotiler train`: use another one or train again"
        )
    arguments = dict((content.get("model") or {}).get("arguments") or {})
    for key, value in arguments.items():
        if isinstance(value, list | tuple) and len(value) > MAX_LIST_ARGUMENT:
            raise InputError(
                f"{where}: model argument {key} has {len(value)} entries (at most "
                f"{MAX_LIST_ARGUMENT}); the checkpoint is corrupt: use another one or train again"
            )
    _check_weight_shapes(content, where)


def _check_weight_shapes(content: Mapping[str, Any], where: str) -> None:
    import torch

    from geotiler.train.checkpoint import build_model

    with torch.device("meta"):
        model = build_model(dict(content))
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    stored = {key: tuple(value.shape) for key, value in dict(content["state_dict"]).items()}
    spec = dict(content.get("model") or {})
    described = (
        f"model {spec.get('architecture')!r} {dict(spec.get('arguments') or {})}, "
        f"{len(content['bands'])} bands, {content['num_classes']} classes"
    )
    for key in sorted(expected.keys() | stored.keys()):
        if expected.get(key) != stored.get(key):
            problem = (
                f"{key} is {stored.get(key)} in the weights but {expected.get(key)} in the model"
                if key in expected and key in stored
                else f"{key} is {'missing from the weights' if key in expected else 'unexpected'}"
            )
            raise InputError(
                f"{where}: its metadata ({described}) does not match its weights ({problem}); "
                "the checkpoint is corrupt or was edited: use another one or train again"
            )
