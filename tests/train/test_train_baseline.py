"""The pixel baseline: its features, its pixel sample, LightGBM fit and checkpoint round trip."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from geotiler.errors import InputError
from geotiler.train.baseline import (
    PixelBaseline,
    fit_baseline,
    sample_pixels,
    sampling_rates,
)
from geotiler.train.features import FeatureSpec, band_roles


def test_box_features_are_edge_aware_means_and_stds() -> None:
    rng = np.random.default_rng(0)
    tile = rng.uniform(0, 3000, (1, 20, 24)).astype(np.float32)
    spec = FeatureSpec(bands=("a",), mean_windows=(7,), std_windows=(7,))
    value, mean7, std7 = spec.compute(tile)
    np.testing.assert_allclose(value, tile[0])
    # interior: the full 7x7 window; corner: only the 4x4 part inside the tile
    assert mean7[10, 10] == pytest.approx(tile[0, 7:14, 7:14].mean(), rel=1e-5)
    assert mean7[0, 0] == pytest.approx(tile[0, :4, :4].mean(), rel=1e-5)
    assert std7[10, 10] == pytest.approx(tile[0, 7:14, 7:14].std(), rel=1e-4)
    assert std7[0, 23] == pytest.approx(tile[0, :4, 20:].std(), rel=1e-4)


def test_a_non_finite_pixel_is_left_out_of_its_neighbours_means() -> None:
    tile = np.full((1, 9, 9), 100.0, np.float32)
    tile[0, 4, 4] = np.nan
    mean3 = FeatureSpec(bands=("a",), mean_windows=(3,), std_windows=()).compute(tile)[1]
    assert np.isfinite(mean3).all()
    assert mean3[4, 3] == pytest.approx(100.0)


def test_indices_come_from_band_names_and_unknown_names_give_none() -> None:
    s2 = FeatureSpec.for_bands(["B02", "B03", "B04", "B08", "B11"])
    assert [name for name, _, _ in s2.indices] == ["ndvi", "ndwi", "mndwi", "ndbi"]
    assert band_roles(["red", "green", "blue", "nir"]) == {
        "blue": 2,
        "green": 1,
        "red": 0,
        "nir": 3,
    }
    unknown = FeatureSpec.for_bands(["band_1", "band_2", "band_3"])
    assert unknown.indices == ()
    assert len(unknown) == 3 * 7 and len(unknown.names) == len(unknown)
    tile = np.stack([np.full((8, 8), v, np.float32) for v in (300, 500, 400, 2000, 1500)])
    features = s2.compute(tile)
    ndvi = features[s2.names.index("ndvi")]
    assert ndvi[3, 3] == pytest.approx((2000 - 400) / (2000 + 400))
    assert FeatureSpec.from_dict(s2.to_dict()) == s2


def test_sampling_rates_are_bounded_and_favour_rare_classes() -> None:
    counts = np.array([0, 1_000_000, 10_000, 100])
    rates = sampling_rates(counts, 20_000)
    assert rates[0] == 0
    assert (counts * rates).sum() <= 20_000 + 1e-6
    assert rates[3] == 1.0  # a rare class is kept whole
    assert rates[2] > rates[1]


def _tiles(count: int = 12, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = rng.integers(1, 4, (count, size, size)).astype(np.uint8)
    masks[:, :2] = 0  # nodata rows
    images = np.stack(
        [np.stack([np.where(m == b + 1, 3000.0, 800.0) for b in range(3)]) for m in masks]
    ).astype(np.float32)
    images += rng.normal(0, 100, images.shape).astype(np.float32)
    return images, masks


def test_the_sample_never_holds_nodata_and_stays_bounded() -> None:
    images, masks = _tiles()
    counts = np.stack([np.bincount(m.ravel(), minlength=4) for m in masks])
    spec = FeatureSpec.for_bands(["x", "y", "z"])
    sample = sample_pixels(
        lambda i: (images[i], masks[i]), np.arange(len(masks)), counts, spec,
        num_classes=4, nodata=0, max_pixels=600, seed=1,
    )  # fmt: skip
    assert 0 not in set(sample.labels.tolist())
    assert 300 < len(sample.labels) <= 800
    assert sample.features.shape == (len(sample.labels), len(spec))
    assert set(np.unique(sample.groups)) <= set(range(len(masks)))


def test_fit_predict_and_checkpoint_round_trip(tmp_path: Path) -> None:
    images, masks = _tiles(count=20)
    counts = np.stack([np.bincount(m.ravel(), minlength=4) for m in masks])
    spec = FeatureSpec.for_bands(["x", "y", "z"])
    sample = sample_pixels(
        lambda i: (images[i], masks[i]), np.arange(20), counts, spec,
        num_classes=4, nodata=0, max_pixels=5000, seed=0,
    )  # fmt: skip
    baseline = fit_baseline(sample, spec, num_classes=4, rounds=30)
    probs = baseline.predict_proba(images[:2])
    assert probs.shape == (2, 4, 16, 16)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs[:, 0] == 0).all()  # nodata is never a class
    labelled = masks[:2] > 0
    accuracy = (probs.argmax(1) == masks[:2])[labelled].mean()
    assert accuracy > 0.9
    torch.save(baseline.to_checkpoint(), tmp_path / "b.pt")
    again = PixelBaseline.from_checkpoint(torch.load(tmp_path / "b.pt", weights_only=True))
    np.testing.assert_allclose(again.predict_proba(images[:2]), probs, rtol=1e-6)


def test_one_class_gives_a_constant_model_and_none_is_an_error() -> None:
    spec = FeatureSpec(bands=("a",))
    sample = _sample(np.full(50, 2))
    baseline = fit_baseline(sample, spec, num_classes=3)
    probs = baseline.predict_proba(np.zeros((1, 1, 4, 4), np.float32))
    assert (probs[:, 2] == 1).all()
    with pytest.raises(InputError, match="no labelled pixel"):
        fit_baseline(_sample(np.zeros(0, np.int64)), spec, num_classes=3)


def test_a_deadline_stops_boosting() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 3000)
    sample = _sample(labels, features=rng.normal(size=(3000, 7)).astype(np.float32))
    spec = FeatureSpec(bands=("a",))
    baseline = fit_baseline(sample, spec, num_classes=3, rounds=500, deadline=time.monotonic())
    assert baseline.info["rounds"] <= 2


def test_weighted_pixels_win_where_labels_disagree() -> None:
    # Pixels alike but labelled 1 on most tiles and 2 on "corrected" ones that count 8 times:
    # unweighted the majority wins, weighted the correction does.
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 7)).astype(np.float32)
    corrected = np.arange(2000) % 10 < 2  # a fifth of the pixels
    labels = np.where(corrected, 2, 1)
    spec = FeatureSpec(bands=("a",))
    sample = _sample(labels, features=features)

    def majority(weights: np.ndarray | None) -> int:
        baseline = fit_baseline(sample, spec, num_classes=3, rounds=40, weights=weights)
        rows = baseline.predict_rows(rng.normal(size=(500, 7)).astype(np.float32))
        return int(np.bincount(rows.argmax(axis=1), minlength=3).argmax())

    assert majority(None) == 1
    assert majority(np.where(corrected, 8.0, 1.0)) == 2


def test_corrected_tiles_weigh_as_their_sampling_weight_in_the_baseline() -> None:
    from geotiler.train.fingerprint import _corrected_pixel_weight

    weights = np.array([1.0, 2.0, 16.0, 16.0])
    sources = np.array([0, 0, 1, 1], np.uint8)
    np.testing.assert_allclose(_corrected_pixel_weight(sources, weights), [1, 1, 8, 8])
    assert _corrected_pixel_weight(np.zeros(4, np.uint8), weights) is None


def _sample(labels: np.ndarray, features: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    from geotiler.train.baseline import PixelSample

    rows = np.zeros((len(labels), 7), np.float32) if features is None else features
    return PixelSample(rows, labels.astype(np.int64), np.arange(len(labels)) % 10)
