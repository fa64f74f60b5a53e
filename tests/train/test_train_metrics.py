"""Metrics against a confusion matrix worked out by hand."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from geotiler.catalog import ClassTable
from geotiler.train.metrics import confusion_matrix, save_confusion, scores_for_table

TABLE = ClassTable.model_validate(
    {
        "name": "t",
        "nodata": 0,
        "classes": [
            {"id": i, "name": n, "color": "#000000"}
            for i, n in [(1, "water"), (2, "forest"), (3, "urban"), (4, "quarry")]
        ],
    }
)
TRUTH = torch.tensor([1, 1, 1, 2, 2, 3, 0, 0])
PRED = torch.tensor([1, 1, 2, 2, 3, 3, 1, 2])


def test_confusion_matrix_skips_nodata() -> None:
    cm = confusion_matrix(PRED, TRUTH, 5, nodata=0).numpy()
    expected = np.zeros((5, 5), dtype=np.int64)
    expected[1, 1], expected[1, 2], expected[2, 2], expected[2, 3], expected[3, 3] = 2, 1, 1, 1, 1
    np.testing.assert_array_equal(cm, expected)


def test_scores_by_hand() -> None:
    scores = scores_for_table(confusion_matrix(PRED, TRUTH, 5, nodata=0).numpy(), TABLE)
    by_id = {c.id: c for c in scores.classes}
    assert (by_id[1].iou, by_id[1].dice, by_id[1].precision, by_id[1].recall) == pytest.approx(
        (2 / 3, 4 / 5, 1.0, 2 / 3)
    )
    assert (by_id[2].iou, by_id[2].dice, by_id[2].precision, by_id[2].recall) == pytest.approx(
        (1 / 3, 1 / 2, 1 / 2, 1 / 2)
    )
    assert (by_id[3].iou, by_id[3].dice, by_id[3].precision, by_id[3].recall) == pytest.approx(
        (1 / 2, 2 / 3, 1 / 2, 1.0)
    )
    assert by_id[1].support == 3 and by_id[4].support == 0
    assert math.isnan(by_id[4].iou)  # absent from truth and prediction: left out of the mean
    assert scores.pixel_accuracy == pytest.approx(4 / 6)
    assert scores.miou == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert scores.mean_dice == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)


def test_confusion_matrix_is_saved_as_csv_and_png(tmp_path: Path) -> None:
    cm = confusion_matrix(PRED, TRUTH, 5, nodata=0).numpy()
    written = save_confusion(cm, TABLE, tmp_path, "cm")
    rows = list(csv.reader((tmp_path / "cm.csv").open()))
    assert rows[0] == ["truth\\pred", "1:water", "2:forest", "3:urban", "4:quarry"]
    assert rows[1] == ["1:water", "2", "1", "0", "0"]
    pytest.importorskip("matplotlib")
    assert tmp_path / "cm.png" in written and (tmp_path / "cm.png").stat().st_size > 1000
