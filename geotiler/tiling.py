"""Tile positions on a scene grid, reading them in row bands, and per-tile statistics.

A scene is cut into full-size square tiles of ``size_px`` placed every ``stride_px`` (``size_px -
overlap_px``). The last tile row and column are snapped to the bottom and right edges, so every tile
is full size and the edges are covered (the snapped tiles overlap their neighbours a little more).

Reading is organised in *units*: one band of consecutive tile rows of one scene. A
:class:`RowBuffer` streams each scene's rows once, in windows aligned to the source's blocks (Dask
tasks read pieces in parallel), keeping only the rows that the next tiles still need, so no block
is decoded twice and memory does not grow with the scene. A numba kernel then cuts a unit's tiles
straight into one array and computes their statistics in the same pass (class pixel counts, valid
and cloudy pixels, per-band sums and sums of squares). Tiles without a valid pixel are dropped.

Cloud fraction: from the dataset's cloud mask when there is one (1 cloud, 2 shadow, 0 clear), else a
spectral test on the visible bands B02, B03, B04: a pixel is cloudy when it is *bright* (mean of the
three above ``cloud_brightness``, 3000 = reflectance 0.3 at Sentinel-2's 10000 scale) and *white*
(``(max - min) / mean`` of the three below ``cloud_whiteness``). Without either, it is NaN.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import dask
import numpy as np
from numba import njit
from rasterio.windows import Window

from geotiler.errors import InputError
from geotiler.grid import Grid
from geotiler.io import open_raster
from geotiler.parallel import runs_in_this_process

VISIBLE_BANDS = ("B02", "B03", "B04")
CLOUD_VALUES = (1, 2)
MIN_TASKS = 4
# Pieces read per Dask call on a cluster: bounds the decoded data in flight on wide scenes.
PIECES_IN_FLIGHT = 4
PIECE_ROWS = 512


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


@dataclass(frozen=True)
class Sources:
    """What one scene's tiles are read from, and how pixels are judged (picklable for Dask)."""

    scene: str
    mask: str
    clouds: str | None
    scene_nodata: float | None
    mask_nodata: int | None
    num_classes: int
    visible: tuple[int, ...] = ()
    cloud_brightness: float = 3000.0
    cloud_whiteness: float = 0.2


@dataclass
class TileBatch:
    """Tiles cut from one window with their statistics (rows are tiles)."""

    rows: np.ndarray
    cols: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    valid_px: np.ndarray
    cloudy_px: np.ndarray
    class_counts: np.ndarray
    band_sum: np.ndarray
    band_sumsq: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, start: int, stop: int | None = None) -> TileBatch:
        """The tiles ``start:stop`` (views)."""
        return TileBatch(*(getattr(self, name)[start:stop] for name in _BATCH_FIELDS))

    def copy(self) -> TileBatch:
        """A copy owning its memory."""
        return TileBatch(*(getattr(self, name).copy() for name in _BATCH_FIELDS))

    @classmethod
    def concat(cls, batches: Sequence[TileBatch]) -> TileBatch:
        return cls(*(np.concatenate([getattr(b, n) for b in batches]) for n in _BATCH_FIELDS))


_BATCH_FIELDS = (
    "rows",
    "cols",
    "images",
    "masks",
    "valid_px",
    "cloudy_px",
    "class_counts",
    "band_sum",
    "band_sumsq",
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


def read_piece(sources: Sources, window: Window) -> tuple[np.ndarray, ...]:
    """Image, mask (uint8, nodata where invalid), valid and cloudy pixels of one window.

    Without a cloud test the last array is ``(0, 0)``.
    """
    with open_raster(sources.scene) as scene:
        image = scene.read(window=window)
    with open_raster(sources.mask) as mask_file:
        mask = mask_file.read(1, window=window)
    clouds = np.zeros((0, 0), dtype=bool)
    if sources.clouds is not None:
        with open_raster(sources.clouds) as cloud_file:
            clouds = np.isin(cloud_file.read(1, window=window), CLOUD_VALUES)
    elif sources.visible:
        clouds = spectral_clouds(
            image[list(sources.visible)], sources.cloud_brightness, sources.cloud_whiteness
        )
    valid = _valid_pixels(image, mask, sources)
    if int(mask.max(initial=0)) > 255:
        raise InputError(f"{sources.mask}: mask value {int(mask.max())} does not fit in uint8")
    mask = mask.astype(np.uint8, copy=False)
    if sources.mask_nodata is not None:
        # Pixels without imagery carry no usable label either.
        mask = np.where(valid, mask, np.uint8(sources.mask_nodata))
    return image, mask, valid, clouds


def _valid_pixels(image: np.ndarray, mask: np.ndarray, sources: Sources) -> np.ndarray:
    valid = np.ones(mask.shape, dtype=bool)
    if sources.mask_nodata is not None:
        valid &= mask != sources.mask_nodata
    if sources.scene_nodata is not None:
        if np.isnan(sources.scene_nodata):
            valid &= ~np.isnan(image).all(axis=0)
        else:
            valid &= ~(image == sources.scene_nodata).all(axis=0)
    return valid


def spectral_clouds(visible: np.ndarray, brightness: float, whiteness: float) -> np.ndarray:
    """Bright and white pixels of the ``(3, rows, cols)`` visible bands (see module docstring)."""
    values = visible.astype(np.float32)
    mean = values.mean(axis=0)
    spread = values.max(axis=0) - values.min(axis=0)
    return (mean > brightness) & (spread < whiteness * np.maximum(mean, 1e-6))


class RowBuffer:
    """Full-width rows of one scene, read once in block-aligned windows and kept while needed.

    :meth:`need` makes rows ``top..bottom`` available (reading ahead to the next block boundary,
    so a block that two tile rows share is decoded once) and forgets the rows above ``top``. The
    rows live in one preallocated buffer of ``capacity`` rows (the tallest unit plus one block).
    """

    def __init__(
        self,
        sources: Sources,
        *,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        block: tuple[int, int],
        capacity: int,
        piece_cols: int,
    ) -> None:
        self.sources = sources
        bands, self.height, self.width = shape
        self.block_rows = block[0]
        piece = max(block[1], piece_cols // block[1] * block[1])
        self.col_starts = list(range(0, self.width, piece))
        self.piece_cols = piece
        self.capacity = capacity + self.block_rows
        self.image = np.empty((bands, self.capacity, self.width), dtype)
        self.mask = np.empty((self.capacity, self.width), np.uint8)
        self.valid = np.empty((self.capacity, self.width), bool)
        has_clouds = sources.clouds is not None or bool(sources.visible)
        self.clouds = np.empty((self.capacity, self.width) if has_clouds else (0, 0), bool)
        self.top = 0
        self.rows = 0

    def need(self, top: int, bottom: int) -> int:
        """Hold rows ``top..bottom`` (``bottom`` exclusive); returns the buffer row of ``top``."""
        if top >= self.top + self.rows or top < self.top:
            # Nothing to keep: start at ``top`` (GDAL decodes its block whole either way).
            self.top, self.rows = top, 0
        elif top > self.top:
            self._shift(top - self.top)
        end = self.top + self.rows
        if bottom > end:
            stop = min(self.height, -(-bottom // self.block_rows) * self.block_rows)
            if stop - self.top > self.capacity:
                raise ValueError(f"rows {top}..{bottom} do not fit the buffer")
            self._read(end, stop)
        return top - self.top

    def _shift(self, drop: int) -> None:
        keep = self.rows - drop
        for arrays in ((self.mask, self.valid, self.clouds), tuple(self.image)):
            for array in arrays:
                if array.size:
                    # Move rows up in steps that do not overlap (no temporary copy).
                    for start in range(0, keep, drop):
                        stop = min(start + drop, keep)
                        array[start:stop] = array[drop + start : drop + stop]
        self.top += drop
        self.rows = keep

    def _read(self, start: int, stop: int) -> None:
        windows = [
            Window(col, row, min(self.piece_cols, self.width - col), end - row)
            for row, end in self._row_pieces(start, stop)
            for col in self.col_starts
        ]
        if runs_in_this_process():
            # Each task stores its own piece (disjoint rows and columns; numpy copies release the
            # GIL), so the threads decode without pausing for the caller to store a group.
            dask.compute(*(dask.delayed(self._read_and_store)(w) for w in windows))
        else:
            for first in range(0, len(windows), PIECES_IN_FLIGHT):
                group = windows[first : first + PIECES_IN_FLIGHT]
                pieces = dask.compute(*(dask.delayed(read_piece)(self.sources, w) for w in group))
                self._store(group, pieces)
        self.rows = stop - self.top

    def _read_and_store(self, window: Window) -> None:
        self._store([window], (read_piece(self.sources, window),))

    def _store(self, windows: list[Window], pieces: tuple[tuple[np.ndarray, ...], ...]) -> None:
        for window, (image, mask, valid, clouds) in zip(windows, pieces, strict=True):
            at = slice(window.row_off - self.top, window.row_off + window.height - self.top)
            cols = slice(window.col_off, window.col_off + window.width)
            self.image[:, at, cols] = image
            self.mask[at, cols] = mask
            self.valid[at, cols] = valid
            if self.clouds.size:
                self.clouds[at, cols] = clouds

    def _row_pieces(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Block-aligned row ranges of about ``PIECE_ROWS``, at least ``MIN_TASKS`` pieces."""
        blocks = -(-(stop - start) // self.block_rows)
        parts = max(
            -(-MIN_TASKS // len(self.col_starts)), -(-blocks * self.block_rows // PIECE_ROWS)
        )
        step = max(1, -(-blocks // parts)) * self.block_rows
        edges = [start, *range(start - start % self.block_rows + step, stop, step), stop]
        return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


class TileArrays:
    """Tile image and mask arrays reused from unit to unit (fresh ones cost page faults).

    A batch cut into them is only valid until the next cut into the same arrays, so a
    consumer must copy what it keeps (the store writer does).
    """

    def __init__(self) -> None:
        self._images: np.ndarray | None = None
        self._masks: np.ndarray | None = None

    def take(
        self, n: int, bands: int, size_px: int, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray]:
        images, masks = self._images, self._masks
        if images is None or masks is None or len(images) < n or images.dtype != dtype:
            images = np.empty((n, bands, size_px, size_px), dtype)
            masks = np.empty((n, size_px, size_px), np.uint8)
            self._images, self._masks = images, masks
        return images[:n], masks[:n]


def cut_unit(
    sources: Sources,
    buffer: RowBuffer,
    tiles: np.ndarray,
    size_px: int,
    arrays: TileArrays | None = None,
) -> TileBatch:
    """Cut the tiles ``(n, 2)`` of one unit from ``buffer`` with their statistics.

    With ``arrays`` the batch's images and masks live in them (see :class:`TileArrays`).
    """
    bands = buffer.image.shape[0]
    if len(tiles) == 0:
        return empty_batch(bands, size_px, sources.num_classes, buffer.image.dtype)
    first = buffer.need(int(tiles[:, 0].min()), int(tiles[:, 0].max()) + size_px)
    local = tiles.copy()
    local[:, 0] += first - int(tiles[:, 0].min())
    n = len(tiles)
    small_int = buffer.image.dtype.kind in "ui" and buffer.image.dtype.itemsize <= 2
    accumulator = np.int64 if small_int else np.float64
    images, masks = (arrays or TileArrays()).take(n, bands, size_px, buffer.image.dtype)
    kept = np.empty(n, np.int64)
    valid_px = np.zeros(n, np.int64)
    cloudy_px = np.full(n, -1, np.int64)
    counts = np.zeros((n, sources.num_classes), np.int64)
    sums = np.zeros((n, bands), accumulator)
    sumsq = np.zeros((n, bands), accumulator)
    n_kept, bad = _cut_kernel(
        buffer.image, buffer.mask, buffer.valid, buffer.clouds, local, size_px,
        images, masks, kept, valid_px, cloudy_px, counts, sums, sumsq,
    )  # fmt: skip
    if bad >= 0:
        raise InputError(
            f"{sources.mask}: mask value {bad} is not a class of the class table "
            f"(classes 0..{sources.num_classes - 1}); pass --classes or --nodata"
        )
    if n_kept == 0:
        return empty_batch(bands, size_px, sources.num_classes, buffer.image.dtype)
    return TileBatch(
        rows=tiles[kept[:n_kept], 0],
        cols=tiles[kept[:n_kept], 1],
        images=images[:n_kept],
        masks=masks[:n_kept],
        valid_px=valid_px[:n_kept],
        cloudy_px=cloudy_px[:n_kept],
        class_counts=counts[:n_kept],
        band_sum=sums[:n_kept].astype(np.float64),
        band_sumsq=sumsq[:n_kept].astype(np.float64),
    )


@njit(nogil=True, cache=True)
def _cut_kernel(
    image: np.ndarray,
    mask: np.ndarray,
    valid: np.ndarray,
    clouds: np.ndarray,
    tiles: np.ndarray,
    size: int,
    images: np.ndarray,
    masks: np.ndarray,
    kept: np.ndarray,
    valid_px: np.ndarray,
    cloudy_px: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
    sumsq: np.ndarray,
) -> tuple[int, int]:
    """Copy the tiles with a valid pixel into ``images``/``masks`` (packed) and sum their stats.

    Returns ``(kept tiles, -1)``, or ``(0, value)`` for a valid pixel's value outside the classes.
    """
    k = 0
    classes = counts.shape[1]
    has_clouds = clouds.size > 0
    for t in range(tiles.shape[0]):
        r0, c0 = tiles[t, 0], tiles[t, 1]
        n_valid = 0
        for i in range(size):
            valid_row = valid[r0 + i, c0 : c0 + size]
            for j in range(size):
                n_valid += valid_row[j]
        if n_valid == 0:
            continue
        kept[k] = t
        valid_px[k] = n_valid
        cloudy = 0
        for i in range(size):
            valid_row = valid[r0 + i, c0 : c0 + size]
            mask_row = mask[r0 + i, c0 : c0 + size]
            mask_out = masks[k, i]
            for j in range(size):
                mask_out[j] = mask_row[j]
            for j in range(size):
                if valid_row[j]:
                    if mask_row[j] >= classes:
                        return 0, mask_row[j]
                    counts[k, mask_row[j]] += 1
            if has_clouds:
                cloud_row = clouds[r0 + i, c0 : c0 + size]
                for j in range(size):
                    cloudy += cloud_row[j] & valid_row[j]
        if has_clouds:
            cloudy_px[k] = cloudy
        # Branch-free sums (vectorised); integer accumulators are exact for 8/16-bit data.
        zero = sums[k, 0] * 0
        for b in range(image.shape[0]):
            total = zero
            squares = zero
            for i in range(size):
                source = image[b, r0 + i, c0 : c0 + size]
                valid_row = valid[r0 + i, c0 : c0 + size]
                image_out = images[k, b, i]
                for j in range(size):
                    image_out[j] = source[j]
                for j in range(size):
                    x = source[j] + zero if valid_row[j] else zero
                    total += x
                    squares += x * x
            sums[k, b] = total
            sumsq[k, b] = squares
        k += 1
    return k, -1


def empty_batch(bands: int, size_px: int, classes: int, dtype: np.dtype) -> TileBatch:
    return TileBatch(
        rows=np.zeros(0, np.int64),
        cols=np.zeros(0, np.int64),
        images=np.zeros((0, bands, size_px, size_px), dtype),
        masks=np.zeros((0, size_px, size_px), np.uint8),
        valid_px=np.zeros(0, np.int64),
        cloudy_px=np.zeros(0, np.int64),
        class_counts=np.zeros((0, classes), np.int64),
        band_sum=np.zeros((0, bands), np.float64),
        band_sumsq=np.zeros((0, bands), np.float64),
    )


def tile_rows_per_band(
    layout: TileLayout, *, bands: int, itemsize: int, block_rows: int, budget_bytes: int
) -> int:
    """Tile rows read per band: spanning a few source blocks, within the memory budget."""
    row_bytes = layout.size_px * layout.grid.cols * (bands * itemsize + 1)
    by_memory = max(1, budget_bytes // max(row_bytes, 1))
    by_blocks = max(1, math.ceil(4 * block_rows / layout.stride_px))
    return int(min(by_memory, by_blocks))
