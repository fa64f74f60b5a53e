"""Leakage-free train/val/test splits of tile positions by contiguous spatial blocks.

Tile positions are grouped into square blocks of ``block_tiles`` x ``block_tiles`` tiles. The blocks
are shuffled with the seed and dealt to the splits so that each split gets its fraction of the
positions (``block:0.8,0.1,0.1``). All scenes share the positions, so a place is in one split only.
Polygons (``--split-aoi val=region.geojson``) may force the positions they touch into a split;
the other positions are shared among the remaining splits in proportion to their fractions.

With overlapping tiles, neighbouring positions of different splits share pixels. Such a position is
marked ``buffer`` (dropped) when it overlaps a kept position of a split that ranks higher (test
over val over train), so no pixel of a val or test tile is seen in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geotiler.errors import InputError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSpec:
    """Fractions of (train, val, test) positions."""

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def __str__(self) -> str:
        return "block:" + ",".join(f"{f:g}" for f in self.fractions)


def parse_split(text: str) -> SplitSpec:
    """``block[:train,val,test]`` to a :class:`SplitSpec` (fractions normalised to sum 1)."""
    method, _, arg = text.strip().partition(":")
    if method != "block":
        raise InputError(f"unknown split method {method!r}; use block[:train,val,test]")
    if not arg:
        return SplitSpec()
    try:
        values = tuple(float(v) for v in arg.split(","))
    except ValueError:
        raise InputError(f"split fractions {arg!r} are not numbers (e.g. 0.8,0.1,0.1)") from None
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise InputError(f"split needs three non-negative fractions train,val,test, got {arg!r}")
    total = sum(values)
    return SplitSpec((values[0] / total, values[1] / total, values[2] / total))


def auto_block_tiles(n_positions: int, *, overlapping: bool = False) -> int:
    """A block side giving about 30 blocks; at least 2 tiles with overlap (fewer buffer tiles)."""
    return max(2 if overlapping else 1, math.floor(math.sqrt(n_positions / 30)))


def assign_blocks(
    tile_i: np.ndarray,
    tile_j: np.ndarray,
    spec: SplitSpec,
    *,
    seed: int,
    block_tiles: int,
    forced: np.ndarray | None = None,
) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) per position from its tile-grid ``(i, j)``.

    ``forced`` holds a split code per position, or -1 where the blocks decide.
    """
    forced = np.full(len(tile_i), -1) if forced is None else np.asarray(forced)
    free = forced < 0
    block = (tile_i // block_tiles) * (int(tile_j.max(initial=0)) // block_tiles + 1) + (
        tile_j // block_tiles
    )
    fractions = np.array(spec.fractions, dtype=np.float64)
    fractions[np.unique(forced[~free])] = 0.0
    split = forced.astype(np.int64).copy()
    if free.any() and fractions.sum() > 0:
        fractions /= fractions.sum()
        blocks, sizes = np.unique(block[free], return_counts=True)
        order = np.random.default_rng(seed).permutation(len(blocks))
        # A block goes to the split its middle position falls in along the cumulative count.
        middle = (np.cumsum(sizes[order]) - sizes[order] / 2) / sizes.sum()
        edges = np.cumsum(fractions)[:-1]
        code = np.empty(len(blocks), dtype=np.int64)
        code[order] = np.searchsorted(edges, middle, side="right")
        split[free] = code[np.searchsorted(blocks, block[free])]
    elif free.any():
        raise InputError("every split fraction is taken by --split-aoi; leave one split free")
    return split


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
