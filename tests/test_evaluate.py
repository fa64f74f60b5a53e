from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.errors import GridMismatchError
from geotiler.evaluate import confusion_of_rasters, evaluate

CLASSES = ClassTable(
    name="toy",
    nodata=0,
    classes=(
        ClassInfo(id=1, name="field", color="#ffff00"),
        ClassInfo(id=2, name="forest", color="#00aa00"),
        ClassInfo(id=3, name="water", color="#0000ff", tags=("water",)),
    ),
)


def hand_made_pair(write_raster) -> tuple[Path, Path]:
    truth = np.array(
        [
            [1, 1, 2, 2],
            [1, 1, 2, 2],
            [3, 3, 0, 0],
            [3, 3, 3, 0],
        ],
        np.uint8,
    )
    pred = np.array(
        [
            [1, 2, 2, 2],
            [1, 1, 2, 1],
            [3, 1, 2, 1],
            [3, 3, 0, 3],
        ],
        np.uint8,
    )
    return write_raster("pred.tif", pred, nodata=0), write_raster("truth.tif", truth, nodata=0)


def test_confusion_matrix_of_a_hand_made_pair(write_raster) -> None:
    pred, truth = hand_made_pair(write_raster)
    matrix, skipped = confusion_of_rasters(pred, truth, num_classes=4)
    expected = np.zeros((4, 4), int)
    # truth row, prediction column; truth nodata (3 px) and prediction nodata (1 px) skipped
    expected[1, 1], expected[1, 2] = 3, 1
    expected[2, 2], expected[2, 1] = 3, 1
    expected[3, 3], expected[3, 1] = 3, 1
    np.testing.assert_array_equal(matrix, expected)
    assert skipped["truth_nodata"] == 3
    assert skipped["prediction_nodata"] == 1


def test_evaluate_writes_metrics_and_pngs(write_raster, tmp_path) -> None:
    pred, truth = hand_made_pair(write_raster)
    result = evaluate(pred, truth, tmp_path / "report", classes=CLASSES)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["pixels_scored"] == 12
    assert metrics["pixel_accuracy"] == pytest.approx(9 / 12)
    # tp 3 each; false positives: field 2, forest 1, water 0; false negatives 1 each
    ious = {e["id"]: e["iou"] for e in metrics["classes"]}
    f1s = {e["id"]: e["f1"] for e in metrics["classes"]}
    assert ious == pytest.approx({1: 3 / 6, 2: 3 / 5, 3: 3 / 4})
    assert f1s == pytest.approx({1: 6 / 9, 2: 6 / 8, 3: 6 / 7})
    assert metrics["miou"] == pytest.approx((0.5 + 0.6 + 0.75) / 3, abs=1e-5)
    names = {p.name for p in result.files}
    assert {
        "metrics.json",
        "confusion_matrix.csv",
        "confusion_matrix.png",
        "quicklook.png",
    } <= names


def test_grids_must_match(write_raster, tmp_path) -> None:
    pred, _ = hand_made_pair(write_raster)
    other = write_raster("shifted.tif", np.ones((4, 4), np.uint8), origin=(250000.0, 4780000.0))
    with pytest.raises(GridMismatchError, match="rescale it first"):
        evaluate(pred, other, tmp_path / "r", classes=CLASSES)


def test_finer_truth_is_rescaled_with_mode_first(runner, write_raster, tmp_path) -> None:
    from geotiler.cli import app

    coarse = np.array([[1, 2], [3, 3]], np.uint8)
    fine = np.kron(coarse, np.ones((10, 10), np.uint8))
    fine[0:3, :] = 2  # a minority inside block (0, 0): mode keeps class 1
    pred = write_raster("pred.tif", coarse, nodata=0, resolution=10.0)
    truth = write_raster("truth_1m.tif", fine, nodata=0, resolution=1.0)
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(pred),
            "--truth",
            str(truth),
            "-o",
            str(tmp_path / "r"),
            "--classes",
            "catalonia12",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["pixel_accuracy"] == 1.0
    assert metrics["pixels_scored"] == 4


def test_a_truth_class_the_prediction_lacks_counts_with_iou_0(write_raster, tmp_path) -> None:
    from geotiler.io import write_class_metadata

    truth = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [4, 4, 0, 0], [4, 4, 4, 0]], np.uint8)
    pred = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [1, 2, 0, 0], [2, 1, 1, 0]], np.uint8)
    pred_path = write_raster("pred.tif", pred, nodata=0)
    write_class_metadata(pred_path, CLASSES)  # the model's table: no class 4
    truth_table = ClassTable(
        name="reference",
        nodata=0,
        classes=(
            ClassInfo(id=1, name="crops", color="#ffff00"),
            ClassInfo(id=2, name="woods", color="#00aa00"),
            ClassInfo(id=4, name="marsh", color="#00ffff"),
        ),
    )
    truth_path = write_raster("truth.tif", truth, nodata=0)
    write_class_metadata(truth_path, truth_table)
    metrics = evaluate(pred_path, truth_path, tmp_path / "r").metrics
    ious = {e["id"]: e["iou"] for e in metrics["classes"]}
    names = {e["id"]: e["name"] for e in metrics["classes"]}
    assert ious[4] == 0.0  # marsh is in the truth, never predicted
    assert ious[1] == pytest.approx(4 / 7) and ious[2] == pytest.approx(4 / 6)
    assert metrics["miou"] == pytest.approx((4 / 7 + 4 / 6 + 0) / 3, abs=1e-5)
    assert metrics["classes_in_truth"] == 3 and metrics["pixels_scored"] == 13
    assert names == {1: "crops", 2: "woods", 4: "marsh"}  # the truth's names, not the model's
    assert metrics["class_names_from"] == "truth"


def test_a_class_only_in_the_prediction_is_not_averaged(write_raster, tmp_path) -> None:
    truth = write_raster("t.tif", np.array([[1, 1], [2, 2]], np.uint8), nodata=0)
    pred = write_raster("p.tif", np.array([[1, 3], [2, 2]], np.uint8), nodata=0)
    metrics = evaluate(pred, truth, tmp_path / "r").metrics
    ious = {e["id"]: e["iou"] for e in metrics["classes"]}
    assert ious == {1: 0.5, 2: 1.0, 3: 0.0}
    assert metrics["miou"] == pytest.approx(0.75)  # over classes 1 and 2 of the truth
    assert metrics["class_names_from"] == "ids"
    assert {e["name"] for e in metrics["classes"]} == {"class 1", "class 2", "class 3"}


def test_quicklook_draws_any_class_map_with_a_legend(runner, write_raster, tmp_path) -> None:
    from geotiler.cli import app

    pytest.importorskip("matplotlib")
    labels = np.kron(np.array([[1, 2], [3, 7]], np.uint8), np.ones((30, 30), np.uint8))
    labels[:5] = 0
    plain = write_raster("plain.tif", labels, nodata=0)  # no class table at all
    result = runner.invoke(app, ["quicklook", str(plain)])
    assert result.exit_code == 0, result.output
    png = tmp_path / "plain.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(app, ["quicklook", str(plain)])
    assert again.exit_code == 1 and "--overwrite" in again.output
    named = runner.invoke(
        app, ["quicklook", str(plain), "-o", str(tmp_path / "q.png"), "--classes", "catalonia12"]
    )
    assert named.exit_code == 0, named.output
    same = runner.invoke(app, ["quicklook", str(plain), "-o", str(plain)])
    assert same.exit_code == 1 and "replace its own map" in same.output
