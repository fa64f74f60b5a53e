"""Reading a scene's mask on the scene's own grid: class ids or RGB colours, at any resolution.

A mask may be single-band class ids or a 3-band colour-coded image (ids by the class table's
colours), on the image's grid or at another resolution over the same extent. :func:`mask_reader`
checks a mask against its image once and returns a :class:`MaskReader` that reads any window of
the image grid as class ids:

- same grid: the window as stored (the single-grid case reads exactly as before);
- coarser labels: nearest neighbour (each label pixel covers several image pixels);
- finer labels: block mode with the rescale stage's kernel for integer factors (GDAL's mode for
  other ratios), ignoring nodata.

A mask over another extent, or in another CRS, is refused: ``geotiler rescale MASK --like IMAGE``
puts it on the image grid first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from geotiler.catalog import ClassTable
from geotiler.errors import GridMismatchError, InputError
from geotiler.grid import Grid, crs_name
from geotiler.tiles.files import open_file

Resampled = Literal["nearest", "mode"]
RATIO_TOLERANCE = 1e-3


@dataclass(frozen=True)
class MaskReader:
    """Reads windows of the image grid from a mask file as class ids (picklable for Dask)."""

    path: str
    rows_ratio: float = 1.0
    """Mask pixels per image pixel along rows (1: the image grid; 0.5: labels 2x coarser)."""
    cols_ratio: float = 1.0
    mask_shape: tuple[int, int] = (0, 0)
    colours: tuple[int, ...] = ()
    """Sorted ``0xRRGGBB`` keys of an RGB mask's colours, and the class id of each."""
    colour_ids: tuple[int, ...] = ()
    nodata: int | None = None

    @property
    def rgb(self) -> bool:
        return bool(self.colours)

    @property
    def resampled(self) -> Resampled | None:
        if self.rows_ratio == 1 and self.cols_ratio == 1:
            return None
        return "mode" if self.rows_ratio > 1 else "nearest"

    def read(self, window: Window) -> np.ndarray:
        """Class ids ``(rows, cols)`` of the image-grid ``window``."""
        with open_file(self.path) as dataset:
            if self.resampled is None:
                return self._ids(dataset.read(self._bands, window=window), window)
            rows, cols = int(window.height), int(window.width)
            factor = self._integer_factor()
            if self.resampled == "mode" and factor is not None:
                return self._block_mode(dataset, window, factor)
            source = Window(
                window.col_off * self.cols_ratio,
                window.row_off * self.rows_ratio,
                window.width * self.cols_ratio,
                window.height * self.rows_ratio,
            )
            # Colours cannot be averaged into a mode: an RGB mask is sampled (nearest) instead.
            how = (
                Resampling.mode if self.resampled == "mode" and not self.rgb else Resampling.nearest
            )
            shape = (len(self._bands), rows, cols) if self.rgb else (rows, cols)
            values = dataset.read(self._bands, window=source, out_shape=shape, resampling=how)
            return self._ids(values, window)

    @property
    def _bands(self) -> Any:
        return (1, 2, 3) if self.rgb else 1

    def _integer_factor(self) -> int | None:
        factor = round(self.rows_ratio)
        exact = abs(self.rows_ratio - factor) < RATIO_TOLERANCE
        return factor if exact and abs(self.cols_ratio - factor) < RATIO_TOLERANCE else None

    def _block_mode(self, dataset: Any, window: Window, factor: int) -> np.ndarray:
        from geotiler.rescale.kernels import mode_kernel  # numba: lazily

        rows, cols = self.mask_shape
        r0, c0 = int(window.row_off) * factor, int(window.col_off) * factor
        r1 = min(r0 + int(window.height) * factor, rows)
        c1 = min(c0 + int(window.width) * factor, cols)
        fine = self._ids(dataset.read(self._bands, window=Window(c0, r0, c1 - c0, r1 - r0)), None)
        out = np.empty((int(window.height), int(window.width)), np.uint8)
        nodata = 0 if self.nodata is None else self.nodata
        weights, hist = np.ones(256), np.zeros(256, np.int64)
        mode_kernel(fine, 0, 0, factor, nodata, self.nodata is not None, weights, out, hist)
        return out

    def _ids(self, values: np.ndarray, window: Window | None) -> np.ndarray:
        if not self.rgb:
            fits = values.dtype == np.uint8  # else look (two passes over the pixels)
            if not fits and values.size and (values.min() < 0 or values.max() > 255):
                bad = int(values.max()) if values.max() > 255 else int(values.min())
                raise InputError(
                    f"{self.path}: mask value {bad} does not fit 0..255; class ids must be uint8"
                )
            return values.astype(np.uint8, copy=False)
        return self._colour_ids(values, window)

    def _colour_ids(self, rgb: np.ndarray, window: Window | None) -> np.ndarray:
        from geotiler.tiles.colours import colour_ids_kernel  # numba: lazily

        out = np.empty(rgb.shape[1:], np.uint8)
        table = np.asarray(self.colours, np.int64)
        ids = np.asarray(self.colour_ids, np.uint8)
        first_unknown = colour_ids_kernel(np.ascontiguousarray(rgb), table, ids, out)
        if first_unknown >= 0:
            row, col = divmod(int(first_unknown), rgb.shape[2])
            key = (
                (int(rgb[0, row, col]) << 16) | (int(rgb[1, row, col]) << 8) | int(rgb[2, row, col])
            )
            where = f"pixel (row {row}, col {col}) of the window read"
            if window is not None:
                row, col = int(window.row_off) + row, int(window.col_off) + col
                where = f"image pixel (row {row}, col {col})"
            raise InputError(
                f"{self.path}: colour #{key:06x} at {where} is not a colour of the class table; "
                "add it to --classes (id, name, color) or fix the mask"
            )
        return out


def mask_reader(image: Grid, image_path: str, mask_path: str, classes: ClassTable) -> MaskReader:
    """Check ``mask_path`` against its image's grid and say how to read it on that grid.

    Raises:
        InputError: not a class raster (float, 2 bands, 16-bit colours) or an RGB mask whose
            class table has no colours for it.
        GridMismatchError: another CRS or another extent than the image.
    """
    with open_file(mask_path) as dataset:
        count, dtype = dataset.count, dataset.dtypes[0]
        grid = Grid.from_dataset(dataset)
    rgb = count in (3, 4)
    if count not in (1, 3, 4):
        raise InputError(
            f"{mask_path}: a mask is one band of class ids or 3 bands of RGB colours, "
            f"got {count} bands"
        )
    if rgb and dtype != "uint8":
        raise InputError(f"{mask_path}: an RGB mask needs 8-bit colours, got {dtype}")
    if not np.issubdtype(np.dtype(dtype), np.integer):
        raise InputError(
            f"{mask_path}: a mask needs integer class ids, got {dtype} pixels; convert it to "
            "integers (e.g. gdal_translate -ot Byte)"
        )
    rows_ratio, cols_ratio = _ratios(image, grid, image_path, mask_path)
    colours, ids = _colour_table(classes, mask_path) if rgb else ((), ())
    return MaskReader(
        path=mask_path,
        rows_ratio=rows_ratio,
        cols_ratio=cols_ratio,
        mask_shape=grid.shape,
        colours=colours,
        colour_ids=ids,
        nodata=classes.nodata,
    )


def _ratios(image: Grid, mask: Grid, image_path: str, mask_path: str) -> tuple[float, float]:
    """Mask pixels per image pixel along rows and columns, for a mask over the image's extent."""
    if image.georeferenced and mask.georeferenced:
        if not image.same_crs(mask):
            raise GridMismatchError(
                f"{mask_path}: the mask is in {crs_name(mask.crs)}, its image {image_path} in "
                f"{crs_name(image.crs)}; run `geotiler rescale {mask_path} --like {image_path}`"
            )
        if image.almost_equals(mask):
            return 1.0, 1.0
        tolerance = 0.5 * max(*image.resolution, *mask.resolution)
        if any(abs(a - b) > tolerance for a, b in zip(image.bounds, mask.bounds, strict=True)):
            raise GridMismatchError(
                f"{mask_path}: the mask covers another extent than its image {image_path} "
                f"({mask.describe()} vs {image.describe()}); run `geotiler rescale {mask_path} "
                f"--like {image_path}` to put it on the image grid"
            )
    rows_ratio = mask.rows / image.rows
    cols_ratio = mask.cols / image.cols
    if abs(rows_ratio - cols_ratio) > RATIO_TOLERANCE * max(rows_ratio, cols_ratio):
        raise GridMismatchError(
            f"{mask_path}: {mask.rows} x {mask.cols} px does not cover its image {image_path} "
            f"({image.rows} x {image.cols} px) at one scale; give a mask of the image's extent"
        )
    if math.isclose(rows_ratio, 1.0) and math.isclose(cols_ratio, 1.0):
        return 1.0, 1.0
    return rows_ratio, cols_ratio


def _colour_table(classes: ClassTable, mask_path: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sorted colour keys and their class ids; black is nodata when no class is black."""
    by_colour: dict[int, int] = {}
    for info in classes.classes:
        key = int(info.color.lstrip("#"), 16)
        if key in by_colour:
            raise InputError(
                f"{mask_path}: classes {by_colour[key]} and {info.id} share colour {info.color}; "
                "an RGB mask needs one colour per class"
            )
        by_colour[key] = info.id
    if classes.nodata is not None and 0 not in by_colour:
        by_colour[0] = classes.nodata
    keys = sorted(by_colour)
    return tuple(keys), tuple(by_colour[k] for k in keys)
