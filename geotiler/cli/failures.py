"""One line for what ends a command without being a bug: interruptions and the environment's errors.

Errors geotiler raises on purpose (:class:`~geotiler.errors.GeotilerError`) already say what to
do. This module words the rest a user can meet: Ctrl-C or SIGTERM (with what became of the
outputs), a raster that fails to read half-way (truncated or corrupt), and file-system errors
(permission denied, disk full, read-only).
"""

from __future__ import annotations

import errno
import re

INTERRUPT_EXIT = 130
AFTER_INTERRUPT = {
    "tile": "the store keeps the tiles written so far: re-run the same command to resume",
    "filter": "the store's decisions are unfinished: re-run `geotiler filter` on it",
    "run": "finished stages are kept: re-run the same command to go on",
    "demo": "finished stages are kept: re-run `geotiler demo` to go on",
}
DEFAULT_AFTER_INTERRUPT = "no output was replaced; re-run the command to start again"
_BAND_MESSAGE = re.compile(r"^(?P<file>.+?), band \d+: (?P<detail>.+)$")
_FIXES = {
    errno.EACCES: "permission denied: write elsewhere with -o, or fix the permissions",
    errno.EPERM: "operation not permitted: write elsewhere with -o, or fix the permissions",
    errno.EROFS: "read-only file system: write elsewhere with -o",
    errno.ENOSPC: "no space left on the device: free some space or write elsewhere with -o",
    errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere with -o",
}


def interrupted(command: str | None) -> str:
    """What a user reads after Ctrl-C: the command stopped, and what became of its outputs."""
    after = AFTER_INTERRUPT.get(command or "", DEFAULT_AFTER_INTERRUPT)
    return f"{command or 'geotiler'} stopped; {after}"


def quiet_after_interrupt() -> None:
    """Silence the warnings an interruption leaves (coroutines of zarr's I/O never awaited)."""
    import warnings

    warnings.filterwarnings(
        "ignore", message="coroutine .* was never awaited", category=RuntimeWarning
    )


def one_line(message: str) -> str:
    """A geotiler error's message, without the traceback a DataLoader worker wraps around it."""
    if "\nOriginal Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    return re.sub(r"^[\w.]+Error: ", "", last)


def describe(exc: BaseException) -> str | None:
    """One line for a read failure or a file-system error, or None for anything else (a bug)."""
    from rasterio.errors import RasterioIOError

    if isinstance(exc, RasterioIOError):
        return _read_failure(exc)
    if isinstance(exc, OSError) and exc.errno in _FIXES:
        where = exc.filename or "an output"
        return f"{where}: {_FIXES[exc.errno]}"
    return None


def _read_failure(exc: BaseException) -> str:
    """Name the file from GDAL's messages in the exception chain (rasterio's own omits it)."""
    detail = str(exc).splitlines()[0] if str(exc) else "read failed"
    seen: BaseException | None = exc
    while seen is not None:
        match = _BAND_MESSAGE.match(str(seen).strip())
        if match:
            return (
                f"{match['file']}: reading it failed ({match['detail']}); the file is truncated "
                "or corrupt: re-create or re-download it"
            )
        seen = seen.__cause__ or seen.__context__
    return f"a raster could not be read ({detail}); it is truncated or corrupt: re-create it"
