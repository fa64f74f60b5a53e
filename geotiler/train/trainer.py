"""The training loop: store in, run directory out (checkpoints, metrics.csv, confusion matrix).

:func:`train` is the one library call behind ``geotiler train``. It plans the run from the store's
fingerprint (:mod:`~geotiler.train.recipe`), fits the pixel baseline (:mod:`~geotiler.train.
ensemble`), streams tiles from the store, fits the model for a number of epochs or to a time
budget (:mod:`~geotiler.train.budget`), validates every epoch on one confusion matrix (reduced over
DDP ranks) with the baseline and the average of both scored on the same pixels, keeps ``best.pt``
(by the network's validation mIoU, with the member validation chose to predict with) and
``last.pt``, and appends a row per epoch to ``metrics.csv`` (and TensorBoard when installed).
``plan.json`` and ``metrics.json`` record the plan and the comparison. Only rank 0 writes. It
never prints: progress goes to the :class:`Callbacks` the caller passes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from geotiler.errors import InputError, TrainingError
from geotiler.interrupts import deferred
from geotiler.train import distributed, run_state
from geotiler.train.augment import DeviceBatches
from geotiler.train.baseline import import_lightgbm
from geotiler.train.budget import budget_schedule, format_duration
from geotiler.train.checkpoint import read_checkpoint, save_checkpoint
from geotiler.train.companions import Companions, band_norm, comparison
from geotiler.train.data import StoreSummary, make_loaders
from geotiler.train.distributed import Runtime
from geotiler.train.finetune import EncoderControl
from geotiler.train.fingerprint import DataFingerprint
from geotiler.train.losses import LossContext, build_loss
from geotiler.train.metrics import Scores, confusion_matrix, save_confusion, scores_for_table
from geotiler.train.models import Preset, apply_encoder_weights, load_preset
from geotiler.train.optim import Schedule, build_optimizer, build_schedule, resume_schedule
from geotiler.train.recipe import TrainPlan, plan_training
from geotiler.train.results import Callbacks, EpochReport, TrainResult
from geotiler.train.run_files import RunLog, write_json
from geotiler.train.settings import PIXEL_MODEL, TrainSettings
from geotiler.train.tensorboard import TILES_SHOWN

log = logging.getLogger(__name__)


@dataclass
class _State:
    epoch: int = 0
    best_miou: float = -1.0
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    bad_epochs: int = 0


def train(
    store: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    settings: TrainSettings,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Callbacks | None = None,
) -> TrainResult:
    """Train ``settings.model`` on the store's train split; see the module docstring.

    A time budget counts from here, once the libraries are imported (LightGBM's import alone
    can take seconds on a busy machine: it is not training time).
    """
    if settings.baseline or settings.model == PIXEL_MODEL:
        import_lightgbm()
    started = time.monotonic()
    out = Path(run_dir)
    with contextlib.ExitStack() as stack:
        runtime = distributed.start(settings.device)
        stack.callback(distributed.stop, runtime)

        def claim() -> tuple[DataFingerprint, dict[str, Any] | None, run_state.RunRecorder]:
            fingerprint = DataFingerprint.read(store)  # inputs first: a missing store is the error
            previous = read_checkpoint(out / "last.pt") if resume else None
            # Rank 0 claims the run folder (checked, locked) and records the run's state:
            # running, interrupted at epoch k (with how to resume), finished.
            recorder = stack.enter_context(
                run_state.guard(
                    out, store, epochs=settings.epochs or 0,
                    first_epoch=int(previous["epoch"]) if previous else 0, resume=resume,
                    overwrite=overwrite, enabled=runtime.is_main,
                )
            )  # fmt: skip
            return fingerprint, previous, recorder

        # Under torchrun rank 0 alone reports a failure of these checks; the others stand down.
        fingerprint, previous, recorder = distributed.agree(runtime, claim)
        hooks = recorder.wrap(callbacks or Callbacks())
        plan = plan_training(fingerprint, settings, device=runtime.device.type)
        if runtime.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "plan.json", plan.to_dict())
            if hooks.on_plan:
                hooks.on_plan(plan)
        if plan.is_pixel_model:
            from geotiler.train.pixel_run import train_pixel_model

            return train_pixel_model(fingerprint, out, plan, runtime, started=started)
        run = _Run(store, out, plan, fingerprint, runtime, previous, hooks, started)
        return run.fit()


class _Run:
    def __init__(
        self,
        store: str | os.PathLike[str],
        out: Path,
        plan: TrainPlan,
        fingerprint: DataFingerprint,
        runtime: Runtime,
        previous: dict[str, Any] | None,
        callbacks: Callbacks,
        started: float,
    ) -> None:
        settings = plan.settings
        self.out, self.settings, self.runtime, self.callbacks = out, settings, runtime, callbacks
        self.plan, self.started = plan, started
        self.summary = StoreSummary.read(store)
        self.preset = load_preset(str(settings.model))
        torch.manual_seed(settings.seed)
        self.net = self.preset.build(len(self.summary.bands), self.summary.num_classes)
        self.encoder = EncoderControl(self.net, settings, self.preset.name)
        self.weights: dict[str, Any] | None = (previous or {}).get("encoder_weights")
        if settings.encoder_weights and previous is None:
            loaded = apply_encoder_weights(
                self.net, settings.encoder_weights, bands=self.summary.bands
            )
            self.weights = loaded.record()
            if callbacks.on_note and runtime.is_main:
                callbacks.on_note(loaded.describe())
        if previous is not None:
            _check_same_model(out, previous, self.preset)
            self.net.load_state_dict(previous["state_dict"])
        cuda = runtime.device.type == "cuda"
        self.net.to(runtime.device)
        if cuda:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if runtime.distributed and cuda:
            self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
        self.model: nn.Module = self._wrap()
        self.amp = cuda and settings.amp
        self.norm = band_norm(fingerprint, settings, previous)
        self.train_loader, self.val_loader, self.sampler = make_loaders(
            self.summary,
            batch_size=int(settings.batch_size or 1),
            workers=settings.workers,
            balance=settings.balance,
            seed=settings.seed,
            num_samples=settings.max_train_tiles,
            pin_memory=cuda,
            rank=runtime.rank,
            world=runtime.world,
            reader=settings.reader,
        )
        self.device_batches = DeviceBatches(
            self.norm.mean,
            self.norm.std,
            low=self.norm.low,
            high=self.norm.high,
            dtype=self.summary.image_dtype,
            device=runtime.device,
        )
        ctx = LossContext(self.summary.num_classes, self.summary.nodata, plan.class_weights)
        self.loss = build_loss(str(settings.loss), ctx)
        self.optimizer = build_optimizer(self.net, settings, self.encoder.encoder)
        self.scaler = torch.amp.GradScaler(runtime.device.type, enabled=self.amp)
        self.state = _State()
        self.extras = Companions.start(
            plan, fingerprint, self.summary, runtime, started=started,
            train_batches=len(self.train_loader), val_batches=len(self.val_loader),
            announce=callbacks.on_stage if runtime.is_main else None,
        )  # fmt: skip
        self.budget, self.referee = self.extras.budget, self.extras.referee
        self.schedule = self._restore(previous)
        self.log = RunLog(
            out, enabled=runtime.is_main, resume_epoch=self.state.epoch,
            class_names=self.summary.classes.names,
        )  # fmt: skip
        self._shown: tuple[torch.Tensor, ...] = ()  # validation tiles drawn in TensorBoard
        self._first_epoch = self.state.epoch + 1

    def _wrap(self) -> nn.Module:
        """The module to call: DDP over the trainable parameters of now, or the net itself."""
        if not self.runtime.distributed:
            return self.net
        cuda = self.runtime.device.type == "cuda"
        return DistributedDataParallel(self.net, device_ids=[self.runtime.device] if cuda else None)

    def _restore(self, previous: dict[str, Any] | None) -> Schedule:
        steps = len(self.train_loader)
        epochs = self.settings.epochs or 1
        if self.budget is not None:
            # A budget plans its own schedule; a resumed run gets a fresh one over its budget.
            if previous is not None:
                self._restore_state(previous)
                self.optimizer.load_state_dict(previous["resume"]["optimizer"])
            return budget_schedule(
                self.optimizer, self.settings.lr_schedule, self.budget
            ) or build_schedule(self.optimizer, self.settings, epochs=1, steps_per_epoch=steps)
        if previous is None:
            return build_schedule(
                self.optimizer, self.settings, epochs=epochs, steps_per_epoch=steps
            )
        saved = self._restore_state(previous)
        return resume_schedule(
            self.optimizer, self.settings, epochs=epochs, steps_per_epoch=steps, saved=saved,
            same_length=int(previous["settings"]["epochs"] or 0) == epochs,
        )  # fmt: skip

    def _restore_state(self, previous: dict[str, Any]) -> dict[str, Any]:
        saved: dict[str, Any] = previous.get("resume") or {}
        self.state = _State(
            epoch=int(previous["epoch"]),
            best_miou=float(previous["best"]["val_miou"]),
            best_epoch=int(previous["best"]["epoch"]),
            best_metrics=dict(previous["best"]),
            bad_epochs=int(saved.get("bad_epochs", 0)),
        )
        self.scaler.load_state_dict(saved.get("scaler") or {})
        groups = len((saved.get("optimizer") or {}).get("param_groups") or [])
        if groups != len(self.optimizer.param_groups):
            raise InputError(
                f"{self.out / 'last.pt'}: was trained with encoder_lr_scale "
                f"{previous['settings'].get('encoder_lr_scale', 1.0)}; resume with the same "
                "--encoder-lr-scale, or start a new run with -o"
            )
        torch.set_rng_state(saved["rng"]["torch"])
        return saved

    def _more_epochs(self, epoch: int) -> bool:
        """Whether an epoch ``epoch`` should run (by the epoch count and/or the budget)."""
        if self.settings.epochs is not None and epoch > self.settings.epochs:
            return False
        first = epoch == self._first_epoch
        return self.budget is None or first or not self.budget.finished()

    def fit(self) -> TrainResult:
        stopped = False
        epoch = self._first_epoch = self.state.epoch + 1
        while self._more_epochs(epoch):
            report = self._epoch(epoch)
            if self.callbacks.on_epoch_end and self.runtime.is_main:
                self.callbacks.on_epoch_end(report)
            patience = self.settings.early_stopping
            if patience and self.state.bad_epochs >= patience and self._more_epochs(epoch + 1):
                log.info("early stopping after epoch %d (%d epochs without gain)", epoch, patience)
                stopped = True
                break
            epoch += 1
        self.log.close()
        best = self.state.best_metrics
        if self.runtime.is_main:
            self._write_metrics()
        return TrainResult(
            run_dir=self.out,
            epochs_run=self.state.epoch,
            best_epoch=self.state.best_epoch,
            best=Scores.from_dict(best, self.summary.classes.names, "val_"),
            stopped_early=stopped,
            history=self.log.history,
            comparison=comparison(best),
            chosen=self.extras.chosen(best),
            plan=self.plan,
        )

    def _epoch(self, epoch: int) -> EpochReport:
        self.sampler.set_epoch(epoch)
        # The learning rate the epoch's first step uses, before any scheduler step: the one an
        # epoch-stepped schedule (plateau, step) applied to all its steps.
        lr = float(self.optimizer.param_groups[0]["lr"])
        start = time.perf_counter()
        train_loss, tiles = self._train_pass(epoch)
        seconds = time.perf_counter() - start
        val_loss, matrix, members = self._validate()
        scores = scores_for_table(matrix, self.summary.classes)
        miou = scores.miou if math.isfinite(scores.miou) else 0.0
        self.schedule.after_epoch(miou)
        is_best = miou > self.state.best_miou
        row = {
            "epoch": float(epoch),
            "lr": lr,
            "train_loss": train_loss,
            "val_loss": val_loss,
            **scores.as_dict("val_"),
            **self.extras.member_scores(members, self.summary.classes),
            "seconds": seconds,
            "val_seconds": time.perf_counter() - start - seconds,
            "tiles_per_s": tiles / max(seconds, 1e-9),
        }
        self.state.epoch = epoch
        if is_best:
            self.state.best_miou, self.state.best_epoch = miou, epoch
            self.state.best_metrics = row
            self.state.bad_epochs = 0
        else:
            self.state.bad_epochs += 1
        if self.runtime.is_main:
            self.log.append(row)
            if self.log.board is not None and self._shown:
                self.log.board.tiles(
                    epoch, *(t.numpy() for t in self._shown), bands=self.summary.bands,
                    classes=self.summary.classes,
                )  # fmt: skip
            self._save(row, is_best, matrix)
        if self.budget is not None:  # validation and saving, as what every period adds
            self.budget.after_validation(time.perf_counter() - start - seconds, seconds)
        spent = None
        if self.budget is not None:
            spent = f"{self.budget.used():.0%} of {format_duration(self.budget.seconds)}"
        return EpochReport(
            epoch, self.settings.epochs or 0, lr, train_loss, val_loss, scores, seconds,
            row["tiles_per_s"], is_best, row.get("baseline_val_miou", math.nan),
            row.get("ensemble_val_miou", math.nan), spent,
        )  # fmt: skip

    def _train_pass(self, epoch: int) -> tuple[float, int]:
        if self.encoder.set_epoch(epoch) and self.runtime.distributed:
            self.model = self._wrap()  # DDP syncs only what required a gradient when wrapped
        self.model.train()
        self.encoder.train_mode()
        if self.budget is not None:
            self.budget.start_period()
        if self.callbacks.on_epoch_start and self.runtime.is_main:
            batches = len(self.train_loader)
            if self.budget is not None and self.budget.total_steps is not None:
                batches = min(batches, self.budget.period_steps)
            self.callbacks.on_epoch_start(epoch, batches)
        total = torch.zeros(2, dtype=torch.float64, device=self.runtime.device)
        for batch in self._batches(epoch):
            image, mask = self.device_batches(
                batch["image"], batch["mask"], augment=self.settings.augment
            )
            with self._autocast():
                loss = self.loss(self.model(image), mask)
            self._check_finite(loss, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.after_batch()
            count = image.shape[0]
            total += torch.stack(
                [
                    loss.detach().double() * count,
                    torch.tensor(count, dtype=torch.float64, device=total.device),
                ]
            )
            if self.callbacks.on_batch and self.runtime.is_main:
                self.callbacks.on_batch(count * self.runtime.world, float(loss.detach()))
            if self.budget is not None:
                self.budget.after_step()
                if self.budget.stop_period():
                    break
        distributed.all_sum(self.runtime, total)
        return float(total[0] / total[1].clamp_min(1)), int(total[1].item())

    def _batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """One pass over the training tiles; under a budget, as many as its period takes.

        Each further pass draws afresh (the sampler's epoch is shifted out of the epochs' range);
        the training loop ends the period.
        """
        yield from self.train_loader
        draw = 0
        while self.budget is not None and len(self.train_loader):
            draw += 1
            self.sampler.set_epoch(epoch + draw * 1_000_000)
            yield from self.train_loader

    @torch.no_grad()
    def _validate(self) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        self.model.eval()
        if self.referee is not None:
            self.referee.start()
        k = self.summary.num_classes
        matrix = torch.zeros(k, k, dtype=torch.int64, device=self.runtime.device)
        total = torch.zeros(2, dtype=torch.float64, device=self.runtime.device)
        drawing, self._shown = self.log.board is not None and self.log.board.active, ()
        for batch in self.val_loader:
            image, mask = self.device_batches(batch["image"], batch["mask"], augment=False)
            with self._autocast():
                logits = self.model(image)
            total[0] += self.loss(logits.float(), mask).double() * image.shape[0]
            total[1] += image.shape[0]
            matrix += confusion_matrix(logits.argmax(1), mask, k, self.summary.nodata)
            if drawing and not self._shown:
                n = TILES_SHOWN
                self._shown = (image[:n].float().cpu(), mask[:n].cpu(), logits[:n].argmax(1).cpu())
            if self.referee is not None:
                self.referee.add(logits)
        distributed.all_sum(self.runtime, matrix)
        distributed.all_sum(self.runtime, total)
        members = self.referee.finish(self.runtime) if self.referee is not None else {}
        return float(total[0] / total[1].clamp_min(1)), matrix.cpu().numpy(), members

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=torch.float16)

    def _check_finite(self, loss: torch.Tensor, epoch: int) -> None:
        finite = torch.isfinite(loss.detach()).to(torch.int64).reshape(1)
        if distributed.all_min(self.runtime, finite).item() == 0:
            kept = (
                f"; {self.out / 'last.pt'} keeps epoch {self.state.epoch}"
                if self.state.epoch
                else ""
            )
            raise TrainingError(
                f"{self.summary.path}: the loss became NaN/inf in epoch {epoch}{kept}; "
                f"lower --lr (now {self.settings.lr:g}) or check the store's band statistics"
            )

    def _save(self, row: dict[str, float], is_best: bool, matrix: np.ndarray) -> None:
        payload = self._payload(row)
        with deferred():  # Ctrl-C waits: last.pt and best.pt always describe the same epoch
            save_checkpoint(self.out / "last.pt", payload)
            if is_best:
                save_checkpoint(self.out / "best.pt", payload)
                save_confusion(matrix, self.summary.classes, self.out, "confusion_matrix")
                self._write_metrics()

    def _write_metrics(self) -> None:
        write_json(
            self.out / "metrics.json",
            self.extras.metrics(self.state.best_metrics, self.state.best_epoch),
        )

    def _payload(self, row: dict[str, float]) -> dict[str, Any]:
        summary, state = self.summary, self.state
        return {
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "model": {
                "preset": self.preset.name,
                "architecture": self.preset.architecture,
                "arguments": self.preset.arguments,
            },
            "bands": list(summary.bands),
            **self.norm.to_checkpoint(),
            "classes": summary.classes.model_dump(mode="json"),
            "num_classes": summary.num_classes,
            "nodata": summary.nodata,
            "tile_size": summary.tile_size,
            "encoder_weights": self.weights,
            "settings": self.settings.model_dump(mode="json"),
            "store": str(summary.path),
            "epoch": state.epoch,
            "metrics": row,
            "best": {"epoch": state.best_epoch, **state.best_metrics},
            **self.extras.checkpoint_keys(row),
            "resume": {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": {"torch": torch.get_rng_state()},
                "bad_epochs": state.bad_epochs,
            },
        }


def _check_same_model(out: Path, previous: dict[str, Any], preset: Preset) -> None:
    spec = previous["model"]
    if (
        spec["architecture"] != preset.architecture
        or dict(spec.get("arguments") or {}) != preset.arguments
    ):
        raise InputError(
            f"{out / 'last.pt'}: was trained with model {spec.get('preset')!r}, not "
            f"{preset.name!r}; drop --model to resume it, or start a new run with -o"
        )


__all__ = ["Callbacks", "EpochReport", "TrainResult", "train"]
