"""Direct reads of uncompressed, strip-organised single-band GeoTIFFs (the big-mask fast path).

A huge class mask is often stored uncompressed in one-row strips. GDAL reads such a file through
its block cache, a strip at a time: a 100000 px row costs more in bookkeeping than in copying.
Where the pixels are plain bytes in the file (no compression, full-width strips, little-endian
samples, a local file), :class:`RawStrips` finds a row's bytes from the strip offsets GDAL
reports (``BLOCK_OFFSET_0_<strip>`` in the ``TIFF`` metadata domain) and ``pread``\\ s them
straight into the caller's array: about twice GDAL's speed for whole rows, five times for the
sampled rows of ``near``. Anything else returns None or False, and the caller reads through GDAL.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np


class RawStrips:
    """Row reads of one open dataset by offset; build with :meth:`open`."""

    def __init__(self, dataset: Any, fd: int) -> None:
        self._dataset = dataset
        self._fd = fd
        self.strip_rows = int(dataset.block_shapes[0][0])
        self.itemsize = np.dtype(dataset.dtypes[0]).itemsize
        self.row_bytes = dataset.width * self.itemsize

    @classmethod
    @contextlib.contextmanager
    def open(cls, dataset: Any) -> Iterator[RawStrips | None]:
        """Direct access to ``dataset``'s rows, or None where its layout does not allow it."""
        path = dataset.name
        if not _plain_strips(dataset) or not os.path.isfile(path):
            yield None
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            if os.pread(fd, 2, 0) != (b"II" if sys.byteorder == "little" else b"MM"):
                yield None  # samples in the other byte order (matters above 8 bits only)
            else:
                yield cls(dataset, fd)
        finally:
            os.close(fd)

    def row_offset(self, row: int) -> int | None:
        """File offset of ``row``'s first byte (None: its strip is missing, a sparse file)."""
        strip, within = divmod(row, self.strip_rows)
        offset = self._dataset.get_tag_item(f"BLOCK_OFFSET_0_{strip}", "TIFF", bidx=1)
        if not offset or int(offset) == 0:
            return None
        return int(offset) + within * self.row_bytes

    def read(self, row_start: int, col_start: int, out: np.ndarray) -> bool:
        """Rows from ``row_start`` and columns from ``col_start`` into ``out`` (shaped to fit).

        Returns False, with ``out`` in an undefined state, when the rows are not stored one after
        another or a read comes up short: read them through GDAL instead.
        """
        rows, cols = out.shape
        if rows == 0 or cols == 0:
            return True
        if not out.flags.c_contiguous or out.dtype.itemsize != self.itemsize:
            return False
        first = self.row_offset(row_start)
        if first is None:
            return False
        skip = col_start * self.itemsize
        if skip == 0 and cols * self.itemsize == self.row_bytes:
            # Whole rows: one read, if every strip on the way follows the one before.
            last_strip = (row_start + rows - 1) // self.strip_rows
            for strip in range(row_start // self.strip_rows + 1, last_strip + 1):
                top = strip * self.strip_rows
                if self.row_offset(top) != first + (top - row_start) * self.row_bytes:
                    return False
            return self._pread(out, first)
        for k in range(rows):
            offset = first if k == 0 else self.row_offset(row_start + k)
            if offset is None or not self._pread(out[k], offset + skip):
                return False
        return True

    def _pread(self, out: np.ndarray, offset: int) -> bool:
        view = out.data.cast("B")
        return os.preadv(self._fd, [view], offset) == view.nbytes


def _plain_strips(dataset: Any) -> bool:
    if dataset.driver != "GTiff" or dataset.count != 1 or dataset.compression is not None:
        return False
    if dataset.block_shapes[0][1] != dataset.width:
        return False  # tiled
    structure = dataset.tags(ns="IMAGE_STRUCTURE")
    return "NBITS" not in structure and "PIXELTYPE" not in structure
