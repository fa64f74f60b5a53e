"""Class balancing: per-class loss weights and per-tile sampling weights from class pixel counts.

Class weights ``w_c`` from the pixel frequencies ``f_c`` of the training tiles (a registry):

- ``none``: 1 for every class;
- ``inverse``: ``1 / f_c``;
- ``sqrt-inverse``: ``1 / sqrt(f_c)``;
- ``median``: ``median(f) / f_c`` (median-frequency balancing, over the classes present);
- ``effective[:beta]``: ``(1 - beta) / (1 - beta^n_c)`` (Cui et al. 2019, "effective number of
  samples") with ``n_c`` the class's pixels in tile-sized units (pixels / S^2), beta 0.99 default.

Weights are scaled so the average weight of a training pixel is 1; absent classes and nodata get 0.
A tile's sampling weight is the mean class weight of its valid pixels, scaled to mean 1 over the
training tiles: sampling tiles in proportion to it makes the expected pixel class distribution
flatter (rare-class tiles are drawn more often). With ``none`` every tile weighs 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from geotiler.errors import InputError

WeightFn = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _none(freq: np.ndarray, units: np.ndarray, beta: float) -> np.ndarray:
    return np.ones_like(freq)


def _inverse(freq: np.ndarray, units: np.ndarray, beta: float) -> np.ndarray:
    return 1.0 / freq


def _sqrt_inverse(freq: np.ndarray, units: np.ndarray, beta: float) -> np.ndarray:
    return 1.0 / np.sqrt(freq)


def _median(freq: np.ndarray, units: np.ndarray, beta: float) -> np.ndarray:
    return float(np.median(freq)) / freq


def _effective(freq: np.ndarray, units: np.ndarray, beta: float) -> np.ndarray:
    return (1.0 - beta) / (1.0 - np.power(beta, units))


BALANCERS: dict[str, WeightFn] = {
    "none": _none,
    "inverse": _inverse,
    "sqrt-inverse": _sqrt_inverse,
    "median": _median,
    "effective": _effective,
}
"""Balancing method -> raw weights of the present classes from (frequencies, tile units, beta)."""

DEFAULT_BETA = 0.99


@dataclass(frozen=True)
class BalanceSpec:
    method: str
    beta: float = DEFAULT_BETA

    def __str__(self) -> str:
        return f"effective:{self.beta:g}" if self.method == "effective" else self.method


def parse_balance(text: str) -> BalanceSpec:
    """``none|inverse|sqrt-inverse|median|effective[:beta]`` to a :class:`BalanceSpec`."""
    method, _, arg = text.strip().partition(":")
    if method not in BALANCERS:
        raise InputError(f"unknown balancing {method!r}; known: {', '.join(BALANCERS)}")
    if not arg:
        return BalanceSpec(method)
    if method != "effective":
        raise InputError(f"balancing {method} takes no argument, got {arg!r}")
    try:
        beta = float(arg)
    except ValueError:
        raise InputError(f"balancing effective: beta {arg!r} is not a number") from None
    if not 0.0 < beta < 1.0:
        raise InputError(f"balancing effective: beta must be in (0, 1), got {beta:g}")
    return BalanceSpec(method, beta)


def class_weights(
    pixel_counts: np.ndarray, spec: BalanceSpec, *, nodata: int | None, tile_px: int
) -> np.ndarray:
    """Loss weights ``(K,)`` from the training pixel counts per class ``(K,)``."""
    counts = np.asarray(pixel_counts, dtype=np.float64).copy()
    if nodata is not None and nodata < len(counts):
        counts[nodata] = 0.0
    present = counts > 0
    weights = np.zeros_like(counts)
    if not present.any():
        return weights
    freq = counts[present] / counts.sum()
    weights[present] = BALANCERS[spec.method](freq, counts[present] / tile_px, spec.beta)
    # Average weight of a training pixel is 1, so the loss keeps its scale.
    return weights / float((weights * counts).sum() / counts.sum())


def tile_weights(
    class_counts: np.ndarray, weights: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """Sampling weight per tile: mean class weight of its pixels, mean 1 over ``reference`` tiles.

    Args:
        class_counts: ``(N, K)`` pixel counts per tile.
        weights: ``(K,)`` class weights.
        reference: boolean ``(N,)``, the tiles whose mean weight is scaled to 1 (training).
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    labelled = counts.sum(axis=1)
    raw = (counts @ weights) / np.maximum(labelled, 1.0)
    raw[labelled == 0] = 0.0
    scale = raw[reference].mean() if reference.any() else 0.0
    return raw / scale if scale > 0 else np.ones(len(raw))


def class_shares(class_counts: np.ndarray, tile_weight: np.ndarray | None = None) -> np.ndarray:
    """Expected pixel share per class when tiles are drawn in proportion to ``tile_weight``."""
    counts = np.asarray(class_counts, dtype=np.float64)
    weighted = counts if tile_weight is None else counts * tile_weight[:, None]
    total = weighted.sum()
    return weighted.sum(axis=0) / total if total > 0 else np.zeros(counts.shape[1])
