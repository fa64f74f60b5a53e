"""The tile pyramid the web map is drawn on: a square of 2^z x 2^z tiles over the first scene.

The map is shown in the scene's own CRS (no reprojection of the scene, no web-mercator distortion,
and polygons drawn in the page are already in the scene's coordinates). A scene without a CRS is
shown in pixel coordinates: ``x = col``, ``y = -row`` (north up). At ``native_zoom`` one tile
pixel is one scene pixel; lower zooms halve the resolution each step, down to one tile for the
whole scene at zoom 0. Tile ``(z, x, y)`` counts ``y`` from the top (XYZ / WMTS order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike
from typing import Any

from affine import Affine
from rasterio.crs import CRS

from geotiler.errors import InputError

TILE_PX = 256
OVERZOOM = 3
"""Zoom levels past the native resolution (pixels drawn as squares)."""

Bounds = tuple[float, float, float, float]
"""(left, bottom, right, top) in view coordinates."""


@dataclass(frozen=True)
class ViewGrid:
    """The web map's tile pyramid.

    Attributes:
        crs: The view CRS, or None for pixel coordinates (``x = col``, ``y = -row``).
        left: View x of the pyramid's left edge (the first scene's left edge).
        top: View y of the pyramid's top edge.
        pixel_size: View units per scene pixel (the finest zoom's resolution).
        native_zoom: The zoom at which a tile pixel is a scene pixel.
        extent: The first scene's bounds, for the initial view.
    """

    crs: CRS | None
    left: float
    top: float
    pixel_size: float
    native_zoom: int
    extent: Bounds

    @classmethod
    def from_raster(cls, path: str | PathLike[str]) -> ViewGrid:
        """The pyramid over the raster at ``path`` (its own CRS, or pixels when it has none)."""
        from geotiler.io import open_raster

        with open_raster(path) as dataset:
            return cls.from_georeference(dataset.crs, dataset.transform, dataset.shape)

    @classmethod
    def from_georeference(
        cls, crs: Any, transform: Affine, shape: tuple[int, int], *, georeferenced: bool = True
    ) -> ViewGrid:
        """The pyramid over a grid; ``crs=None`` (or an identity transform) means pixel space."""
        rows, cols = shape
        native = max(0, math.ceil(math.log2(max(rows, cols, 1) / TILE_PX)))
        if crs is None or not georeferenced:
            return cls(None, 0.0, 0.0, 1.0, native, (0.0, -float(rows), float(cols), 0.0))
        if transform.b != 0 or transform.d != 0:
            raise InputError(f"only north-up grids can be viewed, got transform {transform}")
        size = abs(transform.a)
        if not math.isclose(size, abs(transform.e), rel_tol=1e-3):
            raise InputError(
                f"pixels of {transform.a:g} x {abs(transform.e):g} are not square; view a "
                "raster resampled to square pixels"
            )
        left, top = transform.c, transform.f
        bounds = (left, top - rows * size, left + cols * size, top)
        return cls(CRS.from_user_input(crs), left, top, size, native, bounds)

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None

    @property
    def max_zoom(self) -> int:
        return self.native_zoom + OVERZOOM

    @property
    def world_size(self) -> float:
        """Side of the zoom-0 tile in view units."""
        return self.pixel_size * TILE_PX * 2**self.native_zoom

    def resolution(self, zoom: int) -> float:
        """View units per tile pixel at ``zoom``."""
        return self.world_size / (TILE_PX * 2**zoom)

    def check_tile(self, zoom: int, x: int, y: int) -> None:
        """Raise ValueError unless ``(zoom, x, y)`` is a tile of the pyramid."""
        if not 0 <= zoom <= self.max_zoom:
            raise ValueError(f"zoom {zoom} outside 0..{self.max_zoom}")
        if not (0 <= x < 2**zoom and 0 <= y < 2**zoom):
            raise ValueError(f"tile {x},{y} outside the 2^{zoom} grid")

    def tile_bounds(self, zoom: int, x: int, y: int) -> Bounds:
        """(left, bottom, right, top) of tile ``(zoom, x, y)`` in view coordinates."""
        self.check_tile(zoom, x, y)
        step = self.world_size / 2**zoom
        left = self.left + x * step
        top = self.top - y * step
        return left, top - step, left + step, top

    def tile_source_options(self) -> dict[str, Any]:
        """Keyword arguments of a Bokeh ``WMTSTileSource`` that requests exactly these tiles.

        BokehJS counts tile pixels from ``(-x_origin_offset, -y_origin_offset)`` (the pyramid's
        bottom-left corner) and flips ``y`` for WMTS URLs, so ``{Y}`` counts from the top.
        """
        return {
            "tile_size": TILE_PX,
            "min_zoom": 0,
            "max_zoom": self.max_zoom,
            "initial_resolution": self.world_size / TILE_PX,
            "x_origin_offset": -self.left,
            "y_origin_offset": -(self.top - self.world_size),
            "wrap_around": False,
        }

    def describe(self) -> str:
        if self.crs is None:
            return f"pixel coordinates, {self.native_zoom + 1} zoom levels"
        return f"{self.crs.to_string()}, {self.pixel_size:g} units/px, zooms 0..{self.max_zoom}"
