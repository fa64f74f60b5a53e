"""Training to a time budget: durations, the one-cycle shape, planning and a real 20 s run."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from geotiler.cli import app
from geotiler.train.baseline import import_lightgbm
from geotiler.train.budget import (
    END_FACTOR,
    START_FACTOR,
    TimeBudget,
    budget_schedule,
    one_cycle_factor,
    parse_duration,
)
from geotiler.train.run_files import read_metrics
from geotiler.train.settings import TrainSettings
from geotiler.train.trainer import train


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("45", 45), ("1.5m", 90)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "0s", "m10"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="time budget"):
        parse_duration(text)


def test_the_one_cycle_rises_then_anneals() -> None:
    assert one_cycle_factor(0) == pytest.approx(START_FACTOR)
    assert one_cycle_factor(0.25) == pytest.approx(1.0)
    assert one_cycle_factor(1.0) == pytest.approx(END_FACTOR)
    values = [one_cycle_factor(p / 100) for p in range(101)]
    peak = values.index(max(values))
    assert all(a <= b for a, b in itertools.pairwise(values[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(values[peak:]))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _simulate(budget: TimeBudget, clock: FakeClock, step_s: float, val_s: float) -> int:
    """Drive a budget like the trainer does; returns the number of validation periods."""
    periods = 0
    while periods == 0 or not budget.finished():
        periods += 1
        budget.start_period()
        start = clock.now
        while True:
            clock.now += step_s
            budget.after_step()
            if budget.stop_period():
                break
        train_s = clock.now - start
        clock.now += val_s
        budget.after_validation(val_s, train_s)
    return periods


def test_a_budget_plans_the_steps_that_fit_and_ends_on_time() -> None:
    clock = FakeClock()
    budget = TimeBudget(
        started=clock.now, seconds=60, steps_per_epoch=10, val_batches=4, clock=clock
    )
    periods = _simulate(budget, clock, step_s=0.1, val_s=0.5)
    assert clock.now - 1000 <= 60 + 0.5 + 0.1  # the budget plus one validation (and a step)
    assert budget.steps >= 0.8 * 60 / 0.1  # most of the time went into steps
    assert budget.steps == budget.total_steps
    assert 2 <= periods <= 51


def test_a_step_cap_ends_early_and_a_slower_machine_replans() -> None:
    clock = FakeClock()
    capped = TimeBudget(
        started=clock.now, seconds=600, max_steps=300, steps_per_epoch=50, val_batches=5,
        clock=clock,
    )  # fmt: skip
    _simulate(capped, clock, step_s=0.1, val_s=0.2)
    assert capped.steps == 300 and clock.now - 1000 < 60
    clock = FakeClock()
    budget = TimeBudget(
        started=clock.now, seconds=30, steps_per_epoch=20, val_batches=2, clock=clock
    )
    budget.start_period()
    for _ in range(40):  # fast first steps (the probe)...
        clock.now += 0.05
        budget.after_step()
    first_plan = budget.total_steps
    assert first_plan is not None and first_plan > 300
    _simulate(budget, clock, step_s=0.2, val_s=0.1)  # ...then four times slower
    assert budget.steps < first_plan
    assert clock.now - 1000 <= 30 + 0.1 + 0.2


def test_a_slowdown_within_a_period_is_replanned_so_the_schedule_completes() -> None:
    clock = FakeClock()
    budget = TimeBudget(
        started=clock.now, seconds=100, steps_per_epoch=10_000, val_batches=1, clock=clock
    )
    first = True
    while first or not budget.finished():  # costly validations: few, long periods
        first = False
        budget.start_period()
        start = clock.now
        while True:
            clock.now += 0.05 if clock.now - 1000 < 50 else 0.15  # the machine gets busy
            budget.after_step()
            if budget.stop_period():
                break
        progress = budget.progress(budget.steps)
        period = clock.now - start
        clock.now += 5
        budget.after_validation(5.0, period)
    assert budget.validations <= 6
    assert progress is not None and progress > 0.98  # the one-cycle ran its course...
    assert clock.now - 1000 <= 100 + 0.15 + 5  # ...by the deadline (and one validation)


def test_the_schedule_follows_the_planned_steps() -> None:
    clock = FakeClock()
    budget = TimeBudget(
        started=clock.now, seconds=10, steps_per_epoch=5, val_batches=1, clock=clock
    )
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=0.01)
    schedule = budget_schedule(optimizer, "onecycle", budget)
    assert schedule is not None
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * START_FACTOR)
    budget.start_period()
    rates = []
    for _ in range(150):
        clock.now += 0.1
        budget.after_step()
        schedule.after_batch()
        rates.append(optimizer.param_groups[0]["lr"])
    assert max(rates) == pytest.approx(0.01, rel=0.05)
    assert rates[-1] == pytest.approx(0.01 * END_FACTOR)
    assert budget_schedule(optimizer, "plateau", budget) is None


@pytest.mark.slow
def test_a_run_given_20_s_ends_within_20_s_and_one_validation(
    fake_store_factory, tmp_path: Path
) -> None:
    store = fake_store_factory("budget", tiles=60, size=48)
    preset = tmp_path / "p.yaml"
    preset.write_text("architecture: unet\narguments: {widths: [8, 16, 32]}\n")
    settings = TrainSettings(model=str(preset), time="20s", batch_size=4, lr=0.01, seed=1)
    import_lightgbm()  # the budget counts from the start of training, after the imports
    started = time.monotonic()
    result = train(store, tmp_path / "run", settings)
    elapsed = time.monotonic() - started
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    validation = max(r["val_seconds"] for r in rows)  # one validation pass (and its save)
    step = metrics["budget"]["step_s"]  # the step under way at the deadline
    # + saving the last checkpoints and closing the run: a second even on a busy machine
    assert elapsed <= 20 + validation + step + 2.0, (elapsed, validation, step)
    assert elapsed >= 18  # it used its budget
    assert metrics["budget"]["steps"] == metrics["budget"]["planned_steps"] > 0
    # annealed at the end: the optimiser's rate after the last step (metrics.csv logs each
    # epoch's rate at its first step)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert last["resume"]["optimizer"]["param_groups"][0]["lr"] < 0.01 * START_FACTOR
    assert result.epochs_run == len(rows) >= 2


def test_cli_time_option_and_bad_value(runner: CliRunner, real_store: Path, tmp_path: Path) -> None:
    bad = runner.invoke(
        app, ["train", str(real_store), "--time", "soon", "-o", str(tmp_path / "r")]
    )
    assert bad.exit_code == 1
    assert "time budget 'soon'" in bad.output and "Traceback" not in bad.output
