"""What runs beside the network in a training run: the pixel baseline, its referee, the budget.

The trainer's loop stays about the network; :class:`Companions` holds the rest, each part None
when it is off: the fitted :class:`~geotiler.train.baseline.PixelBaseline` and the
:class:`~geotiler.train.ensemble.BaselineReferee` that scores it beside the network (off with
``--no-baseline``), and the :class:`~geotiler.train.budget.TimeBudget` (off when training by
epochs). It also turns their figures into the metrics row, the checkpoint's ``baseline`` /
``ensemble`` / ``plan`` keys and ``metrics.json``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geotiler.catalog import ClassTable
from geotiler.train import data as train_data
from geotiler.train import distributed
from geotiler.train.baseline import PixelBaseline
from geotiler.train.budget import TimeBudget
from geotiler.train.data import StoreSummary
from geotiler.train.distributed import Runtime
from geotiler.train.ensemble import (
    BASELINE,
    ENSEMBLE,
    NETWORK,
    NETWORK_WEIGHT,
    BaselineReferee,
    choose_member,
    fit_store_baseline,
)
from geotiler.train.fingerprint import BandNorm, DataFingerprint, robust_band_stats
from geotiler.train.metrics import scores_for_table
from geotiler.train.recipe import TrainPlan
from geotiler.train.settings import TrainSettings

BASELINE_BUDGET_SHARE = 0.2
"""Under a time budget the baseline's sampling and boosting stop after this share of it."""
SAMPLE_PX_PER_BUDGET_S = 2000
"""Under a short budget the baseline samples at most this many pixels per second of it."""


@dataclass
class Companions:
    """The baseline, its referee and the time budget of one run (see the module docstring)."""

    plan: TrainPlan
    started: float
    baseline: PixelBaseline | None = None
    referee: BaselineReferee | None = None
    budget: TimeBudget | None = None

    @classmethod
    def start(
        cls,
        plan: TrainPlan,
        fingerprint: DataFingerprint,
        summary: StoreSummary,
        runtime: Runtime,
        *,
        started: float,
        train_batches: int,
        val_batches: int,
        announce: Callable[[str], None] | None = None,
    ) -> Companions:
        """Fit the baseline (unless off) and set up the budget (when training to one)."""
        settings = plan.settings
        out = cls(plan, started)
        if settings.baseline:
            if announce is not None:
                announce("fitting the pixel baseline")
            budget = plan.budget_s
            # Its share counts from its own start, but it never runs past half the budget.
            deadline = None
            if budget is not None:
                own = time.monotonic() + BASELINE_BUDGET_SHARE * budget
                deadline = min(own, started + 0.5 * budget)
            store = train_data.open_store(fingerprint.path)
            pixels = settings.baseline_pixels
            if budget is not None:  # binning a sample is not cut short by the deadline
                pixels = min(pixels, max(1000, int(SAMPLE_PX_PER_BUDGET_S * budget)))
            out.baseline = fit_store_baseline(
                fingerprint, store.read, max_pixels=pixels, seed=settings.seed, deadline=deadline
            )
            val_ids = train_data.val_share(summary.splits["val"], runtime.rank, runtime.world)
            out.referee = BaselineReferee(
                out.baseline, store.read, val_ids,
                num_classes=summary.num_classes, nodata=summary.nodata,
                tile_size=summary.tile_size,
            )  # fmt: skip
        if plan.budget_s is not None:
            out.budget = TimeBudget(
                started=started, seconds=plan.budget_s, max_steps=plan.max_steps,
                steps_per_epoch=train_batches, val_batches=val_batches, agree=_agree(runtime),
            )  # fmt: skip
        return out

    def member_scores(
        self, members: dict[str, np.ndarray], classes: ClassTable
    ) -> dict[str, float]:
        """Metrics-row columns: the baseline's and the average's mIoU.

        The network's mIoU on the same pixels is added when those are a subset of the
        validation tiles (otherwise it is ``val_miou`` itself).
        """
        if not members or self.referee is None:
            return {}
        miou = {name: scores_for_table(matrix, classes).miou for name, matrix in members.items()}
        row = {"baseline_val_miou": miou[BASELINE], "ensemble_val_miou": miou[ENSEMBLE]}
        if self.referee.compared_tiles < self.referee.val_tiles:
            row["network_compared_val_miou"] = miou[NETWORK]
        return row

    def chosen(self, row: dict[str, float]) -> str:
        """The member the checkpoint of ``row``'s epoch predicts with."""
        scores = comparison(row)
        return choose_member(scores, allowed=self.plan.settings.ensemble and bool(scores))

    def checkpoint_keys(self, row: dict[str, float]) -> dict[str, Any]:
        """The checkpoint's ``baseline``, ``ensemble`` and ``plan`` entries for ``row``'s epoch."""
        return {
            "baseline": None if self.baseline is None else self.baseline.to_checkpoint(),
            "ensemble": {
                "use": self.chosen(row),
                "network_weight": NETWORK_WEIGHT,
                "scores": comparison(row),
            },
            "plan": self.plan.to_dict(),
        }

    def metrics(self, best: dict[str, float], best_epoch: int) -> dict[str, Any]:
        """``metrics.json``: the best epoch, each member's validation scores and the choice."""
        scores = comparison(best)
        content: dict[str, Any] = {
            "network": {
                "val_miou": best.get("val_miou"),
                "pixel_accuracy": best.get("val_pixel_accuracy"),
                "epoch": best_epoch,
            },
            "chosen": self.chosen(best),
        }
        if self.baseline is not None and self.referee is not None:
            info = {k: v for k, v in self.baseline.info.items() if k != "features"}
            content["pixel_baseline"] = {
                "val_miou": scores.get(BASELINE),
                **info,
                **self.referee.describe(),
            }
            content["ensemble"] = {
                "val_miou": scores.get(ENSEMBLE),
                "network_weight": NETWORK_WEIGHT,
            }
            content["compared_on_same_pixels"] = scores
        if self.budget is not None:
            content["budget"] = self.budget.describe()
        content["seconds"] = round(time.monotonic() - self.started, 1)
        return content


def comparison(row: dict[str, float]) -> dict[str, float]:
    """Member -> validation mIoU on the same pixels, from an epoch's row (empty: no baseline)."""
    if "baseline_val_miou" not in row:
        return {}
    network = row.get("network_compared_val_miou", row.get("val_miou", math.nan))
    return {
        NETWORK: float(network),
        BASELINE: float(row["baseline_val_miou"]),
        ENSEMBLE: float(row["ensemble_val_miou"]),
    }


def band_norm(
    fingerprint: DataFingerprint, settings: TrainSettings, previous: dict[str, Any] | None
) -> BandNorm:
    """The resumed run's normalisation, else robust statistics or the store's."""
    if previous is not None:
        return BandNorm.from_checkpoint(previous)
    if settings.normalisation == "robust":
        return robust_band_stats(fingerprint, seed=settings.seed)
    store = train_data.open_store(fingerprint.path)
    return BandNorm(tuple(store.band_mean.tolist()), tuple(store.band_std.tolist()))


def _agree(runtime: Runtime) -> Callable[[list[float]], list[float]]:
    def agree(values: list[float]) -> list[float]:
        if not runtime.distributed:
            return values
        tensor = -torch.tensor(values, dtype=torch.float64, device=runtime.device)
        return [-v for v in distributed.all_min(runtime, tensor).tolist()]

    return agree


__all__ = ["Companions", "band_norm", "comparison"]
