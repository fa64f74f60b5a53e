"""Deterministic randomness that depends on position, not on the order of computation.

The generator renders the extent window by window, possibly in parallel, with any window size. So
that every window size gives the same bytes, per-pixel noise is a hash of ``(stream, row, col)``
(SplitMix64) rather than draws from a sequential generator, and smooth fields are sums of plane
waves evaluated at map coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _splitmix_int(value: int) -> int:
    """SplitMix64 of one Python int (no numpy scalar overflow warnings)."""
    z = (value + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def _splitmix(values: np.ndarray) -> np.ndarray:
    # Array arithmetic on uint64 wraps around silently, which is what the hash wants.
    z = values + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, *parts: int) -> int:
    """A 64-bit key for one independent noise stream of ``seed``."""
    key = _splitmix_int(seed & _MASK64)
    for part in parts:
        key = _splitmix_int(key ^ (part & _MASK64))
    return key


def pixel_uniform(key: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Uniform values in ``[0, 1)`` for pixels ``(rows, cols)`` (broadcast) of stream ``key``."""
    cells = (rows.astype(np.uint64) << np.uint64(32)) | cols.astype(np.uint64)
    hashed = _splitmix(cells ^ np.uint64(key))
    return (hashed >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def pixel_noise(key: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Zero-mean noise in ``(-1, 1)`` with a triangular distribution (standard deviation ~0.41)."""
    first = pixel_uniform(key, rows, cols)
    second = pixel_uniform(_splitmix_int(key), rows, cols)
    return first + second - np.float32(1.0)


@dataclass(frozen=True)
class Waves:
    """A smooth random field: a sum of plane waves, roughly in ``[-1, 1]``."""

    kx: np.ndarray
    ky: np.ndarray
    phase: np.ndarray
    amplitude: np.ndarray

    @classmethod
    def random(
        cls, rng: np.random.Generator, *, wavelengths: tuple[float, float], count: int = 6
    ) -> Waves:
        """``count`` waves with wavelengths between the two given (map units), random headings."""
        wavelength = rng.uniform(*wavelengths, size=count)
        heading = rng.uniform(0.0, 2.0 * np.pi, size=count)
        k = 2.0 * np.pi / wavelength
        amplitude = rng.uniform(0.5, 1.0, size=count)
        amplitude = amplitude / amplitude.sum() * 1.6
        return cls(
            k * np.cos(heading), k * np.sin(heading), rng.uniform(0, 2 * np.pi, count), amplitude
        )

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        total = np.zeros(np.broadcast_shapes(x.shape, y.shape))
        for kx, ky, phase, amplitude in zip(
            self.kx, self.ky, self.phase, self.amplitude, strict=True
        ):
            total += amplitude * np.sin(kx * x + ky * y + phase)
        return np.clip(total, -1.0, 1.0)
