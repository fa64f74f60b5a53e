"""The network, the pixel baseline and their average, scored on the same validation pixels.

:func:`fit_store_baseline` fits the pixel baseline on the store's training tiles.
:class:`BaselineReferee` predicts the baseline once on the validation tiles the network validates
on (every one, or an even subset when they hold more than ``max_pixels`` labelled pixels), keeps
its probabilities at the labelled pixels, and at each validation pass takes the network's
probabilities at the same pixels to score all three members: ``network``, ``pixel-gbm`` and
``ensemble`` (their probabilities averaged 50/50). :func:`choose_member` picks what the default
checkpoint predicts with. Both scores are always reported, so neither can hide the other.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from geotiler.train import distributed
from geotiler.train.baseline import PixelBaseline, ReadTile, fit_baseline, sample_pixels
from geotiler.train.distributed import Runtime
from geotiler.train.features import FeatureSpec
from geotiler.train.fingerprint import DataFingerprint

log = logging.getLogger(__name__)

NETWORK, BASELINE, ENSEMBLE = "network", "pixel-gbm", "ensemble"
MEMBERS = (ENSEMBLE, NETWORK, BASELINE)
"""In order of preference when validation scores tie."""
NETWORK_WEIGHT = 0.5
MAX_COMPARE_PIXELS = 2_000_000


def fit_store_baseline(
    fingerprint: DataFingerprint,
    read: ReadTile,
    *,
    max_pixels: int,
    seed: int,
    deadline: float | None = None,
) -> PixelBaseline:
    """Sample pixels of the store's training tiles and fit the baseline on them.

    ``deadline`` ends both the sampling (no further tile is read) and the boosting.
    """
    spec = FeatureSpec.for_bands(fingerprint.bands)
    started = time.perf_counter()
    sample = sample_pixels(
        read,
        fingerprint.train_ids,
        fingerprint.tile_class_counts,
        spec,
        num_classes=fingerprint.num_classes,
        nodata=fingerprint.nodata,
        max_pixels=max_pixels,
        seed=seed,
        deadline=deadline,
    )
    sampled = time.perf_counter() - started
    weights = None
    if fingerprint.pixel_weight is not None and len(sample.groups):
        weights = fingerprint.pixel_weight[sample.groups]  # groups: positions in train_ids
    baseline = fit_baseline(
        sample,
        spec,
        num_classes=fingerprint.num_classes,
        seed=seed,
        deadline=deadline,
        weights=weights,
    )
    baseline.info["sample_seconds"] = round(sampled, 2)
    return baseline


class BaselineReferee:
    """Scores the three members on the same labelled validation pixels (see the module doc).

    Args:
        baseline: the fitted pixel baseline.
        read: reads a tile (image, mask) by id.
        val_ids: the validation tiles, in the order the validation loader serves them.
        num_classes: K, the size of the confusion matrices.
        nodata: the label id never scored.
        max_pixels: labelled pixels compared at most (an even subset of tiles beyond).
    """

    def __init__(
        self,
        baseline: PixelBaseline,
        read: ReadTile,
        val_ids: Sequence[int] | np.ndarray,
        *,
        num_classes: int,
        nodata: int | None,
        tile_size: int,
        max_pixels: int = MAX_COMPARE_PIXELS,
    ) -> None:
        started = time.perf_counter()
        self.k = num_classes
        every = max(1, math.ceil(len(val_ids) * tile_size**2 / max_pixels))
        self.positions = set(range(0, len(val_ids), every))
        self.tiles: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.baseline_matrix = np.zeros((num_classes, num_classes), np.int64)
        for position in sorted(self.positions):
            image, mask = read(int(val_ids[position]))
            truth = mask.astype(np.int64).ravel()
            labelled = (truth >= 0) & (truth < num_classes)
            if nodata is not None:
                labelled &= truth != nodata
            pixels = np.flatnonzero(labelled)
            if len(pixels) == 0:
                continue
            rows = baseline.spec.compute(image.astype(np.float32)).reshape(len(baseline.spec), -1)
            probs = baseline.predict_rows(rows[:, pixels].T)
            self.tiles[position] = (pixels, truth[pixels], probs.astype(np.float16))
            self.baseline_matrix += _confusion(truth[pixels], probs.argmax(1), num_classes)
        self.val_tiles = len(val_ids)
        self.compared_tiles = len(self.tiles)
        self.compared_pixels = int(sum(len(t[0]) for t in self.tiles.values()))
        self.seconds = time.perf_counter() - started
        self.start()

    def start(self) -> None:
        """A validation pass begins (tiles come in loader order)."""
        self._next = 0
        self._network = np.zeros((self.k, self.k), np.int64)
        self._ensemble = np.zeros((self.k, self.k), np.int64)

    @torch.no_grad()
    def add(self, logits: torch.Tensor) -> None:
        """The network's logits ``(N, K, S, S)`` for the next ``N`` validation tiles."""
        first, self._next = self._next, self._next + logits.shape[0]
        wanted = [p for p in range(first, self._next) if p in self.tiles]
        if not wanted:
            return
        probs = torch.softmax(logits.float(), dim=1).flatten(2).cpu().numpy()
        for position in wanted:
            pixels, truth, baseline = self.tiles[position]
            network = probs[position - first][:, pixels].T
            mixed = NETWORK_WEIGHT * network + (1 - NETWORK_WEIGHT) * baseline
            self._network += _confusion(truth, network.argmax(1), self.k)
            self._ensemble += _confusion(truth, mixed.argmax(1), self.k)

    def finish(self, runtime: Runtime) -> dict[str, np.ndarray]:
        """Confusion matrices of the pass per member, summed over DDP ranks."""
        out = {}
        for name, matrix in (
            (NETWORK, self._network),
            (BASELINE, self.baseline_matrix),
            (ENSEMBLE, self._ensemble),
        ):
            tensor = torch.from_numpy(matrix.copy()).to(runtime.device)
            distributed.all_sum(runtime, tensor)
            out[name] = tensor.cpu().numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "val_tiles": self.val_tiles,
            "compared_tiles": self.compared_tiles,
            "compared_pixels": self.compared_pixels,
            "baseline_predict_seconds": round(self.seconds, 2),
        }


def _confusion(truth: np.ndarray, guess: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(truth * k + guess, minlength=k * k).reshape(k, k)


def choose_member(mious: dict[str, float], *, allowed: bool = True) -> str:
    """The member the default checkpoint predicts with: the best on validation (ties: MEMBERS)."""
    if not allowed:
        return NETWORK
    scored = [(mious.get(m, math.nan), -i, m) for i, m in enumerate(MEMBERS)]
    finite = [s for s in scored if math.isfinite(s[0])]
    return max(finite)[2] if finite else NETWORK


__all__ = [
    "BASELINE",
    "ENSEMBLE",
    "MEMBERS",
    "NETWORK",
    "BaselineReferee",
    "choose_member",
    "fit_store_baseline",
]
