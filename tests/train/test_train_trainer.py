"""The training loop: run files, checkpoint round trip, reproducibility, resume, failures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from geotiler.catalog import ClassTable
from geotiler.errors import InputError, OutputExistsError, TrainingError
from geotiler.train.checkpoint import load_checkpoint
from geotiler.train.run_files import read_metrics
from geotiler.train.settings import TrainSettings
from geotiler.train.trainer import Callbacks, EpochReport, train

TIMING = {"seconds", "tiles_per_s", "val_seconds"}


@pytest.fixture
def tiny_preset(tmp_path: Path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text("architecture: unet\narguments: {widths: [4, 8, 16]}\n")
    return str(path)


def _settings(preset: str, **changes: Any) -> TrainSettings:
    base = {"model": preset, "epochs": 3, "batch_size": 4, "lr": 0.01, "seed": 5}
    return TrainSettings(**{**base, **changes})


def _rows(run: Path) -> list[dict[str, float]]:
    return [
        {k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run / "metrics.csv")
    ]


def test_a_run_writes_self_describing_checkpoints(
    fake_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    reports: list[EpochReport] = []
    result = train(
        fake_store, tmp_path / "run", _settings(tiny_preset, epochs=2),
        callbacks=Callbacks(on_epoch_end=reports.append),
    )  # fmt: skip
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {
        "best.pt", "last.pt", "metrics.csv", "confusion_matrix.csv", "confusion_matrix.png"
    }  # fmt: skip
    assert [r.epoch for r in reports] == [1, 2] and result.epochs_run == 2
    assert len(read_metrics(run / "metrics.csv")) == 2
    raw = torch.load(run / "last.pt", weights_only=True)
    assert raw["bands"] == ["B02", "B03", "B04"] and raw["tile_size"] == 36
    assert raw["model"]["architecture"] == "unet" and raw["settings"]["epochs"] == 2
    assert raw["best"]["epoch"] == result.best_epoch
    assert raw["best"]["val_miou"] == pytest.approx(result.best.miou, rel=1e-5)
    model, meta = load_checkpoint(run / "last.pt")
    assert isinstance(meta["classes"], ClassTable) and meta["classes"].names[2] == "forest"
    for key, value in model.state_dict().items():
        assert torch.equal(value, raw["state_dict"][key])
    image = torch.randn(1, 3, 36, 36)
    with torch.no_grad():
        assert model(image).shape == (1, 4, 36, 36)


def test_same_seed_same_metrics_and_resume_continues_exactly(
    fake_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    settings = _settings(tiny_preset, epochs=3)
    train(fake_store, tmp_path / "full", settings)

    def interrupt(report: EpochReport) -> None:
        if report.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fake_store, tmp_path / "cut", settings, callbacks=Callbacks(on_epoch_end=interrupt))
    _same(_rows(tmp_path / "cut"), _rows(tmp_path / "full")[:2])
    result = train(fake_store, tmp_path / "cut", settings, resume=True)
    assert result.epochs_run == 3
    full, resumed = _rows(tmp_path / "full"), _rows(tmp_path / "cut")
    assert len(resumed) == 3
    _same(resumed, full)


def _same(rows: list[dict[str, float]], expected: list[dict[str, float]]) -> None:
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert row == pytest.approx(want, rel=1e-5, nan_ok=True)


def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    fake_store: Path, tiny_preset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geotiler.train import trainer

    real = trainer.build_loss
    calls = {"n": 0}

    def poisoned(spec: str, ctx: Any) -> Any:
        loss = real(spec, ctx)

        def compute(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            value = loss(logits, target)
            return value * math.nan if calls["n"] > 8 else value  # epoch 2, 2nd batch

        return compute

    monkeypatch.setattr(trainer, "build_loss", poisoned)
    with pytest.raises(
        TrainingError, match=r"loss became NaN/inf in epoch 2; .*last.pt keeps epoch 1"
    ):
        train(fake_store, tmp_path / "run", _settings(tiny_preset, epochs=3))
    _, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    assert meta["epoch"] == 1


def test_resume_refuses_a_corrupt_checkpoint(
    fake_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        train(fake_store, run, _settings(tiny_preset), resume=True)


def test_an_existing_run_is_kept_unless_overwrite(
    fake_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    # A folder of the user's is never replaced, not even with overwrite.
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="never replaced"):
            train(fake_store, run, _settings(tiny_preset, epochs=1), overwrite=overwrite)
    assert (run / "notes.txt").read_text() == "mine"
    mine = tmp_path / "mine"
    train(fake_store, mine, _settings(tiny_preset, epochs=1))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(fake_store, mine, _settings(tiny_preset, epochs=1))
    train(fake_store, mine, _settings(tiny_preset, epochs=1), overwrite=True)
    assert (mine / "best.pt").is_file()


def test_early_stopping_ends_a_run_that_stopped_improving(
    fake_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    settings = _settings(tiny_preset, epochs=6, lr=1e-9, lr_schedule="none", early_stopping=1)
    result = train(fake_store, tmp_path / "run", settings)
    assert result.stopped_early and result.epochs_run < 6


@pytest.mark.parametrize(
    ("optimizer", "lr_schedule"), [("sgd", "plateau"), ("adam", "step"), ("adamw", "cosine")]
)
def test_optimisers_and_schedules_train_and_checkpoint(
    fake_store: Path, tiny_preset: str, tmp_path: Path, optimizer: str, lr_schedule: str
) -> None:
    settings = _settings(
        tiny_preset, epochs=1, optimizer=optimizer, lr_schedule=lr_schedule, loss="focal:2+jaccard",
        class_weights=True,
    )  # fmt: skip
    train(fake_store, tmp_path / "run", settings)
    raw = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert raw["settings"]["optimizer"] == optimizer


def test_metrics_log_the_learning_rate_the_epoch_trained_with(
    fake_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    # A step schedule halves the rate after each epoch: epoch 1 trains at lr, epoch 2 at lr / 2.
    settings = _settings(tiny_preset, epochs=2, lr_schedule="step", step_size=1, gamma=0.5)
    train(fake_store, tmp_path / "run", settings)
    assert [r["lr"] for r in read_metrics(tmp_path / "run" / "metrics.csv")] == [
        pytest.approx(0.01),
        pytest.approx(0.005),
    ]


def test_resuming_with_more_epochs_continues_the_one_cycle_instead_of_restarting_it(
    fake_store: Path, tiny_preset: str, tmp_path: Path
) -> None:
    train(fake_store, tmp_path / "run", _settings(tiny_preset, epochs=2))
    train(fake_store, tmp_path / "run", _settings(tiny_preset, epochs=4), resume=True)
    train(fake_store, tmp_path / "planned", _settings(tiny_preset, epochs=4))
    resumed = [r["lr"] for r in read_metrics(tmp_path / "run" / "metrics.csv")]
    planned = [r["lr"] for r in read_metrics(tmp_path / "planned" / "metrics.csv")]
    # The resumed epochs follow the schedule a 4-epoch run has from its third epoch on: no fresh
    # warm-up from lr / 25, no collapse to the end of a cycle.
    assert resumed[2:] == pytest.approx(planned[2:], rel=1e-4)
    assert resumed[2] > 0.3 * 0.01


def test_the_plateau_schedule_takes_patience_and_gamma() -> None:
    from torch import nn

    from geotiler.train.optim import build_optimizer, build_schedule

    settings = TrainSettings(lr=0.1, lr_schedule="plateau", patience=5, gamma=0.3)
    optimizer = build_optimizer(nn.Linear(2, 2), settings)
    plateau = build_schedule(optimizer, settings, epochs=3, steps_per_epoch=2).scheduler
    assert (plateau.patience, plateau.factor) == (5, 0.3)


def test_settings_saved_before_the_rename_still_load() -> None:
    # Checkpoints written before --lr-schedule store the key "scheduler".
    assert TrainSettings.model_validate({"scheduler": "step"}).lr_schedule == "step"


def test_the_new_name_wins_over_a_legacy_scheduler_key() -> None:
    # A preset from before the rename under a pipeline that uses the new name.
    settings = TrainSettings.model_validate({"scheduler": "onecycle", "lr_schedule": "plateau"})
    assert settings.lr_schedule == "plateau"
