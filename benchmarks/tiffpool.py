"""Writing huge DEFLATE GeoTIFFs fast: every block is one of a small pool, compressed once.

Generating a 90 Gpx mask through GDAL means compressing 90 GB: hours on a shared 2-core machine.
A reader cannot tell whether two strips hold the same bytes, though: it still reads and inflates
each one. So the benchmark compresses a pool of distinct blocks (strips of a class mask, tiles of
a scene) once and writes, for every block of the file, the bytes of the pool entry it picks, in
full (the file has its real size on disk). The BigTIFF structure is written here by the TIFF
6.0 / BigTIFF layout; the georeferencing is then added through rasterio (GDAL appends a new
directory; the blocks stay where they are).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

SHORT, LONG, LONG8 = 3, 4, 16
_CODES = {SHORT: "H", LONG: "I", LONG8: "Q"}


def deflate(data: bytes, level: int = 6) -> bytes:
    """A zlib stream (TIFF compression 8, "Adobe deflate")."""
    return zlib.compress(data, level)


def predict16(tile: np.ndarray) -> np.ndarray:
    """TIFF predictor 2 on a ``(rows, cols, samples)`` uint16 block: differences along x."""
    out = tile.copy()
    out[:, 1:] = tile[:, 1:] - tile[:, :-1]  # wraps modulo 2**16, as the predictor does
    return out


def write_tiff(
    path: Path,
    *,
    width: int,
    height: int,
    samples: int,
    bits: int,
    layout: tuple[int, int] | None,
    blocks: int,
    pick: Callable[[int], int],
    pool: Sequence[bytes],
    predictor: int = 1,
) -> None:
    """A little-endian BigTIFF of ``blocks`` DEFLATE blocks, block ``i`` being ``pool[pick(i)]``.

    Args:
        layout: ``(tile_height, tile_width)`` for a tiled file, None for one-row strips.
        pick: the pool entry of each block (strips top to bottom, tiles row-major).
    """
    offsets = np.empty(blocks, np.uint64)
    counts = np.empty(blocks, np.uint64)
    with open(path, "wb") as out:
        out.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))  # IFD offset patched below
        position = 16
        batch: list[bytes] = []
        batch_bytes = 0
        for i in range(blocks):
            data = pool[pick(i)]
            offsets[i], counts[i] = position, len(data)
            position += len(data)
            batch.append(data)
            batch_bytes += len(data)
            if batch_bytes >= 64 << 20:
                out.write(b"".join(batch))
                batch, batch_bytes = [], 0
        out.write(b"".join(batch))
        arrays = {}
        for tag, values in ((1, offsets), (2, counts)):
            arrays[tag] = position
            out.write(values.astype("<u8").tobytes())
            position += values.nbytes
        entries: list[tuple[int, int, Sequence[int] | int]] = [
            (256, LONG, width),
            (257, LONG, height),
            (258, SHORT, [bits] * samples),
            (259, SHORT, 8),
            (262, SHORT, 1),
            (277, SHORT, samples),
            (284, SHORT, 1),
            (339, SHORT, [1] * samples),
        ]
        if predictor != 1:
            entries.append((317, SHORT, predictor))
        if samples > 1:
            entries.append((338, SHORT, [0] * (samples - 1)))  # extra samples: unspecified
        if layout is None:
            entries += [(273, LONG8, -1), (278, LONG, 1), (279, LONG8, -2)]
        else:
            entries += [(322, SHORT, layout[1]), (323, SHORT, layout[0])]
            entries += [(324, LONG8, -1), (325, LONG8, -2)]
        entries.sort(key=lambda entry: entry[0])
        extra = bytearray()  # values over 8 bytes, after the directory
        ifd_at = position
        ifd_size = 8 + 20 * len(entries) + 8
        body = bytearray(struct.pack("<Q", len(entries)))
        for tag, kind, value in entries:
            if isinstance(value, int) and value < 0:  # the offsets / byte counts arrays
                array = offsets if value == -1 else counts
                # One block: the value itself fits in the entry (TIFF stores it there).
                where = int(array[0]) if blocks == 1 else arrays[-value]
                body += struct.pack("<HHQQ", tag, kind, blocks, where)
                continue
            items = [value] if isinstance(value, int) else list(value)
            packed = struct.pack(f"<{len(items)}{_CODES[kind]}", *items)
            if len(packed) <= 8:
                body += struct.pack("<HHQ", tag, kind, len(items)) + packed.ljust(8, b"\0")
            else:
                body += struct.pack("<HHQQ", tag, kind, len(items), ifd_at + ifd_size + len(extra))
                extra += packed
        body += struct.pack("<Q", 0)
        out.write(bytes(body) + bytes(extra))
        out.seek(8)
        out.write(struct.pack("<Q", ifd_at))
        out.flush()
        os.fsync(out.fileno())
