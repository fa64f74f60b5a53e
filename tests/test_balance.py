"""Balancing maths on a hand-made index."""

from __future__ import annotations

import numpy as np
import pytest

from geotiler.errors import InputError
from geotiler.tiles.balance import class_shares, class_weights, parse_balance, tile_weights

# Classes 0 (nodata), 1 (common), 2 (rare); three tiles.
COUNTS = np.array([[0, 90, 10], [0, 100, 0], [0, 50, 50]], dtype=np.int64)
TOTALS = COUNTS.sum(axis=0)  # [0, 240, 60] -> frequencies 0.8, 0.2


def test_inverse_weights_are_reciprocal_frequencies_with_mean_pixel_weight_one() -> None:
    weights = class_weights(TOTALS, parse_balance("inverse"), nodata=0, tile_px=100)
    assert weights[0] == 0.0
    assert weights[2] / weights[1] == pytest.approx(4.0)
    assert (weights * TOTALS).sum() / TOTALS.sum() == pytest.approx(1.0)


def test_sqrt_inverse_and_median() -> None:
    sqrt = class_weights(TOTALS, parse_balance("sqrt-inverse"), nodata=0, tile_px=100)
    assert sqrt[2] / sqrt[1] == pytest.approx(2.0)
    median = class_weights(TOTALS, parse_balance("median"), nodata=0, tile_px=100)
    assert median[2] / median[1] == pytest.approx(4.0)


def test_effective_number_weights() -> None:
    beta = 0.5
    weights = class_weights(TOTALS, parse_balance(f"effective:{beta}"), nodata=0, tile_px=100)
    raw = [(1 - beta) / (1 - beta**n) for n in (2.4, 0.6)]
    assert weights[2] / weights[1] == pytest.approx(raw[1] / raw[0])


def test_absent_classes_get_no_weight() -> None:
    weights = class_weights(np.array([5, 10, 0, 30]), parse_balance("inverse"), nodata=0, tile_px=1)
    assert weights[0] == 0 and weights[2] == 0 and weights[1] > weights[3] > 0


def test_tile_weights_flatten_the_expected_class_distribution() -> None:
    weights = class_weights(TOTALS, parse_balance("inverse"), nodata=0, tile_px=100)
    reference = np.ones(3, dtype=bool)
    per_tile = tile_weights(COUNTS, weights, reference)
    assert per_tile.mean() == pytest.approx(1.0)
    assert per_tile[2] > per_tile[0] > per_tile[1]
    before, after = class_shares(COUNTS), class_shares(COUNTS, per_tile)
    assert before[2] == pytest.approx(0.2)
    assert abs(after[2] - 0.5) < abs(before[2] - 0.5)
    # mean class weight of a tile's pixels, e.g. tile 0: (90 w1 + 10 w2) / 100
    raw = (COUNTS @ weights) / COUNTS.sum(axis=1)
    assert np.allclose(per_tile, raw / raw.mean())


@pytest.mark.parametrize("spec", ["weird", "inverse:2", "effective:1.5"])
def test_bad_balance_specs(spec: str) -> None:
    with pytest.raises(InputError):
        parse_balance(spec)
