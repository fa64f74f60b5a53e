"""Segmentation metrics from one confusion matrix accumulated over an epoch.

The matrix is (K, K) with truth in rows and prediction in columns; pixels whose truth is the
nodata id are never counted. From it: per-class IoU, Dice/F1, precision and recall, overall pixel
accuracy, and macro mIoU. The macro mean runs over the classes present in the truth: a truth class
the model never predicts counts with IoU 0, and a class only in the prediction is not averaged (its
false positives already lower the IoU of the truth classes they took). Saving the matrix writes a
CSV and, when matplotlib is installed, a PNG.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from geotiler.catalog import ClassTable

if TYPE_CHECKING:  # evaluate scores maps with this module and needs no torch
    from torch import Tensor


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, nodata: int | None = None
) -> Tensor:
    """(K, K) int64 counts of (truth, prediction) over labelled pixels of one batch."""
    truth = target.reshape(-1)
    guess = pred.reshape(-1)
    keep = (truth >= 0) & (truth < num_classes)
    if nodata is not None:
        keep &= truth != nodata
    index = truth[keep] * num_classes + guess[keep]
    counts = index.bincount(minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class ClassScores:
    """Metrics of one class (NaN where undefined: e.g. precision of a class never predicted)."""

    id: int
    name: str
    iou: float
    dice: float
    precision: float
    recall: float
    support: int


@dataclass(frozen=True)
class Scores:
    """Metrics of one epoch."""

    pixel_accuracy: float
    miou: float
    mean_dice: float
    classes: tuple[ClassScores, ...]

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat name -> value (``val_miou``, ``val_iou_3`` ...) for metrics.csv and TensorBoard."""
        row = {
            f"{prefix}pixel_accuracy": self.pixel_accuracy,
            f"{prefix}miou": self.miou,
            f"{prefix}mean_dice": self.mean_dice,
        }
        for c in self.classes:
            row.update(
                {
                    f"{prefix}iou_{c.id}": c.iou,
                    f"{prefix}dice_{c.id}": c.dice,
                    f"{prefix}precision_{c.id}": c.precision,
                    f"{prefix}recall_{c.id}": c.recall,
                    f"{prefix}support_{c.id}": float(c.support),
                }
            )
        return row

    @classmethod
    def from_dict(cls, row: dict[str, float], names: dict[int, str], prefix: str = "") -> Scores:
        """The inverse of :meth:`as_dict` (missing values NaN)."""

        def get(key: str) -> float:
            return float(row.get(prefix + key, math.nan))

        classes = tuple(
            ClassScores(
                id=cid,
                name=name,
                iou=get(f"iou_{cid}"),
                dice=get(f"dice_{cid}"),
                precision=get(f"precision_{cid}"),
                recall=get(f"recall_{cid}"),
                support=int(row.get(f"{prefix}support_{cid}", 0) or 0),
            )
            for cid, name in names.items()
            if f"{prefix}iou_{cid}" in row
        )
        return cls(get("pixel_accuracy"), get("miou"), get("mean_dice"), classes)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else math.nan


def scores_from_confusion(
    matrix: np.ndarray, class_ids: Sequence[int], names: dict[int, str]
) -> Scores:
    """Metrics from a (K, K) confusion matrix, reported for ``class_ids`` (nodata excluded)."""
    cm = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    classes = []
    present_iou: list[float] = []
    present_dice: list[float] = []
    for cid in class_ids:
        if cid >= cm.shape[0]:
            continue
        union = tp[cid] + fp[cid] + fn[cid]
        iou = _ratio(tp[cid], union)
        dice = _ratio(2 * tp[cid], 2 * tp[cid] + fp[cid] + fn[cid])
        if tp[cid] + fn[cid] > 0:  # present in the truth
            present_iou.append(iou)
            present_dice.append(dice)
        classes.append(
            ClassScores(
                id=cid,
                name=names.get(cid, str(cid)),
                iou=iou,
                dice=dice,
                precision=_ratio(tp[cid], tp[cid] + fp[cid]),
                recall=_ratio(tp[cid], tp[cid] + fn[cid]),
                support=int(tp[cid] + fn[cid]),
            )
        )
    total = cm.sum()
    return Scores(
        pixel_accuracy=_ratio(tp.sum(), total),
        miou=float(np.mean(present_iou)) if present_iou else math.nan,
        mean_dice=float(np.mean(present_dice)) if present_dice else math.nan,
        classes=tuple(classes),
    )


def scores_for_table(matrix: np.ndarray, classes: ClassTable) -> Scores:
    """:func:`scores_from_confusion` over the class table's classes."""
    return scores_from_confusion(matrix, classes.ids, classes.names)


def save_confusion(matrix: np.ndarray, classes: ClassTable, folder: Path, stem: str) -> list[Path]:
    """Write ``<stem>.csv`` (truth rows, prediction columns, class ids) and ``<stem>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = [cid for cid in classes.ids if cid < matrix.shape[0]]
    sub = np.asarray(matrix)[np.ix_(ids, ids)]
    csv_path = folder / f"{stem}.csv"
    tmp = csv_path.with_name(f".{csv_path.name}.partial")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["truth\\pred", *[f"{cid}:{classes.names[cid]}" for cid in ids]])
        for cid, row in zip(ids, sub, strict=True):
            writer.writerow([f"{cid}:{classes.names[cid]}", *[int(v) for v in row]])
    tmp.replace(csv_path)
    written = [csv_path]
    png = _plot_confusion(sub, [classes.names[cid] for cid in ids], folder / f"{stem}.png")
    if png is not None:
        written.append(png)
    return written


def _plot_confusion(matrix: np.ndarray, names: list[str], path: Path) -> Path | None:
    from geotiler.errors import InputError
    from geotiler.figures import confusion_figure
    from geotiler.quicklook import pyplot

    try:
        plt = pyplot()
    except InputError:  # optional: pip install geotiler[plots]
        return None
    fig = confusion_figure(matrix, names)
    tmp = path.with_name(f".{path.stem}.partial.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
