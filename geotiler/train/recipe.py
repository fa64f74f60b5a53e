"""The training recipe: settings chosen from the store's fingerprint where the user gave none.

In the spirit of nnU-Net, ``geotiler train`` with no options derives its plan from the data
(:class:`~geotiler.train.fingerprint.DataFingerprint`): model preset and width, batch size,
learning rate (AdamW + one-cycle), loss and class weighting, and how long to train. Every choice
is a :class:`Choice` with the reason for it; given settings (command line, pipeline, a named
preset's ``train:`` section) are kept and marked as given. The plan is printed by the CLI and
saved as ``plan.json`` in the run folder.

The rules, and why:

- model: on a CPU a small U-Net (width 16) when there are 6 or more bands or classes, else the
  tiny one (width 8): a CPU budget buys 5x more steps of the tiny net. On a GPU, the small U-Net,
  or a ResNet-34 U-Net once there are 20 M labelled training pixels to feed it.
- batch: about 65 k pixels a step on a CPU (16 tiles of 64 px), 1 M on a GPU; twice that when
  under half the pixels are labelled; never more than a quarter of the training tiles.
- lr: the one-cycle peak 5e-3 at 16 tiles, scaled by sqrt(batch / 16) within [1e-3, 1e-2];
  1e-3 for ResNet encoders.
- loss: ce+dice. Cross-entropy keeps the probabilities calibrated (the ensemble averages them),
  dice keeps rare classes from vanishing.
- class weights: none when tiles are already sampled towards rare classes (weighting the loss as
  well over-corrects, and hurt when a test area's class mix differed); otherwise mild weights,
  sqrt(median / count) clipped to [0.5, 2], only when the class shares differ more than 10x.
- how long: ``--epochs N`` trains N epochs; ``--time 10m`` trains to that budget; neither is the
  ``auto`` budget: up to 40 epochs' worth of steps (300 to 4000), ending by 15 min on a CPU
  (60 min on a GPU), baseline included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geotiler.train.budget import format_duration, parse_duration
from geotiler.train.fingerprint import DataFingerprint
from geotiler.train.settings import PIXEL_MODEL, TrainSettings

AUTO_BUDGET_S = {"cpu": 15 * 60.0, "cuda": 60 * 60.0}
AUTO_EPOCHS = 40
AUTO_STEPS = (300, 4000)
STEP_PIXELS = {"cpu": 16 * 64 * 64, "cuda": 16 * 256 * 256}
MAX_BATCH = {"cpu": 32, "cuda": 64}
BASE_LR, BASE_BATCH, LR_RANGE = 5e-3, 16, (1e-3, 1e-2)
ENCODER_LR = 1e-3
RESNET_PIXELS = 20_000_000
SPARSE_SHARE = 0.5
IMBALANCE = 10.0
WEIGHT_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class Choice:
    """One setting of the plan: its value, why, and whether the user gave it."""

    value: Any
    reason: str
    given: bool = False


@dataclass(frozen=True)
class TrainPlan:
    """The resolved settings of a run, the choices behind them and the time budget."""

    settings: TrainSettings
    choices: dict[str, Choice]
    fingerprint: dict[str, Any]
    budget_s: float | None = None
    max_steps: int | None = None
    class_weights: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_pixel_model(self) -> bool:
        return self.settings.model == PIXEL_MODEL

    def to_dict(self) -> dict[str, Any]:
        return {
            "choices": {
                name: {"value": c.value, "reason": c.reason, "given": c.given}
                for name, c in self.choices.items()
            },
            "budget_s": self.budget_s,
            "max_steps": self.max_steps,
            "class_weights": None if self.class_weights is None else list(self.class_weights),
            "fingerprint": self.fingerprint,
            "settings": self.settings.model_dump(mode="json"),
            **self.extra,
        }


def plan_training(
    fingerprint: DataFingerprint, settings: TrainSettings, *, device: str = "cpu"
) -> TrainPlan:
    """The plan for ``settings`` on the fingerprinted store, on ``device`` (cpu or cuda)."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    choices: dict[str, Choice] = {}
    fp = fingerprint

    def choose(name: str, given: Any, value: Any, reason: str) -> Any:
        if given is not None:
            choices[name] = Choice(given, "given", True)
            return given
        choices[name] = Choice(value, reason)
        return value

    model = choose("model", settings.model, *_model(fp, kind))
    if model == PIXEL_MODEL:
        budget_s, _ = _budget(fp, settings, kind, choices, batch=None)
        resolved = settings.model_copy(update={"model": model})
        return TrainPlan(resolved, choices, fp.describe(), budget_s, None, None)
    batch = choose("batch_size", settings.batch_size, *_batch(fp, kind))
    lr = choose("lr", settings.lr, *_lr(model, batch))
    why_loss = "calibrated probabilities (ce) that keep rare classes (dice)"
    loss = choose("loss", settings.loss, "ce+dice", why_loss)
    weighted, weights, why = _class_weights(fp, settings)
    weighted = choose("class_weights", settings.class_weights, weighted, why)
    if settings.class_weights is not None:
        weights = _store_weights(fp) if weighted else None
    budget_s, max_steps = _budget(fp, settings, kind, choices, batch=batch)
    choices["normalisation"] = Choice(
        settings.normalisation,
        "clip to the 1st-99th percentiles; mean/std of the values within 3 IQR of the "
        "quartiles, from the clearest tiles: clouds do not move them"
        if settings.normalisation == "robust"
        else "the store's mean/std",
        settings.normalisation != "robust",
    )
    choices["baseline"] = Choice(
        settings.baseline, "a per-pixel LightGBM beside the network, scored on the same tiles"
    )
    resolved = settings.model_copy(
        update={
            "model": model,
            "batch_size": batch,
            "lr": lr,
            "loss": loss,
            "class_weights": weighted,
            "optimizer": settings.optimizer,
            "lr_schedule": settings.lr_schedule,
        }
    )
    return TrainPlan(resolved, choices, fp.describe(), budget_s, max_steps, weights)


def _model(fp: DataFingerprint, kind: str) -> tuple[str, str]:
    classes, bands = fp.present_classes, len(fp.bands)
    if kind == "cuda":
        if fp.labelled_pixels >= RESNET_PIXELS:
            return "unet-resnet34", f"{fp.labelled_pixels / 1e6:.0f} M labelled pixels on a GPU"
        return "unet-small", f"{fp.labelled_pixels / 1e6:.1f} M labelled pixels on a GPU"
    if classes >= 6 or bands >= 6:
        return "unet-small", f"{bands} bands, {classes} classes on a CPU: width 16"
    return "unet-tiny", f"{bands} bands, {classes} classes on a CPU: width 8, more steps"


def _batch(fp: DataFingerprint, kind: str) -> tuple[int, str]:
    size = round(STEP_PIXELS[kind] / fp.tile_size**2)
    reason = f"~{STEP_PIXELS[kind] // 1000} k px a step"
    if fp.labelled_share < SPARSE_SHARE:
        size *= 2
        reason += f", doubled: {fp.labelled_share:.0%} of the pixels are labelled"
    cap = min(MAX_BATCH[kind], max(2, fp.train_tiles // 4))
    if size > cap:
        reason += f", at most {cap} ({fp.train_tiles} training tiles)"
    return max(2, min(size, cap)), reason


def _lr(model: str, batch: int) -> tuple[float, str]:
    if "resnet" in model:
        return ENCODER_LR, "a ResNet encoder"
    lr = min(max(BASE_LR * math.sqrt(batch / BASE_BATCH), LR_RANGE[0]), LR_RANGE[1])
    return float(f"{lr:.3g}"), f"one-cycle peak {BASE_LR:g} x sqrt(batch / {BASE_BATCH})"


def _class_weights(
    fp: DataFingerprint, settings: TrainSettings
) -> tuple[bool, tuple[float, ...] | None, str]:
    if settings.balance and fp.balanced:
        return False, None, "tiles are sampled towards rare classes already"
    counts = fp.class_pixels.astype(np.float64)
    present = [c for c in fp.class_ids if c < len(counts) and counts[c] > 0]
    if len(present) < 2:
        return False, None, "fewer than two classes"
    shares = counts[present]
    if shares.max() / shares.min() <= IMBALANCE:
        return False, None, f"class shares within {IMBALANCE:g}x of each other"
    median = float(np.median(shares))
    weights = np.ones(fp.num_classes)
    for c in present:
        weights[c] = np.clip(math.sqrt(median / counts[c]), *WEIGHT_RANGE)
    if fp.nodata is not None and fp.nodata < len(weights):
        weights[fp.nodata] = 0.0
    ratio = shares.max() / shares.min()
    why = f"mild sqrt weights in [{WEIGHT_RANGE[0]}, {WEIGHT_RANGE[1]}]: shares differ {ratio:.0f}x"
    return True, tuple(float(w) for w in weights), why


def _store_weights(fp: DataFingerprint) -> tuple[float, ...] | None:
    from geotiler.train.data import open_store

    weights = open_store(fp.path).class_weights
    return None if weights is None else tuple(float(w) for w in weights)


def _budget(
    fp: DataFingerprint,
    settings: TrainSettings,
    kind: str,
    choices: dict[str, Choice],
    *,
    batch: int | None,
) -> tuple[float | None, int | None]:
    if settings.time is not None and settings.time != "auto":
        seconds = parse_duration(settings.time)
        choices["time"] = Choice(format_duration(seconds), "given", True)
        return seconds, None
    if settings.epochs is not None and settings.time is None:
        choices["epochs"] = Choice(settings.epochs, "given", True)
        return None, None
    seconds = AUTO_BUDGET_S[kind]
    if batch is None:  # the pixel model: its own rounds, ended by the same cap
        choices["time"] = Choice(format_duration(seconds), f"auto: at most {seconds / 60:.0f} min")
        return seconds, None
    per_epoch = math.ceil(fp.train_tiles / batch)
    steps = min(max(AUTO_EPOCHS * per_epoch, AUTO_STEPS[0]), AUTO_STEPS[1])
    choices["time"] = Choice(
        f"auto: {steps} steps, at most {format_duration(seconds)}",
        f"~{steps / per_epoch:.0f} epochs of {per_epoch} steps, within "
        f"[{AUTO_STEPS[0]}, {AUTO_STEPS[1]}] steps, ending by {seconds / 60:.0f} min on {kind}",
        settings.time == "auto",
    )
    return seconds, steps


__all__ = ["Choice", "TrainPlan", "plan_training"]
