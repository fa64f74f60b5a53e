"""Each filter on a hand-made index, and the first-reason verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.errors import InputError
from geotiler.tiles.filters import TileIndex, apply_filters, parse_filter

CLASSES = ClassTable(
    name="t",
    nodata=0,
    classes=(
        ClassInfo(id=1, name="land", color="#00ff00"),
        ClassInfo(id=2, name="sea", color="#0000ff", tags=("water",)),
    ),
)


def _index(counts: list[list[int]], cloudy: list[int] | None = None) -> TileIndex:
    class_counts = np.array(counts, dtype=np.int64)
    valid = class_counts.sum(axis=1)
    n = len(valid)
    return TileIndex(
        scene=np.zeros(n, np.int16),
        row=np.zeros(n, np.int64),
        col=np.arange(n, dtype=np.int64) * 10,
        valid_px=valid,
        cloudy_px=np.array(cloudy if cloudy is not None else [-1] * n, dtype=np.int64),
        class_counts=class_counts,
        band_sum=np.zeros((n, 1)),
        band_sumsq=np.zeros((n, 1)),
        tile_size=10,
        stride=10,
    )


def _verdicts(index: TileIndex, *specs: str) -> list[str]:
    codes, names = apply_filters(index, [parse_filter(s) for s in specs], CLASSES)
    return [names[c] for c in codes]


# Tiles of 100 px: [nodata-ish, all water, mostly water, mixed]
INDEX = _index([[0, 30, 10], [0, 0, 100], [0, 5, 95], [0, 50, 50]], cloudy=[0, 90, 10, 40])


def test_nodata_filter_drops_tiles_with_more_nodata_than_the_fraction() -> None:
    assert _verdicts(INDEX, "nodata:0.5") == ["nodata:0.5", "keep", "keep", "keep"]
    assert _verdicts(INDEX, "nodata") == ["nodata:0.5", "keep", "keep", "keep"]


def test_water_only_drops_tiles_at_least_that_watery() -> None:
    assert _verdicts(INDEX, "water-only") == ["keep", "water-only:1", "keep", "keep"]
    assert _verdicts(INDEX, "water-only:0.9") == [
        "keep",
        "water-only:0.9",
        "water-only:0.9",
        "keep",
    ]


def test_cloud_filter_uses_the_cloudy_share_of_valid_pixels() -> None:
    assert _verdicts(INDEX, "cloud:0.3") == ["keep", "cloud:0.3", "keep", "cloud:0.3"]


def test_cloud_filter_without_a_cloud_measure_is_an_error() -> None:
    with pytest.raises(InputError, match="cloud mask"):
        _verdicts(_index([[0, 1, 1]]), "cloud")


def test_dominant_filter() -> None:
    assert _verdicts(INDEX, "dominant:0.9") == ["keep", "dominant:0.9", "dominant:0.9", "keep"]


def test_verdict_is_the_first_reason() -> None:
    assert _verdicts(INDEX, "dominant:0.9", "water-only") == [
        "keep",
        "dominant:0.9",
        "dominant:0.9",
        "keep",
    ]
    assert _verdicts(INDEX, "water-only", "dominant:0.9")[1] == "water-only:1"


@pytest.mark.parametrize("spec", ["bogus", "nodata:x", "cloud:1.5"])
def test_bad_filter_specs(spec: str) -> None:
    with pytest.raises(InputError):
        parse_filter(spec)


def test_water_only_needs_a_water_class() -> None:
    table = ClassTable(name="dry", classes=(ClassInfo(id=1, name="land", color="#00ff00"),))
    with pytest.raises(InputError, match="tagged 'water'"):
        apply_filters(INDEX, [parse_filter("water-only")], table)
