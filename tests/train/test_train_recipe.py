"""The training recipe: choices from the fingerprint of small, large, sparse, many-class stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from geotiler.catalog import ClassTable
from geotiler.cli import app
from geotiler.errors import InputError
from geotiler.train.fingerprint import DataFingerprint, robust_band_stats
from geotiler.train.recipe import AUTO_STEPS, WEIGHT_RANGE, plan_training
from geotiler.train.settings import TrainSettings


def write_store(
    path: Path,
    *,
    tiles: int = 40,
    size: int = 64,
    bands: int = 3,
    classes: int = 3,
    labelled: float = 1.0,
    val_share: float = 0.25,
    rare: bool = False,
    balanced: bool = False,
    seed: int = 0,
) -> Path:
    """A FakeStore (see conftest) with the given shape; class 1 dominates when ``rare``."""
    rng = np.random.default_rng(seed)
    masks = rng.integers(1, classes + 1, (tiles, size, size)).astype(np.uint8)
    if rare:
        masks[rng.random(masks.shape) < 0.95] = 1
    masks[rng.random(masks.shape) >= labelled] = 0
    images = rng.integers(100, 3000, (tiles, bands, size, size)).astype(np.uint16)
    split = np.zeros(tiles, np.int64)
    split[: round(tiles * val_share)] = 1
    table = ClassTable.model_validate(
        {
            "name": "gen",
            "nodata": 0,
            "classes": [
                {"id": c, "name": f"c{c}", "color": "#102030"} for c in range(1, classes + 1)
            ],
        }
    )
    meta: dict[str, Any] = {
        "tile_size": size,
        "bands": [f"band{b}" for b in range(bands)],
        "classes": table.model_dump(mode="json"),
        "band_mean": [1000.0] * bands,
        "band_std": [500.0] * bands,
        "class_weights": [0.0] + [1.0] * classes,
    }
    weight = rng.uniform(0.5, 2.0, tiles) if balanced else np.ones(tiles)
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps(meta))
    np.savez(
        path / "tiles.npz", images=images, masks=masks, split=split,
        keep=np.ones(tiles, bool), weight=weight,
    )  # fmt: skip
    return path


@pytest.fixture
def stores(tmp_path: Path, fake_store_factory):  # type: ignore[no-untyped-def]
    """``stores(name, **shape)``: a generated store, read through the FakeStore reader."""
    return lambda name, **kw: write_store(tmp_path / name, **kw)


def _plan(path: Path, device: str = "cpu", **given: Any):  # type: ignore[no-untyped-def]
    return plan_training(DataFingerprint.read(path), TrainSettings(**given), device=device)


def test_small_store(stores) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(stores("small", tiles=10, size=32))
    fp = plan.fingerprint
    assert fp["train_tiles"] > 0 and fp["val_tiles"] > 0
    assert plan.settings.model == "unet-tiny"  # 3 bands, 3 classes on a CPU
    assert plan.settings.batch_size == 2  # at most a quarter of the 8 training tiles
    assert plan.budget_s == 15 * 60 and plan.max_steps == AUTO_STEPS[0]
    assert plan.settings.epochs is None
    assert not plan.settings.class_weights and plan.class_weights is None


def test_large_store(stores) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(stores("large", tiles=400, size=64, bands=10))
    assert plan.settings.model == "unet-small"  # 10 bands
    assert plan.settings.batch_size == 16  # ~65 k px a step
    assert plan.settings.lr == pytest.approx(5e-3)
    assert plan.max_steps == min(40 * 19, AUTO_STEPS[1])  # 300 train tiles / 16 = 19 steps
    gpu = _plan(stores("large-gpu", tiles=400, size=64, bands=10), device="cuda")
    assert gpu.settings.batch_size == 64 and gpu.budget_s == 3600


def test_sparse_store_doubles_the_batch(stores) -> None:  # type: ignore[no-untyped-def]
    dense = _plan(stores("dense", tiles=200, size=64))
    sparse = _plan(stores("sparse", tiles=200, size=64, labelled=0.3))
    assert sparse.fingerprint["labelled_share"] == pytest.approx(0.3, abs=0.02)
    assert sparse.settings.batch_size == 2 * dense.settings.batch_size
    assert "labelled" in sparse.choices["batch_size"].reason


def test_many_classes_imbalanced_get_a_wider_net_and_mild_weights(stores) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(stores("many", tiles=60, size=32, classes=12, rare=True))
    assert plan.settings.model == "unet-small"
    assert plan.settings.class_weights is True
    weights = np.asarray(plan.class_weights)
    assert weights[0] == 0  # nodata
    assert WEIGHT_RANGE[0] <= weights[1:].min() and weights[1:].max() <= WEIGHT_RANGE[1]
    assert weights[1] == WEIGHT_RANGE[0] < weights[2]  # the dominant class weighs least
    # tiles already sampled towards rare classes: no loss weights on top
    balanced = _plan(
        stores("many-balanced", tiles=60, size=32, classes=12, rare=True, balanced=True)
    )
    assert balanced.settings.class_weights is False and balanced.class_weights is None


def test_given_settings_are_kept_and_marked(stores) -> None:  # type: ignore[no-untyped-def]
    path = stores("given", tiles=40)
    plan = _plan(path, model="unet-small", batch_size=5, lr=0.02, loss="ce", epochs=3)
    assert plan.settings.batch_size == 5 and plan.settings.lr == 0.02
    assert plan.settings.loss == "ce" and plan.settings.epochs == 3
    assert plan.budget_s is None
    assert all(plan.choices[k].given for k in ("model", "batch_size", "lr", "loss", "epochs"))
    timed = _plan(path, time="90s")
    assert timed.budget_s == 90 and timed.max_steps is None and timed.choices["time"].given
    pixel = _plan(path, model="pixel-gbm")
    assert pixel.is_pixel_model and "batch_size" not in pixel.choices


def test_an_empty_split_is_a_clear_error(stores) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="no kept tiles in the 'val' split"):
        DataFingerprint.read(stores("noval", tiles=8, val_share=0))


def test_robust_statistics_ignore_clouds_and_fill(stores) -> None:  # type: ignore[no-untyped-def]
    path = stores("clouds", tiles=20, size=32, bands=2)
    arrays = dict(np.load(path / "tiles.npz"))
    arrays["images"][:, :, :2] = 60000  # bright clouds over 6 % of the pixels
    arrays["images"][:, :, :, :3] = 0  # fill
    np.savez(path / "tiles.npz", **arrays)
    norm = robust_band_stats(DataFingerprint.read(path))
    assert norm.low is not None and norm.high is not None
    assert norm.low[0] >= 100 and norm.high[0] == 60_000  # fill outside; p99 is in the clouds
    assert 1400 < norm.mean[0] < 1700  # the clear values' mean (~1550), not pulled up by clouds
    assert 700 < norm.std[0] < 1000  # theirs too (~840)


def test_cli_prints_and_saves_the_plan(runner: CliRunner, real_store: Path, tmp_path: Path) -> None:
    preset = tmp_path / "t.yaml"
    preset.write_text("architecture: unet\narguments: {widths: [4, 8]}\n")
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(real_store), "-m", str(preset), "--epochs", "1", "-o", str(run)]
    )
    assert result.exit_code == 0, result.output
    assert "training plan" in result.output and "batch_size" in result.output
    plan = json.loads((run / "plan.json").read_text())
    assert plan["choices"]["batch_size"]["given"] is False
    assert plan["choices"]["epochs"] == {"value": 1, "reason": "given", "given": True}
    assert plan["fingerprint"]["train_tiles"] > 0
