"""One writer per output, and the removal of what dead writers left behind.

A writer holds an advisory lock (``filelock``, an OS ``flock``) on ``.<name>.lock`` beside its
output from its last check of the output until the result is in place, so a second geotiler
writing the same output stops at once with the holder's process id. The kernel drops the lock
when a process dies, however it dies, so a lock is never stale; the lock file holds the holder's
pid and is removed (while still held) on release.

Temporary outputs are named ``.<name>.partial-<8 hex>...`` beside their target. A partial whose
target's lock is free belongs to a writer that is gone: :func:`sweep_partials` removes it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from geotiler.errors import OutputBusyError, RasterError

log = logging.getLogger(__name__)

PARTIAL = re.compile(r"^\.(?P<target>.+)\.partial-[0-9a-f]{8}")
"""Names geotiler gives temporary outputs (files, sidecars and staging folders)."""
INNER_PARTIAL = re.compile(r"^\..+\.partial(-[0-9a-f]{8}.*)?$")
"""Temporary files inside a folder output that geotiler owns (``.metrics.csv.partial``)."""


def lock_path(target: Path) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` in the same folder."""
    return target.parent / f".{target.name}.lock"


def holder_pid(target: Path) -> str:
    """The pid recorded by the process holding ``target``'s lock ("unknown" when not written)."""
    try:
        text = lock_path(target).read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def writer_lock(target: Path, *, wait_s: float = 0) -> Iterator[None]:
    """Hold ``target``'s lock for the block; OutputBusyError when another process holds it.

    ``wait_s`` waits that long for the holder to finish first.

    Raises:
        OutputBusyError: another process (or another writer in this one) holds the lock.
        RasterError: the folder cannot be written (permission denied, read-only file system).
    """
    held = _try_lock(target, wait_s)
    if held is None:
        raise OutputBusyError(
            f"{target}: is being written by another geotiler (pid {holder_pid(target)}); wait "
            "for it to finish, or write elsewhere with -o"
        )
    try:
        yield
    finally:
        _release(target, held)


def _try_lock(target: Path, wait_s: float = 0) -> FileLock | None:
    path = lock_path(target)
    lock = FileLock(str(path), timeout=wait_s)
    try:
        lock.acquire()
    except Timeout:
        return None
    except OSError as exc:
        raise unwritable(target.parent, exc) from None
    try:
        path.write_text(str(os.getpid()), encoding="utf-8")
    except OSError as exc:
        _release(target, lock)
        raise unwritable(target.parent, exc) from None
    return lock


def _release(target: Path, lock: FileLock) -> None:
    # Removed while still held: a process that opened the old file sees it unlinked and retries.
    with contextlib.suppress(OSError):
        lock_path(target).unlink()
    lock.release()


def unwritable(folder: Path, exc: OSError) -> RasterError:
    """The one-line error for a folder geotiler cannot write into."""
    reason = {errno.EROFS: "read-only file system", errno.ENOSPC: "no space left"}.get(
        exc.errno or 0, exc.strerror or "permission denied"
    )
    return RasterError(
        f"{folder}: cannot write into this folder ({reason.lower()}); choose an output in a "
        "folder you can write to with -o"
    )


def sweep_partials(folder: Path, *, held: Path | None = None) -> list[Path]:
    """Remove temporary outputs in ``folder`` left by writers that are gone; returns them.

    Only names geotiler gives (``.<target>.partial-<hex>...``), and only when the target's lock
    is free (a live writer holds it, in this process too) or is ``held``, the target whose lock
    the caller holds and has not started writing yet.
    """
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    by_target: dict[str, list[Path]] = {}
    for entry in entries:
        match = PARTIAL.match(entry.name)
        if match:
            by_target.setdefault(match["target"], []).append(entry)
    removed: list[Path] = []
    for name, leftovers in by_target.items():
        target = folder / name
        if held is not None and target == held:
            for leftover in leftovers:
                remove_path(leftover)
                removed.append(leftover)
            continue
        try:
            lock = _try_lock(target)
        except RasterError:  # the folder cannot be written: nothing to sweep either
            return removed
        if lock is None:
            continue  # a live writer's
        try:
            for leftover in leftovers:
                remove_path(leftover)
                removed.append(leftover)
        finally:
            _release(target, lock)
    for path in removed:
        log.info("removed %s, left by an interrupted geotiler", path)
    return removed


def sweep_inside(folder: Path) -> list[Path]:
    """Remove temporary files inside a folder output whose lock this process holds."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if INNER_PARTIAL.match(entry.name) or PARTIAL.match(entry.name):
                remove_path(entry)
                removed.append(entry)
    return removed


def remove_path(path: Path) -> None:
    """Remove a file, a link or a folder tree (missing is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
