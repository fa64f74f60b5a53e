"""What state a training run is in, recorded in ``run.json`` in its folder.

``run.json`` is the run folder's marker (:mod:`geotiler.outputs`): it lists the files the run
wrote and says ``running`` (with the pid and the epochs done), ``interrupted`` (Ctrl-C or
SIGTERM: the last completed epoch is in ``last.pt``), ``failed`` or ``finished``. A run killed
outright still says ``running``, with the pid of a process that is gone. Predict refuses a
checkpoint of a run that did not finish unless told otherwise, and every unfinished state says
how to resume.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geotiler import interrupts, outputs
from geotiler.errors import InputError, RunInterrupted

RUN_FILE = outputs.MARKERS["run"]


def resume_command(folder: Path) -> str:
    return f"geotiler train --resume {shlex.quote(str(folder))}"


@dataclass
class RunRecorder:
    """Writes ``run.json`` as the run goes (a no-op on DDP ranks other than 0)."""

    folder: Path
    epochs: int
    epoch: int
    enabled: bool = True
    started: float = field(default_factory=time.time)
    stop: interrupts.StopRequest = field(default_factory=interrupts.StopRequest)

    def update(self, state: str, **fields: Any) -> None:
        if not self.enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        outputs.write_marker(
            self.folder, "run", since=self.started - 1, state=state, epoch=self.epoch,
            epochs=self.epochs, pid=os.getpid(), host=socket.gethostname(), **fields,
        )  # fmt: skip

    def wrap(self, callbacks: Any) -> Any:
        """``callbacks`` that also record each epoch (after its checkpoints are written) and stop
        at the end of a batch or an epoch when a signal asked to (:attr:`stop`)."""
        end, batch = callbacks.on_epoch_end, callbacks.on_batch

        def on_epoch_end(report: Any) -> None:
            self.epoch = int(report.epoch)
            self.update("running")
            if end is not None:
                end(report)
            self.stop.check()

        def on_batch(tiles: int, loss: float) -> None:
            if batch is not None:
                batch(tiles, loss)
            self.stop.check()

        callbacks.on_epoch_end, callbacks.on_batch = on_epoch_end, on_batch
        return callbacks


@contextlib.contextmanager
def guard(
    folder: Path,
    store: str | os.PathLike[str],
    *,
    epochs: int,
    first_epoch: int,
    resume: bool,
    overwrite: bool,
    enabled: bool = True,
) -> Iterator[RunRecorder]:
    """Claim the run folder (checked, locked), record the run's state, and handle interruption.

    With ``overwrite`` (and not ``resume``) an existing run folder is replaced. Ctrl-C or SIGTERM
    asks the run to stop at the end of the batch (a second one stops at once); either becomes
    :class:`~geotiler.errors.RunInterrupted` (a KeyboardInterrupt) saying how to resume.
    """
    recorder = RunRecorder(folder, epochs, first_epoch, enabled=enabled)
    claim = (
        outputs.claim(folder, "run", overwrite=overwrite, keep=resume, inputs=[store])
        if enabled
        else contextlib.nullcontext(folder)
    )
    with claim, interrupts.graceful() as stop:
        recorder.stop = stop
        if enabled and overwrite and not resume:
            outputs.clear(folder, "run")
        recorder.update("running")
        try:
            yield recorder
        except BaseException as exc:
            # A stop was asked for: whatever it broke on the way (a DataLoader worker that got
            # the terminal's Ctrl-C too) is the interruption.
            if not (isinstance(exc, KeyboardInterrupt) or stop.requested):
                recorder.update("failed", reason=str(exc).splitlines()[0][:200] if str(exc) else "")
                raise
            recorder.epoch = _saved_epoch(folder, recorder.epoch)
            recorder.update("interrupted")
            raise RunInterrupted(_interrupted_message(recorder)) from None
        recorder.update("finished")


def _saved_epoch(folder: Path, known: int) -> int:
    """The epoch ``last.pt`` holds (an interrupt can land between its save and the record)."""
    from geotiler.errors import GeotilerError
    from geotiler.train.checkpoint import read_checkpoint

    if not (folder / "last.pt").is_file():
        return known
    try:
        return int(read_checkpoint(folder / "last.pt")["epoch"])
    except (GeotilerError, KeyError, TypeError, ValueError):
        return known


def _interrupted_message(recorder: RunRecorder) -> str:
    if recorder.epoch == 0:
        return (
            f"{recorder.folder}: training interrupted in epoch 1 of {recorder.epochs}, before any "
            "epoch finished; nothing to resume: start again (with --overwrite to replace the run)"
        )
    return (
        f"{recorder.folder}: training interrupted after epoch {recorder.epoch} of "
        f"{recorder.epochs} (last.pt holds it); resume with `{resume_command(recorder.folder)}`"
    )


def read_state(folder: Path) -> dict[str, Any] | None:
    """The recorded state of the run in ``folder`` (None when it has no ``run.json``)."""
    return outputs.read_marker(folder, "run")


def describe(state: dict[str, Any]) -> str:
    """``finished``, ``interrupted after epoch 3 of 40``, ``killed after epoch 3 of 40`` ..."""
    done, total = state.get("epoch", 0), state.get("epochs", "?")
    name = state.get("state")
    if name == "running":
        if _alive(state):
            return f"is still training (pid {state.get('pid')}, epoch {done} of {total} done)"
        return f"was killed after epoch {done} of {total} (process {state.get('pid')} is gone)"
    if name == "failed":
        reason = f": {state['reason']}" if state.get("reason") else ""
        return f"failed after epoch {done} of {total}{reason}"
    if name == "interrupted":
        return f"was interrupted after epoch {done} of {total}"
    return str(name)


def _alive(state: dict[str, Any]) -> bool:
    if state.get("host") != socket.gethostname():
        return True  # another machine's process: assume it still runs
    try:
        os.kill(int(state.get("pid", 0)), 0)
    except (ProcessLookupError, ValueError, OverflowError):
        return False
    except PermissionError:
        return True
    return int(state.get("pid", 0)) > 0


def check_finished(checkpoint: Path) -> None:
    """Refuse a checkpoint whose run folder says the run did not finish.

    Raises:
        InputError: saying how the run ended and how to resume it or use it anyway.
    """
    state = read_state(checkpoint.parent)
    if state is None or state.get("state") == "finished":
        return
    folder = checkpoint.parent
    running = state.get("state") == "running" and _alive(state)
    fix = "wait for it to finish" if running else f"resume it with `{resume_command(folder)}`"
    raise InputError(
        f"{checkpoint}: its run {describe(state)}; {fix}, or pass --allow-unfinished to use this "
        "checkpoint as it is"
    )
