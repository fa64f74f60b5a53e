"""Decisions over the tile index: filters, splits, balancing, normalisation and the summary.

Everything here works from the per-tile index alone, so changing filters, splits or balancing on
an existing store (``geotiler filter``) rewrites a few small arrays without re-reading rasters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from geotiler.balance import BalanceSpec, class_shares, class_weights, tile_weights
from geotiler.catalog import ClassTable
from geotiler.errors import InputError
from geotiler.filters import FilterSpec, TileIndex, apply_filters
from geotiler.footprints import read_area, touching, write_index
from geotiler.grid import Grid
from geotiler.outputs import writes
from geotiler.splits import (
    SPLIT_NAMES,
    SplitSpec,
    assign_blocks,
    auto_block_tiles,
    buffer_positions,
)
from geotiler.store import (
    ATTRS_KEY,
    TileStore,
    check_store,
    grid_from_meta,
    load_index,
    write_decisions,
)
from geotiler.tiling import TileLayout, tile_grid_index

BUFFER = "buffer"


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
    attrs: dict[str, Any]

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        return {"verdict": self.verdict, "split": self.split, "weight": self.weight}


def decide(
    index: TileIndex, classes: ClassTable, grid: Grid, settings: DecisionSettings
) -> Decisions:
    """Filter, split (with buffers), balance and compute band statistics.

    Raises:
        InputError: no tile is left for training after filtering and splitting.
    """
    verdict, names = apply_filters(index, settings.filters, classes)
    split = _split_positions(index, grid, settings, kept=verdict == 0)
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
    attrs = {
        "settings": settings.describe(),
        "verdicts": names,
        "splits": list(SPLIT_NAMES),
        "band_mean": mean.tolist(),
        "band_std": std.tolist(),
        "class_weights": weights.tolist() if balanced else None,
    }
    decisions = Decisions(verdict, split.astype(np.uint8), weight, attrs)
    attrs["summary"] = summarize(index, classes, decisions)
    return decisions


def _split_positions(
    index: TileIndex, grid: Grid, settings: DecisionSettings, *, kept: np.ndarray
) -> np.ndarray:
    """Split code per tile; buffer tiles get ``-(code + 1)``."""
    positions, inverse = np.unique(np.stack([index.row, index.col], 1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    rows, cols = positions[:, 0], positions[:, 1]
    forced = np.full(len(positions), -1, dtype=np.int64)
    if settings.split_areas:
        bounds = TileLayout(grid, index.tile_size, index.stride).bounds(rows, cols)
        for name, path in settings.split_areas:
            forced[touching(bounds, read_area(path, grid.crs)) & (forced < 0)] = SPLIT_NAMES.index(
                name
            )
    i, j = tile_grid_index(rows, index.stride), tile_grid_index(cols, index.stride)
    overlapping = index.stride < index.tile_size
    block = settings.block_tiles or auto_block_tiles(len(positions), overlapping=overlapping)
    split = assign_blocks(
        i, j, settings.split, seed=settings.seed, block_tiles=block, forced=forced
    )
    used = np.zeros(len(positions), dtype=bool)
    np.logical_or.at(used, inverse, kept)
    buffer = buffer_positions(rows, cols, split, used, size_px=index.tile_size)
    coded = np.where(buffer, -(split + 1), split)
    return coded[inverse]


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
    names = decisions.attrs["verdicts"]
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
        "balance": decisions.attrs["settings"]["balance"],
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
    meta = check_store(path, written_only=True)
    classes = ClassTable.model_validate(meta["classes"])
    decisions = decide(load_index(path), classes, grid_from_meta(meta), settings)
    group: Any = zarr.open_group(str(path), mode="r+")
    write_decisions(group, decisions.attrs, decisions.arrays)
    group.attrs[ATTRS_KEY] = {**group.attrs[ATTRS_KEY], "complete": True}
    return TileStore.open(path)


def export_index(store: TileStore, path: str | PathLike[str]) -> Path:
    """Write the store's tile footprints with scene, split, verdict and class shares."""
    frame = store.index.copy()
    counts = frame[[c for c in frame.columns if c.startswith("class_")]].to_numpy(dtype=float)
    labelled = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    names = store.classes.names
    for column, share in zip(
        frame.columns[frame.columns.str.startswith("class_")], (counts / labelled).T, strict=True
    ):
        class_id = int(column.split("_")[1])
        frame[f"share_{names.get(class_id, class_id)}"] = share
    layout = TileLayout(store.grid, store.tile_size, store.stride)
    bounds = layout.bounds(frame["row"].to_numpy(), frame["col"].to_numpy())
    return write_index(frame, bounds, store.grid.crs, path)
