"""Is a tile store whole? Quick checks on every open, and a full read on request.

Zarr reads a missing shard as zeros, so a store that lost a file would train on blank tiles
without a word. :func:`verify_on_open` (called whenever a complete store is opened) checks, in
milliseconds: every shard of the tile arrays is there and its index is intact (its CRC32C, every
written tile's chunk inside the file), the arrays and the per-tile index have one length, and
the index values are possible (scene ids, positions in the scene, valid pixel counts).
:func:`verify_tiles` (``geotiler info STORE --verify``) reads every tile and checks its class
counts and band sums against the index.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geotiler.errors import StoreError

TILE_ARRAYS = ("images", "masks")
"""Sharded arrays written whole (every chunk stored), so a missing chunk is damage."""
CHECKED_COLUMNS = ("scene", "row", "col", "valid_px", "class_counts")
EMPTY = np.uint64(2**64 - 1)


@dataclass(frozen=True)
class Shard:
    """One shard file of a tile array: its key, path and the tiles ``first..last`` it holds."""

    array: str
    key: str
    path: Path
    first: int
    last: int
    chunks: int


def incomplete_message(where: Path, meta: dict[str, Any]) -> str:
    """Why an unfinished store cannot be used, and the command that finishes it."""
    progress = meta.get("progress", {})
    if progress.get("done"):
        # Every tile is written: only the decisions (filter, split, balance) are missing.
        return (
            f"{where}: its filters, splits and balancing were not finished (a filter or the end "
            f"of a tile run was interrupted); run `geotiler filter {where}` to finish them"
        )
    command = meta.get("command") or "geotiler tile ..."
    return (
        f"{where}: incomplete tile store ({progress.get('tiles_written', 0)} tiles written); "
        f"re-run `{command}` with the same inputs to finish it (it resumes)"
    )


def unreadable_tile(where: Path, meta: dict[str, Any], tile: int, exc: Exception) -> StoreError:
    """The one-line error for a tile whose bytes cannot be decoded."""
    reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return StoreError(f"store {where}: tile {tile} unreadable ({reason}): {_rebuild(where, meta)}")


def _rebuild(where: Path, meta: dict[str, Any]) -> str:
    command = meta.get("command") or "geotiler tile ..."
    if "--overwrite" not in command:
        command += " --overwrite"
    return f"re-run tile to rebuild it (`{command}`)"


def shards(where: Path, name: str) -> Iterator[Shard]:
    """The shard files the array ``name`` of the store at ``where`` must have."""
    meta = json.loads((where / name / "zarr.json").read_text(encoding="utf-8"))
    shape = meta["shape"]
    shard_shape = meta["chunk_grid"]["configuration"]["chunk_shape"]
    codec = meta["codecs"][0]
    if codec["name"] != "sharding_indexed":
        return
    inner = codec["configuration"]["chunk_shape"]
    chunks = math.prod(s // c for s, c in zip(shard_shape, inner, strict=True))
    rows = shard_shape[0]
    separator = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
    tail = separator.join("0" for _ in shape[1:])
    for number in range(math.ceil(shape[0] / rows)):
        key = separator.join(("c", str(number), tail)) if tail else f"c{separator}{number}"
        first = number * rows
        yield Shard(
            name, f"{name}/{key}", where / name / Path(*key.split(separator)), first,
            min(first + rows, shape[0]) - 1, chunks,
        )  # fmt: skip


def check_shard(shard: Shard, inner_rows: int = 1) -> str | None:
    """What is wrong with one shard file (None when its index is intact)."""
    import google_crc32c

    if not shard.path.is_file():
        return "missing"
    index_bytes = shard.chunks * 16 + 4
    size = shard.path.stat().st_size
    if size < index_bytes:
        return f"corrupt: {size} bytes, shorter than its index"
    with shard.path.open("rb") as handle:
        handle.seek(size - index_bytes)
        tail = handle.read(index_bytes)
    body, stored = tail[:-4], tail[-4:]
    if np.uint32(google_crc32c.value(body)).tobytes() != stored:
        return "corrupt: index checksum mismatch"
    entries = np.frombuffer(body, dtype="<u8").reshape(-1, 2)
    written = (shard.last - shard.first + 1) // inner_rows
    for offset, nbytes in entries[:written]:
        if offset == EMPTY or offset + nbytes > size - index_bytes:
            return "corrupt: a tile's data is missing or outside the file"
    return None


def verify_on_open(where: Path, meta: dict[str, Any]) -> None:
    """Check shard presence, shard indexes and the per-tile index of a complete store.

    Raises:
        StoreError: one line naming the store, the unreadable tiles, the shard and the fix.
    """
    if not where.is_dir():
        return  # a store somewhere else (object storage) is checked by zarr as it reads
    lengths = {}
    for name in TILE_ARRAYS:
        if not (where / name / "zarr.json").is_file():
            raise StoreError(f"{where}: the {name} array is missing; {_rebuild(where, meta)}")
        for shard in shards(where, name):
            problem = check_shard(shard)
            if problem is not None:
                raise StoreError(
                    f"store {where}: tiles {shard.first}-{shard.last} unreadable (shard "
                    f"{shard.key} {problem}): {_rebuild(where, meta)}"
                )
            lengths[name] = shard.last + 1
    _check_index(where, meta, lengths)


def _check_index(where: Path, meta: dict[str, Any], lengths: dict[str, int]) -> None:
    import zarr

    group: Any = zarr.open_group(str(where), mode="r")
    count = int(group["masks"].shape[0])
    problems = []
    sizes = {name: int(group[name].shape[0]) for name in TILE_ARRAYS}
    sizes |= {f"index/{n}": int(a.shape[0]) for n, a in group["index"].arrays()}
    if len(set(sizes.values())) > 1:
        problems.append(
            "arrays of different lengths (" + ", ".join(f"{k} {v}" for k, v in sizes.items()) + ")"
        )
    else:
        problems += _impossible_values(group, meta, count)
    if problems:
        raise StoreError(
            f"store {where}: its per-tile index is damaged ({problems[0]}): {_rebuild(where, meta)}"
        )


def _impossible_values(group: Any, meta: dict[str, Any], count: int) -> list[str]:
    index = group["index"]
    column = {name: np.asarray(index[name][:]) for name in CHECKED_COLUMNS if name in index}
    size = int(meta["tile_size"])
    records = meta.get("scenes", ())
    found = []
    if "scene" in column and column["scene"].size:
        scenes = len(records)
        if column["scene"].min() < 0 or column["scene"].max() >= max(scenes, 1):
            found.append(f"scene ids outside 0..{scenes - 1}")
        elif all(isinstance(r, dict) and "shape" in r for r in records) and "row" in column:
            # Each tile lies on its own scene's grid.
            shapes = np.asarray([r["shape"] for r in records], dtype=np.int64).reshape(-1, 2)
            rows, cols = shapes[column["scene"], 0], shapes[column["scene"], 1]
            if ((column["row"] < 0) | (column["row"] > rows - np.minimum(size, rows))).any():
                found.append("tile rows outside their scene")
            if ((column["col"] < 0) | (column["col"] > cols - np.minimum(size, cols))).any():
                found.append("tile columns outside their scene")
    if "valid_px" in column and column["valid_px"].size:
        valid = column["valid_px"]
        bad = np.flatnonzero((valid < 1) | (valid > size * size))
        if bad.size:
            found.append(f"tile {bad[0]} has {valid[bad[0]]} valid pixels")
        elif "class_counts" in column and not np.array_equal(
            column["class_counts"].sum(axis=1), valid
        ):
            first = int(np.flatnonzero(column["class_counts"].sum(axis=1) != valid)[0])
            found.append(f"tile {first}'s class counts do not add up to its valid pixels")
    return found


@dataclass(frozen=True)
class VerifyReport:
    """What a full read of a store found."""

    tiles: int
    shards: int
    problems: tuple[str, ...]


def verify_tiles(where: Path, *, progress: Any = None) -> VerifyReport:
    """Read every tile of a complete store; check its class counts and band sums against the index.

    With a nodata class the stored mask says which pixels are valid, so each tile's class counts
    and band sums are recomputed from its pixels; without one, readability and counts are checked.
    """
    import zarr

    from geotiler.tiles.store import check_store

    meta = check_store(where).to_raw()
    verify_on_open(where, meta)
    group: Any = zarr.open_group(str(where), mode="r")
    index = group["index"]
    counts = np.asarray(index["class_counts"][:])
    sums = np.asarray(index["band_sum"][:]) if "band_sum" in index else None
    nodata = meta["classes"].get("nodata")
    problems: list[str] = []
    listed = list(shards(where, "masks"))
    for shard in listed:
        span = slice(shard.first, shard.last + 1)
        try:
            images = np.asarray(group["images"][span])
            masks = np.asarray(group["masks"][span])
        except Exception as exc:  # zarr/blosc raise several kinds on damaged bytes
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            problems.append(f"tiles {shard.first}-{shard.last} unreadable ({reason})")
            continue
        bad = _mismatched(images, masks, counts[span], None if sums is None else sums[span], nodata)
        if bad:
            tiles = [shard.first + b for b in bad]
            problems.append(
                f"tile(s) {', '.join(map(str, tiles[:5]))}{' ...' if len(tiles) > 5 else ''} "
                "do not match the index"
            )
        if progress is not None:
            progress(shard.last - shard.first + 1)
    return VerifyReport(tiles=int(counts.shape[0]), shards=len(listed), problems=tuple(problems))


def _mismatched(
    images: np.ndarray,
    masks: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray | None,
    nodata: int | None,
) -> list[int]:
    k = counts.shape[1]
    bad = []
    for t in range(masks.shape[0]):
        values = masks[t].ravel()
        valid = values != nodata if nodata is not None else np.ones(values.shape, bool)
        found = np.bincount(values[valid], minlength=k)[:k]
        if nodata is not None:
            if not np.array_equal(found, counts[t]):
                bad.append(t)
                continue
            if sums is not None:
                pixels = images[t].reshape(images.shape[1], -1)[:, valid].astype(np.float64)
                if not np.allclose(pixels.sum(axis=1), sums[t], rtol=1e-9, atol=1e-6):
                    bad.append(t)
        elif (counts[t] > found).any():
            bad.append(t)
    return bad
