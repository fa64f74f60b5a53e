"""Tile positions on a scene grid, reading them in row bands, and per-tile statistics.

A scene is cut into full-size square tiles of ``size_px`` placed every ``stride_px`` (``size_px -
overlap_px``). The last tile row and column are snapped to the bottom and right edges, so every tile
is full size and the edges are covered (the snapped tiles overlap their neighbours a little more).

Reading is organised in *units*: one band of consecutive tile rows of one scene. A unit is read by
several Dask tasks, one per group of tile columns, each reading one window of the scene, the mask
and the optional cloud mask, cutting the tiles and computing their statistics (class pixel counts,
valid and cloudy pixels, per-band sums and sums of squares). Tiles without a valid pixel are
dropped.

Cloud fraction: from the dataset's cloud mask when there is one (1 cloud, 2 shadow, 0 clear), else a
spectral test on the visible bands B02, B03, B04: a pixel is cloudy when it is *bright* (mean of the
three above ``cloud_brightness``, 3000 = reflectance 0.3 at Sentinel-2's 10000 scale) and *white*
(``(max - min) / mean`` of the three below ``cloud_whiteness``). Without either, it is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geotiler.errors import InputError
from geotiler.grid import Grid
from geotiler.io import open_raster

VISIBLE_BANDS = ("B02", "B03", "B04")
CLOUD_VALUES = (1, 2)


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

    def take(self, start: int) -> TileBatch:
        """The tiles from ``start`` on."""
        return TileBatch(*(getattr(self, name)[start:] for name in _BATCH_FIELDS))

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
    cols_per_task_px: int,
) -> list[list[list[tuple[int, int]]]]:
    """Bands of tile rows, each a list of tasks (lists of ``(row_px, col_px)`` tiles).

    ``active`` is a boolean ``(tile rows, tile cols)`` array of positions to tile (AOI).
    """
    rows, cols = layout.row_offsets, layout.col_offsets
    per_task = max(1, cols_per_task_px // layout.stride_px)
    bands = []
    for first in range(0, len(rows), tile_rows_per_band):
        band_rows = range(first, min(first + tile_rows_per_band, len(rows)))
        tasks = []
        for start in range(0, len(cols), per_task):
            task = [
                (int(rows[i]), int(cols[j]))
                for i in band_rows
                for j in range(start, min(start + per_task, len(cols)))
                if active[i, j]
            ]
            if task:
                tasks.append(task)
        bands.append(tasks)
    return bands


def read_tiles(sources: Sources, tiles: Sequence[tuple[int, int]], size_px: int) -> TileBatch:
    """Read the window covering ``tiles`` once, cut them, and compute their statistics."""
    row0 = min(r for r, _ in tiles)
    col0 = min(c for _, c in tiles)
    window = Window(
        col0,
        row0,
        max(c for _, c in tiles) + size_px - col0,
        max(r for r, _ in tiles) + size_px - row0,
    )
    with open_raster(sources.scene) as scene:
        image = scene.read(window=window)
    with open_raster(sources.mask) as mask_file:
        mask = mask_file.read(1, window=window)
    clouds = None
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
    return _cut(sources, tiles, size_px, (row0, col0), image, mask, valid, clouds)


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


def _cut(
    sources: Sources,
    tiles: Sequence[tuple[int, int]],
    size_px: int,
    origin: tuple[int, int],
    image: np.ndarray,
    mask: np.ndarray,
    valid: np.ndarray,
    clouds: np.ndarray | None,
) -> TileBatch:
    keep: list[int] = []
    stats: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
    for number, (row, col) in enumerate(tiles):
        rs = slice(row - origin[0], row - origin[0] + size_px)
        cs = slice(col - origin[1], col - origin[1] + size_px)
        tile_valid = valid[rs, cs]
        n_valid = int(np.count_nonzero(tile_valid))
        if n_valid == 0:
            continue
        keep.append(number)
        stats.append(
            _tile_stats(sources, image[:, rs, cs], mask[rs, cs], tile_valid, clouds, rs, cs)
        )
    bands = image.shape[0]
    if not keep:
        return empty_batch(bands, size_px, sources.num_classes, image.dtype)
    rows = np.array([tiles[k][0] for k in keep], dtype=np.int64)
    cols = np.array([tiles[k][1] for k in keep], dtype=np.int64)
    images = np.stack(
        [
            _slice(image, r - origin[0], c - origin[1], size_px)
            for r, c in zip(rows, cols, strict=True)
        ]
    )
    masks = np.stack(
        [
            mask[r - origin[0] : r - origin[0] + size_px, c - origin[1] : c - origin[1] + size_px]
            for r, c in zip(rows, cols, strict=True)
        ]
    )
    return TileBatch(
        rows=rows,
        cols=cols,
        images=images,
        masks=masks,
        valid_px=np.array([s[0] for s in stats], dtype=np.int64),
        cloudy_px=np.array([s[1] for s in stats], dtype=np.int64),
        class_counts=np.stack([s[2] for s in stats]),
        band_sum=np.stack([s[3] for s in stats]),
        band_sumsq=np.stack([s[4] for s in stats]),
    )


def _slice(image: np.ndarray, row: int, col: int, size_px: int) -> np.ndarray:
    return image[:, row : row + size_px, col : col + size_px]


def _tile_stats(
    sources: Sources,
    image: np.ndarray,
    mask: np.ndarray,
    valid: np.ndarray,
    clouds: np.ndarray | None,
    rs: slice,
    cs: slice,
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    n_valid = int(np.count_nonzero(valid))
    counts = np.bincount(mask[valid], minlength=sources.num_classes)
    if len(counts) > sources.num_classes:
        bad = int(np.flatnonzero(counts[sources.num_classes :])[0]) + sources.num_classes
        raise InputError(
            f"{sources.mask}: mask value {bad} is not a class of the class table "
            f"(classes 0..{sources.num_classes - 1}); pass --classes or --nodata"
        )
    cloudy = -1 if clouds is None else int(np.count_nonzero(clouds[rs, cs] & valid))
    pixels = image.reshape(image.shape[0], -1)
    if n_valid < valid.size:
        pixels = pixels[:, valid.ravel()]
    values = pixels.astype(np.float64)
    return (
        n_valid,
        cloudy,
        counts.astype(np.int64),
        values.sum(axis=1),
        np.einsum("ij,ij->i", values, values),
    )


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
