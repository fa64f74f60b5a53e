"""Uploaded scenes and the predictions run for them in the background.

Uploads go to one temporary folder under names the server makes (a counter and the sanitised file
name), never under a path the page chose; a file over the size limit is refused before it is
kept. A :class:`PredictJob` runs ``predict_scene`` in a thread and reports its progress.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

log = logging.getLogger(__name__)

UPLOAD_SUFFIXES = (".tif", ".tiff")
JobState = Literal["running", "done", "failed"]
Job = TypeVar("Job", bound="_Background")


def safe_upload_name(filename: str, number: int) -> str:
    """A file name for an upload: its base name, only ``[A-Za-z0-9._-]``, a GeoTIFF suffix.

    Raises:
        ValueError: the name does not end in .tif or .tiff.
    """
    base = re.split(r"[\\/]", filename)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".") or "scene.tif"
    if not cleaned.lower().endswith(UPLOAD_SUFFIXES):
        raise ValueError(f"{base!r}: upload a GeoTIFF (.tif or .tiff)")
    return f"{number:03d}-{cleaned}"


class _Background:
    """Runs a job's ``_work`` in a daemon thread; a failure becomes ``state``/``error``."""

    thread_name = "geotiler-view-job"
    state: JobState
    error: str
    _thread: threading.Thread | None

    def start(self: Job) -> Job:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        from geotiler.errors import GeotilerError

        try:
            self._work()
            self.state = "done"
        except GeotilerError as exc:
            self.error, self.state = str(exc), "failed"
        except Exception as exc:  # a background thread must report, not die silently
            log.exception("%s failed", self.thread_name)
            self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"

    def _work(self) -> None:
        raise NotImplementedError


@dataclass
class PredictJob(_Background):
    """One background prediction of an uploaded scene."""

    scene: Path
    model: Path
    output: Path
    probabilities: Path
    total: int = 0
    done: int = 0
    state: JobState = "running"
    error: str = ""
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    thread_name = "geotiler-view-predict"

    def _work(self) -> None:
        from geotiler.grid import Grid
        from geotiler.inference import load_predictor
        from geotiler.predict import count_tiles, predict_scene

        predictor = load_predictor(self.model, device="cpu")
        grid = Grid.from_raster(self.scene)
        self.total = count_tiles(grid, predictor.tile_size)
        predict_scene(
            self.scene,
            self.output,
            predictor=predictor,
            classes=predictor.classes,
            probabilities=self.probabilities,
            progress=self._advance,
        )

    def _advance(self, tiles: int) -> None:
        self.done += tiles


@dataclass
class FineTuneJob(_Background):
    """``train --corrections`` run from the page, in a thread."""

    corrections: Path
    run: Path
    store: Path
    output: Path
    map_output: Path
    epoch: int = 0
    epochs: int = 0
    state: JobState = "running"
    error: str = ""
    summary: str = ""
    _thread: threading.Thread | None = field(default=None, repr=False)

    thread_name = "geotiler-view-train"

    def _work(self) -> None:
        from geotiler.train.corrections import fine_tune_settings, train_on_corrections
        from geotiler.train.trainer import Callbacks

        settings = fine_tune_settings(self.run)
        result = train_on_corrections(
            self.corrections, self.run, settings, store=self.store, output=self.output,
            predict_to=self.map_output, callbacks=Callbacks(on_epoch_start=self._epoch),
        )  # fmt: skip
        b, a = result.before, result.after
        self.summary = (
            f"{result.tiles_added} corrected tiles; corrected pixels right "
            f"{b.corrected_accuracy:.0%} -> {a.corrected_accuracy:.0%}; validation mIoU "
            f"{b.val_miou:.3f} -> {a.val_miou:.3f}; run {result.run_dir.name}"
        )

    def _epoch(self, epoch: int, _batches: int) -> None:
        self.epoch = epoch


def free_name(folder: Path, stem: str, suffix: str = "") -> Path:
    """``folder/stem-N suffix`` with the first N from 1 that does not exist yet."""
    n = 1
    while (folder / f"{stem}-{n}{suffix}").exists():
        n += 1
    return folder / f"{stem}-{n}{suffix}"
