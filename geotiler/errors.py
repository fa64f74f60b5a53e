"""One exception root for geotiler; each subclass also inherits the builtin it refines.

The CLI turns any :class:`GeotilerError` into a one-line message on stderr and a non-zero exit.
Messages name the file, the offending value and what to do about it.
"""

from __future__ import annotations


class GeotilerError(Exception):
    """Root of every error geotiler raises on purpose."""


class CatalogError(GeotilerError, ValueError):
    """The data catalog or a pipeline file is missing, malformed or refers to something unknown."""


class RasterError(GeotilerError, OSError):
    """A raster is missing, unreadable or not a raster at all."""


class GridMismatchError(GeotilerError, ValueError):
    """Two rasters that must share a grid (or overlap) do not."""


class InputError(GeotilerError, ValueError):
    """An input has the wrong kind of content (dtype, band count, empty result, ...)."""


class OutputExistsError(GeotilerError, FileExistsError):
    """An output exists and the user did not ask to overwrite it."""


class StoreError(GeotilerError, OSError):
    """A tile store is missing, incomplete or of an unknown layout."""


class TrainingError(GeotilerError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


class OutputBusyError(GeotilerError, BlockingIOError):
    """Another geotiler process is writing the same output right now."""


class RankStoodDown(GeotilerError):
    """A torchrun rank leaves because another rank failed and reports why (see
    :func:`geotiler.train.distributed.agree`); the CLI exits 0 without a word."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a command; the message says what was kept and how to go on.

    A ``KeyboardInterrupt`` (not a :class:`GeotilerError`), so ``except Exception`` never
    swallows it; the CLI prints its message as one line.
    """
