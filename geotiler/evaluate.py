"""Compare a predicted class map with a reference mask: metrics, confusion matrix, quick-look.

Both rasters must share one grid; a finer reference on an integer refinement of the prediction's
grid is first rescaled with ``mode`` (into the report folder). The comparison streams row bands,
accumulating one confusion matrix; pixels that are nodata in the reference or the prediction are
not scored (their counts are reported).

What is scored is what is there: every class of the reference counts, including classes the
model's table lacks or never predicts (IoU 0), and mIoU averages the classes present in the
reference. Class names come from ``classes`` (``--classes``) or the reference's own table, never
from the prediction's (it may be another dataset's); a value neither names is ``class N``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import Resampling

from geotiler import StageModule
from geotiler.catalog import ClassTable
from geotiler.errors import GridMismatchError, InputError
from geotiler.grid import Grid
from geotiler.io import block_layout, open_raster, read_class_table, require_single_band_integer
from geotiler.outputs import publish_folder, staging_folder, writes

log = logging.getLogger(__name__)

BAND_ROWS_PX = 1024
QUICKLOOK_PX = 1000
RescaleHook = Callable[[Path, Grid, Path], Path]


@dataclass(frozen=True)
class EvaluateResult:
    report_dir: Path
    metrics: dict[str, Any]
    files: tuple[Path, ...]


def confusion_of_rasters(
    prediction: str | PathLike[str],
    truth: str | PathLike[str],
    *,
    num_classes: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """The confusion matrix (truth rows) of two class rasters on one grid, by row bands.

    The matrix is at least ``num_classes`` square and grows to hold every value found, so no
    class of either raster is left out.
    """
    matrix = np.zeros((num_classes, num_classes), np.int64)
    skipped = {"truth_nodata": 0, "prediction_nodata": 0, "out_of_range": 0}
    with open_raster(prediction) as pred_ds, open_raster(truth) as truth_ds:
        band_rows = block_layout(pred_ds).aligned_rows(BAND_ROWS_PX)
        for window in Grid.from_dataset(pred_ds).row_bands(band_rows):
            pred = pred_ds.read(1, window=window).astype(np.int64).ravel()
            ref = truth_ds.read(1, window=window).astype(np.int64).ravel()
            keep = np.ones(ref.shape, bool)
            for key, dataset, values in (
                ("truth_nodata", truth_ds, ref),
                ("prediction_nodata", pred_ds, pred),
            ):
                if dataset.nodata is not None:
                    bad = keep & (values == int(dataset.nodata))
                    skipped[key] += int(bad.sum())
                    keep &= ~bad
            inside = (ref >= 0) & (pred >= 0)
            skipped["out_of_range"] += int((keep & ~inside).sum())
            keep &= inside
            if keep.any():
                top = int(max(ref[keep].max(), pred[keep].max())) + 1
                if top > len(matrix):
                    matrix = np.pad(matrix, ((0, top - len(matrix)), (0, top - len(matrix))))
            size = len(matrix)
            index = ref[keep] * size + pred[keep]
            matrix += np.bincount(index, minlength=size**2).reshape(matrix.shape)
            if progress is not None:
                progress(int(window.height))
    return matrix, skipped


@writes("report_dir", "report", inputs=lambda a: [a["prediction"], a["truth"], a["scene"]])
def evaluate(
    prediction: str | PathLike[str],
    truth: str | PathLike[str],
    report_dir: str | PathLike[str],
    *,
    classes: ClassTable | None = None,
    scene: str | PathLike[str] | None = None,
    rescale: RescaleHook | None = None,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> EvaluateResult:
    """Score ``prediction`` against ``truth`` and write the report into ``report_dir``.

    The report is built in a temporary folder and moved into place when complete; an existing
    report folder is replaced only with ``overwrite`` (and only one geotiler wrote).
    """
    from geotiler.train.metrics import save_confusion, scores_from_confusion

    folder = staging_folder(report_dir)
    with open_raster(prediction) as pred_ds:
        require_single_band_integer(pred_ds, purpose="evaluate")
        pred_grid = Grid.from_dataset(pred_ds)
    with open_raster(truth) as truth_ds:
        require_single_band_integer(truth_ds, purpose="evaluate")
        truth_table = read_class_table(truth_ds)
    named_by = "--classes" if classes is not None else "truth" if truth_table else "ids"
    named = classes or truth_table
    truth_path = _truth_on_grid(Path(truth), pred_grid, folder, rescale)
    size = max([*(named.ids if named else [0]), (named.nodata if named else None) or 0]) + 1
    matrix, skipped = confusion_of_rasters(
        prediction, truth_path, num_classes=size, progress=progress
    )
    if matrix.sum() == 0:
        raise InputError(f"{truth}: no pixel is labelled in both the reference and the prediction")
    table = scoring_table(matrix, named, name=Path(truth).stem)
    scores = scores_from_confusion(matrix, table.ids, table.names)
    metrics = {
        "prediction": str(prediction),
        "truth": str(truth),
        "class_names_from": named_by,
        "classes_in_truth": int((matrix.sum(axis=1) > 0).sum()),
        "pixels_scored": int(matrix.sum()),
        "pixels_skipped": skipped,
        "pixel_accuracy": scores.pixel_accuracy,
        "miou": scores.miou,
        "macro_f1": scores.mean_dice,
        "macro_precision": _nanmean([c.precision for c in scores.classes]),
        "macro_recall": _nanmean([c.recall for c in scores.classes]),
        "classes": [
            {
                "id": c.id,
                "name": c.name,
                "iou": c.iou,
                "f1": c.dice,
                "precision": c.precision,
                "recall": c.recall,
                "support": c.support,
            }
            for c in scores.classes
        ],
    }
    metrics_path = folder / "metrics.json"
    metrics_path.write_text(json.dumps(_json_safe(metrics), indent=2) + "\n", encoding="utf-8")
    files = [metrics_path, *save_confusion(matrix, table, folder, "confusion_matrix")]
    quicklook = write_quicklook(
        folder / "quicklook.png", prediction, truth_path, table, scene=scene
    )
    if quicklook is not None:
        files.append(quicklook)
    target = publish_folder(folder, Path(report_dir), "report", prediction=str(prediction))
    return EvaluateResult(
        report_dir=target, metrics=metrics, files=tuple(target / f.name for f in files)
    )


def scoring_table(matrix: np.ndarray, named: ClassTable | None, *, name: str) -> ClassTable:
    """The classes to report: ``named``'s, plus every value found in either raster (``class N``).

    Values of the named table's nodata are not classes. mIoU then averages the classes of this
    table present in the reference (:func:`geotiler.train.metrics.scores_from_confusion`).
    """
    from geotiler.catalog import ClassInfo
    from geotiler.quicklook import palette

    found = np.flatnonzero((matrix.sum(axis=0) + matrix.sum(axis=1)) > 0).tolist()
    nodata = named.nodata if named is not None else None
    known = list(named.classes) if named is not None else []
    extra = [v for v in found if v not in {c.id for c in known} and v != nodata]
    if not extra and named is not None:
        return named
    try:
        colours = palette(named, extra)
    except InputError:  # no matplotlib: grey
        colours = np.full((256, 4), 0.5)
    added = [ClassInfo(id=v, name=f"class {v}", color=_hex(colours[v])) for v in extra]
    base = named.name if named is not None else name
    return ClassTable(name=base, nodata=nodata, classes=tuple(known + added))


def _hex(rgba: np.ndarray) -> str:
    red, green, blue = (round(255 * float(c)) for c in rgba[:3])
    return f"#{red:02x}{green:02x}{blue:02x}"


def _truth_on_grid(truth: Path, grid: Grid, folder: Path, rescale: RescaleHook | None) -> Path:
    with open_raster(truth) as truth_ds:
        require_single_band_integer(truth_ds, purpose="evaluate")
        truth_grid = Grid.from_dataset(truth_ds)
    if truth_grid.almost_equals(grid):
        return truth
    factor = truth_grid.refinement_factor(grid)
    if factor is None or rescale is None:
        raise GridMismatchError(
            f"{truth}: its grid ({truth_grid.describe()}) is not the prediction's "
            f"({grid.describe()}); rescale it first with `geotiler rescale {truth} --like PRED`"
        )
    log.info("rescaling %s %dx with mode onto the prediction grid", truth, factor)
    return rescale(truth, grid, folder / "truth_on_prediction_grid.tif")


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_quicklook(
    path: Path,
    prediction: str | PathLike[str],
    truth: str | PathLike[str],
    classes: ClassTable,
    *,
    scene: str | PathLike[str] | None = None,
) -> Path | None:
    """A PNG of (scene,) prediction and truth side by side, with a legend of class names."""
    from geotiler.quicklook import class_name, class_preview, palette, pyplot

    try:
        plt = pyplot()
    except InputError:  # optional: pip install geotiler[plots]
        log.info("matplotlib is not installed: no quick-look PNG")
        return None
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from geotiler.figures import fit_legend, fit_title

    panels: list[tuple[str, np.ndarray]] = []
    if scene is not None:
        panels.append(("scene", rgb_preview(scene)))
    panels += [("prediction", class_preview(prediction)), ("reference", class_preview(truth))]
    values = sorted(
        set(classes.ids) | {int(v) for _, p in panels if p.ndim == 2 for v in np.unique(p)}
    )
    values = [v for v in values if v != classes.nodata]
    colours = palette(classes, values)
    if classes.nodata is not None:
        colours[classes.nodata] = (0, 0, 0, 0)
    cmap = ListedColormap(colours)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5.6), layout="constrained")
    for ax, (_, image) in zip(np.atleast_1d(axes), panels, strict=True):
        if image.ndim == 3:
            ax.imshow(image)
        else:
            ax.imshow(image, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        ax.set_axis_off()
    handles = [Patch(color=colours[v], label=f"{v} {class_name(classes, v)}") for v in values]
    fit_legend(fig, handles, max_columns=4, fontsize=8)
    for ax, (title, _) in zip(np.atleast_1d(axes), panels, strict=True):
        fit_title(ax, title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def rgb_preview(path: str | PathLike[str]) -> np.ndarray:
    """A scene's colour picture (bands by :func:`geotiler.figures.rgb_band_order`), stretched."""
    from geotiler.figures import rgb_band_order

    with open_raster(path) as dataset:
        interp = [c.name for c in dataset.colorinterp]
        indexes = list(rgb_band_order(dataset.descriptions, dataset.count, interp))
        scale = max(1, math.ceil(max(dataset.height, dataset.width) / QUICKLOOK_PX))
        shape = (3, max(1, dataset.height // scale), max(1, dataset.width // scale))
        rgb = dataset.read(indexes, out_shape=shape, resampling=Resampling.average).astype(
            np.float32
        )
    low, high = np.percentile(rgb[rgb > 0], (2, 98)) if (rgb > 0).any() else (0.0, 1.0)
    stretched = np.clip((rgb - low) / max(high - low, 1e-6), 0, 1)
    return np.moveaxis(stretched, 0, -1)


# geotiler.evaluate(...) calls the API function (see geotiler.StageModule).
sys.modules[__name__].__class__ = StageModule
