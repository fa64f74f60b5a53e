"""Training to a time budget: how many steps fit, a one-cycle schedule over them, when to stop.

``geotiler train --time 10m`` trains for what fits in ten minutes instead of a number of epochs.
:class:`TimeBudget` runs the first steps at the schedule's starting learning rate while it measures
their speed, then plans the total number of steps that fit before the deadline (leaving room for
the validations to come) and lays the one-cycle (or cosine) schedule over exactly those steps.
After every validation, and every twentieth of the budget in between, it measures again and
re-plans, so a machine that slows down or speeds up still ends on time, with the rate annealed.
An optional step cap (the recipe's ``auto`` budget) ends earlier on small data.

The deadline counts from the start of the run (baseline and set-up included); steps stop at the
deadline, then one last validation runs, so a run ends within the budget plus one validation.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from geotiler.train.optim import Schedule

PROBE_STEPS = 5
PROBE_SECONDS = 2.0
PROBE_SHARE = 0.05
"""The probe ends after PROBE_STEPS steps and PROBE_SECONDS, or this share of the budget; the
plan is also re-measured that often during a period."""
MAX_PERIODS = 50
VALIDATION_SHARE = 0.1
"""At most this share of the budget goes to validations before the last."""
WARMUP_SHARE = 0.25
START_FACTOR = 1 / 25  # OneCycleLR's div_factor
END_FACTOR = START_FACTOR / 1e4  # OneCycleLR's final_div_factor

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|min|s|sec)?", re.IGNORECASE)
_UNIT_S = {"h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0, "sec": 1.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``10m``, ``1h``, ``1h30m`` or a plain number of seconds.

    Raises:
        ValueError: the text is no duration, or not positive.
    """
    spec = str(text).strip().replace(" ", "")
    parts = list(_DURATION.finditer(spec))
    if not spec or not parts or "".join(m.group(0) for m in parts) != spec:
        raise ValueError(f"time budget {text!r}: use seconds, minutes or hours: 90s, 10m, 1h")
    seconds = sum(float(m.group(1)) * _UNIT_S[(m.group(2) or "s").lower()] for m in parts)
    if seconds <= 0:
        raise ValueError(f"time budget {text!r} must be more than 0 s")
    return seconds


def format_duration(seconds: float) -> str:
    """``754`` -> ``12m34s``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def one_cycle_factor(progress: float) -> float:
    """OneCycleLR's cosine shape as a factor of the peak lr, at ``progress`` in [0, 1]."""
    p = min(max(progress, 0.0), 1.0)
    if p < WARMUP_SHARE:
        rise = (1 - math.cos(math.pi * p / WARMUP_SHARE)) / 2
        return START_FACTOR + (1 - START_FACTOR) * rise
    fall = (1 + math.cos(math.pi * (p - WARMUP_SHARE) / (1 - WARMUP_SHARE))) / 2
    return END_FACTOR + (1 - END_FACTOR) * fall


def cosine_factor(progress: float) -> float:
    """Cosine annealing from the peak lr to a hundredth of it."""
    p = min(max(progress, 0.0), 1.0)
    return 0.01 + 0.99 * (1 + math.cos(math.pi * p)) / 2


class TimeBudget:
    """Steps, validations and the deadline of a run trained to a time budget.

    Args:
        started: the run's start (``clock()`` value); the budget counts from there.
        seconds: the budget.
        max_steps: an optional cap on the steps (the recipe's ``auto`` budget).
        steps_per_epoch: steps in one pass over the training split (the first period's length,
            while the speed is not yet known).
        val_batches: batches in one validation pass (to estimate its time before it has run).
        clock: a monotonic clock (tests pass their own).
        agree: element-wise maximum of values over DDP ranks, so every rank stops, plans and
            schedules alike (the identity in one process).
    """

    def __init__(
        self,
        *,
        started: float,
        seconds: float,
        max_steps: int | None = None,
        steps_per_epoch: int,
        val_batches: int,
        clock: Callable[[], float] = time.monotonic,
        agree: Callable[[list[float]], list[float]] | None = None,
    ) -> None:
        self.agree = agree or (lambda values: values)
        self.started = started
        self.seconds = seconds
        self.deadline = started + seconds
        self.max_steps = max_steps
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.val_batches = max(1, val_batches)
        self.clock = clock
        self.steps = 0
        self.total_steps: int | None = None  # planned; None until the probe has measured
        self.period_steps = self.steps_per_epoch
        self.period_start = 0
        self._probe_start: float | None = None
        self._probe_steps = 0
        self.step_s: float | None = None
        self.validation_s: float | None = None
        self.validations = 0
        self._mark: tuple[float, int] = (started, 0)  # when and at which step speed was measured

    # -- the training loop's questions ----------------------------------------------------------

    def start_period(self) -> None:
        """A new epoch (validation period) begins."""
        self.period_start = self.steps
        self._mark = (self.clock(), self.steps)
        if self._probe_start is None:
            self._probe_start = self.clock()

    def after_step(self) -> None:
        self.steps += 1
        if self.total_steps is not None:
            self._remeasure()
            return
        now = self.clock()
        self._probe_steps += 1
        if self._probe_steps == 1:
            # The first step pays for warm-up (allocations, lazy set-up): measure from the second.
            first = max(now - (self._probe_start or now), 1e-6)
            self._probe_start = now
            if self.agree([float(now >= self.deadline)])[0]:
                self.step_s = self.agree([first])[0]
                self._plan()
            return
        elapsed = now - (self._probe_start or now)
        measured = self._probe_steps - 1
        enough = measured >= PROBE_STEPS and elapsed >= PROBE_SECONDS
        ready = enough or elapsed >= PROBE_SHARE * self.seconds or now >= self.deadline
        if self.agree([float(ready)])[0]:
            self.step_s = self.agree([max(elapsed, 1e-6) / measured])[0]
            self._plan()

    def _remeasure(self) -> None:
        """Within a period, re-plan from the recent steps' speed every PROBE_SHARE of the budget."""
        if self.total_steps is None or self.steps >= self.total_steps:
            return
        now = self.clock()
        since, at = self._mark
        due = now - since >= max(PROBE_SECONDS, PROBE_SHARE * self.seconds) and self.steps > at
        if self.agree([float(due)])[0]:
            self.step_s = self.agree([max(now - since, 1e-6) / max(1, self.steps - at)])[0]
            self._plan()
            self._mark = (now, self.steps)

    def stop_period(self) -> bool:
        """Whether the current epoch's training pass should end now (then validate)."""
        stop = (
            self.clock() >= self.deadline
            or (self.total_steps is not None and self.steps >= self.total_steps)
            or self.steps - self.period_start >= self.period_steps
        )
        return bool(self.agree([float(stop)])[0])

    def finished(self) -> bool:
        """Whether no further epoch should start."""
        done = self.clock() >= self.deadline or (
            self.total_steps is not None and self.steps >= self.total_steps
        )
        return bool(self.agree([float(done)])[0])

    def after_validation(self, seconds: float, period_seconds: float) -> None:
        """Measure a validation (and the period before it) and re-plan what is left."""
        self.validations += 1
        self.validation_s = seconds
        done = self.steps - self.period_start
        if done > 0:
            # A period's time over its steps, loading included; the probe's own measure when the
            # period ended before the probe did.
            self.step_s = period_seconds / done
            if self.total_steps is None and self._probe_steps > 1 and self._probe_start:
                measured = self._probe_steps - 1
                self.step_s = max(self.clock() - seconds - self._probe_start, 1e-6) / measured
        self._plan()

    # -- planning -------------------------------------------------------------------------------

    def _plan(self) -> None:
        if self.total_steps is not None and self.steps >= self.total_steps:
            return  # the schedule has run its course: it is never extended after its end
        step_s = max(self.step_s or 1e-3, 1e-6)
        validation_s = self.validation_s
        if validation_s is None:  # a validation step is a forward pass: about a third of a step
            validation_s = self.val_batches * step_s / 3
        left = max(0.0, self.deadline - self.clock())
        step_s, validation_s, minus_left = self.agree([step_s, validation_s, -left])
        left = -minus_left
        # Validations before the last take at most VALIDATION_SHARE of what is left; the last one
        # runs after the deadline.
        between = min(math.floor(VALIDATION_SHARE * left / max(validation_s, 1e-6)), MAX_PERIODS)
        total = self.steps + int(max(0.0, left - between * validation_s) / step_s)
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        self.total_steps = max(total, self.steps)
        left_steps = self.total_steps - self.steps
        self.period_steps = max(1, math.ceil(left_steps / (between + 1)))

    def used(self) -> float:
        """The share of the budget spent so far."""
        return (self.clock() - self.started) / self.seconds

    def progress(self, step: int) -> float | None:
        """Where ``step`` lies in the planned schedule (None while probing)."""
        if self.total_steps is None:
            return None
        return step / max(1, self.total_steps)

    def describe(self) -> dict[str, Any]:
        return {
            "budget_s": round(self.seconds, 1),
            "steps": self.steps,
            "planned_steps": self.total_steps,
            "max_steps": self.max_steps,
            "step_s": None if self.step_s is None else round(self.step_s, 4),
            "validations": self.validations,
        }


def budget_schedule(optimizer: Optimizer, name: str, budget: TimeBudget) -> Schedule | None:
    """The per-step schedule over the budget's planned steps, for ``onecycle`` and ``cosine``.

    Returns None for the other schedulers (they do not depend on the number of steps).
    """
    shapes = {"onecycle": (one_cycle_factor, START_FACTOR), "cosine": (cosine_factor, 1.0)}
    if name not in shapes:
        return None
    shape, probe_factor = shapes[name]

    def factor(step: int) -> float:
        progress = budget.progress(step)
        return probe_factor if progress is None else shape(progress)

    return Schedule(LambdaLR(optimizer, factor), per_batch=True)


__all__ = [
    "TimeBudget",
    "budget_schedule",
    "cosine_factor",
    "format_duration",
    "one_cycle_factor",
    "parse_duration",
]
