"""Interruptions as ordinary exceptions, and writes that an interruption must not cut in two.

``SIGTERM`` (what ``kill``, schedulers and containers send) is turned into ``KeyboardInterrupt``
like Ctrl-C, so the same clean-up runs for both: temporary outputs are removed, locks released,
and a training run records where it stopped. :func:`deferred` holds both signals back while a
group of files that belong together is written, and raises them once it is complete;
:func:`graceful` turns the first signal into a request the caller honours at its next safe point
(a second one stops at once).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """Make SIGTERM raise KeyboardInterrupt in this process (as SIGINT does)."""
    if _main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


class StopRequest:
    """Set by the first SIGINT/SIGTERM inside :func:`graceful`; :meth:`check` at safe points."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was asked for (call where stopping is safe)."""
        if self.signal is not None:
            raise KeyboardInterrupt(signal.Signals(self.signal).name)


@contextlib.contextmanager
def graceful() -> Iterator[StopRequest]:
    """The first SIGINT/SIGTERM only asks to stop (see :class:`StopRequest`); a second one
    raises KeyboardInterrupt at once. Outside the main thread nothing is installed."""
    request = StopRequest()
    if not _main_thread():
        yield request
        return

    def ask(signum: int, frame: FrameType | None) -> None:
        if request.signal is not None:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        request.signal = signum

    previous: dict[int, Any] = {int(sig): signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, ask)
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then raise KeyboardInterrupt if one came.

    Outside the main thread (where Python delivers no signals) this is a no-op.
    """
    if not _main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous: dict[int, Any] = {int(sig): signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if pending:
        raise KeyboardInterrupt(signal.Signals(pending[0]).name)
