"""Writing a tile store: its arrays, and a resumable writer that fills whole shards in order.

Layout (Zarr v3 group): ``images`` (tile, band, y, x) in the scene dtype and ``masks`` (tile, y, x)
uint8, one tile per chunk and ``shard_tiles`` tiles per shard file, Blosc-LZ4 compressed; ``band``
(the band names, a coordinate); ``index/<name>`` per-tile arrays (scene, row, col, valid_px,
cloudy_px, class_counts, band_sum, band_sumsq, then the decisions verdict, split, weight). Every
array names its dimensions, so ``xarray.open_zarr`` / ``open_datatree`` read the store.

The writer records after each index flush how far it got, so an interrupted run resumes at the
first tile not yet written. ``complete: true`` is written last.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from geotiler.errors import OutputExistsError, StoreError
from geotiler.outputs import clear
from geotiler.tiles.cut import TileBatch
from geotiler.tiles.schema import DecisionAttrs, StoreAttrs, WriteProgress
from geotiler.tiles.store import read_attrs, save_attrs, write_decision_arrays

INDEX_CHUNK_ROWS = 16384
INDEX_FLUSH_TILES = 1024
"""Index rows are written (and progress recorded) at least this many tiles apart."""
PROGRESS_SAVES = 4
"""With many scenes, progress is recorded about this many times a run at most: each save
rewrites every scene's record (2.4 s of CPU for 20000 chips), so saving every
``INDEX_FLUSH_TILES`` tiles would grow with the square of the chips."""
STAT_ARRAYS = ("valid_px", "cloudy_px", "class_counts", "band_sum", "band_sumsq")
INDEX_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "scene": ("int32", ("tile",)),
    "row": ("int64", ("tile",)),
    "col": ("int64", ("tile",)),
    "valid_px": ("int64", ("tile",)),
    "cloudy_px": ("int64", ("tile",)),
    "class_counts": ("int64", ("tile", "class")),
    "band_sum": ("float64", ("tile", "band")),
    "band_sumsq": ("float64", ("tile", "band")),
}


def _compressor(itemsize: int) -> BloscCodec:
    # LZ4 with bit shuffling: on uint16 imagery it encodes ~2.5x and decodes ~2x faster than
    # zstd-1 (the writer's and the trainer's bottleneck) for 5-35% more bytes.
    return BloscCodec(cname="lz4", clevel=1, shuffle=BloscShuffle.bitshuffle, typesize=itemsize)


def _writable(array: Any) -> Any:
    """``array`` writing every chunk: zarr's all-fill check cost a quarter of the write time."""
    return array.with_config({"write_empty_chunks": True})


class StoreWriter:
    """Appends tiles in order, writing whole shards; resumable from the recorded progress."""

    def __init__(self, path: Path, group: Any, attrs: StoreAttrs, *, created: bool) -> None:
        self.path = path
        self.group = group
        self.attrs = attrs
        self.created = created
        self.shard_tiles = attrs.shard_tiles
        progress = attrs.progress
        self.written = progress.tiles_written
        self.resume_unit = progress.unit
        self.next_id = self.written - progress.skip
        self._pending: list[tuple[np.ndarray, TileBatch]] = []
        self._pending_tiles = 0
        self._unit_first: dict[int, int] = {}
        self._index_parts: list[dict[str, np.ndarray]] = []
        self._flushed = self.written  # index rows (and the recorded progress) reach this tile
        self._arrays = {name: _writable(group[name]) for name in ("images", "masks")}
        self.done = progress.done

    @classmethod
    def open(
        cls,
        path: str | PathLike[str],
        attrs: StoreAttrs,
        *,
        capacity: int,
        overwrite: bool,
    ) -> StoreWriter:
        """Resume the incomplete store at ``path`` made with the same ``attrs.tiling``, or start.

        Raises:
            OutputExistsError: a complete store (or other content) is there and not ``overwrite``.
            StoreError: an incomplete store made with other settings is there, not ``overwrite``.
        """
        target = Path(path)
        if target.exists():
            old = read_attrs(target)
            if old is not None and not old.complete and old.tiling == attrs.tiling:
                group = zarr.open_group(str(target), mode="r+")
                fresh = old.model_copy(
                    update={"command": attrs.command, "settings": attrs.settings}
                )
                return cls(target, group, fresh, created=False)
            if not overwrite:
                raise _refusal(target, old, attrs)
            clear(target, "store")  # only a geotiler store, holding nothing else
        return cls._create(target, attrs, capacity)

    @classmethod
    def _create(cls, target: Path, attrs: StoreAttrs, capacity: int) -> StoreWriter:
        group = zarr.open_group(str(target), mode="w", zarr_format=3)
        shard, size, bands = attrs.shard_tiles, attrs.tile_size, len(attrs.bands)
        dtype = np.dtype(attrs.dtype)
        n = max(capacity, 1)
        group.create_array(
            "images",
            shape=(n, bands, size, size),
            dtype=dtype,
            chunks=(1, bands, size, size),
            shards=(shard, bands, size, size),
            compressors=_compressor(dtype.itemsize),
            fill_value=0,
            dimension_names=("tile", "band", "y", "x"),
        )
        group.create_array(
            "masks",
            shape=(n, size, size),
            dtype="uint8",
            chunks=(1, size, size),
            shards=(shard, size, size),
            compressors=_compressor(1),
            fill_value=0,
            dimension_names=("tile", "y", "x"),
        )
        names = group.create_array("band", shape=(bands,), dtype=str, dimension_names=("band",))
        names[:] = np.asarray(attrs.bands, dtype=str)
        index = group.create_group("index")
        for name, (column_dtype, dims) in INDEX_COLUMNS.items():
            width = {"class": attrs.num_classes, "band": bands}.get(dims[-1], 0)
            shape = (n, width) if width else (n,)
            # Few files: index rows are small, so chunks hold many shards' worth.
            rows = shard * max(1, INDEX_CHUNK_ROWS // shard)
            index.create_array(
                name,
                shape=shape,
                dtype=column_dtype,
                chunks=(rows, *shape[1:]),
                fill_value=0,
                dimension_names=dims,
            )
        attrs = attrs.model_copy(update={"complete": False, "progress": WriteProgress()})
        save_attrs(group, attrs)
        return cls(target, group, attrs, created=True)

    def add(self, unit: int, scene: int, batch: TileBatch) -> None:
        """Queue the tiles of one unit (in order), writing every shard that fills up."""
        first = self.next_id
        self._unit_first[unit] = first
        self.next_id += len(batch)
        skip = max(0, self.written + self._queued() - first)
        if skip >= len(batch):
            return
        kept = batch.take(skip) if skip else batch
        self._pending.append((np.full(len(kept), scene, np.int32), kept))
        self._pending_tiles += len(kept)
        while self._queued() >= self.shard_tiles:
            self._write_next(self.shard_tiles)
        if self._pending:
            # Copy the few tiles left over so the unit's whole batch can be freed now. Only the
            # last queued part can be this unit's (the others were copied when added): copying
            # them all again cost O(shard²) for units of one tile (chips).
            scenes, rest = self._pending[-1]
            self._pending[-1] = (scenes, rest.copy())

    def _queued(self) -> int:
        return self._pending_tiles

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
            self._pending_tiles -= n
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
        self._flush_index(record=False)  # the progress saved below covers it
        total = self.written
        if total == 0:
            return 0
        for name in ("images", "masks"):
            array = self.group[name]
            array.resize((total, *array.shape[1:]))
        for _, array in self.group["index"].arrays():
            array.resize((total, *array.shape[1:]))
        self._save_progress(WriteProgress(tiles_written=total, unit=-1, skip=0, done=True))
        return total

    def _write(self, scenes: np.ndarray, batch: TileBatch) -> None:
        """Write the tiles of ``batch`` as the next ones of the store."""
        start, end = self.written, self.written + len(batch)
        self._arrays["images"][start:end] = batch.images
        self._arrays["masks"][start:end] = batch.masks
        columns = {"scene": scenes, "row": batch.rows, "col": batch.cols}
        self._index_parts.append(columns | {name: getattr(batch, name) for name in STAT_ARRAYS})
        self.written = end
        if self.written - self._flushed >= self._flush_tiles():
            self._flush_index()

    def _flush_tiles(self) -> int:
        """Tiles between index flushes (and progress saves); see ``PROGRESS_SAVES``."""
        return max(INDEX_FLUSH_TILES, len(self.attrs.scenes) // PROGRESS_SAVES)

    def _flush_index(self, *, record: bool = True) -> None:
        """Write the queued index rows and (``record``) record the progress up to them.

        Each write rewrites a whole index chunk, so rows are written every ``INDEX_FLUSH_TILES``
        tiles or more (:meth:`_flush_tiles`) rather than every shard (that cost a sixth of the
        writer's time). Progress moves with the index: a resumed run rewrites the shards written
        after the last flush.
        """
        if not self._index_parts:
            return
        index = self.group["index"]
        for name in self._index_parts[0]:
            rows = np.concatenate([part[name] for part in self._index_parts])
            index[name][self._flushed : self.written] = rows
        self._index_parts = []
        self._flushed = self.written
        if record:
            self._save_progress(self._resume_point(self._flushed))

    def _resume_point(self, done: int) -> WriteProgress:
        if done >= self.next_id:
            return WriteProgress(tiles_written=done, unit=max(self._unit_first) + 1)
        unit = max(u for u, first in self._unit_first.items() if first <= done)
        return WriteProgress(tiles_written=done, unit=unit, skip=done - self._unit_first[unit])

    def _save_progress(self, progress: WriteProgress) -> None:
        self.attrs = self.attrs.model_copy(update={"progress": progress})
        save_attrs(self.group, self.attrs)

    def complete(
        self,
        decisions: DecisionAttrs,
        arrays: dict[str, np.ndarray],
        *,
        skipped: Sequence[str] = (),
    ) -> None:
        """Write the decision arrays, then the attrs with the decisions and ``complete: true``.

        ``skipped`` names scenes left out because they could not be read (``--skip-bad``). The
        attrs are saved once: each save rewrites every scene's record (a quarter of a second
        for 2000 chips), and until it the store reads as unfinished, so a re-run decides again.
        """
        write_decision_arrays(self.group, decisions, arrays)
        plan = {**self.attrs.plan, "skipped scenes": list(skipped)} if skipped else self.attrs.plan
        update = {"decisions": decisions, "plan": plan, "complete": True}
        self.attrs = self.attrs.model_copy(update=update)
        save_attrs(self.group, self.attrs)

    def discard(self) -> None:
        """Remove the store if this writer created it (bad input found while cutting)."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)


def _refusal(target: Path, old: StoreAttrs | None, attrs: StoreAttrs) -> Exception:
    if old is None:
        return OutputExistsError(
            f"{target}: exists and is not a geotiler tile store; choose another -o"
        )
    if old.complete:
        return OutputExistsError(
            f"{target}: a complete tile store exists; pass --overwrite to rebuild it, or change "
            f"filters, balancing and splits with `geotiler filter {target}`"
        )
    changed = [k for k in attrs.tiling if old.tiling.get(k) != attrs.tiling[k]]
    return StoreError(
        f"{target}: an unfinished tile store made with other settings ({', '.join(changed)}) is "
        "there; pass --overwrite to start again"
    )
