"""What training reports: per-epoch reports, progress hooks and the result of a run."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from geotiler.train.ensemble import NETWORK
from geotiler.train.metrics import Scores

if TYPE_CHECKING:
    from geotiler.train.recipe import TrainPlan


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did."""

    epoch: int
    epochs: int
    lr: float
    train_loss: float
    val_loss: float
    scores: Scores
    seconds: float
    tiles_per_s: float
    is_best: bool
    baseline_miou: float = math.nan
    ensemble_miou: float = math.nan
    budget: str | None = None
    """Under a time budget, how much of it is spent (``61% of 20s``)."""


@dataclass
class Callbacks:
    """Hooks for progress display: the plan, epoch start (epoch, batches), batch, epoch end."""

    on_epoch_start: Callable[[int, int], None] | None = None
    on_batch: Callable[[int, float], None] | None = None
    on_epoch_end: Callable[[EpochReport], None] | None = None
    on_plan: Callable[[TrainPlan], None] | None = None
    on_stage: Callable[[str], None] | None = None
    on_note: Callable[[str], None] | None = None
    """Notes worth showing once (e.g. how pretrained bands were mapped)."""


@dataclass(frozen=True)
class TrainResult:
    """Where the run is and how it ended."""

    run_dir: Path
    epochs_run: int
    best_epoch: int
    best: Scores
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    comparison: dict[str, float] = field(default_factory=dict)
    """Validation mIoU per member (network, pixel-gbm, ensemble) at the best epoch."""
    chosen: str = NETWORK
    plan: TrainPlan | None = None


__all__ = ["Callbacks", "EpochReport", "TrainResult"]
