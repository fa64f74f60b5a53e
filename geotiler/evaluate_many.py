"""Scoring a folder of maps against a folder of reference masks, paired by file stem.

``geotiler evaluate PRED_DIR --truth MASK_DIR -o REPORT_DIR`` pairs maps and masks the way the
tile stage pairs images and masks, reads each reference on its map's grid as the tile stage reads
masks (class ids or RGB colours, at the map's resolution or resampled: nearest for coarser
references, mode for finer ones), and writes ``metrics.json`` with the overall scores (from the
summed confusion matrix) and one entry per pair, ``pairs.csv``, and the overall confusion matrix.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from geotiler.catalog import ClassTable
from geotiler.errors import InputError
from geotiler.grid import Grid
from geotiler.io import block_layout, open_raster, read_class_table, require_single_band_integer
from geotiler.outputs import publish_folder, staging_folder, writes
from geotiler.tiles.masks import mask_reader
from geotiler.tiles.scenes import Unpaired, resolve_scenes

BAND_ROWS_PX = 1024


@dataclass(frozen=True)
class ManyResult:
    """What :func:`evaluate_many` wrote and scored."""

    report_dir: Path
    metrics: dict[str, Any]
    files: tuple[Path, ...]


@writes("report_dir", "report", inputs=lambda a: [*a["predictions"], *a["truths"]])
def evaluate_many(
    predictions: Sequence[str | PathLike[str]],
    truths: Sequence[str | PathLike[str]],
    report_dir: str | PathLike[str],
    *,
    classes: ClassTable | None = None,
    unpaired: Unpaired = "error",
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> ManyResult:
    """Score each map against the reference of the same stem; see the module docstring.

    As :func:`geotiler.evaluate.evaluate`, the report is built in a temporary folder and moved
    into place when complete; an existing report folder is replaced only with ``overwrite``
    (and only one geotiler wrote), never a folder of the inputs.

    Raises:
        InputError: unpaired files (unless ``unpaired="skip"``), maps without a class table
            (pass ``classes``), or nothing labelled in both.
    """
    from geotiler.train.metrics import save_confusion, scores_for_table

    pairs = resolve_scenes(predictions, truths, unpaired=unpaired)
    with open_raster(pairs[0].image) as first:
        table = classes or read_class_table(first)
    if table is None:
        raise InputError(f"{pairs[0].image}: carries no class table; pass --classes TABLE")
    size = max([*table.ids, table.nodata or 0]) + 1
    total = np.zeros((size, size), np.int64)
    rows = []
    for pair in pairs:
        matrix = confusion_on_map(pair.image, pair.mask, pair.grid, table, size, progress)
        total += matrix
        scores = scores_for_table(matrix, table)
        rows.append(
            {
                "name": pair.name,
                "prediction": str(pair.image),
                "truth": str(pair.mask),
                "pixels_scored": int(matrix.sum()),
                "pixel_accuracy": scores.pixel_accuracy,
                "miou": scores.miou,
            }
        )
    if total.sum() == 0:
        raise InputError("no pixel is labelled in both the references and the predictions")
    overall = scores_for_table(total, table)
    folder = staging_folder(report_dir)
    metrics = {
        "pairs": len(pairs),
        "pixels_scored": int(total.sum()),
        "pixel_accuracy": overall.pixel_accuracy,
        "miou": overall.miou,
        "macro_f1": overall.mean_dice,
        "classes": [
            {"id": c.id, "name": c.name, "iou": c.iou, "f1": c.dice, "support": c.support}
            for c in overall.classes
        ],
        "per_pair": rows,
    }
    metrics_path = folder / "metrics.json"
    metrics_path.write_text(json.dumps(_finite(metrics), indent=2) + "\n", encoding="utf-8")
    pairs_path = folder / "pairs.csv"
    with pairs_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    files = [metrics_path, pairs_path, *save_confusion(total, table, folder, "confusion_matrix")]
    target = publish_folder(folder, Path(report_dir), "report", pairs=len(pairs))
    return ManyResult(target, metrics, tuple(target / f.name for f in files))


def confusion_on_map(
    prediction: Path,
    truth: Path | None,
    grid: Grid,
    table: ClassTable,
    size: int,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The (K, K) confusion matrix (truth rows) of a map and a reference read on the map's grid."""
    if truth is None:
        raise InputError(f"{prediction}: no reference mask pairs with it")
    reader = mask_reader(grid, str(prediction), str(truth), table)
    matrix = np.zeros((size, size), np.int64)
    with open_raster(prediction) as pred_ds:
        require_single_band_integer(pred_ds, purpose="evaluate")
        band_rows = block_layout(pred_ds).aligned_rows(BAND_ROWS_PX)
        for window in grid.row_bands(band_rows):
            pred = pred_ds.read(1, window=window).astype(np.int64).ravel()
            ref = reader.read(window).astype(np.int64).ravel()
            keep = (ref < size) & (pred < size)
            for nodata, values in ((table.nodata, ref), (pred_ds.nodata, pred)):
                if nodata is not None:
                    keep &= values != int(nodata)
            matrix += np.bincount(ref[keep] * size + pred[keep], minlength=size * size).reshape(
                size, size
            )
            if progress is not None:
                progress(int(window.height))
    return matrix


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
