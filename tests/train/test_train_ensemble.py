"""The pixel baseline in every run, --model pixel-gbm, and predict/export honouring the choice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from geotiler.cli import app
from geotiler.errors import InputError
from geotiler.export import export_model
from geotiler.inference import (
    EnsemblePredictor,
    PixelPredictor,
    TorchPredictor,
    load_predictor,
)
from geotiler.train.baseline import PixelBaseline
from geotiler.train.checkpoint import load_checkpoint, save_checkpoint
from geotiler.train.distributed import Runtime
from geotiler.train.ensemble import MEMBERS, BaselineReferee, choose_member
from geotiler.train.features import FeatureSpec
from geotiler.train.run_files import read_metrics
from geotiler.train.settings import TrainSettings
from geotiler.train.trainer import train

TINY = "architecture: unet\narguments: {widths: [4, 8, 16]}\n"


@pytest.fixture
def tiny_preset(tmp_path: Path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return str(path)


def _settings(preset: str, **changes: Any) -> TrainSettings:
    base = {"model": preset, "epochs": 2, "batch_size": 4, "lr": 0.01, "seed": 3}
    return TrainSettings(**{**base, **changes})


def test_choose_member_takes_the_best_and_prefers_the_average_on_ties() -> None:
    assert choose_member({"network": 0.3, "pixel-gbm": 0.25, "ensemble": 0.33}) == "ensemble"
    assert choose_member({"network": 0.4, "pixel-gbm": 0.25, "ensemble": 0.33}) == "network"
    assert choose_member({"network": 0.2, "pixel-gbm": 0.5, "ensemble": 0.4}) == "pixel-gbm"
    assert choose_member({"network": 0.3, "pixel-gbm": 0.3, "ensemble": 0.3}) == "ensemble"
    assert choose_member({"network": 0.2, "pixel-gbm": 0.5}, allowed=False) == "network"
    assert MEMBERS[0] == "ensemble"


def test_the_referee_scores_all_members_on_the_same_pixels() -> None:
    masks = np.array([[[1, 2], [0, 2]], [[2, 2], [1, 1]]], np.uint8)  # two 2x2 tiles
    images = np.zeros((2, 1, 2, 2), np.float32)
    constant = PixelBaseline(FeatureSpec(bands=("a",)), [2], 3, None)  # always class 2
    referee = BaselineReferee(
        constant, lambda i: (images[i], masks[i]), [0, 1], num_classes=3, nodata=0, tile_size=2
    )
    assert referee.compared_pixels == 7  # the nodata pixel is not scored
    np.testing.assert_array_equal(referee.baseline_matrix[:, 2], [0, 3, 4])
    perfect = torch.nn.functional.one_hot(torch.from_numpy(masks.astype(np.int64)), 3)
    logits = 10 * perfect.permute(0, 3, 1, 2).float()
    referee.start()
    referee.add(logits[:1])
    referee.add(logits[1:])
    matrices = referee.finish(Runtime(torch.device("cpu")))
    assert np.trace(matrices["network"]) == 7  # perfect
    np.testing.assert_array_equal(matrices["pixel-gbm"], referee.baseline_matrix)
    # the 50/50 average: a certain baseline (1.0) outweighs an almost certain network (0.9999)
    np.testing.assert_array_equal(matrices["ensemble"], referee.baseline_matrix)


def test_every_run_scores_the_baseline_beside_the_network(
    fake_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    result = train(fake_store, tmp_path / "run", _settings(tiny_preset))
    run = tmp_path / "run"
    rows = read_metrics(run / "metrics.csv")
    assert all(0 <= r["baseline_val_miou"] <= 1 and 0 <= r["ensemble_val_miou"] <= 1 for r in rows)
    assert set(result.comparison) == {"network", "pixel-gbm", "ensemble"}
    assert result.chosen == choose_member(result.comparison)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["network"]["val_miou"] == pytest.approx(result.best.miou, abs=1e-5)
    assert metrics["pixel_baseline"]["val_miou"] == pytest.approx(
        result.comparison["pixel-gbm"], abs=1e-5
    )
    assert metrics["pixel_baseline"]["rounds"] >= 1 and metrics["pixel_baseline"]["pixels"] > 0
    assert metrics["chosen"] == result.chosen and "ensemble" in metrics
    raw = torch.load(run / "best.pt", weights_only=True)
    assert raw["baseline"]["kind"] == "pixel-gbm"
    assert raw["ensemble"]["use"] == result.chosen
    assert set(raw["ensemble"]["scores"]) == set(MEMBERS)
    assert raw["plan"]["choices"]["lr"]["given"] is True
    assert len(raw["band_low"]) == len(raw["band_high"]) == 3  # robust normalisation
    predictor = load_predictor(run / "best.pt", device="cpu")
    expected = {"network": TorchPredictor, "pixel-gbm": PixelPredictor}
    assert isinstance(predictor, expected.get(result.chosen, EnsemblePredictor))


def test_no_baseline_leaves_the_network_alone(
    fake_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    result = train(fake_store, tmp_path / "run", _settings(tiny_preset, baseline=False))
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert "baseline_val_miou" not in rows[0] and result.comparison == {}
    raw = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert raw["baseline"] is None and raw["ensemble"]["use"] == "network"
    assert isinstance(load_predictor(tmp_path / "run" / "best.pt"), TorchPredictor)
    with pytest.raises(InputError, match="has no pixel baseline"):
        load_predictor(tmp_path / "run" / "best.pt", use="baseline")


def test_an_ensemble_checkpoint_averages_and_onnx_refuses_to_drop_half(
    fake_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    train(fake_store, tmp_path / "run", _settings(tiny_preset, epochs=1))
    raw = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    raw["ensemble"]["use"] = "ensemble"
    path = save_checkpoint(tmp_path / "ensemble.pt", raw)
    both = load_predictor(path)
    assert isinstance(both, EnsemblePredictor)
    batch = np.random.default_rng(0).uniform(500, 3000, (2, 3, 36, 36)).astype(np.float32)
    network = load_predictor(path, use="network")(batch)
    pixel = load_predictor(path, use="baseline")(batch)
    np.testing.assert_allclose(both(batch), 0.5 * network + 0.5 * pixel, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="hold only the network"):
        export_model(path, tmp_path / "m.onnx")


def test_pixel_gbm_is_a_model_trained_predicted_and_exported_like_any(
    runner: CliRunner, real_store: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(real_store), "--model", "pixel-gbm", "-o", str(run)])
    assert result.exit_code == 0, result.output
    assert "pixel baseline val mIoU" in result.output
    raw = torch.load(run / "best.pt", weights_only=True)
    assert raw["model"]["architecture"] == "pixel-gbm" and raw["state_dict"] == {}
    assert read_metrics(run / "metrics.csv")[0]["val_miou"] > 0.5
    with pytest.raises(InputError, match="holds no network"):
        load_checkpoint(run / "best.pt")
    scene = real_store.parent / "scene.tif"
    out = tmp_path / "map.tif"
    predicted = runner.invoke(
        app, ["predict", str(scene), "-o", str(out), "--model", str(run / "best.pt")]
    )
    assert predicted.exit_code == 0, predicted.output
    with rasterio.open(out) as dataset, rasterio.open(real_store.parent / "mask.tif") as truth:
        labels, reference = dataset.read(1), truth.read(1)
    labelled = reference > 0
    assert (labels[labelled] == reference[labelled]).mean() > 0.8
    onnx = runner.invoke(app, ["export", str(run / "best.pt"), "-o", str(tmp_path / "m.onnx")])
    assert onnx.exit_code == 1 and "pixel-gbm model (LightGBM) has no ONNX export" in onnx.output
    slim = runner.invoke(app, ["export", str(run / "best.pt"), "-o", str(tmp_path / "slim.pt")])
    assert slim.exit_code == 0, slim.output
    again = tmp_path / "again.tif"
    args = ["predict", str(scene), "-o", str(again), "--model", str(tmp_path / "slim.pt"), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    with rasterio.open(again) as dataset:
        np.testing.assert_array_equal(dataset.read(1), labels)
    wrong = runner.invoke(app, [*args[:-1], "--use", "network", "--overwrite"])
    assert wrong.exit_code == 1 and "has no network" in wrong.output


def test_cli_reports_network_vs_baseline_and_predict_uses_each_member(
    runner: CliRunner, real_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(real_store), "-m", tiny_preset, "--epochs", "1", "-o", str(run)]
    )
    assert result.exit_code == 0, result.output
    assert "network val mIoU" in result.output and "vs pixel baseline" in result.output
    assert "baseline" in result.output.split("best epoch")[0]  # in the epoch line too
    scene = real_store.parent / "scene.tif"
    maps = {}
    for use in ("auto", "network", "baseline", "ensemble"):
        out = tmp_path / f"{use}.tif"
        args = ["predict", str(scene), "-o", str(out), "-m", str(run / "best.pt"), "--use", use]
        done = runner.invoke(app, [*args, "-q"])
        assert done.exit_code == 0, done.output
        with rasterio.open(out) as dataset:
            maps[use] = dataset.read(1)
    chosen = json.loads((run / "metrics.json").read_text())["chosen"]
    key = {"pixel-gbm": "baseline"}.get(chosen, chosen)
    np.testing.assert_array_equal(maps["auto"], maps[key])
    assert not np.array_equal(maps["network"], maps["baseline"])
