"""``geotiler train --model pixel-gbm``: the pixel baseline as the model, no network.

The baseline is fitted and scored exactly as beside a network (same training tiles, same
validation pixels), and saved as a checkpoint of the usual contract: one file that
``torch.load(weights_only=True)`` reads, with an empty ``state_dict``, ``model.architecture``
``pixel-gbm`` and the booster under ``baseline``. ``geotiler predict`` runs it like any model.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from geotiler.train import data as train_data
from geotiler.train.checkpoint import save_checkpoint
from geotiler.train.distributed import Runtime
from geotiler.train.ensemble import BASELINE, BaselineReferee, fit_store_baseline
from geotiler.train.fingerprint import DataFingerprint
from geotiler.train.metrics import Scores, save_confusion, scores_for_table
from geotiler.train.recipe import TrainPlan
from geotiler.train.results import TrainResult
from geotiler.train.run_files import RunLog, write_json

log = logging.getLogger(__name__)


def train_pixel_model(
    fingerprint: DataFingerprint, out: Path, plan: TrainPlan, runtime: Runtime, *, started: float
) -> TrainResult:
    """Fit, score and save the pixel model."""
    settings = plan.settings
    store = train_data.open_store(fingerprint.path)
    deadline = None if plan.budget_s is None else started + plan.budget_s
    fit_started = time.perf_counter()
    baseline = fit_store_baseline(
        fingerprint, store.read, max_pixels=settings.baseline_pixels, seed=settings.seed,
        deadline=deadline,
    )  # fmt: skip
    seconds = time.perf_counter() - fit_started
    referee = BaselineReferee(
        baseline, store.read, fingerprint.val_ids, num_classes=fingerprint.num_classes,
        nodata=fingerprint.nodata, tile_size=fingerprint.tile_size,
    )  # fmt: skip
    classes = store.classes
    scores = scores_for_table(referee.baseline_matrix, classes)
    row = {"epoch": 1.0, **scores.as_dict("val_"), "seconds": seconds}
    if runtime.is_main:
        payload = {
            "state_dict": {},
            "model": {"preset": BASELINE, "architecture": BASELINE, "arguments": {}},
            "bands": list(fingerprint.bands),
            "band_mean": [0.0] * len(fingerprint.bands),  # features use raw values
            "band_std": [1.0] * len(fingerprint.bands),
            "classes": classes.model_dump(mode="json"),
            "num_classes": fingerprint.num_classes,
            "nodata": fingerprint.nodata,
            "tile_size": fingerprint.tile_size,
            "settings": settings.model_dump(mode="json"),
            "store": str(fingerprint.path),
            "epoch": 1,
            "metrics": row,
            "best": {"epoch": 1, **row},
            "baseline": baseline.to_checkpoint(),
            "ensemble": {"use": BASELINE, "scores": {BASELINE: scores.miou}},
            "plan": plan.to_dict(),
        }
        run_log = RunLog(out, enabled=True, class_names=classes.names)
        run_log.append(row)
        run_log.close()
        save_checkpoint(out / "last.pt", payload)
        save_checkpoint(out / "best.pt", payload)
        save_confusion(referee.baseline_matrix, classes, out, "confusion_matrix")
        info = {k: v for k, v in baseline.info.items() if k != "features"}
        write_json(
            out / "metrics.json",
            {
                "pixel_baseline": {"val_miou": scores.miou, **info, **referee.describe()},
                "chosen": BASELINE,
                "seconds": round(time.monotonic() - started, 1),
            },
        )
    log.info("pixel-gbm: val mIoU %.4f", scores.miou)
    return TrainResult(
        run_dir=out,
        epochs_run=1,
        best_epoch=1,
        best=Scores.from_dict(row, classes.names, "val_"),
        stopped_early=False,
        history=[row],
        comparison={BASELINE: scores.miou},
        chosen=BASELINE,
        plan=plan,
    )


__all__ = ["train_pixel_model"]
