"""Reading many tiles of a store at once, at the speed of its codec.

Reading a tile at a time through zarr-python costs several times the decoding itself: every call
goes through the sharding codec's per-chunk pipeline. A :class:`BatchReader` reads a whole list
of tiles (any order, repeats allowed) in few calls, through one of four backends (the
:data:`BACKENDS` registry):

- ``native``: the store's own layout read directly (:mod:`geotiler.tiles.shards`): each run of
  tiles is one ``pread`` of its bytes, each tile one Blosc decode into the output array. This
  runs at the codec's speed; it reads only the layout the writer makes and declines others;
- ``tensorstore``: the whole list in one indexed read (C++ sharding and Blosc);
- ``zarrs``: zarr-python with the Rust codec pipeline of the ``zarrs`` package, one call per run
  of consecutive tiles;
- ``zarr``: plain zarr-python, one call per run (always available: the fallback).

``auto`` takes the first of those that is installed and reads the store. Every backend returns
exactly the tiles :meth:`geotiler.tiles.store.TileStore.read` returns. ``pip install
geotiler[fast]`` installs tensorstore and zarrs.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from geotiler.errors import InputError
from geotiler.tiles.shards import ShardedArrays, UnsupportedLayout

log = logging.getLogger(__name__)

Backend = Literal["auto", "tensorstore", "zarrs", "zarr"]
ZARRS_PIPELINE = "zarrs.ZarrsCodecPipeline"


Pair = tuple[np.ndarray, np.ndarray]


class _Arrays(Protocol):
    size: int

    def read(self, ids: np.ndarray, out: Pair | None) -> Pair:
        """Images and masks of tiles ``ids`` (any order, repeats allowed), in that order, into
        ``out`` when given."""
        ...


def _by_distinct(read: Callable[[np.ndarray], Pair], ids: np.ndarray, out: Pair | None) -> Pair:
    """``read`` (of sorted, distinct ids) for any ``ids``, put back in their order."""
    distinct, where = np.unique(ids, return_inverse=True)
    images, masks = read(distinct)
    if not (len(distinct) == len(ids) and np.array_equal(distinct, ids)):
        images, masks = images[where], masks[where]
    if out is None:
        return images, masks
    out[0][...] = images
    out[1][...] = masks
    return out


def runs(ids: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of consecutive values in sorted, distinct ``ids``."""
    if len(ids) == 0:
        return []
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(ids)]])
    return [(int(ids[a]), int(ids[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


class _ZarrArrays:
    """The store's arrays through zarr-python, with its own or the zarrs codec pipeline."""

    def __init__(self, path: Path, *, pipeline: str | None, threads: int | None) -> None:
        import zarr

        settings: dict[str, Any] = {}
        if pipeline is not None:
            settings["codec_pipeline.path"] = pipeline
        if threads is not None:
            settings["threading.max_workers"] = threads
        # The pipeline is bound when an array is opened: these handles keep it, nothing else
        # in the process changes.
        with zarr.config.set(settings):
            group: Any = zarr.open_group(str(path), mode="r")
            self.images = group["images"]
            self.masks = group["masks"]
        self.size = int(self.masks.shape[0])

    def read(self, ids: np.ndarray, out: Pair | None) -> Pair:
        return _by_distinct(self._read_distinct, ids, out)

    def _read_distinct(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [(self.images[a:b], self.masks[a:b]) for a, b in runs(ids)]
        if len(parts) == 1:
            return parts[0]
        return (
            np.concatenate([image for image, _ in parts]),
            np.concatenate([mask for _, mask in parts]),
        )


class _TensorstoreArrays:
    """The store's arrays through tensorstore: one indexed read for the whole list."""

    def __init__(self, path: Path, *, threads: int | None) -> None:
        import tensorstore as ts

        limits = {} if threads is None else {"data_copy_concurrency": {"limit": threads}}
        context = ts.Context(limits)

        def open_array(name: str) -> Any:
            spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / name)}}
            return ts.open(spec, read=True, open=True, context=context).result()

        self.images = open_array("images")
        self.masks = open_array("masks")
        self.size = int(self.masks.shape[0])

    def read(self, ids: np.ndarray, out: Pair | None) -> Pair:
        return _by_distinct(self._read_distinct, ids, out)

    def _read_distinct(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = self.images[ids].read()
        masks = self.masks[ids].read()
        return np.asarray(images.result()), np.asarray(masks.result())


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


BackendFactory = Callable[[Path, "int | None"], _Arrays]
BACKENDS: dict[str, tuple[str | None, BackendFactory]] = {
    "native": (None, lambda p, t: ShardedArrays(p)),
    "tensorstore": ("tensorstore", lambda p, t: _TensorstoreArrays(p, threads=t)),
    "zarrs": ("zarrs", lambda p, t: _ZarrArrays(p, pipeline=ZARRS_PIPELINE, threads=t)),
    "zarr": (None, lambda p, t: _ZarrArrays(p, pipeline=None, threads=t)),
}
"""Backend name -> (the module it needs, or None, and how to open a store's arrays)."""


def available_backends() -> list[str]:
    """The installed backends, fastest first."""
    return [name for name, (module, _) in BACKENDS.items() if module is None or _installed(module)]


def resolve_backend(backend: Backend | str) -> str:
    """``backend`` itself if installed, or for ``auto`` the fastest one installed.

    Raises:
        InputError: an unknown backend, or one that is not installed (saying what to install).
    """
    if backend == "auto":
        return "auto"
    if backend not in BACKENDS:
        raise InputError(f"unknown tile reader {backend!r}; known: auto, {', '.join(BACKENDS)}")
    module = BACKENDS[backend][0]
    if module is not None and not _installed(module):
        raise InputError(
            f"the {backend} tile reader needs the {module} package: "
            f"pip install 'geotiler[fast]' (or choose --reader zarr)"
        )
    return backend


class BatchReader:
    """Reads lists of tiles of the store at ``path`` through one backend.

    Args:
        path: the tile store.
        backend: ``auto`` or one of :data:`BACKENDS`.
        threads: the backend's decoding threads (None: its default, every core); a DataLoader
            worker, one of several processes already, is best served by 1.
    """

    def __init__(
        self, path: str | PathLike[str], *, backend: Backend | str = "auto", threads: int | None
    ) -> None:
        self.path = Path(path)
        names = available_backends() if backend == "auto" else [resolve_backend(backend)]
        for name in names:
            try:
                self._arrays = BACKENDS[name][1](self.path, threads)
            except UnsupportedLayout as exc:
                if backend != "auto":
                    raise InputError(f"{self.path}: the {name} tile reader {exc}") from exc
                log.debug("%s: %s declines: %s", self.path, name, exc)
                continue
            self.backend = name
            break
        log.debug("reading %s through %s", self.path, self.backend)

    def read(self, ids: np.ndarray | list[int], *, out: Pair | None = None) -> Pair:
        """Images ``(n, B, S, S)`` and masks ``(n, S, S)`` of tiles ``ids``, in that order.

        ``out``: arrays of those shapes and the store's dtypes to fill (e.g. in shared memory,
        so that a DataLoader worker's batch reaches the training process without a copy).
        """
        wanted = np.asarray(ids, dtype=np.int64)
        if len(wanted) and (wanted.min() < 0 or wanted.max() >= self._arrays.size):
            raise IndexError(
                f"tile ids {wanted.min()}..{wanted.max()} out of range 0..{self._arrays.size - 1}"
            )
        return self._arrays.read(wanted, out)
