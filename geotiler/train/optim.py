"""Optimisers and learning-rate schedules by name (registries), built from TrainSettings."""

from __future__ import annotations

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
    """The schedule ``settings.scheduler`` over ``epochs`` epochs of ``steps_per_epoch`` steps."""
    name = settings.scheduler
    steps = max(1, epochs * steps_per_epoch)
    if name == "plateau":
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
