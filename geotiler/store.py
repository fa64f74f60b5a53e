"""The Zarr v3 tile store: its layout, a resumable writer and the :class:`TileStore` reader.

Layout (group at ``path``): ``images`` (N, B, S, S) in the scene dtype and ``masks`` (N, S, S)
uint8, one tile per chunk and ``shard_tiles`` tiles per shard file, Blosc-LZ4 compressed;
``index/<name>`` per-tile arrays (scene, row, col, valid_px, cloudy_px, class_counts, band_sum,
band_sumsq, then the decisions verdict, split, weight); root attrs under ``geotiler``.

The writer fills whole shards in tile order and records after each one how far it got, so an
interrupted run resumes at the first tile not yet in a shard. ``complete: true`` is written last;
:meth:`TileStore.open` refuses a store without it.
"""

from __future__ import annotations

import shutil
from functools import cached_property
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import zarr
from affine import Affine
from rasterio.crs import CRS
from zarr.codecs import BloscCodec, BloscShuffle

from geotiler.catalog import ClassTable
from geotiler.errors import OutputExistsError, StoreError
from geotiler.filters import TileIndex
from geotiler.grid import Grid
from geotiler.tiling import TileBatch

ATTRS_KEY = "geotiler"
FORMAT = "geotiler-tiles"
VERSION = 1
SPLITS = ("train", "val", "test")
SOURCES = ("tiled", "corrected")
"""Codes of the optional ``index/source`` array: cut by ``tile``, or added from corrections."""
Split = Literal["train", "val", "test"]
INDEX_CHUNK_ROWS = 16384
INDEX_FLUSH_TILES = 1024
"""Index rows are written (and progress recorded) at least this many tiles apart."""
STAT_ARRAYS = ("valid_px", "cloudy_px", "class_counts", "band_sum", "band_sumsq")


def _compressor(itemsize: int) -> BloscCodec:
    # LZ4 with bit shuffling: on uint16 imagery it encodes ~2.5x and decodes ~2x faster than
    # zstd-1 (the writer's and the trainer's bottleneck) for 5-35% more bytes.
    return BloscCodec(cname="lz4", clevel=1, shuffle=BloscShuffle.bitshuffle, typesize=itemsize)


def _writable(array: Any) -> Any:
    """``array`` writing every chunk: zarr's all-fill check cost a quarter of the write time."""
    return array.with_config({"write_empty_chunks": True})


def read_meta(path: Path) -> dict[str, Any] | None:
    """The ``geotiler`` attrs of a store at ``path``, or None when it is not a geotiler store."""
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError):
        return None
    meta = group.attrs.asdict().get(ATTRS_KEY)
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


class StoreWriter:
    """Appends tiles in order, writing whole shards; resumable from the recorded progress."""

    def __init__(self, path: Path, group: Any, meta: dict[str, Any]) -> None:
        self.path = path
        self.group = group
        self.meta = meta
        self.shard_tiles = int(meta["shard_tiles"])
        progress = meta["progress"]
        self.written = int(progress["tiles_written"])
        self.resume_unit = int(progress["unit"])
        self.next_id = self.written - int(progress["skip"])
        self._pending: list[tuple[np.ndarray, TileBatch]] = []
        self._unit_first: dict[int, int] = {}
        self._index_parts: list[dict[str, np.ndarray]] = []
        self._flushed = self.written  # index rows (and the recorded progress) reach this tile
        self._arrays = {name: _writable(group[name]) for name in ("images", "masks")}
        self.done = bool(progress.get("done", False))

    @classmethod
    def open(
        cls,
        path: str | PathLike[str],
        meta: dict[str, Any],
        *,
        capacity: int,
        overwrite: bool,
    ) -> StoreWriter:
        """Resume the incomplete store at ``path`` made with the same ``meta["tiling"]``, or start.

        Raises:
            OutputExistsError: a complete store (or other content) is there and not ``overwrite``.
            StoreError: an incomplete store made with other settings is there, not ``overwrite``.
        """
        target = Path(path)
        if target.exists():
            old = read_meta(target)
            if old is not None and not old.get("complete") and old.get("tiling") == meta["tiling"]:
                group = zarr.open_group(str(target), mode="r+")
                fresh = {"command": meta.get("command"), "settings": meta.get("settings")}
                return cls(target, group, {**old, **fresh})
            if not overwrite:
                raise _refusal(target, old, meta)
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        return cls._create(target, meta, capacity)

    @classmethod
    def _create(cls, target: Path, meta: dict[str, Any], capacity: int) -> StoreWriter:
        group = zarr.open_group(str(target), mode="w", zarr_format=3)
        shard, size, bands = int(meta["shard_tiles"]), int(meta["tile_size"]), len(meta["bands"])
        dtype, classes = np.dtype(meta["dtype"]), int(meta["num_classes"])
        n = max(capacity, 1)
        group.create_array(
            "images",
            shape=(n, bands, size, size),
            dtype=dtype,
            chunks=(1, bands, size, size),
            shards=(shard, bands, size, size),
            compressors=_compressor(dtype.itemsize),
            fill_value=0,
        )
        group.create_array(
            "masks",
            shape=(n, size, size),
            dtype="uint8",
            chunks=(1, size, size),
            shards=(shard, size, size),
            compressors=_compressor(1),
            fill_value=0,
        )
        index = group.create_group("index")
        columns = {"scene": ("int16", 0), "row": ("int64", 0), "col": ("int64", 0)}
        columns |= {"valid_px": ("int64", 0), "cloudy_px": ("int64", 0)}
        columns |= {"class_counts": ("int64", classes), "band_sum": ("float64", bands)}
        columns["band_sumsq"] = ("float64", bands)
        for name, (column_dtype, width) in columns.items():
            shape = (n, width) if width else (n,)
            # Few files: index rows are small, so chunks hold many shards' worth.
            rows = shard * max(1, INDEX_CHUNK_ROWS // shard)
            index.create_array(
                name, shape=shape, dtype=column_dtype, chunks=(rows, *shape[1:]), fill_value=0
            )
        meta = {**meta, "complete": False, "progress": {"tiles_written": 0, "unit": 0, "skip": 0}}
        group.attrs[ATTRS_KEY] = meta
        return cls(target, group, meta)

    def add(self, unit: int, scene: int, batch: TileBatch) -> None:
        """Queue the tiles of one unit (in order), writing every shard that fills up."""
        first = self.next_id
        self._unit_first[unit] = first
        self.next_id += len(batch)
        skip = max(0, self.written + self._queued() - first)
        if skip < len(batch):
            kept = batch.take(skip) if skip else batch
            self._pending.append((np.full(len(kept), scene, np.int16), kept))
        while self._queued() >= self.shard_tiles:
            self._write_next(self.shard_tiles)
        # Copy the few tiles left over so the unit's whole batch can be freed now.
        self._pending = [(s.copy(), b.copy()) for s, b in self._pending]

    def _queued(self) -> int:
        return sum(len(b) for _, b in self._pending)

    def _write_next(self, count: int) -> None:
        """Write the first ``count`` queued tiles (slices, joined only across batches)."""
        parts: list[tuple[np.ndarray, TileBatch]] = []
        while count:
            scenes, batch = self._pending[0]
            n = min(count, len(batch))
            parts.append((scenes[:n], batch.take(0, n)))
            if n == len(batch):
                self._pending.pop(0)
            else:
                self._pending[0] = (scenes[n:], batch.take(n))
            count -= n
        if len(parts) == 1:
            self._write(*parts[0])
        else:
            self._write(
                np.concatenate([s for s, _ in parts]), TileBatch.concat([b for _, b in parts])
            )

    def finish(self) -> int:
        """Write the last partial shard, trim the arrays to the tiles written; returns N."""
        if self._queued():
            self._write_next(self._queued())
        self._flush_index()
        total = self.written
        if total == 0:
            return 0
        for name in ("images", "masks"):
            array = self.group[name]
            array.resize((total, *array.shape[1:]))
        for _, array in self.group["index"].arrays():
            array.resize((total, *array.shape[1:]))
        self._save_progress({"tiles_written": total, "unit": -1, "skip": 0, "done": True})
        return total

    def _write(self, scenes: np.ndarray, batch: TileBatch) -> None:
        """Write the tiles of ``batch`` as the next ones of the store."""
        start, end = self.written, self.written + len(batch)
        self._arrays["images"][start:end] = batch.images
        self._arrays["masks"][start:end] = batch.masks
        columns = {"scene": scenes, "row": batch.rows, "col": batch.cols}
        self._index_parts.append(columns | {name: getattr(batch, name) for name in STAT_ARRAYS})
        self.written = end
        if self.written - self._flushed >= INDEX_FLUSH_TILES:
            self._flush_index()

    def _flush_index(self) -> None:
        """Write the queued index rows and record the progress up to them.

        Each write rewrites a whole index chunk, so rows are written every ``INDEX_FLUSH_TILES``
        tiles rather than every shard (that cost a sixth of the writer's time). Progress moves
        with the index: a resumed run rewrites the shards written after the last flush.
        """
        if not self._index_parts:
            return
        index = self.group["index"]
        for name in self._index_parts[0]:
            rows = np.concatenate([part[name] for part in self._index_parts])
            index[name][self._flushed : self.written] = rows
        self._index_parts = []
        self._flushed = self.written
        self._save_progress(self._resume_point(self._flushed))

    def _resume_point(self, done: int) -> dict[str, int]:
        if done >= self.next_id:
            return {"tiles_written": done, "unit": max(self._unit_first) + 1, "skip": 0}
        unit = max(u for u, first in self._unit_first.items() if first <= done)
        return {"tiles_written": done, "unit": unit, "skip": done - self._unit_first[unit]}

    def _save_progress(self, progress: dict[str, Any]) -> None:
        self.meta = {**self.meta, "progress": progress}
        self.group.attrs[ATTRS_KEY] = self.meta

    def complete(self, decisions: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Write the decision arrays and attrs, then ``complete: true`` (last)."""
        write_decisions(self.group, decisions, arrays)
        self.meta = {**self.group.attrs[ATTRS_KEY], "complete": True}
        self.group.attrs[ATTRS_KEY] = self.meta


def _refusal(target: Path, old: dict[str, Any] | None, meta: dict[str, Any]) -> Exception:
    if old is None:
        return OutputExistsError(
            f"{target}: exists and is not a geotiler tile store; pass --overwrite"
        )
    if old.get("complete"):
        return OutputExistsError(
            f"{target}: a complete tile store exists; pass --overwrite to rebuild it, or change "
            f"filters, balancing and splits with `geotiler filter {target}`"
        )
    changed = [k for k in meta["tiling"] if old.get("tiling", {}).get(k) != meta["tiling"][k]]
    return StoreError(
        f"{target}: an unfinished tile store made with other settings ({', '.join(changed)}) is "
        "there; pass --overwrite to start again"
    )


def check_store(path: str | PathLike[str], *, written_only: bool = False) -> dict[str, Any]:
    """The attrs of the store at ``path`` if complete (or, ``written_only``, all tiles written).

    Raises:
        StoreError: missing, not a geotiler tile store, or incomplete (saying how to finish it).
    """
    where = Path(path)
    if not where.exists():
        raise StoreError(f"{where}: tile store not found; make it with `geotiler tile`")
    meta = read_meta(where)
    if meta is None:
        raise StoreError(f"{where}: not a geotiler tile store (no '{ATTRS_KEY}' attrs)")
    progress = meta.get("progress", {})
    if not meta.get("complete") and not (written_only and progress.get("done")):
        command = meta.get("command") or "geotiler tile ..."
        raise StoreError(
            f"{where}: incomplete tile store ({progress.get('tiles_written', 0)} tiles written); "
            f"re-run `{command}` with the same inputs to finish it (it resumes)"
        )
    return meta


def grid_from_meta(meta: dict[str, Any]) -> Grid:
    """The scene grid recorded in a store's attrs."""
    rows, cols = meta["shape"]
    return Grid(CRS.from_wkt(meta["crs"]), Affine(*meta["transform"][:6]), (rows, cols))


def load_index(path: str | PathLike[str]) -> TileIndex:
    """The per-tile facts of the (fully written) store at ``path``, for new decisions."""
    group: Any = zarr.open_group(str(path), mode="r")
    meta = group.attrs[ATTRS_KEY]
    index = group["index"]
    columns = {name: np.asarray(index[name][:]) for name in ("scene", "row", "col", *STAT_ARRAYS)}
    return TileIndex(**columns, tile_size=int(meta["tile_size"]), stride=int(meta["stride"]))


def write_decisions(group: Any, decisions: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Replace the decision arrays (verdict, split, weight) and the ``decisions`` attrs."""
    meta = dict(group.attrs[ATTRS_KEY])
    group.attrs[ATTRS_KEY] = {**meta, "complete": False}
    index = group["index"]
    for name, values in arrays.items():
        index.create_array(
            name,
            shape=values.shape,
            dtype=values.dtype,
            chunks=(max(len(values), 1),),
            overwrite=True,
        )
        index[name][:] = values
    group.attrs[ATTRS_KEY] = {**meta, "decisions": decisions, "complete": False}


class TileStore:
    """Read access to a complete tile store (cheap to pickle: only the path travels)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._group: Any = zarr.open_group(str(path), mode="r")
        self._meta: dict[str, Any] = read_meta(path) or {}

    @classmethod
    def open(cls, path: str | PathLike[str]) -> TileStore:
        """Open the store at ``path``.

        Raises:
            StoreError: missing, not a geotiler tile store, or incomplete.
        """
        where = Path(path)
        check_store(where)
        return cls(where)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __len__(self) -> int:
        return int(self._group["masks"].shape[0])

    def __repr__(self) -> str:
        return f"TileStore({str(self.path)!r}, tiles={len(self)}, size={self.tile_size})"

    def describe(self) -> str:
        """One line: tile size, stride, bands, dtype, scenes and classes."""
        return (
            f"{self.tile_size} px every {self.stride} px, {len(self.bands)} bands "
            f"({', '.join(self.bands)}) of {self.image_dtype}, scenes {', '.join(self.scenes)}, "
            f"classes {self.classes.name!r} (nodata {self.nodata})"
        )

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._meta)

    @property
    def tile_size(self) -> int:
        return int(self._meta["tile_size"])

    @property
    def stride(self) -> int:
        return int(self._meta["stride"])

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self._meta["bands"])

    @property
    def image_dtype(self) -> np.dtype:
        return np.dtype(self._meta["dtype"])

    @cached_property
    def classes(self) -> ClassTable:
        return ClassTable.model_validate(self._meta["classes"])

    @property
    def nodata(self) -> int | None:
        return self.classes.nodata

    @property
    def num_classes(self) -> int:
        return int(self._meta["num_classes"])

    @property
    def scenes(self) -> tuple[str, ...]:
        return tuple(self._meta["scenes"])

    @cached_property
    def grid(self) -> Grid:
        return grid_from_meta(self._meta)

    @property
    def decisions(self) -> dict[str, Any]:
        return dict(self._meta.get("decisions", {}))

    @property
    def band_mean(self) -> np.ndarray:
        return np.asarray(self.decisions["band_mean"], dtype=np.float64)

    @property
    def band_std(self) -> np.ndarray:
        return np.asarray(self.decisions["band_std"], dtype=np.float64)

    @property
    def class_weights(self) -> np.ndarray | None:
        weights = self.decisions.get("class_weights")
        return None if weights is None else np.asarray(weights, dtype=np.float64)

    def column(self, name: str) -> np.ndarray:
        """One ``index/<name>`` array, read whole (the index is small)."""
        return np.asarray(self._group["index"][name][:])

    @cached_property
    def _verdict(self) -> np.ndarray:
        return self.column("verdict")

    @cached_property
    def _split(self) -> np.ndarray:
        return self.column("split")

    @cached_property
    def _weight(self) -> np.ndarray:
        return self.column("weight")

    def indices(self, split: Split | None = None) -> np.ndarray:
        """Ids of the kept tiles (verdict ``keep``), optionally only those of ``split``."""
        keep = self._verdict == 0
        if split is not None:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
            keep &= self._split == SPLITS.index(split)
        return np.flatnonzero(keep).astype(np.int64)

    def sampling_weights(self, indices: np.ndarray) -> np.ndarray:
        """Per-tile sampling weights (1.0 everywhere when balancing is off)."""
        return self._weight[np.asarray(indices, dtype=np.int64)].astype(np.float64)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Tile ``i``: image ``(B, S, S)`` in the scene dtype and mask ``(S, S)`` uint8."""
        if not 0 <= i < len(self):
            raise IndexError(f"tile {i} out of range 0..{len(self) - 1}")
        return np.asarray(self._group["images"][i]), np.asarray(self._group["masks"][i])

    @cached_property
    def sources(self) -> np.ndarray:
        """Per tile: 0 cut by ``tile``, 1 added from corrections (all 0 without ``source``)."""
        if "source" in self._group["index"].array_keys():
            return self.column("source")
        return np.zeros(len(self), np.uint8)

    @cached_property
    def index(self) -> pd.DataFrame:
        """One row per stored tile: scene, row, col, verdict, split, weight, source, counts."""
        tile_px = self.tile_size**2
        valid = self.column("valid_px")
        cloudy = self.column("cloudy_px")
        verdicts = self.decisions.get("verdicts", ["keep"])
        frame = pd.DataFrame(
            {
                "scene": pd.Categorical.from_codes(self.column("scene"), list(self.scenes)),
                "row": self.column("row"),
                "col": self.column("col"),
                "verdict": pd.Categorical.from_codes(self._verdict, verdicts),
                "split": pd.Categorical.from_codes(self._split, list(SPLITS)),
                "weight": self._weight,
                "source": pd.Categorical.from_codes(self.sources, list(SOURCES)),
                "valid_fraction": valid / tile_px,
                "cloud_fraction": np.where(cloudy < 0, np.nan, cloudy / np.maximum(valid, 1)),
            }
        )
        counts = self.column("class_counts")
        for class_id in range(counts.shape[1]):
            frame[f"class_{class_id}"] = counts[:, class_id]
        return frame
