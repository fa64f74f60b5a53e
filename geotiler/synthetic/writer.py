"""The files of a generated dataset: creation profiles, windowed writing, metadata.

:func:`open_outputs` opens every output for writing and yields a sink that takes rendered
windows in order. A tiled mask gets each window directly; a strip mask (one-row strips, the real
ICGC layout) collects a full-width band of rows and writes it at once, so strips are written whole.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from geotiler.catalog import ClassTable, SynthSpec
from geotiler.grid import Grid
from geotiler.io import geotiff_profile, write_class_metadata
from geotiler.synthetic.clouds import CLOUD, CLOUD_VALUES, SHADOW
from geotiler.synthetic.render import RenderedWindow
from geotiler.synthetic.spectra import BANDS, N_CLASSES, SCALE

SYNTH_TAG = "GEOTILER_SYNTHETIC"
SCENE_BLOCK_PX = 256
MASK_BLOCK_PX = 512


def mask_profile(layout: str) -> dict[str, Any]:
    if layout == "strip":
        return {
            "driver": "GTiff",
            "dtype": "uint8",
            "count": 1,
            "nodata": 0,
            "tiled": False,
            "blockysize": 1,
            "bigtiff": "IF_SAFER",
        }
    return geotiff_profile(dtype="uint8", nodata=0, block_px=MASK_BLOCK_PX)


class Sink:
    """Takes rendered windows in row-major order, writes them, keeps class and cloud counts."""

    def __init__(
        self,
        mask: Any,
        scenes: dict[str, Any],
        cloud_masks: dict[str, Any],
        *,
        striped: bool,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.mask, self.scenes, self.cloud_masks = mask, scenes, cloud_masks
        self.striped = striped
        self.progress = progress
        self.class_counts = np.zeros(N_CLASSES, dtype=np.int64)
        self.cloud_counts = {season: np.zeros(3, dtype=np.int64) for season in cloud_masks}
        self._band: np.ndarray | None = None
        self._rows_done = 0.0
        self._rows_reported = 0

    def __call__(self, rendered: RenderedWindow) -> None:
        window = rendered.window
        self._write_mask(window, rendered.mask)
        for season, dataset in self.scenes.items():
            dataset.write(rendered.scenes[season], window=rendered.scene_window)
        for season, dataset in self.cloud_masks.items():
            clouds = rendered.cloud_masks[season]
            dataset.write(clouds, 1, window=rendered.scene_window)
            self.cloud_counts[season] += np.bincount(clouds.ravel(), minlength=3)[:3]
        self.class_counts += np.bincount(rendered.mask.ravel(), minlength=N_CLASSES)[:N_CLASSES]
        self._advance(window)

    def _write_mask(self, window: Window, mask: np.ndarray) -> None:
        if not self.striped:
            self.mask.write(mask, 1, window=window)
            return
        row0, col0 = int(window.row_off), int(window.col_off)
        rows, cols = mask.shape
        if col0 == 0:
            self._band = np.zeros((rows, self.mask.width), dtype=np.uint8)
        if self._band is None:  # pragma: no cover - windows always start a band at column 0
            raise RuntimeError("strip band written out of order")
        self._band[:, col0 : col0 + cols] = mask
        if col0 + cols == self.mask.width:
            self.mask.write(self._band, 1, window=Window(0, row0, self.mask.width, rows))
            self._band = None

    def _advance(self, window: Window) -> None:
        if self.progress is None:
            return
        self._rows_done += int(window.height) * int(window.width) / self.mask.width
        whole = int(round(self._rows_done, 6))
        if whole > self._rows_reported:
            self.progress(whole - self._rows_reported)
            self._rows_reported = whole

    def class_shares(self) -> dict[int, float]:
        """Share of every value (0 = nodata) among all mask pixels."""
        total = max(int(self.class_counts.sum()), 1)
        return {value: int(n) / total for value, n in enumerate(self.class_counts)}

    def cloud_fractions(self) -> dict[str, dict[str, float]]:
        out = {}
        for season, counts in self.cloud_counts.items():
            total = max(int(counts.sum()), 1)
            out[season] = {
                "cloud": round(int(counts[CLOUD]) / total, 6),
                "shadow": round(int(counts[SHADOW]) / total, 6),
            }
        return out


@contextlib.contextmanager
def open_outputs(
    temporary: dict[str, Path],
    spec: SynthSpec,
    scene_grid: Grid,
    mask_grid: Grid,
    *,
    progress: Callable[[int], None] | None,
) -> Iterator[Sink]:
    """Open the mask, scenes and cloud masks at ``temporary`` paths; yield the :class:`Sink`."""

    def grid_options(grid: Grid) -> dict[str, Any]:
        return {
            "crs": grid.crs,
            "transform": grid.transform,
            "height": grid.rows,
            "width": grid.cols,
        }

    scene_profile = geotiff_profile(
        dtype="uint16", count=len(BANDS), nodata=0, block_px=SCENE_BLOCK_PX
    )
    cloud_profile = geotiff_profile(dtype="uint8", block_px=SCENE_BLOCK_PX)
    with contextlib.ExitStack() as stack:
        mask = stack.enter_context(
            rasterio.open(
                temporary["mask"], "w", **mask_profile(spec.mask_layout), **grid_options(mask_grid)
            )
        )
        scenes, cloud_masks = {}, {}
        for key, path in temporary.items():
            kind, _, season = key.partition(":")
            if kind == "scene":
                scenes[season] = stack.enter_context(
                    rasterio.open(path, "w", **scene_profile, **grid_options(scene_grid))
                )
            elif kind == "clouds":
                cloud_masks[season] = stack.enter_context(
                    rasterio.open(path, "w", **cloud_profile, **grid_options(scene_grid))
                )
        yield Sink(
            mask, scenes, cloud_masks, striped=spec.mask_layout == "strip", progress=progress
        )


def write_metadata(
    temporary: dict[str, Path],
    spec: dict[str, Any],
    classes: ClassTable,
    cloud_table: ClassTable,
) -> None:
    """Class table, band names, scale and provenance tags on the closed outputs."""
    provenance = json.dumps(spec, sort_keys=True)
    write_class_metadata(temporary["mask"], classes)
    with rasterio.open(temporary["mask"], "r+") as dataset:
        dataset.update_tags(**{SYNTH_TAG: provenance})
    for key, path in temporary.items():
        kind, _, season = key.partition(":")
        if kind == "scene":
            with rasterio.open(path, "r+") as dataset:
                for band, name in enumerate(BANDS, start=1):
                    dataset.set_band_description(band, name)
                dataset.scales = [1.0 / SCALE] * len(BANDS)
                dataset.update_tags(
                    **{SYNTH_TAG: provenance},
                    SEASON=season,
                    BANDS=",".join(BANDS),
                    VALUES=f"surface reflectance x {SCALE}; 0 = nodata (never used)",
                )
        elif kind == "clouds":
            write_class_metadata(path, cloud_table)
            with rasterio.open(path, "r+") as dataset:
                dataset.set_band_description(1, "cloud mask: 0 clear, 1 cloud, 2 shadow")
                dataset.update_tags(
                    **{SYNTH_TAG: provenance},
                    SEASON=season,
                    CLOUD_MASK_VALUES=",".join(f"{k}={v}" for k, v in CLOUD_VALUES.items()),
                )
