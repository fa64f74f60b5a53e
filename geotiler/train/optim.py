"""Optimisers and learning-rate schedules by name (registries), built from TrainSettings."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    OneCycleLR,
    ReduceLROnPlateau,
    StepLR,
)

from geotiler.train.settings import TrainSettings

OptimizerFactory = Callable[[Iterable[dict[str, Any]], TrainSettings], Optimizer]


def peak_lr(settings: TrainSettings) -> float:
    """The learning rate of resolved settings (the recipe fills it when not given)."""
    if settings.lr is None:
        raise ValueError("settings.lr is not resolved: plan the run with geotiler.train.recipe")
    return settings.lr


OPTIMIZERS: dict[str, OptimizerFactory] = {
    "adam": lambda p, s: torch.optim.Adam(p, lr=peak_lr(s), weight_decay=s.weight_decay),
    "adamw": lambda p, s: torch.optim.AdamW(p, lr=peak_lr(s), weight_decay=s.weight_decay),
    "sgd": lambda p, s: torch.optim.SGD(
        p, lr=peak_lr(s), momentum=s.momentum, weight_decay=s.weight_decay, nesterov=s.momentum > 0
    ),
}


def parameter_groups(
    model: nn.Module, settings: TrainSettings, encoder: nn.Module | None = None
) -> list[dict[str, Any]]:
    """One group, or the rest then the encoder at ``lr x encoder_lr_scale`` (``lr_scale`` key)."""
    scale = settings.encoder_lr_scale
    if encoder is None or scale == 1.0:
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    inside = {id(p) for p in encoder.parameters()}
    params = list(model.parameters())
    return [
        {"params": [p for p in params if id(p) not in inside], "lr_scale": 1.0},
        {"params": [p for p in params if id(p) in inside], "lr": peak_lr(settings) * scale,
         "lr_scale": scale},
    ]  # fmt: skip


def build_optimizer(
    model: nn.Module, settings: TrainSettings, encoder: nn.Module | None = None
) -> Optimizer:
    """The optimiser ``settings.optimizer`` over :func:`parameter_groups`."""
    groups = parameter_groups(model, settings, encoder)
    return OPTIMIZERS[settings.optimizer](groups, settings)


class Schedule:
    """A scheduler and when it steps: after each batch (cosine, onecycle) or each epoch."""

    def __init__(self, scheduler: Any, *, per_batch: bool, on_metric: bool = False) -> None:
        self.scheduler = scheduler
        self.per_batch = per_batch
        self.on_metric = on_metric

    def after_batch(self) -> None:
        if self.scheduler is not None and self.per_batch:
            self.scheduler.step()

    def after_epoch(self, val_miou: float) -> None:
        if self.scheduler is None or self.per_batch:
            return
        if self.on_metric:
            self.scheduler.step(val_miou)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else dict(self.scheduler.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)


def build_schedule(
    optimizer: Optimizer, settings: TrainSettings, *, epochs: int, steps_per_epoch: int
) -> Schedule:
    """The schedule ``settings.lr_schedule`` over ``epochs`` epochs of ``steps_per_epoch`` steps."""
    name = settings.lr_schedule
    steps = max(1, epochs * steps_per_epoch)
    if name == "plateau":
        patience = settings.patience
        if patience is None:
            patience = max(1, settings.early_stopping // 2) if settings.early_stopping else 2
        plateau = ReduceLROnPlateau(optimizer, mode="max", factor=settings.gamma, patience=patience)
        return Schedule(plateau, per_batch=False, on_metric=True)
    if name == "step":
        return Schedule(StepLR(optimizer, settings.step_size, settings.gamma), per_batch=False)
    if name == "cosine":
        return Schedule(
            CosineAnnealingLR(optimizer, steps, eta_min=peak_lr(settings) * 0.01), per_batch=True
        )
    if name == "onecycle" and steps >= 3:
        # Warm up over 20% of the steps, but over at least 1.5 steps so both phases exist.
        warmup = min(0.5, max(0.2, 1.5 / steps))
        peaks = [peak_lr(settings) * g.get("lr_scale", 1.0) for g in optimizer.param_groups]
        cycle = OneCycleLR(optimizer, max_lr=peaks, total_steps=steps, pct_start=warmup)
        return Schedule(cycle, per_batch=True)
    return Schedule(None, per_batch=False)


LENGTH_PLANNED = ("cosine", "onecycle")
"""Schedules planned over the run's length in steps; the others step per epoch, open-ended."""


def resume_schedule(
    optimizer: Optimizer,
    settings: TrainSettings,
    *,
    epochs: int,
    steps_per_epoch: int,
    saved: dict[str, Any],
    same_length: bool,
) -> Schedule:
    """The schedule of a resumed run, its optimiser state restored from ``saved``.

    A run resumed with its own length, or with a schedule that does not depend on the length
    (plateau, step), continues the saved scheduler state exactly. A cosine or one-cycle run resumed
    with another ``epochs`` follows the schedule planned over the new length from the step it had
    reached, as if it had been started with that length: the learning rate neither restarts its
    warm-up nor collapses to the end of a fresh cycle.
    """
    if same_length or settings.lr_schedule not in LENGTH_PLANNED:
        # Build first: a new scheduler resets the learning rate the optimiser state restores.
        schedule = build_schedule(
            optimizer, settings, epochs=epochs, steps_per_epoch=steps_per_epoch
        )
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved.get("scheduler") or {})
        return schedule
    optimizer.load_state_dict(saved["optimizer"])
    schedule = build_schedule(optimizer, settings, epochs=epochs, steps_per_epoch=steps_per_epoch)
    done = int((saved.get("scheduler") or {}).get("last_epoch", 0))
    total = max(1, epochs * steps_per_epoch)
    with warnings.catch_warnings():  # stepping the scheduler alone is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(min(done, total)):
            schedule.after_batch()
    return schedule
