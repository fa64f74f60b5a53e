"""The class histograms of a rescale: the fast counting paths give np.bincount's counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import RasterioIOError

from geotiler.grid import Grid
from geotiler.rescale import methods, rescale
from geotiler.rescale import writing as rescale_writing


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    ("dtype", "shape"),
    [("uint8", (301, 517)), ("uint8", (70001,)), ("uint8", (3, 40000)), ("uint16", (250, 300))],
)
def test_count_into_equals_bincount(fast: bool, dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    top = 256 if dtype == "uint8" else 65536
    values = rng.integers(0, top, shape).astype(dtype)
    values.reshape(-1)[::7] = top - 1  # the last counter too
    hist = np.full(top, 5, np.int64)
    methods.count_into(values, hist, fast=fast)
    expected = np.bincount(values.ravel(), minlength=top) + 5
    np.testing.assert_array_equal(hist, expected)
    if values.ndim == 2:  # a strided view (every other column)
        hist[:] = 0
        methods.count_into(values[:, ::2], hist, fast=fast)
        np.testing.assert_array_equal(hist, np.bincount(values[:, ::2].ravel(), minlength=top))


def _deflate_strips(path: Path, data: np.ndarray) -> Path:
    profile = {
        "driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1,
        "dtype": "uint8", "crs": "EPSG:32631", "nodata": 0, "tiled": False, "blockysize": 1,
        "compress": "deflate", "transform": Affine(1, 0, 240000, 0, -1, 4780000),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data, 1)
    return path


@pytest.mark.parametrize("method", ["near", "mode"])
@pytest.mark.parametrize("layout", ["strip", "deflate-strip", "tiled"])
def test_fast_counting_gives_the_same_map_and_counts(
    write_raster, blobby_mask, tmp_path, monkeypatch, method: str, layout: str
) -> None:
    mask = blobby_mask(1210, 1370, seed=3)
    if layout == "deflate-strip":
        source = _deflate_strips(tmp_path / "mask.tif", mask)
    elif layout == "strip":
        source = write_raster("mask.tif", mask, resolution=1, nodata=0, layout="strip")
    else:
        source = write_raster("mask.tif", mask, resolution=1, nodata=0, block_px=128)
    target = Grid.from_raster(source).zoom_out(10)
    runs = {}
    for fast in (False, True):
        monkeypatch.setattr(methods, "counts_fast", lambda plan, fast=fast: fast)
        monkeypatch.setattr(rescale_writing, "counts_fast", lambda plan, fast=fast: fast)
        out = tmp_path / f"{method}_{fast}.tif"
        result = rescale(source, target, out, method=method, memory_mb=16)
        with rasterio.open(out) as dataset:
            runs[fast] = (dataset.read(1), result.source_counts, result.output_counts)
    np.testing.assert_array_equal(runs[True][0], runs[False][0])
    assert runs[True][1:] == runs[False][1:]
    assert runs[True][2] == _counts(runs[True][0])
    if method == "mode":  # every source pixel is counted
        assert runs[True][1] == _counts(mask)


def _counts(values: np.ndarray) -> dict[int, int]:
    found, counts = np.unique(values, return_counts=True)
    return {int(v): int(n) for v, n in zip(found, counts, strict=True)}


def test_counts_fast_only_where_numba_pays(tmp_path) -> None:
    small = _plan("near", (30000, 30000))
    assert not methods.counts_fast(small)  # 20 Mpx counted: np.bincount
    assert methods.counts_fast(_plan("near", (300000, 300000)))  # 0.93 Gpx counted
    assert methods.counts_fast(_plan("mode", (30000, 30000)))  # mode's kernels load numba
    assert not methods.counts_fast(_plan("mode", (3000, 3000)))  # NumPy's block mode


def _plan(method: str, shape: tuple[int, int]) -> methods.Plan:
    source = Grid("EPSG:32631", Affine(1, 0, 0, 0, -1, 0), shape)
    return methods.Plan(
        source="unused.tif", source_shape=shape, dtype="uint8", target=source.zoom_out(10),
        method=method, factor=10, row_off=0, col_off=0, nodata=0, has_nodata=True,
        n_values=256, weights=np.ones(256), token="t",
    )  # fmt: skip


def test_near_counts_a_bounded_sample_of_source_rows() -> None:
    assert methods.hist_every(_plan("near", (30000, 30000))) == methods.HIST_EVERY
    full = _plan("near", (300000, 300000))
    every = methods.hist_every(full)
    counted = 30000 // every * 300000
    assert methods.HIST_SAMPLE_PX * 0.9 < counted <= methods.HIST_SAMPLE_PX


def test_near_source_shares_follow_the_mask(write_raster, blobby_mask, tmp_path, monkeypatch):
    monkeypatch.setattr(methods, "HIST_SAMPLE_PX", 20_000)  # every 40th sampled row here
    mask = blobby_mask(4000, 1000, seed=9, blob_px=10)
    source = write_raster("mask.tif", mask, resolution=1, nodata=0, layout="strip")
    result = rescale(
        source, Grid.from_raster(source).zoom_out(4), tmp_path / "n.tif", method="near"
    )
    counted = sum(result.source_counts.values())
    # About 25 of the 1000 sampled rows (each window starts its own count), not every 8th (125).
    assert 20 * 1000 <= counted <= 40 * 1000
    truth = _counts(mask)
    for value, count in truth.items():
        share = result.source_counts.get(value, 0) / counted
        assert abs(share - count / mask.size) < 0.05


def test_near_inflates_only_the_strips_it_samples(blobby_mask, tmp_path) -> None:
    """Every strip near does not sample is garbage: near still succeeds, mode cannot."""
    mask = blobby_mask(200, 300, seed=4)
    source = _deflate_strips(tmp_path / "mask.tif", mask)
    with rasterio.open(source) as dataset:
        spans = [
            (
                int(dataset.get_tag_item(f"BLOCK_OFFSET_0_{row}", "TIFF", bidx=1)),
                int(dataset.get_tag_item(f"BLOCK_SIZE_0_{row}", "TIFF", bidx=1)),
            )
            for row in range(200)
        ]
    sampled = {(2 * i + 1) * 10 // 2 for i in range(20)}  # floor((i + 0.5) * 10)
    with open(source, "r+b") as file:
        for row, (offset, size) in enumerate(spans):
            if row not in sampled:
                file.seek(offset)
                file.write(b"\xff" * size)
    target = Grid.from_raster(source).zoom_out(10)
    rescale(source, target, tmp_path / "near.tif", method="near")
    with rasterio.open(tmp_path / "near.tif") as dataset:
        np.testing.assert_array_equal(dataset.read(1), mask[sorted(sampled)][:, 5::10])
    with pytest.raises(RasterioIOError):  # the garbage strips cannot be inflated
        rescale(source, target, tmp_path / "mode.tif", method="mode")
