"""What the page shows about one pixel, one tile of the store, and which tiles to review first."""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from geotiler.catalog import ClassTable
from geotiler.view.grid import Bounds, ViewGrid
from geotiler.view.render import PROBABILITY_SCALE

REVIEW_CELLS = 40
"""The review queue cuts the map into at most this many cells per axis."""
REVIEW_MIN_CELL_PX = 64
REVIEW_READ_PX = 32


def _pixel_of(dataset: Any, grid: ViewGrid, x: float, y: float) -> tuple[int, int] | None:
    """``(row, col)`` of view point ``(x, y)`` in ``dataset``, or None outside it."""
    if grid.georeferenced:
        if dataset.crs is not None and dataset.crs != grid.crs:
            from rasterio.warp import transform

            xs, ys = transform(grid.crs, dataset.crs, [x], [y])
            x, y = xs[0], ys[0]
        row, col = dataset.index(x, y)
    else:
        row, col = math.floor(-y), math.floor(x)
    if 0 <= row < dataset.height and 0 <= col < dataset.width:
        return int(row), int(col)
    return None


def read_pixel(
    path: str | PathLike[str], grid: ViewGrid, x: float, y: float
) -> tuple[np.ndarray, bool] | None:
    """All band values at view point ``(x, y)`` and whether the pixel is valid; None outside."""
    with rasterio.open(path) as dataset:
        where = _pixel_of(dataset, grid, x, y)
        if where is None:
            return None
        window = Window(where[1], where[0], 1, 1)
        values = dataset.read(window=window)[:, 0, 0]
        valid = bool((dataset.read_masks(window=window) > 0).all())
        return values, valid


def class_label(classes: ClassTable, value: int) -> str:
    name = classes.names.get(value)
    return f"{value} {name}" if name else f"{value} (nodata)"


def describe_pixel(
    *,
    grid: ViewGrid,
    x: float,
    y: float,
    scene: tuple[str, Path] | None,
    classes: ClassTable,
    map_path: Path | None = None,
    probabilities: Path | None = None,
    confidence: Path | None = None,
    truth: Path | None = None,
) -> dict[str, Any]:
    """Scene values, predicted class, top-3 probabilities and reference class at ``(x, y)``."""
    info: dict[str, Any] = {"x": x, "y": y}
    if scene is not None:
        from geotiler.view.render import band_names

        name, path = scene
        read = read_pixel(path, grid, x, y)
        if read is not None:
            names = band_names(path)
            info["scene"] = name
            info["values"] = {n: float(v) for n, v in zip(names, read[0], strict=True)}
    for role, raster in (("predicted", map_path), ("reference", truth)):
        if raster is not None:
            read = read_pixel(raster, grid, x, y)
            if read is not None and read[1]:
                info[role] = class_label(classes, int(read[0][0]))
    if probabilities is not None:
        read = read_pixel(probabilities, grid, x, y)
        if read is not None and read[1]:
            with rasterio.open(probabilities) as dataset:
                labels = [d or f"band {i + 1}" for i, d in enumerate(dataset.descriptions)]
            probs = read[0].astype(np.float64) / PROBABILITY_SCALE
            order = np.argsort(-probs)[:3]
            info["top3"] = [(labels[i], round(float(probs[i]), 3)) for i in order]
    if confidence is not None and "top3" not in info:
        read = read_pixel(confidence, grid, x, y)
        if read is not None and read[1]:
            info["confidence"] = round(float(read[0][0]), 3)
    return info


def format_pixel(info: dict[str, Any]) -> str:
    """The pixel facts as a small HTML block."""
    lines = [f"<b>pixel</b> x={info['x']:.1f} y={info['y']:.1f}"]
    if "values" in info:
        values = ", ".join(f"{k} {v:g}" for k, v in info["values"].items())
        lines.append(f"<b>{info['scene']}</b>: {values}")
    for key in ("predicted", "reference", "confidence"):
        if key in info:
            lines.append(f"<b>{key}</b>: {info[key]}")
    if "top3" in info:
        lines.append("<b>top 3</b>: " + ", ".join(f"{name} {p:.0%}" for name, p in info["top3"]))
    return "<br>".join(lines)


@dataclass(frozen=True)
class ReviewCell:
    """One cell of the review queue, in view coordinates."""

    bounds: Bounds
    entropy: float
    margin: float


def review_queue(probabilities: str | PathLike[str], grid: ViewGrid) -> list[ReviewCell]:
    """Cells of the map ranked by the model's mean entropy (most uncertain first).

    Each cell is read decimated to at most 32 x 32 pixels (overviews when present), so ranking a
    huge map reads a small fraction of it.
    """
    with rasterio.open(probabilities) as dataset:
        rows, cols = dataset.height, dataset.width
        cell = max(REVIEW_MIN_CELL_PX, math.ceil(max(rows, cols) / REVIEW_CELLS))
        cells: list[ReviewCell] = []
        for row in range(0, rows, cell):
            for col in range(0, cols, cell):
                window = Window(col, row, min(cell, cols - col), min(cell, rows - row))
                shape = (
                    dataset.count,
                    min(REVIEW_READ_PX, int(window.height)),
                    min(REVIEW_READ_PX, int(window.width)),
                )
                data = dataset.read(window=window, out_shape=shape, masked=True)
                valid = ~np.ma.getmaskarray(data).any(axis=0)
                if not valid.any():
                    continue
                probs = data.data[:, valid].astype(np.float64) / PROBABILITY_SCALE
                probs = np.clip(probs, 1e-6, 1.0)
                probs /= probs.sum(axis=0, keepdims=True)
                entropy = float((-(probs * np.log(probs)).sum(axis=0)).mean())
                top = np.sort(probs, axis=0)
                margin = float((top[-1] - top[-2]).mean()) if len(top) > 1 else 1.0
                cells.append(ReviewCell(_window_bounds(dataset, grid, window), entropy, margin))
    cells.sort(key=lambda c: (-c.entropy, c.margin))
    return cells


def _window_bounds(dataset: Any, grid: ViewGrid, window: Window) -> Bounds:
    if not grid.georeferenced:
        col, row = float(window.col_off), float(window.row_off)
        return col, -(row + window.height), col + window.width, -row
    from rasterio.windows import bounds

    left, bottom, right, top = bounds(window, dataset.transform)
    if dataset.crs is not None and dataset.crs != grid.crs:
        from rasterio.warp import transform_bounds

        left, bottom, right, top = transform_bounds(dataset.crs, grid.crs, left, bottom, right, top)
    return left, bottom, right, top
