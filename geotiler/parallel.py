"""Where Dask graphs run: the local threaded scheduler or a dask.distributed cluster.

``scheduler="threads"`` (the default) uses Dask's local thread pool; ``"synchronous"`` runs in the
calling thread (for debugging); ``"tcp://host:port"`` connects to a running dask.distributed
scheduler and runs the same graph there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import dask

from geotiler.errors import InputError

LOCAL_SCHEDULERS = ("threads", "synchronous", "processes")


@contextlib.contextmanager
def use_scheduler(scheduler: str | None = None, *, workers: int | None = None) -> Iterator[Any]:
    """Run enclosed ``dask.compute`` calls on ``scheduler``; yields the client (or None)."""
    name = scheduler or "threads"
    if "://" in name:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - distributed is a dependency
            raise InputError("a --scheduler address needs dask.distributed installed") from exc
        try:
            client = Client(name, timeout="10s", set_as_default=False)
        except OSError as exc:
            raise InputError(f"cannot reach the Dask scheduler at {name}: {exc}") from exc
        try:
            with dask.config.set(scheduler=client):
                yield client
        finally:
            client.close()
        return
    if name not in LOCAL_SCHEDULERS:
        raise InputError(
            f"unknown scheduler {name!r}: use threads, synchronous or a tcp://host:port address"
        )
    # The scheduler function itself, not its name: dask imports dask.distributed (~0.3 s) to look
    # for a client whenever the scheduler is given by name.
    options: dict[str, Any] = {"scheduler": _local_get(name)}
    if name == "threads":
        # Always explicit: called from a thread other than the main one, dask's threaded get
        # sizes its pool by Python's default (CPUs + 4), oversubscribing the cores.
        options["num_workers"] = workers or os.cpu_count() or 1
    with dask.config.set(**options):
        yield None


def _local_get(name: str) -> Any:
    if name == "threads":
        import dask.threaded

        return dask.threaded.get
    if name == "synchronous":
        import dask.local

        return dask.local.get_sync
    import dask.multiprocessing

    return dask.multiprocessing.get


def runs_in_this_process() -> bool:
    """Whether ``dask.compute`` runs tasks in this process's threads (no cluster configured).

    Tasks may then write their results straight into shared arrays instead of returning them.
    """
    scheduler = dask.config.get("scheduler", None)
    return scheduler is None or scheduler in (_local_get("threads"), _local_get("synchronous"))
