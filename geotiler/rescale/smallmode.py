"""Block mode in NumPy, for small masks: the numba kernels' results without loading numba.

Loading numba and its cached kernels costs ~0.7 s of CPU in a fresh process (its import, then
its type system and LLVM on the first call), more than reducing a mask of a few tens of
megapixels takes. :func:`numpy_mode` has the signature and the exact results of
:func:`geotiler.rescale.kernels.mode_kernel` (GDAL's rules: nodata ignored, an empty block is
nodata, a tie goes to the value that reached the winning score first in the block's row-major
order, which for a tied value is its last pixel), counting every block's values at once with one
``bincount``. :mod:`geotiler.rescale.methods` uses it below :data:`SMALL_PX` source pixels.
"""

from __future__ import annotations

import numpy as np

SMALL_PX = 25_000_000
"""Masks up to this many pixels are reduced in NumPy (numba's start-up costs more)."""
MAX_VALUES = 64
"""More distinct values than this in a window: the counts array grows; use the kernels."""


def numpy_mode(
    src: np.ndarray,
    row0: int,
    col0: int,
    factor: int,
    nodata: int,
    has_nodata: bool,
    weights: np.ndarray,
    out: np.ndarray,
    hist: np.ndarray,
) -> bool:
    """:func:`~geotiler.rescale.kernels.mode_kernel` in NumPy; False (nothing written) when
    ``src`` holds more than :data:`MAX_VALUES` distinct values."""
    present = np.flatnonzero(np.bincount(src.ravel(), minlength=len(hist)))
    if len(present) > MAX_VALUES:
        return False
    f, (n_rows, n_cols) = factor, out.shape
    k = len(present)
    lut = np.zeros(len(hist), np.uint8)
    lut[present] = np.arange(k, dtype=np.uint8)
    # The window's blocks, with pixels outside the band as code k (counted nowhere).
    codes = np.full((n_rows * f, n_cols * f), k, np.uint8)
    rows, cols = src.shape
    r_lo, r_hi = max(row0, 0), min(row0 + n_rows * f, rows)
    c_lo, c_hi = max(col0, 0), min(col0 + n_cols * f, cols)
    if r_lo < r_hi and c_lo < c_hi:
        codes[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = lut[src[r_lo:r_hi, c_lo:c_hi]]
    blocks = codes.reshape(n_rows, f, n_cols, f).transpose(0, 2, 1, 3).reshape(-1, f * f)
    keys = blocks + (np.arange(len(blocks), dtype=np.int64) * (k + 1))[:, None]
    counts = np.bincount(keys.ravel(), minlength=len(blocks) * (k + 1)).reshape(-1, k + 1)[:, :k]
    np.add.at(hist, present, counts.sum(axis=0))
    scale = weights[present].astype(np.float64)
    if has_nodata:
        scale[present == nodata] = 0.0  # counted for the histogram, never a winner
    scores = counts * scale
    best = scores.max(axis=1)
    tied = (scores == best[:, None]) & (best[:, None] > 0)
    winner = tied.argmax(axis=1)
    ties = np.flatnonzero(tied.sum(axis=1) > 1)
    if len(ties):
        # The tied value whose last pixel comes first reached the winning score first.
        last = np.full((len(ties), k), f * f, np.int64)
        flipped = blocks[ties, ::-1]
        for code in range(k):
            has = tied[ties, code]
            if has.any():
                hits = flipped[has] == code
                last[has, code] = f * f - 1 - hits.argmax(axis=1)
        winner[ties] = last.argmin(axis=1)
    result = present[winner].astype(out.dtype)
    result[best <= 0] = nodata
    out[...] = result.reshape(n_rows, n_cols)
    return True
