"""PNG tiles of the web map, rendered on demand from the rasters with rio-tiler.

Tiles are encoded by a few lines of zlib here: RGBA in, PNG out, with no georeferencing to warn
about and no image library to depend on.

Every tile is one windowed read of 256 x 256 pixels (rio-tiler picks the overview level that fits,
and reprojects a raster whose CRS differs from the view's), so a scene of any size opens at once.
Scenes are stretched per band between two percentiles computed from a decimated read (the
overviews when the file has them, else a few small windows spread over the scene): the whole
raster is never read.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window
from rio_tiler.io.rasterio import ImageReader, Reader

from geotiler.catalog import ClassTable
from geotiler.view.grid import TILE_PX, Bounds, ViewGrid

log = logging.getLogger(__name__)

PROBABILITY_SCALE = 254.0
"""``predict --probabilities`` stores probability * 254 as uint8 (255 = nodata)."""
SAMPLE_WINDOWS = 8
"""Windows per axis read for the stretch of a large raster without overviews."""
SAMPLE_WINDOW_PX = 64
SMALL_PX = 4096
"""Rasters at most this wide and high are read decimated whole for their stretch."""
PNG_LEVEL = 1
"""zlib level of tiles: level 1 is ~4x faster than 6 for ~10 % more bytes on a local link."""
GREY_BELOW = (70, 70, 70, 190)
RIGHT = (40, 170, 80, 170)
WRONG = (215, 40, 40, 210)


@dataclass(frozen=True)
class Stretch:
    """Per band ``(low, high)`` values mapped to 0 and 255."""

    low: tuple[float, ...]
    high: tuple[float, ...]


@contextlib.contextmanager
def open_reader(path: str | PathLike[str], grid: ViewGrid) -> Iterator[Any]:
    """A rio-tiler reader of ``path``: geographic when the view has a CRS, else pixel space."""
    cls = Reader if grid.georeferenced else ImageReader
    with cls(str(path)) as reader:
        yield reader


def raster_bounds(path: str | PathLike[str], grid: ViewGrid) -> Bounds:
    """The bounds of ``path`` in view coordinates."""
    with rasterio.open(path) as dataset:
        if not grid.georeferenced:
            return 0.0, -float(dataset.height), float(dataset.width), 0.0
        from rasterio.warp import transform_bounds

        if dataset.crs is None:
            raise ValueError(f"{path}: no CRS, cannot be shown with georeferenced scenes")
        bounds = tuple(dataset.bounds)
        if dataset.crs != grid.crs:
            bounds = transform_bounds(dataset.crs, grid.crs, *bounds)
        return bounds[0], bounds[1], bounds[2], bounds[3]


def _overlaps(a: Bounds, b: Bounds) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def read_tile(
    path: str | PathLike[str],
    grid: ViewGrid,
    zoom: int,
    x: int,
    y: int,
    *,
    indexes: Sequence[int] | None = None,
    resampling: str = "nearest",
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(data (B, 256, 256), valid (256, 256))`` of one tile; None when it misses the raster."""
    bounds = grid.tile_bounds(zoom, x, y)
    if not _overlaps(bounds, _cached_bounds(str(path), grid)):
        return None
    band_list = list(indexes) if indexes else None
    with open_reader(path, grid) as reader:
        if grid.georeferenced:
            image = reader.part(
                bounds,
                dst_crs=grid.crs,
                bounds_crs=grid.crs,
                width=TILE_PX,
                height=TILE_PX,
                indexes=band_list,
                resampling_method=resampling,
                reproject_method=resampling,
            )
        else:
            left, bottom, right, top = bounds
            image = reader.part(
                (left, -bottom, right, -top),
                width=TILE_PX,
                height=TILE_PX,
                indexes=band_list,
                resampling_method=resampling,
            )
    data = np.asarray(image.array.data)
    valid = np.asarray(~np.ma.getmaskarray(image.array).any(axis=0), dtype=bool)
    return data, valid


@lru_cache(maxsize=256)
def _cached_bounds(path: str, grid: ViewGrid) -> Bounds:
    return raster_bounds(path, grid)


def encode_png(rgba: np.ndarray) -> bytes:
    """PNG bytes of an RGBA ``(4, H, W)`` uint8 array."""
    channels, height, width = rgba.shape
    if channels != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"encode_png needs (4, H, W) uint8, got {rgba.shape} {rgba.dtype}")
    pixels = np.ascontiguousarray(np.moveaxis(rgba, 0, -1)).reshape(height, width * 4)
    rows = np.hstack([np.zeros((height, 1), np.uint8), pixels])  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_LEVEL)),
            _chunk(b"IEND", b""),
        ]
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=1)
def empty_png() -> bytes:
    """A fully transparent tile."""
    return encode_png(np.zeros((4, TILE_PX, TILE_PX), np.uint8))


def rgb_rgba(data: np.ndarray, valid: np.ndarray, stretch: Stretch) -> np.ndarray:
    """Three bands linearly stretched to 0..255, invalid pixels transparent."""
    low = np.asarray(stretch.low, np.float32)[:, None, None]
    high = np.asarray(stretch.high, np.float32)[:, None, None]
    scaled = (data.astype(np.float32) - low) / np.maximum(high - low, 1e-12)
    rgb = np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    return np.concatenate([rgb, alpha[np.newaxis]])


def class_lut(classes: ClassTable, hidden: Sequence[int] = ()) -> np.ndarray:
    """A (256, 4) RGBA lookup table: class colours, hidden classes and nodata transparent."""
    lut = np.zeros((256, 4), np.uint8)
    for info in classes.classes:
        if info.id not in hidden:
            lut[info.id] = info.rgba
    return lut


def classes_rgba(labels: np.ndarray, valid: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Class ids ``(H, W)`` coloured through ``lut``; invalid pixels transparent."""
    rgba = lut[labels.astype(np.uint8)]
    rgba[~valid] = 0
    return np.moveaxis(rgba, -1, 0).copy()


def confidence_rgba(confidence: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels whose confidence is below ``threshold`` greyed out, the rest transparent."""
    rgba = np.zeros((*confidence.shape, 4), np.uint8)
    rgba[valid & (confidence < threshold)] = GREY_BELOW
    return np.moveaxis(rgba, -1, 0).copy()


def difference_rgba(
    predicted: np.ndarray, truth: np.ndarray, valid: np.ndarray, nodata: int | None
) -> np.ndarray:
    """Green where the map agrees with the reference, red where it does not."""
    labelled = valid & (truth != nodata) if nodata is not None else valid
    rgba = np.zeros((*predicted.shape, 4), np.uint8)
    rgba[labelled & (predicted == truth)] = RIGHT
    rgba[labelled & (predicted != truth)] = WRONG
    return np.moveaxis(rgba, -1, 0).copy()


def confidence_from(data: np.ndarray, valid: np.ndarray, *, probabilities: bool) -> np.ndarray:
    """Max class probability in 0..1 from a confidence raster or a probabilities raster."""
    if probabilities:
        scaled = data.astype(np.float32) / PROBABILITY_SCALE
        return np.where(valid, scaled.max(axis=0), 0.0)
    return np.where(valid, data[0].astype(np.float32), 0.0)


def has_overviews(path: str | PathLike[str]) -> bool:
    with rasterio.open(path) as dataset:
        return bool(dataset.overviews(1))


def compute_stretch(
    path: str | PathLike[str],
    indexes: Sequence[int],
    *,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> Stretch:
    """Per-band percentiles of ``indexes`` from a decimated sample (never the whole raster)."""
    sample = sample_pixels(path, indexes)
    low, high = [], []
    for band in sample:
        values = band[np.isfinite(band)]
        if values.size == 0:
            low.append(0.0)
            high.append(1.0)
            continue
        lo, hi = np.percentile(values, percentiles)
        low.append(float(lo))
        high.append(float(hi) if hi > lo else float(lo) + 1.0)
    return Stretch(tuple(low), tuple(high))


def sample_pixels(path: str | PathLike[str], indexes: Sequence[int]) -> list[np.ndarray]:
    """Valid values of each band from a decimated read (NaN where masked), one array per band."""
    with rasterio.open(path) as dataset:
        rows, cols = dataset.height, dataset.width
        if dataset.overviews(1) or max(rows, cols) <= SMALL_PX:
            scale = max(rows, cols) / 512
            shape = (max(1, round(rows / max(scale, 1))), max(1, round(cols / max(scale, 1))))
            data = dataset.read(list(indexes), out_shape=(len(indexes), *shape), masked=True)
            return [np.ma.filled(b.astype(np.float64), np.nan).ravel() for b in data]
        parts: list[np.ndarray] = []
        for i in range(SAMPLE_WINDOWS):
            for j in range(SAMPLE_WINDOWS):
                row = int((i + 0.5) * rows / SAMPLE_WINDOWS) - SAMPLE_WINDOW_PX // 2
                col = int((j + 0.5) * cols / SAMPLE_WINDOWS) - SAMPLE_WINDOW_PX // 2
                window = Window(max(col, 0), max(row, 0), SAMPLE_WINDOW_PX, SAMPLE_WINDOW_PX)
                block = dataset.read(list(indexes), window=window, masked=True)
                parts.append(
                    np.ma.filled(block.astype(np.float64), np.nan).reshape(len(indexes), -1)
                )
        joined = np.concatenate(parts, axis=1)
        return list(joined)


def band_presets(names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """Named band combinations (1-based indexes) that the scene's band names allow."""
    lookup = {name.upper(): i + 1 for i, name in enumerate(names) if name}
    presets: dict[str, tuple[int, int, int]] = {}
    red, green, blue, nir = (_first(lookup, keys) for keys in _BAND_KEYS)
    count = len(names)
    if red is None and count >= 3:  # no known band names: assume R, G, B(, NIR)
        red, green, blue = 1, 2, 3
        nir = 4 if count >= 4 else None
    if red and green and blue:
        presets["true colour"] = (red, green, blue)
    if nir and red and green:
        presets["false colour (NIR-R-G)"] = (nir, red, green)
    if not presets:
        presets["first bands"] = tuple((list(range(1, count + 1)) * 3)[:3])  # type: ignore[assignment]
    return presets


_BAND_KEYS = (
    ("B04", "RED", "R", "B4"),
    ("B03", "GREEN", "G", "B3"),
    ("B02", "BLUE", "B", "B2"),
    ("B08", "NIR", "B8", "B8A", "N"),
)


def _first(lookup: dict[str, int], keys: Sequence[str]) -> int | None:
    for key in keys:
        if key in lookup:
            return lookup[key]
    return None


def band_names(path: str | PathLike[str]) -> tuple[str, ...]:
    """The band descriptions of ``path`` (``band N`` where a band has none)."""
    with rasterio.open(Path(path)) as dataset:
        return tuple(d or f"band {i + 1}" for i, d in enumerate(dataset.descriptions))
