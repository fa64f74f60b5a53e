"""Class ids from an RGB colour-coded mask: one pass in compiled code (imported lazily).

A 256 px chip's colours took 1.3 ms through numpy (three int64 planes, a sorted search of every
pixel), more than decoding the PNG. The kernel looks each pixel's colour up in the sorted table,
reusing the last answer while the colour repeats (masks are runs of one class).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def colour_ids_kernel(rgb: np.ndarray, table: np.ndarray, ids: np.ndarray, out: np.ndarray) -> int:
    """Write the class id of each pixel of ``rgb`` ``(3, rows, cols)`` into ``out``.

    ``table`` holds the sorted ``0xRRGGBB`` keys and ``ids`` their class ids. Returns -1, or
    the row-major index of the first pixel whose colour is not in the table.
    """
    n = table.shape[0]
    last_key, last_id = np.int64(-1), np.uint8(0)
    for i in range(rgb.shape[1]):
        for j in range(rgb.shape[2]):
            key = (np.int64(rgb[0, i, j]) << 16) | (np.int64(rgb[1, i, j]) << 8) | rgb[2, i, j]
            if key != last_key:
                lo, hi = 0, n
                while lo < hi:  # the first key >= this one
                    mid = (lo + hi) >> 1
                    if table[mid] < key:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo == n or table[lo] != key:
                    return i * rgb.shape[2] + j
                last_key, last_id = key, ids[lo]
            out[i, j] = last_id
    return -1
