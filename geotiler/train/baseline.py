"""The pixel baseline: a gradient-boosted per-pixel classifier fitted beside every network.

:func:`fit_baseline` samples labelled pixels from the store's training tiles (the tiles the network
trains on; nodata pixels never), class-balanced-ish (each class's share of the sample grows with the
square root of its pixel count) and bounded in number, turns them into the features of
:mod:`geotiler.train.features` and fits LightGBM on them, early-stopped on the pixels of a tenth
of the sampled tiles. The result, a :class:`PixelBaseline`, predicts class probabilities for raw
tiles like any predictor, and round-trips through a checkpoint as plain values (the booster as a
uint8 tensor of its model text), so ``torch.load(weights_only=True)`` reads it.

LightGBM is imported lazily: a missing install is a one-line error saying what to install, or
to train with ``--no-baseline``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geotiler.errors import InputError
from geotiler.train.features import FeatureSpec, tile_features

log = logging.getLogger(__name__)

KIND = "pixel-gbm"
MAX_ROUNDS = 200
EARLY_STOP_ROUNDS = 20
HOLDOUT_SHARE = 0.1
THREADED_ROWS = 100_000
ReadTile = Callable[[int], tuple[np.ndarray, np.ndarray]]


def import_lightgbm() -> Any:
    """The lightgbm module, or an InputError saying what to install."""
    try:
        import lightgbm
    except ImportError:  # pragma: no cover - a core dependency
        raise InputError(
            "the pixel baseline needs LightGBM: pip install lightgbm (or train with --no-baseline)"
        ) from None
    return lightgbm


@dataclass(frozen=True)
class PixelSample:
    """Sampled pixels: features ``(P, F)``, class ids ``(P,)`` and the sampled tile of each."""

    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray


def sampling_rates(class_pixels: np.ndarray, max_pixels: int) -> np.ndarray:
    """Per-class keep probability so a sample holds ~``max_pixels`` pixels, shares ~ sqrt(count).

    Rare classes are kept whole when their quota exceeds what there is; the quota they leave is
    not redistributed (the sample stays bounded, never grows).
    """
    counts = np.asarray(class_pixels, dtype=np.float64)
    present = counts > 0
    if not present.any():
        return np.zeros_like(counts)
    share = np.where(present, np.sqrt(counts), 0.0)
    quota = max_pixels * share / share.sum()
    return np.where(present, np.minimum(1.0, quota / np.maximum(counts, 1.0)), 0.0)


def sample_pixels(
    read: ReadTile,
    tile_ids: Sequence[int] | np.ndarray,
    tile_class_counts: np.ndarray,
    spec: FeatureSpec,
    *,
    num_classes: int,
    nodata: int | None,
    max_pixels: int,
    seed: int,
    deadline: float | None = None,
) -> PixelSample:
    """Features and labels of labelled pixels sampled from ``tile_ids`` (see the module doc).

    ``tile_class_counts`` is ``(len(tile_ids), K)``: the labelled pixels per class of each tile
    (the store's index), which sets the per-class rates before any tile is read. Past
    ``deadline`` (a :func:`time.monotonic` value) no further tile is read.
    """
    rng = np.random.default_rng(seed)
    tile_ids = np.asarray(tile_ids, dtype=np.int64)
    counts = np.asarray(tile_class_counts, dtype=np.float64).reshape(len(tile_ids), -1)
    if nodata is not None and nodata < counts.shape[1]:
        counts[:, nodata] = 0
    rates = sampling_rates(counts.sum(axis=0), max_pixels)
    # Tiles whose classes would give no pixel at these rates are not read at all.
    expected = counts @ rates
    features: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    # A random order, so a sample cut short by the deadline still spans the store.
    for position in rng.permutation(np.flatnonzero(expected > 0)):
        if deadline is not None and features and time.monotonic() >= deadline:
            log.info("pixel baseline: time is up after sampling %d tiles", len(features))
            break
        image, mask = read(int(tile_ids[position]))
        truth = mask.astype(np.int64).ravel()
        labelled = (truth < num_classes) & (truth >= 0)
        if nodata is not None:
            labelled &= truth != nodata
        rate = np.zeros(truth.shape, np.float64)
        rate[labelled] = rates[np.minimum(truth[labelled], len(rates) - 1)]
        keep = np.flatnonzero(rng.random(truth.shape) < rate)
        if len(keep) == 0:
            continue
        rows = spec.compute(image.astype(np.float32)).reshape(len(spec), -1)[:, keep].T
        features.append(rows)
        labels.append(truth[keep])
        groups.append(np.full(len(keep), position, np.int64))
    if not features:
        return PixelSample(
            np.zeros((0, len(spec)), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
        )
    return PixelSample(np.concatenate(features), np.concatenate(labels), np.concatenate(groups))


class PixelBaseline:
    """A fitted per-pixel classifier: features -> probabilities over the ``num_classes`` ids."""

    def __init__(
        self,
        spec: FeatureSpec,
        labels: Sequence[int],
        num_classes: int,
        model_text: str | None,
        *,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(num_classes)
        self.model_text = model_text
        self.info = dict(info or {})
        self._booster: Any = None

    @property
    def booster(self) -> Any:
        if self._booster is None and self.model_text is not None:
            self._booster = import_lightgbm().Booster(model_str=self.model_text)
        return self._booster

    def predict_rows(self, rows: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """Probabilities ``(P, num_classes)`` of feature rows ``(P, F)``."""
        out = np.zeros((len(rows), self.num_classes), np.float32)
        if len(rows) == 0:
            return out
        if self.model_text is None:  # one class in the training sample
            out[:, self.labels[0]] = 1.0
            return out
        probs = self.booster.predict(rows, num_threads=threads or _threads())
        out[:, self.labels] = np.asarray(probs, np.float32).reshape(len(rows), -1)
        return out

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K, H, W)`` of raw tiles ``(N, B, H, W)``, tile by tile."""
        count, _, rows, cols = batch.shape
        out = np.empty((count, self.num_classes, rows, cols), np.float32)
        for i in range(count):
            probs = self.predict_rows(tile_features(self.spec, batch[i : i + 1]))
            out[i] = probs.T.reshape(self.num_classes, rows, cols)
        return out

    def to_checkpoint(self) -> dict[str, Any]:
        """Plain values for a checkpoint (the booster text as a uint8 tensor)."""
        blob = (self.model_text or "").encode("utf-8")
        return {
            "kind": KIND,
            "model_text": torch.frombuffer(bytearray(blob), dtype=torch.uint8).clone(),
            "features": self.spec.to_dict(),
            "labels": self.labels.tolist(),
            "num_classes": self.num_classes,
            "info": self.info,
        }

    @classmethod
    def from_checkpoint(cls, raw: dict[str, Any]) -> PixelBaseline:
        if raw.get("kind") != KIND:
            raise InputError(f"unknown pixel baseline kind {raw.get('kind')!r}")
        blob = raw["model_text"]
        text = bytes(blob.numpy().tobytes()).decode("utf-8") if blob.numel() else None
        return cls(
            FeatureSpec.from_dict(raw["features"]),
            raw["labels"],
            int(raw["num_classes"]),
            text,
            info=dict(raw.get("info") or {}),
        )


def _threads() -> int:
    return max(1, torch.get_num_threads())


def fit_baseline(
    sample: PixelSample,
    spec: FeatureSpec,
    *,
    num_classes: int,
    seed: int = 0,
    rounds: int = MAX_ROUNDS,
    deadline: float | None = None,
    weights: np.ndarray | None = None,
) -> PixelBaseline:
    """LightGBM on ``sample``, early-stopped on a tenth of its tiles; stops at ``deadline``.

    ``weights`` (one per sampled pixel) make some pixels count more, e.g. corrected ones.

    ``deadline`` is a :func:`time.monotonic` value: boosting stops at the round it passes
    (the model keeps the rounds done), so a time budget is never overrun by the baseline.
    """
    started = time.perf_counter()
    present = np.unique(sample.labels)
    info: dict[str, Any] = {"pixels": len(sample.labels), "features": spec.names}
    if len(present) < 2:
        if len(present) == 0:
            raise InputError("the training tiles have no labelled pixel to fit the baseline on")
        log.info("pixel baseline: one class in the sample, a constant model")
        return PixelBaseline(spec, present.tolist(), num_classes, None, info={**info, "rounds": 0})
    lgb = import_lightgbm()
    target = np.searchsorted(present, sample.labels)
    holdout = _holdout(sample.groups, seed)
    params = {
        "objective": "multiclass",
        "num_class": len(present),
        "learning_rate": 0.1,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        # Threads cost more than they give on small samples, above all on a busy machine.
        "num_threads": _threads() if len(target) >= THREADED_ROWS else 1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    weight = None if weights is None else np.asarray(weights, np.float64)
    train_set = lgb.Dataset(
        sample.features[~holdout],
        target[~holdout],
        weight=None if weight is None else weight[~holdout],
        free_raw_data=True,
    )
    callbacks: list[Any] = []
    valid_sets = []
    if holdout.any() and len(np.unique(target[holdout])) > 1:
        valid_sets = [
            lgb.Dataset(
                sample.features[holdout],
                target[holdout],
                weight=None if weight is None else weight[holdout],
                reference=train_set,
            )
        ]
        callbacks.append(lgb.early_stopping(EARLY_STOP_ROUNDS, verbose=False))
    if deadline is not None:
        callbacks.append(_stop_at(deadline, lgb))
    booster = lgb.train(
        params, train_set, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks
    )
    used = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    text = booster.model_to_string(num_iteration=used)
    info |= {"rounds": int(used), "seconds": round(time.perf_counter() - started, 2)}
    log.info("pixel baseline: %d rounds on %d pixels", used, len(sample.labels))
    return PixelBaseline(spec, present.tolist(), num_classes, text, info=info)


def _holdout(groups: np.ndarray, seed: int) -> np.ndarray:
    """Pixels of about a tenth of the sampled tiles (none when there are fewer than 5 tiles)."""
    tiles = np.unique(groups)
    if len(tiles) < 5:
        return np.zeros(len(groups), bool)
    rng = np.random.default_rng(seed + 1)
    chosen = rng.choice(tiles, size=max(1, math.ceil(HOLDOUT_SHARE * len(tiles))), replace=False)
    return np.isin(groups, chosen)


def _stop_at(deadline: float, lgb: Any) -> Callable[[Any], None]:
    def callback(env: Any) -> None:
        if time.monotonic() >= deadline:
            log.info("pixel baseline: time is up after %d rounds", env.iteration + 1)
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])

    callback.order = 40  # type: ignore[attr-defined]  # after early stopping's bookkeeping
    return callback


__all__ = [
    "KIND",
    "PixelBaseline",
    "PixelSample",
    "fit_baseline",
    "import_lightgbm",
    "sample_pixels",
]
