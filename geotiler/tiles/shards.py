"""Direct reads of the tile store's sharded arrays: the bytes of a run of tiles, Blosc-decoded.

The writer (:mod:`geotiler.tiles.writer`) stores ``images`` and ``masks`` as Zarr v3
``sharding_indexed`` arrays: a shard file holds ``shard_tiles`` tiles, one inner chunk each
(little-endian bytes, then Blosc), followed by its index (offset and length of every chunk, as
little-endian uint64, then the index's CRC32C). zarr-python reads a tile through a per-chunk
async pipeline that costs several times the decode; here a run of consecutive tiles of a shard is
one ``pread`` (the writer lays chunks out in order) and each tile one Blosc decode straight into
the caller's array, so reading runs at the codec's speed.

Only that layout is read: :class:`ShardedArrays` raises :class:`UnsupportedLayout` for anything
else (another codec, index position or chunk shape), and the caller uses zarr instead.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

MISSING = 2**64 - 1
"""Offset and length of a chunk the shard does not hold (it reads as the fill value)."""


class UnsupportedLayout(Exception):
    """The array is not laid out as this reader expects (read it through zarr)."""


class ShardedArray:
    """One array of the store (``images`` or ``masks``), read by whole tiles."""

    def __init__(self, folder: Path) -> None:
        try:
            meta = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UnsupportedLayout(f"cannot read {folder / 'zarr.json'}: {exc}") from exc
        self.folder = folder
        self.shape = tuple(int(n) for n in meta["shape"])
        self.dtype = np.dtype(meta["data_type"])
        self.fill_value = meta.get("fill_value", 0)
        self.shard_tiles, self._separator = _check_layout(meta, self.shape, self.dtype)
        self._indexes: dict[int, np.ndarray | None] = {}
        self._scratch = bytearray()  # reused: fresh pages for every read cost a page fault each

    def _path(self, shard: int) -> Path:
        keys = [str(shard)] + ["0"] * (len(self.shape) - 1)
        return self.folder / ("c" + self._separator + self._separator.join(keys))

    def _index(self, shard: int, fd: int | None) -> np.ndarray | None:
        """``(shard_tiles, 2)`` offsets and lengths of the shard's chunks (None: no shard)."""
        if shard in self._indexes:
            return self._indexes[shard]
        index = None
        if fd is not None:
            size = 16 * self.shard_tiles + 4
            raw = os.pread(fd, size, os.fstat(fd).st_size - size)
            if len(raw) != size or not _crc_ok(raw[:-4], raw[-4:]):
                raise OSError(f"{self._path(shard)}: damaged shard index; re-run `geotiler tile`")
            index = np.frombuffer(raw[:-4], dtype="<u8").reshape(self.shard_tiles, 2)
        self._indexes[shard] = index
        return index

    def read_into(self, first: int, out: np.ndarray, slots: np.ndarray) -> None:
        """Tiles ``first, first + 1, ...`` (all in one shard) into ``out[slots[0]], ...``."""
        count = len(slots)
        shard, within = divmod(first, self.shard_tiles)
        path = self._path(shard)
        try:
            fd: int | None = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        try:
            index = self._index(shard, fd)
            entries = None if index is None else index[within : within + count]
            adjacent = entries is not None and bool(
                np.all(entries[:, 0] != MISSING)
                and np.all(entries[1:, 0] == entries[:-1, 0] + entries[:-1, 1])
            )
            if fd is None or entries is None or not adjacent:
                self._read_sparse(fd, entries, out, slots)
                return
            start = int(entries[0, 0])
            data = self._pread(fd, int(entries[-1, 0] + entries[-1, 1]) - start, start, path)
            for slot, (offset, length) in zip(slots, entries, strict=True):
                at = int(offset) - start
                _decode(data[at : at + int(length)], out[slot], path)
        finally:
            if fd is not None:
                os.close(fd)

    def _read_sparse(
        self, fd: int | None, entries: np.ndarray | None, out: np.ndarray, slots: np.ndarray
    ) -> None:
        """Chunk by chunk, the missing ones as the fill value."""
        for k, slot in enumerate(slots):
            if fd is None or entries is None or entries[k, 0] == MISSING:
                out[slot] = self.fill_value
                continue
            offset, length = int(entries[k, 0]), int(entries[k, 1])
            _decode(self._pread(fd, length, offset, self.folder), out[slot], self.folder)

    def _pread(self, fd: int, length: int, offset: int, where: Path) -> memoryview:
        if len(self._scratch) < length:
            self._scratch = bytearray(length)
        view = memoryview(self._scratch)[:length]
        if os.preadv(fd, [view], offset) != length:
            raise OSError(f"{where}: shard shorter than its index says; re-run `geotiler tile`")
        return view


class ShardedArrays:
    """The ``images`` and ``masks`` arrays of the store at ``path``, read by runs of tiles."""

    def __init__(self, path: Path) -> None:
        if sys.byteorder != "little":
            raise UnsupportedLayout("reads little-endian machines' native order only")
        self.images = ShardedArray(Path(path) / "images")
        self.masks = ShardedArray(Path(path) / "masks")
        if self.images.shape[0] != self.masks.shape[0]:
            raise UnsupportedLayout("images and masks hold different numbers of tiles")
        self.size = self.masks.shape[0]

    def read(
        self, ids: np.ndarray, out: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Images and masks of tiles ``ids`` (any order, repeats allowed), in that order.

        Each tile is decoded straight into its place in the output (``out`` when given, C
        contiguous): no copy after decoding.
        """
        if out is None:
            out = (
                np.empty((len(ids), *self.images.shape[1:]), self.images.dtype),
                np.empty((len(ids), *self.masks.shape[1:]), self.masks.dtype),
            )
        images, masks = out
        for array, given in ((self.images, images), (self.masks, masks)):
            if given.shape != (len(ids), *array.shape[1:]) or given.dtype != array.dtype:
                raise ValueError(
                    f"out arrays must be {(len(ids), *array.shape[1:])} {array.dtype}, "
                    f"not {given.shape} {given.dtype}"
                )
            if not given.flags.c_contiguous:
                raise ValueError("out arrays must be C contiguous")
        order = np.argsort(ids, kind="stable")
        ordered = ids[order]
        for start, stop in _shard_runs(ordered, self.images.shard_tiles, self.masks.shard_tiles):
            first, slots = int(ordered[start]), order[start:stop]
            self.images.read_into(first, images, slots)
            self.masks.read_into(first, masks, slots)
        return images, masks


def _shard_runs(ids: np.ndarray, *shard_tiles: int) -> list[tuple[int, int]]:
    """Positions ``[start, stop)`` of runs of consecutive sorted ``ids`` within one shard.

    A repeated id starts a new run (it is read again).
    """
    if len(ids) == 0:
        return []
    cut = np.diff(ids) != 1
    for tiles in shard_tiles:
        cut |= np.diff(ids // tiles) != 0
    breaks = np.flatnonzero(cut) + 1
    starts = [0, *breaks.tolist()]
    stops = [*breaks.tolist(), len(ids)]
    return list(zip(starts, stops, strict=True))


def _check_layout(meta: dict[str, Any], shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, str]:
    """``(tiles per shard, key separator)`` if ``meta`` is the writer's layout, else raise."""
    try:
        (codec,) = meta["codecs"]
        config = codec["configuration"]
        outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
        inner = config["chunk_shape"]
        inner_codecs = [c["name"] for c in config["codecs"]]
        index_codecs = [c["name"] for c in config["index_codecs"]]
        endian = (config["codecs"][0].get("configuration") or {}).get("endian", "little")
        keys = meta["chunk_key_encoding"]
    except (KeyError, TypeError, ValueError) as exc:
        raise UnsupportedLayout(f"unexpected array metadata ({exc})") from exc
    expected = {
        "codec": (codec["name"], "sharding_indexed"),
        "index location": (config.get("index_location", "end"), "end"),
        "inner codecs": (inner_codecs, ["bytes", "blosc"]),
        "index codecs": (index_codecs, ["bytes", "crc32c"]),
        "chunk": (list(inner), [1, *shape[1:]]),
        "shard": (list(outer[1:]), list(shape[1:])),
        "key encoding": (keys.get("name"), "default"),
        "storage transformers": (meta.get("storage_transformers") or [], []),
    }
    for what, (found, wanted) in expected.items():
        if found != wanted:
            raise UnsupportedLayout(f"{what} is {found}, not {wanted}")
    if endian != "little" and dtype.itemsize > 1:
        raise UnsupportedLayout("big-endian samples")
    separator = (keys.get("configuration") or {}).get("separator", "/")
    return int(outer[0]), separator


def _decode(chunk: memoryview, out: np.ndarray, where: Path) -> None:
    from numcodecs import blosc

    # Bytes 4..7 of a Blosc header: the decoded size.
    if len(chunk) < 16 or struct.unpack_from("<I", chunk, 4)[0] != out.nbytes:
        raise OSError(f"{where}: a chunk does not hold one tile; re-run `geotiler tile`")
    blosc.decompress(chunk, out)


def _crc_ok(data: bytes, stored: bytes) -> bool:
    import google_crc32c

    return int(google_crc32c.value(data)).to_bytes(4, "little") == stored
