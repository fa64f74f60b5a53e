"""Leakage-free train/val/test splits of tile positions: by spatial blocks or by whole scenes.

A position is a place: a scene group (the seasons of one footprint share it) and a tile row and
column. ``block:0.8,0.1,0.1`` groups each group's positions into square blocks of ``block_tiles``
x ``block_tiles`` tiles; ``scene:0.8,0.1,0.1`` makes each group one block (for datasets of many
small chips, which blocks and buffers would waste); ``auto`` picks ``scene`` for ten groups or
more, else ``block``. The blocks are shuffled with the seed and dealt to the splits so that each
split gets its fraction of the positions; every split with a fraction gets at least one block
that has a kept tile, when there are enough. A dataset's own split (folders or list files) is
kept: those scenes are forced into it.
Polygons (``--split-aoi val=region.geojson``) may force the positions they touch into a split;
the other positions are shared among the remaining splits in proportion to their fractions.

With overlapping tiles, neighbouring positions of different splits share pixels. Such a position is
marked ``buffer`` (dropped) when it overlaps a kept position of a split that ranks higher (test
over val over train), so no pixel of a val or test tile is seen in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from geotiler.errors import InputError

SPLIT_NAMES = ("train", "val", "test")


SplitMethod = Literal["auto", "block", "scene"]
SPLIT_METHODS: tuple[SplitMethod, ...] = ("auto", "block", "scene")
CHIP_GROUPS = 10
"""``auto`` splits by whole scene groups from this many groups on."""


@dataclass(frozen=True)
class SplitSpec:
    """A split method and the fractions of (train, val, test) positions."""

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    method: SplitMethod = "block"

    def __str__(self) -> str:
        return f"{self.method}:" + ",".join(f"{f:g}" for f in self.fractions)

    def resolved(self, groups: int) -> SplitSpec:
        """``auto`` made concrete for a dataset of ``groups`` scene groups."""
        if self.method != "auto":
            return self
        return SplitSpec(self.fractions, "scene" if groups >= CHIP_GROUPS else "block")


def parse_split(text: str) -> SplitSpec:
    """``auto|block|scene[:train,val,test]`` to a :class:`SplitSpec` (fractions sum to 1)."""
    method, _, arg = text.strip().partition(":")
    if method not in SPLIT_METHODS:
        raise InputError(
            f"unknown split method {method!r}; use auto, block or scene[:train,val,test]"
        )
    if not arg:
        return SplitSpec(method=method)
    try:
        values = tuple(float(v) for v in arg.split(","))
    except ValueError:
        raise InputError(f"split fractions {arg!r} are not numbers (e.g. 0.8,0.1,0.1)") from None
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise InputError(f"split needs three non-negative fractions train,val,test, got {arg!r}")
    total = sum(values)
    fractions = (values[0] / total, values[1] / total, values[2] / total)
    return SplitSpec(fractions, method)


def auto_block_tiles(n_positions: int, *, overlapping: bool = False) -> int:
    """A block side giving about 30 blocks; at least 2 tiles with overlap (fewer buffer tiles)."""
    return max(2 if overlapping else 1, math.floor(math.sqrt(n_positions / 30)))


def block_ids(
    group: np.ndarray, tile_i: np.ndarray, tile_j: np.ndarray, *, block_tiles: int | None
) -> np.ndarray:
    """A block number per position: its group's block of ``block_tiles`` tiles, or its group."""
    if block_tiles is None:
        return np.asarray(group, dtype=np.int64)
    width = int(tile_j.max(initial=0)) // block_tiles + 1
    height = int(tile_i.max(initial=0)) // block_tiles + 1
    local = (tile_i // block_tiles) * width + (tile_j // block_tiles)
    return np.asarray(group, dtype=np.int64) * (width * height) + local


def assign_blocks(
    block: np.ndarray,
    spec: SplitSpec,
    *,
    seed: int,
    forced: np.ndarray | None = None,
    used: np.ndarray | None = None,
) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) per position from its block number.

    ``forced`` holds a split code per position, or -1 where the blocks decide. ``used`` marks the
    positions with a kept tile: a split with a fraction is never left without one while another
    split has several blocks with kept tiles.
    """
    forced = np.full(len(block), -1) if forced is None else np.asarray(forced)
    used = np.ones(len(block), dtype=bool) if used is None else np.asarray(used, dtype=bool)
    free = forced < 0
    fractions = np.array(spec.fractions, dtype=np.float64)
    fractions[np.unique(forced[~free])] = 0.0
    split = forced.astype(np.int64).copy()
    if free.any() and fractions.sum() > 0:
        fractions /= fractions.sum()
        blocks, where, sizes = np.unique(block[free], return_inverse=True, return_counts=True)
        order = np.random.default_rng(seed).permutation(len(blocks))
        # A block goes to the split its middle position falls in along the cumulative count.
        middle = (np.cumsum(sizes[order]) - sizes[order] / 2) / sizes.sum()
        edges = np.cumsum(fractions)[:-1]
        code = np.empty(len(blocks), dtype=np.int64)
        code[order] = np.searchsorted(edges, middle, side="right")
        live = np.zeros(len(blocks), dtype=bool)
        np.logical_or.at(live, where.ravel(), used[free])
        _fill_empty_splits(code, live, fractions, order)
        split[free] = code[where.ravel()]
    elif free.any():
        raise InputError("every split fraction is taken by --split-aoi; leave one split free")
    return split


def _fill_empty_splits(
    code: np.ndarray, live: np.ndarray, fractions: np.ndarray, order: np.ndarray
) -> None:
    """Give each split with a fraction a live block, taken from the split with the most."""
    for target in np.flatnonzero(fractions > 0):
        if (live & (code == target)).any():
            continue
        counts = np.bincount(code[live], minlength=len(fractions))
        donor = int(np.argmax(counts))
        if counts[donor] < 2:
            return
        # The donor's last block in the dealing order (deterministic for a seed).
        candidates = [b for b in order[::-1] if live[b] and code[b] == donor]
        code[candidates[0]] = target


def buffer_positions(
    row_px: np.ndarray,
    col_px: np.ndarray,
    split: np.ndarray,
    used: np.ndarray,
    *,
    size_px: int,
) -> np.ndarray:
    """Positions that share pixels with a *used* position of a higher-ranked split."""
    rows, cols = np.unique(row_px), np.unique(col_px)
    grid_split = np.full((len(rows), len(cols)), -1, dtype=np.int64)
    i = np.searchsorted(rows, row_px)
    j = np.searchsorted(cols, col_px)
    grid_split[i[used], j[used]] = split[used]
    reach_r = _reach(rows, size_px)
    reach_c = _reach(cols, size_px)
    buffer = np.zeros(len(split), dtype=bool)
    for di in range(-reach_r, reach_r + 1):
        for dj in range(-reach_c, reach_c + 1):
            ni, nj = i + di, j + dj
            inside = (ni >= 0) & (ni < len(rows)) & (nj >= 0) & (nj < len(cols))
            ni_c, nj_c = np.clip(ni, 0, len(rows) - 1), np.clip(nj, 0, len(cols) - 1)
            overlaps = (np.abs(rows[ni_c] - row_px) < size_px) & (
                np.abs(cols[nj_c] - col_px) < size_px
            )
            other = grid_split[ni_c, nj_c]
            buffer |= inside & overlaps & (other > split)
    return buffer


def _reach(offsets: np.ndarray, size_px: int) -> int:
    """How many grid steps apart two overlapping tiles can be along one axis."""
    if len(offsets) < 2:
        return 0
    smallest_step = int(np.diff(offsets).min())
    return math.ceil(size_px / max(smallest_step, 1))
