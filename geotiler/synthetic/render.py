"""Rendering one window of the generated dataset: mask, scenes and cloud masks.

A window is a rectangle of the fine (mask) grid whose sides are multiples of the refinement
factor, so it maps onto whole scene pixels. Everything in it is a function of the landscape, the
seed and pixel positions only: any window size, in any order or in parallel, gives the same pixels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import rasterio
import shapely
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize
from rasterio.windows import Window

from geotiler.grid import Grid
from geotiler.synthetic.clouds import Clouds, apply_clouds, cloud_layers, cloud_mask
from geotiler.synthetic.landscape import Landscape
from geotiler.synthetic.spectra import N_CLASSES, SceneStyle, to_uint16

# rasterize() reads the transform of its scratch in-memory raster before setting it, which warns
# (spuriously) when called from worker threads; the burned pixels are right either way.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.features")


@dataclass(frozen=True)
class RenderedWindow:
    """The pixels of one window: the mask (fine grid), and per season scene and cloud mask."""

    window: Window
    scene_window: Window
    mask: np.ndarray
    scenes: dict[str, np.ndarray]
    cloud_masks: dict[str, np.ndarray]


def scene_window(window: Window, factor: int) -> Window:
    """The scene-grid window of a fine-grid window whose edges are multiples of ``factor``."""
    return Window(
        int(window.col_off) // factor,
        int(window.row_off) // factor,
        int(window.width) // factor,
        int(window.height) // factor,
    )


@dataclass(frozen=True)
class Renderer:
    """Renders windows of the fine grid from a landscape, season styles and clouds."""

    landscape: Landscape
    mask_grid: Grid
    factor: int
    styles: tuple[SceneStyle, ...]
    clouds: tuple[Clouds, ...]

    def render(self, window: Window) -> RenderedWindow:
        with rasterio.Env():  # one GDAL environment per thread
            features = self._rasterize_features(window)
            unmapped = self._rasterize_unmapped(window)
        classes = self.landscape.class_lookup[features]
        mask = np.where(unmapped, np.uint8(0), classes)
        counts, tone_sums = self._block_sums(classes, self.landscape.tone_lookup[features])
        scenes: dict[str, np.ndarray] = {}
        cloud_masks: dict[str, np.ndarray] = {}
        rows, cols, x, y = self._scene_coordinates(window)
        for style, clouds in zip(self.styles, self.clouds, strict=True):
            surface = style.surface(
                counts,
                tone_sums,
                rows=rows,
                cols=cols,
                pixel_m=self._scene_pixel_m,
                extent_m=self.landscape.extent_m,
            )
            alpha, shadow = cloud_layers(clouds, x, y)
            scenes[style.season] = to_uint16(apply_clouds(surface, alpha, shadow))
            cloud_masks[style.season] = cloud_mask(alpha, shadow)
        return RenderedWindow(window, scene_window(window, self.factor), mask, scenes, cloud_masks)

    @property
    def _scene_pixel_m(self) -> float:
        return self.mask_grid.resolution[0] * self.factor

    def _window_grid(self, window: Window) -> Grid:
        return self.mask_grid.crop(window)

    def _rasterize_features(self, window: Window) -> np.ndarray:
        grid = self._window_grid(window)
        left, bottom, right, top = grid.bounds
        pad = grid.resolution[0]
        hits = np.sort(self.landscape.tree.query(shapely.box(left, bottom, right, top)))
        geometries = shapely.clip_by_rect(
            self.landscape.features.geometry.to_numpy()[hits],
            left - pad,
            bottom - pad,
            right + pad,
            top + pad,
        )
        shapes = [
            (geometry, int(number))
            for geometry, number in zip(geometries, hits + 1, strict=True)
            if not geometry.is_empty
        ]
        out = np.zeros(grid.shape, dtype=np.int32)
        if shapes:
            rasterize(shapes, out=out, transform=grid.transform)
        return out

    def _rasterize_unmapped(self, window: Window) -> np.ndarray:
        grid = self._window_grid(window)
        left, bottom, right, top = grid.bounds
        part = shapely.clip_by_rect(
            self.landscape.unmapped, left - 1, bottom - 1, right + 1, top + 1
        )
        out = np.zeros(grid.shape, dtype=np.uint8)
        if not part.is_empty:
            rasterize([(part, 1)], out=out, transform=grid.transform)
        return out.astype(bool)

    def _block_sums(self, classes: np.ndarray, tones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per scene pixel: 1 m pixels per class and the sum of their tones, ``(h, w, 13)``."""
        f = self.factor
        rows, cols = classes.shape
        h, w = rows // f, cols // f
        index = np.int64 if h * w * N_CLASSES >= 2**31 else np.int32
        block = (np.arange(rows, dtype=index) // f)[:, None] * w + (
            np.arange(cols, dtype=index) // f
        )[None, :]
        key = (block * N_CLASSES + classes).ravel()
        size = h * w * N_CLASSES
        counts = np.bincount(key, minlength=size).astype(np.float32).reshape(h, w, N_CLASSES)
        tone_sums = np.bincount(key, weights=tones.ravel(), minlength=size)
        return counts, tone_sums.astype(np.float32).reshape(h, w, N_CLASSES)

    def _scene_coordinates(
        self, window: Window
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Absolute scene rows ``(h, 1)``, cols ``(1, w)`` and local map x, y of pixel centres."""
        f = self.factor
        row0, col0 = int(window.row_off) // f, int(window.col_off) // f
        rows = np.arange(row0, row0 + int(window.height) // f)[:, None]
        cols = np.arange(col0, col0 + int(window.width) // f)[None, :]
        pixel = self._scene_pixel_m
        x = (cols + 0.5) * pixel
        y = self.landscape.extent_m - (rows + 0.5) * pixel
        return rows, cols, x.astype(np.float64), y.astype(np.float64)
