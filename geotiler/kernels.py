"""Numba kernels for categorical block resampling (the hot loop of :mod:`geotiler.rescale`).

The kernel turns a band of source rows into rows of output pixels, where output pixel ``(i, j)``
covers source rows ``row0 + i*f ... row0 + (i+1)*f - 1`` and columns likewise (clipped to the
band: pixels outside it simply do not count). It follows GDAL's conventions so results can be
compared with ``gdalwarp -r mode``: nodata pixels are ignored, a block with no valid pixel is
nodata, and a tie goes to the value that reached the winning score first in row-major order within
the block (GDAL keeps the current mode and replaces it only on a strictly larger count).

It is compiled with ``nogil=True`` so Dask threads run it in parallel, and adds the source pixels
it sees to a histogram (``hist``, one counter per value) without an extra pass.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def mode_kernel(
    src: np.ndarray,
    row0: int,
    col0: int,
    factor: int,
    nodata: int,
    has_nodata: bool,
    weights: np.ndarray,
    out: np.ndarray,
    hist: np.ndarray,
) -> None:
    """Block (weighted) mode of ``src`` into ``out``; adds the pixels it covers to ``hist``.

    A value's score in a block is its pixel count times ``weights[value]`` (all ones: plain mode).
    Scores are products, not running sums, so they do not depend on summation order.

    Args:
        src: ``(rows, cols)`` unsigned integer source band.
        row0: source row of output row 0's top edge (may be negative or past the band).
        col0: source column of output column 0's left edge.
        factor: source pixels per output pixel along each axis.
        nodata: the nodata value, ignored in the mode and written to empty blocks.
        has_nodata: whether ``nodata`` marks pixels to ignore (else only empty blocks get it).
        weights: float64 weight per value (length of ``hist``), all positive.
        out: ``(out_rows, out_cols)`` output, filled in place.
        hist: int64 counter per value of the source pixels inside the blocks, updated in place.
    """
    rows, cols = src.shape
    counts = np.zeros(hist.shape[0], dtype=np.int64)
    seen = np.empty(factor * factor + 1, dtype=np.int64)  # values met in the block
    scale = weights.copy()
    if has_nodata:
        scale[nodata] = 0.0  # counted for the histogram, never a winner
    for i in range(out.shape[0]):
        r_lo = max(row0 + i * factor, 0)
        r_hi = min(row0 + (i + 1) * factor, rows)
        for j in range(out.shape[1]):
            c_lo = max(col0 + j * factor, 0)
            c_hi = min(col0 + (j + 1) * factor, cols)
            best = nodata
            best_score = 0.0
            n_seen = 0
            # A run of one value (in the block's row-major order, across its rows) changes only
            # that value's score, so a run is added at once: the running mode after it is the
            # same as after adding its pixels one by one. Blobby masks are mostly long runs.
            run_value = src[r_lo, c_lo] if r_lo < r_hi and c_lo < c_hi else 0
            run = 0
            for r in range(r_lo, r_hi):
                for c in range(c_lo, c_hi):
                    v = src[r, c]
                    if v == run_value:
                        run += 1
                        continue
                    n = counts[run_value]
                    seen[n_seen] = run_value
                    n_seen += n == 0  # branch-free: new values come unpredictably
                    n += run
                    counts[run_value] = n
                    score = n * scale[run_value]
                    if score > best_score:
                        best_score = score
                        best = run_value
                    run_value = v
                    run = 1
            if run:
                n = counts[run_value]
                seen[n_seen] = run_value
                n_seen += n == 0
                n += run
                counts[run_value] = n
                score = n * scale[run_value]
                if score > best_score:
                    best = run_value
            out[i, j] = best
            for k in range(n_seen):
                v = seen[k]
                hist[v] += counts[v]
                counts[v] = 0
