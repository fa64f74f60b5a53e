"""Whole-scene inference: a sliding window over a scene of any size into a georeferenced class map.

The scene is processed one band of tile rows at a time. Tiles overlap by ``overlap_px``; their
class probabilities are blended with a Hann window so tile borders leave no seams, and output rows
are written as soon as no later tile touches them. Memory is bounded by the tile size and the scene
width, never by the scene height. The last tile row and column are snapped to the scene's edge.

The model is anything that follows :class:`Predictor` (a torch checkpoint, an ONNX session), so
this module knows nothing of torch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
from pydantic import Field
from rasterio.windows import Window

from geotiler.catalog import ClassTable
from geotiler.config import StageSettings
from geotiler.errors import InputError
from geotiler.grid import Grid
from geotiler.io import (
    atomic_output,
    check_output,
    convert_to_cog,
    geotiff_profile,
    open_raster,
    write_class_metadata,
)
from geotiler.limits import check_predict_memory
from geotiler.outputs import check_distinct, output_tag

log = logging.getLogger(__name__)

BLOCK_PX = 256
CONFIDENCE_NODATA = -1.0
PROBABILITY_NODATA = 255


class PredictSettings(StageSettings):
    """Settings of ``geotiler predict`` (pipeline section ``predict``)."""

    overlap: int | None = Field(default=None, ge=0, description="px; default a quarter tile")
    batch_size: int = Field(default=8, ge=1)
    tta: bool = False
    cog: bool = False
    device: str = "auto"


class Predictor(Protocol):
    """A model ready for inference, with its input contract."""

    bands: tuple[str, ...]
    num_classes: int
    tile_size: int

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Raw scene values ``(N, B, S, S)`` float32 -> class probabilities ``(N, K, S, S)``."""
        ...


@dataclass(frozen=True)
class PredictResult:
    output: Path
    grid: Grid
    tiles: int
    seconds: float
    class_pixels: dict[int, int] = field(default_factory=dict)
    nodata_pixels: int = 0


def tile_offsets(length_px: int, tile_px: int, stride_px: int) -> list[int]:
    """Tile starts along one axis: every ``stride_px``, the last one snapped to the edge."""
    if stride_px < 1:
        raise InputError(f"overlap must be smaller than the tile size ({tile_px} px)")
    if length_px <= tile_px:
        return [0]
    offsets = list(range(0, length_px - tile_px + 1, stride_px))
    if offsets[-1] + tile_px < length_px:
        offsets.append(length_px - tile_px)
    return offsets


def default_overlap(tile_px: int) -> int:
    """The overlap used when none is given: a quarter of the tile."""
    return tile_px // 4


def count_tiles(grid: Grid, tile_px: int, overlap_px: int | None = None) -> int:
    """How many tiles :func:`predict_scene` runs over ``grid`` (for progress totals)."""
    overlap = default_overlap(tile_px) if overlap_px is None else overlap_px
    stride = max(tile_px - overlap, 1)
    return len(tile_offsets(grid.rows, tile_px, stride)) * len(
        tile_offsets(grid.cols, tile_px, stride)
    )


def blend_window(tile_px: int) -> np.ndarray:
    """A 2-D Hann weight, strictly positive so a pixel seen by one tile keeps that tile's value."""
    ramp = np.sin(np.pi * (np.arange(tile_px) + 0.5) / tile_px) ** 2
    return np.outer(ramp, ramp).astype(np.float32)


def d4_predict(predictor: Predictor, batch: np.ndarray) -> np.ndarray:
    """Test-time augmentation: the mean of the 8 flips/rotations, each mapped back."""
    total = np.zeros((batch.shape[0], predictor.num_classes, *batch.shape[2:]), np.float32)
    for k in range(4):
        for flip in (False, True):
            view = np.rot90(batch, k, axes=(2, 3))
            view = view[..., ::-1] if flip else view
            probs = predictor(np.ascontiguousarray(view))
            probs = probs[..., ::-1] if flip else probs
            total += np.rot90(probs, -k, axes=(2, 3))
    return total / 8


def predict_scene(
    scene: str | PathLike[str],
    output: str | PathLike[str],
    *,
    predictor: Predictor,
    classes: ClassTable,
    overlap_px: int | None = None,
    batch_size: int = 8,
    class_ids: Sequence[int] | None = None,
    tta: bool = False,
    confidence: str | PathLike[str] | None = None,
    probabilities: str | PathLike[str] | None = None,
    cog: bool = False,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PredictResult:
    """Predict a class map for ``scene`` on its exact grid and write it to ``output``.

    ``overlap_px`` defaults to a quarter of the model's tile size. ``class_ids`` restricts the map
    to those classes: every valid pixel gets the most probable of them. Nodata pixels of the scene
    (every band nodata) are nodata in the map.
    """
    started = time.perf_counter()
    chosen = _chosen_classes(classes, class_ids, predictor.num_classes)
    check_distinct({"-o": output, "--confidence": confidence, "--probabilities": probabilities})
    for path in (output, confidence, probabilities):
        if path is not None:
            check_output(path, overwrite=overwrite, kind="geotiff", inputs=[scene])
    with open_raster(scene) as dataset:
        grid = Grid.from_dataset(dataset)
        _check_bands(dataset, predictor)
        check_predict_memory(
            dataset.name, cols=grid.cols, bands=dataset.count, classes=predictor.num_classes,
            tile_px=predictor.tile_size, batch=batch_size, tta=tta,
        )  # fmt: skip
        outputs = _Outputs(grid, classes, chosen, output, confidence, probabilities, cog, overwrite)
        with outputs:
            engine = _Engine(dataset, predictor, chosen, overlap_px, batch_size, tta, outputs)
            tiles = engine.run(progress)
            if engine.valid_pixels == 0:  # raised inside, so no output is kept
                raise InputError(f"{dataset.name}: every pixel of the scene is nodata")
    return PredictResult(
        output=Path(output),
        grid=grid,
        tiles=tiles,
        seconds=time.perf_counter() - started,
        class_pixels=engine.class_pixels,
        nodata_pixels=grid.rows * grid.cols - engine.valid_pixels,
    )


def _chosen_classes(
    classes: ClassTable, class_ids: Sequence[int] | None, num_classes: int
) -> np.ndarray:
    ids = list(class_ids) if class_ids else classes.ids
    unknown = [i for i in ids if i not in classes.ids or i >= num_classes]
    if unknown:
        raise InputError(f"classes {unknown} are not classes of the model ({classes.name})")
    return np.array(sorted(set(ids)), dtype=np.int64)


def _check_bands(dataset: Any, predictor: Predictor) -> None:
    if dataset.count != len(predictor.bands):
        raise InputError(
            f"{dataset.name}: the scene has {dataset.count} bands but the model expects "
            f"{len(predictor.bands)} ({', '.join(predictor.bands)})"
        )
    names = tuple(d or "" for d in dataset.descriptions)
    if all(names) and names != tuple(predictor.bands):
        raise InputError(
            f"{dataset.name}: scene bands {', '.join(names)} differ from the model's "
            f"{', '.join(predictor.bands)}"
        )


class _Engine:
    """Reads tile rows, runs the model, blends, and hands finished rows to the outputs."""

    def __init__(
        self,
        dataset: Any,
        predictor: Predictor,
        chosen: np.ndarray,
        overlap_px: int | None,
        batch_size: int,
        tta: bool,
        outputs: _Outputs,
    ) -> None:
        self.dataset = dataset
        self.predictor = predictor
        self.chosen = chosen
        self.tile = predictor.tile_size
        self.rows, self.cols = dataset.height, dataset.width
        overlap_px = default_overlap(self.tile) if overlap_px is None else overlap_px
        if not 0 <= overlap_px < self.tile:
            raise InputError(f"--overlap must be in [0, {self.tile}) px, got {overlap_px}")
        self.row_offsets = tile_offsets(self.rows, self.tile, self.tile - overlap_px)
        self.col_offsets = tile_offsets(self.cols, self.tile, self.tile - overlap_px)
        self.batch_size = max(1, batch_size)
        self.tta = tta
        self.outputs = outputs
        self.weight = blend_window(self.tile)
        self.class_pixels: dict[int, int] = {int(c): 0 for c in chosen}
        self.valid_pixels = 0

    def run(self, progress: Callable[[int], None] | None) -> int:
        k = len(self.chosen)
        acc = np.zeros((k, 0, self.cols), np.float32)
        weights = np.zeros((0, self.cols), np.float32)
        valid = np.zeros((0, self.cols), bool)
        start = 0
        for i, y0 in enumerate(self.row_offsets):
            image, band_valid = self._read_rows(y0)
            stop = min(y0 + self.tile, self.rows)
            grow = stop - start - acc.shape[1]
            if grow > 0:
                acc = np.concatenate([acc, np.zeros((k, grow, self.cols), np.float32)], axis=1)
                weights = np.concatenate([weights, np.zeros((grow, self.cols), np.float32)])
                valid = np.concatenate([valid, np.zeros((grow, self.cols), bool)])
            valid[y0 - start : stop - start] = band_valid[: stop - y0]
            self._blend_row(image, acc, weights, y0 - start, stop - y0)
            if progress is not None:
                progress(len(self.col_offsets))
            final = self.row_offsets[i + 1] if i + 1 < len(self.row_offsets) else self.rows
            done = final - start
            self._emit(acc[:, :done], weights[:done], valid[:done])
            acc, weights, valid = acc[:, done:], weights[done:], valid[done:]
            start = final
        return len(self.row_offsets) * len(self.col_offsets)

    def _read_rows(self, y0: int) -> tuple[np.ndarray, np.ndarray]:
        height = min(self.tile, self.rows)
        window = Window(0, y0, self.cols, height)
        image = self.dataset.read(window=window).astype(np.float32)
        valid = (self.dataset.read_masks(window=window) > 0).all(axis=0)
        pad_rows, pad_cols = self.tile - image.shape[1], max(self.tile - self.cols, 0)
        if pad_rows or pad_cols:
            image = np.pad(image, ((0, 0), (0, pad_rows), (0, pad_cols)), mode="reflect")
        return image, valid

    def _blend_row(
        self, image: np.ndarray, acc: np.ndarray, weights: np.ndarray, top: int, height: int
    ) -> None:
        tiles = [image[:, :, x0 : x0 + self.tile] for x0 in self.col_offsets]
        for first in range(0, len(tiles), self.batch_size):
            batch = np.stack(tiles[first : first + self.batch_size])
            probs = d4_predict(self.predictor, batch) if self.tta else self.predictor(batch)
            probs = probs[:, self.chosen]
            for j, tile_probs in enumerate(probs):
                x0 = self.col_offsets[first + j]
                width = min(self.tile, self.cols)
                w = self.weight[:height, :width]
                acc[:, top : top + height, x0 : x0 + width] += tile_probs[:, :height, :width] * w
                weights[top : top + height, x0 : x0 + width] += w

    def _emit(self, acc: np.ndarray, weights: np.ndarray, valid: np.ndarray) -> None:
        if acc.shape[1] == 0:
            return
        probs = acc / weights
        best = probs.argmax(axis=0)
        labels = self.chosen[best].astype(np.uint8)
        labels[~valid] = self.outputs.nodata
        ids, counts = np.unique(labels[valid], return_counts=True)
        for value, count in zip(ids, counts, strict=True):
            self.class_pixels[int(value)] += int(count)
        self.valid_pixels += int(valid.sum())
        self.outputs.write(labels, probs, valid)


class _Outputs:
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
    ) -> None:
        self.grid, self.classes, self.chosen = grid, classes, chosen
        self.nodata = classes.nodata if classes.nodata is not None else 255
        self.targets = {"labels": output, "confidence": confidence, "probabilities": probabilities}
        self.cog, self.overwrite = cog, overwrite
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.row = 0

    def __enter__(self) -> _Outputs:
        import contextlib

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
        if key == "labels":
            profile = geotiff_profile(dtype="uint8", nodata=self.nodata, block_px=BLOCK_PX)
        elif key == "confidence":
            profile = geotiff_profile(dtype="float32", nodata=CONFIDENCE_NODATA, block_px=BLOCK_PX)
        else:
            profile = geotiff_profile(
                dtype="uint8", count=len(self.chosen), nodata=PROBABILITY_NODATA, block_px=BLOCK_PX
            )
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
            scaled = np.rint(probs[:, :take] * 254).astype(np.uint8)
            scaled[:, ~valid[:take]] = PROBABILITY_NODATA
            self.files["probabilities"].write(scaled, window=window)
        self.row += take
        self.pending = [] if take == rows else [(labels[take:], probs[:, take:], valid[take:])]

    def _finish(self) -> None:
        write_class_metadata(self.paths["labels"], self.classes)
        if "probabilities" in self.paths:
            with rasterio.open(self.paths["probabilities"], "r+") as dataset:
                for band, class_id in enumerate(self.chosen, start=1):
                    dataset.set_band_description(band, self.classes.names[int(class_id)])
                dataset.update_tags(SCALE="probability = value / 254")
        if self.cog:
            for key, path in self.paths.items():
                cog_path = path.with_name(path.name + ".cog")
                convert_to_cog(
                    path, cog_path, overview_resampling="mode" if key == "labels" else "average"
                )
                path.unlink()
                cog_path.rename(path)
                sidecar = cog_path.with_name(cog_path.name + ".aux.xml")
                if sidecar.exists():
                    sidecar.rename(path.with_name(path.name + ".aux.xml"))
