"""Where tiles sit on a scene grid: full-size squares every ``stride_px``, edges snapped.

A scene is cut into full-size square tiles of ``size_px`` placed every ``stride_px`` (``size_px -
overlap_px``). The last tile row and column are snapped to the bottom and right edges, so every tile
is full size and the edges are covered (the snapped tiles overlap their neighbours a little more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geotiler.errors import InputError
from geotiler.grid import Grid


def tile_offsets(length_px: int, size_px: int, stride_px: int) -> np.ndarray:
    """Offsets of full-size tiles along one axis: every ``stride_px``, the last snapped to the edge.

    Raises:
        InputError: the axis is shorter than one tile, or the stride is not positive.
    """
    if stride_px < 1:
        raise InputError(f"stride must be positive (size {size_px} - overlap), got {stride_px}")
    if length_px < size_px:
        raise InputError(f"a scene of {length_px} px is smaller than one tile of {size_px} px")
    offsets = list(range(0, length_px - size_px + 1, stride_px))
    if offsets[-1] != length_px - size_px:
        offsets.append(length_px - size_px)
    return np.asarray(offsets, dtype=np.int64)


def tile_grid_index(offsets_px: np.ndarray, stride_px: int) -> np.ndarray:
    """Tile-row (or column) numbers of offsets made by :func:`tile_offsets`, snapped included."""
    return np.ceil(np.asarray(offsets_px) / stride_px).astype(np.int64)


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of a grid are: ``size_px`` squares every ``stride_px``, edges snapped."""

    grid: Grid
    size_px: int
    stride_px: int

    @property
    def row_offsets(self) -> np.ndarray:
        return tile_offsets(self.grid.rows, self.size_px, self.stride_px)

    @property
    def col_offsets(self) -> np.ndarray:
        return tile_offsets(self.grid.cols, self.size_px, self.stride_px)

    @property
    def shape(self) -> tuple[int, int]:
        """Tiles per ``(rows, cols)``."""
        return len(self.row_offsets), len(self.col_offsets)

    def window(self, row_px: int, col_px: int) -> Window:
        return Window(col_px, row_px, self.size_px, self.size_px)

    def bounds(self, row_px: np.ndarray, col_px: np.ndarray) -> np.ndarray:
        """Footprints ``(n, 4)`` as ``left, bottom, right, top`` in the grid's CRS."""
        t = self.grid.transform
        x0 = t.c + t.a * np.asarray(col_px, dtype=np.float64)
        y0 = t.f + t.e * np.asarray(row_px, dtype=np.float64)
        x1, y1 = x0 + t.a * self.size_px, y0 + t.e * self.size_px
        return np.stack(
            [np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1)], 1
        )


def plan_units(
    layout: TileLayout,
    active: np.ndarray,
    *,
    tile_rows_per_band: int,
    max_tiles: int | None = None,
) -> list[np.ndarray]:
    """Bands of tile rows, each an ``(n, 2)`` int64 array of ``(row_px, col_px)``, row-major.

    ``active`` is a boolean ``(tile rows, tile cols)`` array of positions to tile (AOI). With
    ``max_tiles`` a band is cut into runs of at most that many tiles (the tile arrays a unit is
    cut into are what grows with the scene's width); the order of the tiles stays the same.
    """
    rows, cols = layout.row_offsets, layout.col_offsets
    units: list[np.ndarray] = []
    for first in range(0, len(rows), tile_rows_per_band):
        band = slice(first, min(first + tile_rows_per_band, len(rows)))
        r, c = np.meshgrid(rows[band], cols, indexing="ij")
        on = active[band]
        tiles = np.stack([r[on], c[on]], axis=1).astype(np.int64).reshape(-1, 2)
        parts = -(-len(tiles) // max_tiles) if max_tiles else 1
        step = max(1, -(-len(tiles) // max(parts, 1)))  # equal runs, not a full one and a stub
        units.extend(tiles[start : start + step] for start in range(0, max(len(tiles), 1), step))
    return units


def tile_rows_per_band(
    layout: TileLayout, *, bands: int, itemsize: int, block_rows: int, budget_bytes: int
) -> int:
    """Tile rows read per band: spanning a few source blocks, within the memory budget."""
    row_bytes = layout.size_px * layout.grid.cols * (bands * itemsize + 1)
    by_memory = max(1, budget_bytes // max(row_bytes, 1))
    by_blocks = max(1, math.ceil(4 * block_rows / layout.stride_px))
    return int(min(by_memory, by_blocks))
