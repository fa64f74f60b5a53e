"""The raster grid: one immutable value made of a CRS, an affine transform and a shape.

A :class:`Grid` plays the role odc-geo's ``GeoBox`` plays: it is passed around instead of loose
``(crs, transform, width, height)`` tuples, and its methods return new grids. Windows are
:class:`rasterio.windows.Window` values. Shapes are always ``(rows, cols)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from typing import Any

from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geotiler.errors import GridMismatchError, InputError

Bounds = tuple[float, float, float, float]
"""``(left, bottom, right, top)`` in CRS units, as rasterio orders them."""


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: CRS, affine transform and ``(rows, cols)`` shape.

    ``crs`` is None for a plain pixel grid (a PNG or JPEG chip without georeference): outputs made
    from such a grid carry no CRS either, never an invented one.
    """

    crs: CRS | None
    transform: Affine
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        rows, cols = self.shape
        if rows <= 0 or cols <= 0:
            raise InputError(f"a grid needs a positive shape, got rows={rows}, cols={cols}")
        if self.transform.b != 0 or self.transform.d != 0:
            raise InputError(f"only north-up grids are supported, got transform {self.transform}")
        object.__setattr__(self, "shape", (int(rows), int(cols)))

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_dataset(cls, dataset: Any) -> Grid:
        """The grid of an open rasterio dataset (a pixel grid when it has no CRS)."""
        crs = None if dataset.crs is None else CRS.from_user_input(dataset.crs)
        return cls(crs, dataset.transform, (dataset.height, dataset.width))

    @classmethod
    def from_raster(cls, path: str | PathLike[str]) -> Grid:
        """The grid of a raster file."""
        from geotiler.io import open_raster

        with open_raster(path) as dataset:
            return cls.from_dataset(dataset)

    @classmethod
    def from_bounds(cls, bounds: Bounds, resolution: float | tuple[float, float], crs: Any) -> Grid:
        """A grid covering ``bounds`` with square or ``(x, y)`` pixels, anchored top-left."""
        xres, yres = (resolution, resolution) if isinstance(resolution, int | float) else resolution
        if xres <= 0 or yres <= 0:
            raise InputError(f"resolution must be positive, got {resolution}")
        left, bottom, right, top = bounds
        cols = max(1, round((right - left) / xres))
        rows = max(1, round((top - bottom) / yres))
        crs_value = None if crs is None else CRS.from_user_input(crs)
        return cls(crs_value, Affine(xres, 0, left, 0, -yres, top), (rows, cols))

    # -- properties ---------------------------------------------------------------------------

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape[1]

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(x, y)``, both positive."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> Bounds:
        left, top = self.transform.c, self.transform.f
        right = left + self.transform.a * self.cols
        bottom = top + self.transform.e * self.rows
        return min(left, right), min(bottom, top), max(left, right), max(bottom, top)

    @property
    def full_window(self) -> Window:
        return Window(0, 0, self.cols, self.rows)

    # -- derived grids ------------------------------------------------------------------------

    def crop(self, window: Window) -> Grid:
        """The grid of ``window`` (which may reach outside this grid)."""
        row_off, col_off = int(window.row_off), int(window.col_off)
        transform = self.transform @ Affine.translation(col_off, row_off)
        return Grid(self.crs, transform, (int(window.height), int(window.width)))

    def zoom_out(self, factor: int) -> Grid:
        """The grid with ``factor`` times larger pixels on the same origin (partial edges kept)."""
        if factor < 1:
            raise InputError(f"zoom factor must be >= 1, got {factor}")
        rows = math.ceil(self.rows / factor)
        cols = math.ceil(self.cols / factor)
        return Grid(self.crs, self.transform @ Affine.scale(factor), (rows, cols))

    def zoom_in(self, factor: int) -> Grid:
        """The grid refined ``factor`` times on the same origin and extent."""
        if factor < 1:
            raise InputError(f"zoom factor must be >= 1, got {factor}")
        return Grid(
            self.crs,
            self.transform @ Affine.scale(1 / factor),
            (self.rows * factor, self.cols * factor),
        )

    # -- windows ------------------------------------------------------------------------------

    def windows(self, block_rows: int, block_cols: int) -> Iterator[Window]:
        """Row-major windows of at most ``block_rows x block_cols`` covering the grid."""
        if block_rows < 1 or block_cols < 1:
            raise InputError(f"block size must be positive, got {block_rows} x {block_cols}")
        for row_off in range(0, self.rows, block_rows):
            for col_off in range(0, self.cols, block_cols):
                height = min(block_rows, self.rows - row_off)
                width = min(block_cols, self.cols - col_off)
                yield Window(col_off, row_off, width, height)

    def row_bands(self, band_rows: int) -> Iterator[Window]:
        """Full-width windows of ``band_rows`` rows (the last may be shorter)."""
        return self.windows(band_rows, self.cols)

    def window_of(self, bounds: Bounds) -> Window:
        """The window of this grid covering ``bounds``, snapped outwards to whole pixels.

        The window may reach outside the grid; clip it with :func:`clip_window` where needed.
        """
        left, bottom, right, top = bounds
        inverse = ~self.transform
        cols = [inverse @ (x, y) for x in (left, right) for y in (bottom, top)]
        col_min = math.floor(min(c for c, _ in cols) + 1e-9)
        col_max = math.ceil(max(c for c, _ in cols) - 1e-9)
        row_min = math.floor(min(r for _, r in cols) + 1e-9)
        row_max = math.ceil(max(r for _, r in cols) - 1e-9)
        return Window(col_min, row_min, col_max - col_min, row_max - row_min)

    # -- comparisons --------------------------------------------------------------------------

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None

    def same_crs(self, other: Grid) -> bool:
        if self.crs is None or other.crs is None:
            return self.crs is None and other.crs is None
        return bool(self.crs == other.crs)

    def require_crs(self, what: str) -> CRS:
        """The CRS, or an InputError saying that ``what`` needs a georeferenced raster."""
        if self.crs is None:
            raise InputError(f"{what} needs a georeferenced raster; this one has no CRS")
        return self.crs

    def almost_equals(self, other: Grid, tolerance_px: float = 1e-6) -> bool:
        """Same CRS and shape, transforms equal within ``tolerance_px`` of a pixel."""
        if not self.same_crs(other) or self.shape != other.shape:
            return False
        xres, yres = self.resolution
        a, b = self.transform, other.transform
        return (
            abs(a.a - b.a) <= tolerance_px * xres / max(self.cols, 1)
            and abs(a.e - b.e) <= tolerance_px * yres / max(self.rows, 1)
            and abs(a.c - b.c) <= tolerance_px * xres
            and abs(a.f - b.f) <= tolerance_px * yres
        )

    def intersects(self, other: Grid) -> bool:
        """Whether the two grids' footprints overlap with a positive area (same CRS assumed)."""
        return _overlap(self.bounds, other.bounds) is not None

    def intersection(self, other: Grid) -> Grid:
        """The part of this grid (its pixels, snapped outwards) inside ``other``'s footprint."""
        if not self.same_crs(other):
            raise GridMismatchError(
                f"grids are in different CRS ({crs_name(self.crs)} vs {crs_name(other.crs)})"
            )
        overlap = _overlap(self.bounds, other.bounds)
        if overlap is None:
            raise GridMismatchError(
                f"grids do not overlap: {_fmt_bounds(self.bounds)} vs {_fmt_bounds(other.bounds)}"
            )
        window = clip_window(self.window_of(overlap), self.shape)
        return self.crop(window)

    def refinement_factor(self, coarse: Grid, tolerance_px: float = 1e-6) -> int | None:
        """The integer ``f`` such that this grid refines ``coarse`` ``f`` times, else ``None``.

        Refinement means: same CRS, this grid's pixels are exactly ``1/f`` of ``coarse``'s, and
        the pixel edges line up (the origins differ by a whole number of coarse pixels). Extents
        may differ.
        """
        if not self.same_crs(coarse):
            return None
        fine_x, fine_y = self.resolution
        coarse_x, coarse_y = coarse.resolution
        factor = round(coarse_x / fine_x)
        if factor < 1:
            return None
        for fine, coarse_res in ((fine_x, coarse_x), (fine_y, coarse_y)):
            if abs(fine * factor - coarse_res) > tolerance_px * fine:
                return None
        dx = (self.transform.c - coarse.transform.c) / fine_x
        dy = (self.transform.f - coarse.transform.f) / fine_y
        if abs(dx - round(dx)) > tolerance_px or abs(dy - round(dy)) > tolerance_px:
            return None
        return factor

    def describe(self) -> str:
        """A one-line description: shape, resolution, CRS and origin."""
        xres, yres = self.resolution
        if self.crs is None:
            return f"{self.rows} x {self.cols} px (rows x cols), pixel grid (no CRS)"
        units = "degree" if self.crs.is_geographic else self.crs.linear_units
        if not units or units == "unknown":
            units = "units"
        return (
            f"{self.rows} x {self.cols} px (rows x cols), {xres:g} x {yres:g} "
            f"{units}, {self.crs.to_string()}, "
            f"origin ({self.transform.c:g}, {self.transform.f:g})"
        )


def crs_name(crs: CRS | None) -> str:
    """``EPSG:32631``-style name of a CRS, or ``no CRS``."""
    return "no CRS" if crs is None else crs.to_string()


def clip_window(window: Window, shape: tuple[int, int]) -> Window:
    """``window`` clipped to a raster of ``(rows, cols)``; may be empty (zero width/height)."""
    rows, cols = shape
    row_start = min(max(int(window.row_off), 0), rows)
    col_start = min(max(int(window.col_off), 0), cols)
    row_stop = min(max(int(window.row_off + window.height), 0), rows)
    col_stop = min(max(int(window.col_off + window.width), 0), cols)
    return Window(col_start, row_start, max(col_stop - col_start, 0), max(row_stop - row_start, 0))


def _overlap(a: Bounds, b: Bounds) -> Bounds | None:
    left, bottom = max(a[0], b[0]), max(a[1], b[1])
    right, top = min(a[2], b[2]), min(a[3], b[3])
    if right <= left or top <= bottom:
        return None
    return left, bottom, right, top


def _fmt_bounds(bounds: Bounds) -> str:
    return "(" + ", ".join(f"{v:g}" for v in bounds) + ")"
