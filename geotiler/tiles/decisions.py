"""Decisions over the tile index: filters, splits, balancing, normalisation and the summary.

Everything here works from the per-tile index alone, so changing filters, splits or balancing on
an existing store (``geotiler filter``) rewrites a few small arrays without re-reading rasters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from geotiler.catalog import ClassTable
from geotiler.errors import InputError
from geotiler.outputs import writes
from geotiler.tiles.balance import BalanceSpec, class_shares, class_weights, tile_weights
from geotiler.tiles.filters import FilterSpec, TileIndex, apply_filters
from geotiler.tiles.footprints import read_area, touching, write_index
from geotiler.tiles.layout import TileLayout, tile_grid_index
from geotiler.tiles.schema import DecisionAttrs, SceneRecord
from geotiler.tiles.splits import (
    SPLIT_NAMES,
    SplitSpec,
    assign_blocks,
    auto_block_tiles,
    block_ids,
    buffer_positions,
)
from geotiler.tiles.store import TileStore, check_store, load_index, mark_complete, write_decisions

BUFFER = "buffer"
# What a drop reason means where it is not a filter's name (summaries and reports say it).
DROP_MEANINGS = {
    BUFFER: "tiles overlapping a tile of another split, discarded so no pixel is in two splits "
    "(no leakage between train, val and test)",
}


def dropped_label(reason: str) -> str:
    """``dropped: REASON``, with what it means where the name does not say it."""
    meaning = DROP_MEANINGS.get(reason)
    return f"dropped: {reason}" + (f" ({meaning})" if meaning else "")


@dataclass(frozen=True)
class DecisionSettings:
    """How tiles are filtered, split and balanced."""

    filters: tuple[FilterSpec, ...] = ()
    balance: BalanceSpec = field(default_factory=lambda: BalanceSpec("none"))
    split: SplitSpec = field(default_factory=SplitSpec)
    seed: int = 0
    block_tiles: int | None = None
    split_areas: tuple[tuple[str, str], ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "filters": [str(f) for f in self.filters],
            "balance": str(self.balance),
            "split": str(self.split),
            "seed": self.seed,
            "block_tiles": self.block_tiles,
            "split_aoi": dict(self.split_areas),
        }


@dataclass(frozen=True)
class Decisions:
    """The decision arrays (one value per tile) and the attrs that go with them."""

    verdict: np.ndarray
    split: np.ndarray
    weight: np.ndarray
    attrs: DecisionAttrs

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        return {"verdict": self.verdict, "split": self.split, "weight": self.weight}


def decide(
    index: TileIndex,
    classes: ClassTable,
    scenes: Sequence[SceneRecord],
    settings: DecisionSettings,
) -> Decisions:
    """Filter, split (with buffers), balance and compute band statistics.

    Raises:
        InputError: no tile is left for training after filtering and splitting.
    """
    verdict, names = apply_filters(index, settings.filters, classes)
    groups = sorted({scene.group for scene in scenes})
    spec = settings.split.resolved(len(groups))
    split = _split_positions(index, scenes, settings, spec, kept=verdict == 0)
    buffer = split < 0
    split = np.abs(split) - (split < 0)
    names.append(BUFFER)
    verdict[(verdict == 0) & buffer] = len(names) - 1
    kept = verdict == 0
    train = kept & (split == 0)
    if not train.any():
        raise InputError(_empty_message(index, verdict, names))
    counts = index.class_counts
    train_counts = counts[train].sum(axis=0)
    weights = class_weights(
        train_counts, settings.balance, nodata=classes.nodata, tile_px=index.tile_size**2
    )
    balanced = settings.balance.method != "none"
    weight = tile_weights(counts, weights, train) if balanced else np.ones(len(index))
    weight[~kept] = 0.0
    mean, std = band_statistics(index, train)
    attrs = DecisionAttrs(
        settings=settings.describe(),
        verdicts=tuple(names),
        splits=SPLIT_NAMES,
        band_mean=tuple(mean.tolist()),
        band_std=tuple(std.tolist()),
        class_weights=tuple(weights.tolist()) if balanced else None,
        split_policy=str(spec),
    )
    decisions = Decisions(verdict, split.astype(np.uint8), weight, attrs)
    summary = summarize(index, classes, decisions)
    return Decisions(
        verdict, decisions.split, weight, attrs.model_copy(update={"summary": summary})
    )


def _split_positions(
    index: TileIndex,
    scenes: Sequence[SceneRecord],
    settings: DecisionSettings,
    spec: SplitSpec,
    *,
    kept: np.ndarray,
) -> np.ndarray:
    """Split code per tile; buffer tiles get ``-(code + 1)``.

    Positions are (group, row, col): seasons of one place share a position, so they share a split.
    """
    group_names = sorted({scene.group for scene in scenes})
    group_of_scene = np.asarray([group_names.index(s.group) for s in scenes], dtype=np.int64)
    group = group_of_scene[index.scene] if len(index) else np.zeros(0, np.int64)
    keys = np.stack([group, index.row, index.col], 1)
    positions, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    pos_group, rows, cols = positions[:, 0], positions[:, 1], positions[:, 2]
    forced = _forced_splits(index, scenes, settings, positions, inverse)
    used = np.zeros(len(positions), dtype=bool)
    np.logical_or.at(used, inverse, kept)
    i, j = tile_grid_index(rows, index.stride), tile_grid_index(cols, index.stride)
    block_tiles = None
    if spec.method == "block":
        overlapping = index.stride < index.tile_size
        block_tiles = settings.block_tiles or auto_block_tiles(
            len(positions), overlapping=overlapping
        )
    block = block_ids(pos_group, i, j, block_tiles=block_tiles)
    split = assign_blocks(block, spec, seed=settings.seed, forced=forced, used=used)
    buffer = np.zeros(len(positions), dtype=bool)
    if index.stride < index.tile_size:
        for g in np.unique(pos_group):
            at = pos_group == g
            buffer[at] = buffer_positions(
                rows[at], cols[at], split[at], used[at], size_px=index.tile_size
            )
    coded = np.where(buffer, -(split + 1), split)
    return coded[inverse]


def _forced_splits(
    index: TileIndex,
    scenes: Sequence[SceneRecord],
    settings: DecisionSettings,
    positions: np.ndarray,
    inverse: np.ndarray,
) -> np.ndarray:
    """Split code per position forced by the dataset's own splits or --split-aoi, else -1."""
    forced = np.full(len(positions), -1, dtype=np.int64)
    own = np.asarray(
        [-1 if s.split is None else SPLIT_NAMES.index(s.split) for s in scenes], np.int64
    )
    if (own >= 0).any() and len(index):
        np.maximum.at(forced, inverse, own[index.scene])
    if not settings.split_areas:
        return forced
    first_tile = np.zeros(len(positions), dtype=np.int64)
    first_tile[inverse[::-1]] = np.arange(len(inverse))[::-1]
    for number, scene in enumerate(scenes):
        at = np.flatnonzero(index.scene[first_tile] == number)
        if not len(at):
            continue
        grid = scene.grid
        crs = grid.require_crs(f"--split-aoi (scene {scene.name!r})")
        bounds = TileLayout(grid, index.tile_size, index.stride).bounds(
            positions[at, 1], positions[at, 2]
        )
        for name, path in settings.split_areas:
            inside = touching(bounds, read_area(path, crs)) & (forced[at] < 0)
            forced[at[inside]] = SPLIT_NAMES.index(name)
    return forced


def band_statistics(index: TileIndex, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over the valid pixels of ``tiles``."""
    pixels = float(index.valid_px[tiles].sum())
    if pixels == 0:
        bands = index.band_sum.shape[1]
        return np.zeros(bands), np.ones(bands)
    mean = index.band_sum[tiles].sum(axis=0) / pixels
    variance = index.band_sumsq[tiles].sum(axis=0) / pixels - mean**2
    return mean, np.sqrt(np.maximum(variance, 0.0))


def _empty_message(index: TileIndex, verdict: np.ndarray, names: list[str]) -> str:
    counts = Counter(names[v] for v in verdict.tolist())
    dropped = ", ".join(f"{name}: {n}" for name, n in counts.items() if name != "keep")
    kept = counts.get("keep", 0)
    return (
        f"no training tile left: of {len(index)} tiles, {kept} kept outside training, dropped "
        f"{dropped or 'none'}; loosen --filter or change --split and re-run (tiles already "
        "written are reused)"
    )


def summarize(index: TileIndex, classes: ClassTable, decisions: Decisions) -> dict[str, Any]:
    """Counts per verdict and split, and class shares before and after balancing (JSON-able)."""
    names = decisions.attrs.verdicts
    kept = decisions.verdict == 0
    train = kept & (decisions.split == 0)
    by_verdict = Counter(names[v] for v in decisions.verdict.tolist())
    before = class_shares(index.class_counts[train])
    after = class_shares(index.class_counts[train], decisions.weight[train])
    labels = classes.names
    return {
        "tiles": len(index),
        "kept": int(kept.sum()),
        "dropped": {name: by_verdict[name] for name in names[1:] if by_verdict[name]},
        "splits": {
            name: int((kept & (decisions.split == code)).sum())
            for code, name in enumerate(SPLIT_NAMES)
        },
        "balance": decisions.attrs.settings["balance"],
        "split": decisions.attrs.split_policy,
        "classes": [
            {"id": c, "name": labels[c], "before": float(before[c]), "after": float(after[c])}
            for c in sorted(labels)
            if c < len(before)
        ],
    }


@writes("path", "store", keep=True)
def refilter(path: str | PathLike[str], settings: DecisionSettings) -> TileStore:
    """Re-decide filters, splits and balancing of a store from its index (no raster is read).

    Works on a complete store and on one whose tiles are all written but whose decisions failed
    (e.g. every tile was filtered out).
    """
    attrs = check_store(path, written_only=True)
    decisions = decide(load_index(path), attrs.classes, attrs.scenes, settings)
    group: Any = zarr.open_group(str(path), mode="r+")
    write_decisions(group, decisions.attrs, decisions.arrays)
    mark_complete(group)
    return TileStore.open(path)


def export_index(store: TileStore, path: str | PathLike[str]) -> Path:
    """Write the store's tile footprints with scene, split, verdict and class shares.

    Footprints are in the scenes' CRS when they share one, in WGS84 when they do not, and in
    pixel coordinates (no CRS) when the scenes have no georeference. Shares are ``share_<id>``
    columns; the class names are in the index's lookup table (see
    :mod:`geotiler.tiles.footprints`), not in column names.
    """
    frame = store.index.copy()
    counts = frame[[c for c in frame.columns if c.startswith("class_")]].to_numpy(dtype=float)
    labelled = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    for column, share in zip(
        frame.columns[frame.columns.str.startswith("class_")], (counts / labelled).T, strict=True
    ):
        frame[f"share_{int(column.split('_')[1])}"] = share
    bounds, crs = _footprints(store, frame)
    lookup = [{"id": c.id, "name": c.name, "color": c.color} for c in store.classes.classes]
    return write_index(frame, bounds, crs, path, classes=lookup)


def _footprints(store: TileStore, frame: Any) -> tuple[np.ndarray, Any]:
    from rasterio.warp import transform_bounds

    grids = [store.grid(name) for name in store.scenes]
    crss = {None if g.crs is None else g.crs.to_wkt() for g in grids}
    if None in crss and len(crss) > 1:
        raise InputError(
            f"{store.path}: some scenes have a CRS and some do not; the index cannot hold both"
        )
    common = grids[0].crs if len(crss) == 1 else "EPSG:4326"
    bounds = np.zeros((len(frame), 4))
    codes = frame["scene"].cat.codes.to_numpy()
    rows, cols = frame["row"].to_numpy(), frame["col"].to_numpy()
    for number, grid in enumerate(grids):
        at = codes == number
        if not at.any():
            continue
        layout = TileLayout(grid, store.tile_size, store.stride)
        part = layout.bounds(rows[at], cols[at])
        if len(crss) > 1 and grid.crs is not None:
            part = np.asarray([transform_bounds(grid.crs, common, *b) for b in part])
        bounds[at] = part
    return bounds, common
