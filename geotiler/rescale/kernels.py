"""Numba kernels for categorical block resampling (the hot loop of :mod:`geotiler.rescale`).

The kernel turns a band of source rows into rows of output pixels, where output pixel ``(i, j)``
covers source rows ``row0 + i*f ... row0 + (i+1)*f - 1`` and columns likewise (clipped to the
band: pixels outside it simply do not count). It follows GDAL's conventions so results can be
compared with ``gdalwarp -r mode``: nodata pixels are ignored, a block with no valid pixel is
nodata, and a tie goes to the value that reached the winning score first in row-major order within
the block (GDAL keeps the current mode and replaces it only on a strictly larger count).

It is compiled with ``nogil=True`` so Dask threads run it in parallel, and adds the source pixels
it sees to a histogram (``hist``, one counter per value) without an extra pass.

Two kernels give the same result: :func:`packed_mode_kernel` (factors up to 15, up to 16 distinct
values in a window: the Catalonia case, ~2.3x faster) and :func:`mode_kernel` (anything else).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, inline="always")
def _span(origin: int, k: int, factor: int, limit: int) -> tuple[int, int]:
    """Source indices ``[lo, hi)`` of output index ``k``, clipped to ``0..limit``."""
    return max(origin + k * factor, 0), min(origin + (k + 1) * factor, limit)


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
        r_lo, r_hi = _span(row0, i, factor, rows)
        for j in range(out.shape[1]):
            c_lo, c_hi = _span(col0, j, factor, cols)
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


PACKED_SLOTS = 16
"""Distinct values the packed kernel counts in registers (one 4-bit, then 8-bit, field each)."""
PACKED_MAX_FACTOR = 15
"""Largest factor it handles: a block row must fit a 4-bit field and a block an 8-bit one."""
_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)
_SHORTS = np.uint64(0x00FF00FF00FF00FF)
_BYTE_SUM = np.uint64(0x0101010101010101)


@cache
def packed_mode_kernel(factor: int) -> Callable[..., bool]:
    """:func:`mode_kernel` for one factor (<= 15) and up to 16 distinct values, ~2-3x faster.

    Each value met gets a slot and each pixel adds ``1 << 4 * slot`` to a 64-bit word, so a block
    row is counted in registers without branches; its 4-bit fields are then spread into two
    words of 8-bit fields for the block. A value holding a majority of a block's valid pixels
    wins at once; otherwise the highest score wins, and a tie is settled by re-scanning the block
    in row-major order (the first value to reach the winning score, as in :func:`mode_kernel`).
    The factor is frozen into the compiled code so its loops unroll. Returns False (having
    left ``hist`` untouched) when a 17th distinct value turns up: run :func:`mode_kernel` then.
    """
    if not 1 <= factor <= PACKED_MAX_FACTOR:
        raise ValueError(f"the packed kernel handles factors 1..{PACKED_MAX_FACTOR}, not {factor}")
    f = factor

    @njit(nogil=True, cache=True)
    def kernel(
        src: np.ndarray,
        row0: int,
        col0: int,
        nodata: int,
        has_nodata: bool,
        weights: np.ndarray,
        out: np.ndarray,
        hist: np.ndarray,
    ) -> bool:
        rows, cols = src.shape
        n_values = hist.shape[0]
        slot = np.full(n_values, -1, np.int64)
        nibble = np.zeros(n_values, np.uint64)  # what a pixel of each value adds to the row word
        value_of = np.zeros(PACKED_SLOTS, np.int64)
        scale = np.zeros(PACKED_SLOTS, np.float64)  # nodata's stays 0: counted, never a winner
        counts = np.zeros(PACKED_SLOTS, np.int64)
        slot_hist = np.zeros(PACKED_SLOTS, np.int64)
        plain = True
        for v in range(n_values):
            plain &= weights[v] == 1.0
        n_slots = 0
        nodata_slot = -1
        h0 = h1 = h2 = h3 = np.uint64(0)  # 16-bit per-slot totals, flushed before overflowing
        blocks_since_flush = 0
        flush_every = 65535 // (f * f)
        for i in range(out.shape[0]):
            r_lo, r_hi = _span(row0, i, f, rows)
            for j in range(out.shape[1]):
                c_lo, c_hi = _span(col0, j, f, cols)
                n_px = max(r_hi - r_lo, 0) * max(c_hi - c_lo, 0)
                if n_px == 0:
                    out[i, j] = nodata
                    continue
                while True:
                    even = odd = np.uint64(0)  # byte b: count of slot 2b (even), 2b + 1 (odd)
                    if r_hi - r_lo == f and c_hi - c_lo == f:  # a whole block: unrolled loops
                        for r in range(r_lo, r_lo + f):
                            word = np.uint64(0)
                            for c in range(c_lo, c_lo + f):
                                word += nibble[src[r, c]]
                            even += word & _NIBBLES
                            odd += (word >> np.uint64(4)) & _NIBBLES
                    else:
                        for r in range(r_lo, r_hi):
                            word = np.uint64(0)
                            for c in range(c_lo, c_hi):
                                word += nibble[src[r, c]]
                            even += word & _NIBBLES
                            odd += (word >> np.uint64(4)) & _NIBBLES
                    if ((even + odd) * _BYTE_SUM) >> np.uint64(56) == n_px:
                        break
                    for r in range(r_lo, r_hi):  # values without a slot: give them one, recount
                        for c in range(c_lo, c_hi):
                            v = src[r, c]
                            if slot[v] >= 0:
                                continue
                            if n_slots == PACKED_SLOTS:
                                return False
                            slot[v] = n_slots
                            value_of[n_slots] = v
                            if has_nodata and v == nodata:
                                nodata_slot = n_slots
                            else:
                                scale[n_slots] = weights[v]
                            nibble[v] = np.uint64(1) << np.uint64(4 * n_slots)
                            n_slots += 1
                h0 += even & _SHORTS  # slots 0, 4, 8, 12
                h1 += (even >> np.uint64(8)) & _SHORTS  # slots 2, 6, 10, 14
                h2 += odd & _SHORTS  # slots 1, 5, 9, 13
                h3 += (odd >> np.uint64(8)) & _SHORTS  # slots 3, 7, 11, 15
                blocks_since_flush += 1
                if blocks_since_flush == flush_every:
                    _flush_totals(h0, h1, h2, h3, slot_hist)
                    h0 = h1 = h2 = h3 = np.uint64(0)
                    blocks_since_flush = 0
                if plain:
                    first = slot[src[r_lo, c_lo]]
                    if first != nodata_slot:
                        valid = n_px
                        if nodata_slot >= 0:
                            valid -= _slot_count(even, odd, nodata_slot)
                        if 2 * _slot_count(even, odd, first) > valid:
                            out[i, j] = value_of[first]
                            continue
                best = -1
                best_score = 0.0
                tied = False
                for k in range(n_slots):
                    score = _slot_count(even, odd, k) * scale[k]
                    if score > best_score:
                        best, best_score, tied = k, score, False
                    elif score == best_score and score > 0.0:
                        tied = True
                if best < 0:
                    out[i, j] = nodata
                    continue
                if tied:
                    best = _first_to_reach(
                        src, r_lo, r_hi, c_lo, c_hi, slot, scale, best_score, counts
                    )
                out[i, j] = value_of[best]
        _flush_totals(h0, h1, h2, h3, slot_hist)
        for k in range(n_slots):
            hist[value_of[k]] += slot_hist[k]
        return True

    return kernel


@njit(nogil=True, cache=True, inline="always")
def _slot_count(even: np.uint64, odd: np.uint64, k: int) -> int:
    word = odd if k & 1 else even
    return int((word >> np.uint64(8 * (k >> 1))) & np.uint64(0xFF))


@njit(nogil=True, cache=True, inline="always")
def _flush_totals(
    h0: np.uint64, h1: np.uint64, h2: np.uint64, h3: np.uint64, slot_hist: np.ndarray
) -> None:
    for q in range(4):
        shift = np.uint64(16 * q)
        slot_hist[4 * q] += int((h0 >> shift) & np.uint64(0xFFFF))
        slot_hist[4 * q + 2] += int((h1 >> shift) & np.uint64(0xFFFF))
        slot_hist[4 * q + 1] += int((h2 >> shift) & np.uint64(0xFFFF))
        slot_hist[4 * q + 3] += int((h3 >> shift) & np.uint64(0xFFFF))


@njit(nogil=True, cache=True)
def _first_to_reach(
    src: np.ndarray,
    r_lo: int,
    r_hi: int,
    c_lo: int,
    c_hi: int,
    slot: np.ndarray,
    scale: np.ndarray,
    score: float,
    counts: np.ndarray,
) -> int:
    """The slot whose running score reaches ``score`` first in the block's row-major order."""
    counts[:] = 0
    for r in range(r_lo, r_hi):
        for c in range(c_lo, c_hi):
            k = slot[src[r, c]]
            counts[k] += 1
            if counts[k] * scale[k] == score:
                return int(k)
    return -1


@njit(nogil=True, cache=True)
def count_values(values: np.ndarray, hist: np.ndarray) -> None:
    """Add the occurrences of each value of the 2-D ``values`` to ``hist`` (``np.bincount``'s
    counts, ~7x faster on uint8 and without holding the GIL).

    Every value must index ``hist``: it has a counter per value of the dtype. Four lanes of
    counters take alternate pixels, so repeated values do not wait on one counter's last store.
    """
    lanes = 4 if hist.shape[0] <= 4096 else 1
    counts = np.zeros((lanes, hist.shape[0]), np.int64)
    rows, cols = values.shape
    for i in range(rows):
        j = 0
        if lanes == 4:
            while j + 4 <= cols:
                counts[0, values[i, j]] += 1
                counts[1, values[i, j + 1]] += 1
                counts[2, values[i, j + 2]] += 1
                counts[3, values[i, j + 3]] += 1
                j += 4
        while j < cols:
            counts[0, values[i, j]] += 1
            j += 1
    for lane in range(lanes):
        for v in range(hist.shape[0]):
            hist[v] += counts[lane, v]
