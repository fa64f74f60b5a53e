"""The sliding-window engine behind :func:`geotiler.predict.predict_scene`, and its outputs.

:class:`Engine` reads one band of tile rows at a time from every season of a scene (several
seasons share one grid), runs the model, and blends each season's class probabilities with a Hann
window weighted by the pixels that season sees clearly (valid imagery, no cloud). A pixel cloudy in
April is so mapped from August; a pixel clear in no season is nodata, never a land class.
:class:`Outputs` writes the map (and confidence / probabilities) atomically, in whole blocks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from geotiler.catalog import ClassTable
from geotiler.creation_options import check_creation_options, with_creation_options
from geotiler.errors import InputError
from geotiler.grid import Grid
from geotiler.io import atomic_output, convert_to_cog, geotiff_profile, write_class_metadata
from geotiler.outputs import output_tag
from geotiler.predict import (
    Predictor,
    blend_window,
    check_overlap,
    d4_predict,
    tile_offsets,
)
from geotiler.tiles.read import CLOUD_VALUES, spectral_clouds

BLOCK_PX = 256
CONFIDENCE_NODATA = -1.0
PROBABILITY_NODATA = 255
PROBABILITY_SCALE = 254
"""Probabilities are stored as round(p * 254) in uint8 (255 = nodata); the band scale undoes it."""


@dataclass
class Season:
    """One season of a scene: its open dataset, its bands in the model's order, how its clouds
    are known (an open cloud mask, or the spectral test on these band positions, or not at all)."""

    dataset: Any
    order: list[int]
    clouds: Any | None = None
    visible: tuple[int, int, int] | None = None
    nodata: float | None = None
    """The scene's nodata value when the file's is overridden (``--src-nodata``)."""
    cloud_brightness: float = 3000.0
    cloud_whiteness: float = 0.2


class Engine:
    """Reads tile rows, runs the model, blends, and hands finished rows to the outputs."""

    def __init__(
        self,
        seasons: list[Season],
        predictor: Predictor,
        chosen: np.ndarray,
        overlap_px: int | None,
        batch_size: int,
        tta: bool,
        outputs: Outputs,
    ) -> None:
        self.seasons = seasons
        self.predictor = predictor
        self.chosen = chosen
        self.tile = predictor.tile_size
        self.rows, self.cols = seasons[0].dataset.height, seasons[0].dataset.width
        overlap_px = check_overlap(self.tile, overlap_px)
        self.row_offsets = tile_offsets(self.rows, self.tile, self.tile - overlap_px)
        self.col_offsets = tile_offsets(self.cols, self.tile, self.tile - overlap_px)
        self.batch_size = max(1, batch_size)
        self.tta = tta
        self.outputs = outputs
        self.weight = blend_window(self.tile)
        self.class_pixels: dict[int, int] = {int(c): 0 for c in chosen}
        self.valid_pixels = 0
        self.cloudy_pixels = 0
        self.keep: np.ndarray | None = None
        self.min_confidence: float | None = None

    def select(self, *, keep: np.ndarray | None, min_confidence: float | None) -> None:
        """Which classes to map (others are nodata) and the top probability to require."""
        self.keep, self.min_confidence = keep, min_confidence

    def run(self, progress: Callable[[int], None] | None) -> int:
        k = len(self.chosen)
        acc = np.zeros((k, 0, self.cols), np.float32)
        weights = np.zeros((0, self.cols), np.float32)
        valid = np.zeros((0, self.cols), bool)
        start = 0
        for i, y0 in enumerate(self.row_offsets):
            stop = min(y0 + self.tile, self.rows)
            grow = stop - start - acc.shape[1]
            if grow > 0:
                acc = np.concatenate([acc, np.zeros((k, grow, self.cols), np.float32)], axis=1)
                weights = np.concatenate([weights, np.zeros((grow, self.cols), np.float32)])
                valid = np.concatenate([valid, np.zeros((grow, self.cols), bool)])
            for season in self.seasons:
                image, band_valid, clear = self._read_rows(season, y0)
                valid[y0 - start : stop - start] |= band_valid[: stop - y0]
                self._blend_row(image, clear, acc, weights, y0 - start, stop - y0)
            if progress is not None:
                progress(len(self.col_offsets))
            final = self.row_offsets[i + 1] if i + 1 < len(self.row_offsets) else self.rows
            done = final - start
            self._emit(acc[:, :done], weights[:done], valid[:done])
            acc, weights, valid = acc[:, done:], weights[done:], valid[done:]
            start = final
        return len(self.row_offsets) * len(self.col_offsets)

    def _read_rows(self, season: Season, y0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image rows (padded to a tile), valid imagery and clear (valid, not cloudy) pixels."""
        height = min(self.tile, self.rows)
        window = Window(0, y0, self.cols, height)
        dataset = season.dataset
        raw = dataset.read(season.order, window=window)
        if season.nodata is not None:
            valid = (raw != season.nodata).all(axis=0)
        else:
            valid = (dataset.read_masks(season.order, window=window) > 0).all(axis=0)
        image = raw.astype(np.float32)
        clear = valid.copy()
        if season.clouds is not None:
            clear &= ~np.isin(season.clouds.read(1, window=window), CLOUD_VALUES)
        elif season.visible is not None:
            visible = image[list(season.visible)]
            clear &= ~spectral_clouds(visible, season.cloud_brightness, season.cloud_whiteness)
        pad_rows, pad_cols = self.tile - image.shape[1], max(self.tile - self.cols, 0)
        if pad_rows or pad_cols:
            image = np.pad(image, ((0, 0), (0, pad_rows), (0, pad_cols)), mode="reflect")
            clear = np.pad(clear, ((0, pad_rows), (0, pad_cols)))
        return image, valid, clear

    def _blend_row(
        self,
        image: np.ndarray,
        clear: np.ndarray,
        acc: np.ndarray,
        weights: np.ndarray,
        top: int,
        height: int,
    ) -> None:
        tiles = [image[:, :, x0 : x0 + self.tile] for x0 in self.col_offsets]
        for first in range(0, len(tiles), self.batch_size):
            batch = np.stack(tiles[first : first + self.batch_size])
            probs = d4_predict(self.predictor, batch) if self.tta else self.predictor(batch)
            probs = probs[:, self.chosen]
            for j, tile_probs in enumerate(probs):
                x0 = self.col_offsets[first + j]
                width = min(self.tile, self.cols)
                # A season adds nothing where it does not see the ground (nodata, cloud).
                w = self.weight[:height, :width] * clear[:height, x0 : x0 + width]
                acc[:, top : top + height, x0 : x0 + width] += tile_probs[:, :height, :width] * w
                weights[top : top + height, x0 : x0 + width] += w

    def _emit(self, acc: np.ndarray, weights: np.ndarray, valid: np.ndarray) -> None:
        if acc.shape[1] == 0:
            return
        seen = weights > 0
        probs = acc / np.where(seen, weights, 1.0)
        best = probs.argmax(axis=0)
        labels = self.chosen[best].astype(np.uint8)
        self.cloudy_pixels += int((valid & ~seen).sum())
        valid = valid & seen
        mapped = valid.copy()
        if self.keep is not None:
            mapped &= np.isin(labels, self.keep)
        if self.min_confidence is not None:
            mapped &= probs.max(axis=0) >= self.min_confidence
        labels[~mapped] = self.outputs.nodata
        ids, counts = np.unique(labels[mapped], return_counts=True)
        for value, count in zip(ids, counts, strict=True):
            self.class_pixels[int(value)] += int(count)
        self.valid_pixels += int(valid.sum())
        self.outputs.write(labels, probs, valid)


def map_nodata(classes: ClassTable, chosen: np.ndarray, nodata: int | None) -> int:
    """The map's nodata value: ``nodata`` (``--dst-nodata``), else the class table's, else 255.

    Raises:
        InputError: ``nodata`` outside 0..255 or a class the map may hold.
    """
    if nodata is None:
        return classes.nodata if classes.nodata is not None else 255
    if not 0 <= nodata <= 255:
        raise InputError(f"--dst-nodata {nodata}: the map is uint8; choose a value in 0..255")
    if nodata in {int(c) for c in chosen}:
        name = classes.names.get(int(nodata), "")
        raise InputError(
            f"--dst-nodata {nodata}: is the class {name or nodata} of the model; choose a value "
            "no class uses (e.g. 255)"
        )
    return int(nodata)


def output_profile(key: str, nodata: int, classes: int) -> dict[str, Any]:
    """geotiler's GeoTIFF profile of the ``labels``, ``confidence`` or ``probabilities`` output."""
    if key == "labels":
        return geotiff_profile(dtype="uint8", nodata=nodata, block_px=BLOCK_PX)
    if key == "confidence":
        return geotiff_profile(dtype="float32", nodata=CONFIDENCE_NODATA, block_px=BLOCK_PX)
    return geotiff_profile(
        dtype="uint8", count=classes, nodata=PROBABILITY_NODATA, block_px=BLOCK_PX
    )


def check_output_options(
    creation_options: Mapping[str, str] | None,
    targets: Mapping[str, str | PathLike[str] | None],
    *,
    cog: bool,
    classes: int,
) -> None:
    """Have GDAL judge ``--co`` for each output to write (``labels``, ``confidence``...).

    Raises:
        InputError: the first output and option GDAL refuses.
    """
    if not creation_options:
        return
    for key, target in targets.items():
        if target is None:
            continue
        profile = output_profile(key, 0, classes)
        check_creation_options(creation_options, profile, cog=cog, output=target)


class Outputs:
    """The output rasters, written atomically, in whole blocks of rows."""

    def __init__(
        self,
        grid: Grid,
        classes: ClassTable,
        chosen: np.ndarray,
        output: str | PathLike[str],
        confidence: str | PathLike[str] | None,
        probabilities: str | PathLike[str] | None,
        cog: bool,
        overwrite: bool,
        creation_options: Mapping[str, str] | None = None,
        nodata: int | None = None,
    ) -> None:
        self.grid, self.classes, self.chosen = grid, classes, chosen
        self.creation_options = dict(creation_options or {})
        self.nodata = map_nodata(classes, chosen, nodata)
        self.targets = {"labels": output, "confidence": confidence, "probabilities": probabilities}
        self.cog, self.overwrite = cog, overwrite
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.row = 0

    def __enter__(self) -> Outputs:
        self._stack = contextlib.ExitStack()
        self.files: dict[str, Any] = {}
        self.paths: dict[str, Path] = {}
        for key, target in self.targets.items():
            if target is None:
                continue
            temporary = self._stack.enter_context(
                atomic_output(target, overwrite=self.overwrite, kind="geotiff")
            )
            self.paths[key] = temporary
            self.files[key] = rasterio.open(temporary, "w", **self._profile(key))
            self.files[key].update_tags(**output_tag(f"predict {key}"))
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        try:
            if kind is None:
                self._flush(final=True)
            for handle in self.files.values():
                handle.close()
            if kind is None:
                self._finish()
        finally:
            self._stack.__exit__(kind, value, traceback)

    def _profile(self, key: str) -> dict[str, Any]:
        rows, cols = self.grid.shape
        common = {
            "height": rows,
            "width": cols,
            "crs": self.grid.crs,
            "transform": self.grid.transform,
        }
        profile = output_profile(key, self.nodata, len(self.chosen))
        if not self.cog:  # with --cog the options go to the COG copy (see _finish)
            profile = with_creation_options(profile, self.creation_options)
        return {**profile, **common}

    def write(self, labels: np.ndarray, probs: np.ndarray, valid: np.ndarray) -> None:
        self.pending.append((labels, probs if len(self.files) > 1 else probs[:0], valid))
        self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        # Whole blocks only, so no compressed block is written twice.
        rows = sum(p[0].shape[0] for p in self.pending)
        if not self.pending or (rows < BLOCK_PX and not final):
            return
        labels = np.concatenate([p[0] for p in self.pending])
        valid = np.concatenate([p[2] for p in self.pending])
        probs = np.concatenate([p[1] for p in self.pending], axis=1)
        take = rows if final else rows - rows % BLOCK_PX
        window = Window(0, self.row, self.grid.cols, take)
        self.files["labels"].write(labels[:take], 1, window=window)
        if "confidence" in self.files:
            conf = probs[:, :take].max(axis=0)
            conf[~valid[:take]] = CONFIDENCE_NODATA
            self.files["confidence"].write(conf, 1, window=window)
        if "probabilities" in self.files:
            scaled = np.rint(probs[:, :take] * PROBABILITY_SCALE).astype(np.uint8)
            scaled[:, ~valid[:take]] = PROBABILITY_NODATA
            self.files["probabilities"].write(scaled, window=window)
        self.row += take
        self.pending = [] if take == rows else [(labels[take:], probs[:, take:], valid[take:])]

    def _finish(self) -> None:
        write_class_metadata(self.paths["labels"], self.classes)
        if "probabilities" in self.paths:
            with rasterio.open(self.paths["probabilities"], "r+") as dataset:
                # GDAL's band scale: readers that apply it (QGIS, rioxarray) get 0..1 directly.
                dataset.scales = [1 / PROBABILITY_SCALE] * len(self.chosen)
                dataset.offsets = [0.0] * len(self.chosen)
                for band, class_id in enumerate(self.chosen, start=1):
                    dataset.set_band_description(band, self.classes.names[int(class_id)])
                    dataset.update_tags(band, CLASS_ID=str(int(class_id)))
        if self.cog:
            for key, path in self.paths.items():
                cog_path = path.with_name(path.name + ".cog")
                convert_to_cog(
                    path,
                    cog_path,
                    overview_resampling="mode" if key == "labels" else "average",
                    creation_options=self.creation_options,
                )
                path.unlink()
                cog_path.rename(path)
                sidecar = cog_path.with_name(cog_path.name + ".aux.xml")
                if sidecar.exists():
                    sidecar.rename(path.with_name(path.name + ".aux.xml"))
