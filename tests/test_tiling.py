"""Tile positions, reading tiles back as their scene windows, and per-tile statistics."""

from __future__ import annotations

import numpy as np
import pytest

from geotiler.errors import InputError
from geotiler.tiles.classes import classes_from_values
from geotiler.tiles.layout import tile_grid_index, tile_offsets
from geotiler.tiles.read import spectral_clouds
from geotiler.tiles.run import TileInputs, TileSettings, make_tiles


def test_offsets_without_overlap_snap_the_last_tile_to_the_edge() -> None:
    assert tile_offsets(1000, 300, 300).tolist() == [0, 300, 600, 700]
    assert tile_offsets(900, 300, 300).tolist() == [0, 300, 600]
    assert tile_offsets(300, 300, 300).tolist() == [0]


def test_offsets_with_overlap() -> None:
    assert tile_offsets(1000, 300, 250).tolist() == [0, 250, 500, 700]
    assert tile_offsets(800, 300, 250).tolist() == [0, 250, 500]


def test_grid_index_numbers_snapped_tiles_after_their_neighbours() -> None:
    offsets = tile_offsets(1000, 300, 300)
    assert tile_grid_index(offsets, 300).tolist() == [0, 1, 2, 3]


def test_scene_smaller_than_a_tile_is_an_error() -> None:
    with pytest.raises(InputError, match="smaller than one tile"):
        tile_offsets(200, 300, 300)


def test_spectral_clouds_are_bright_and_white() -> None:
    visible = np.array([[[5000, 5000, 800]], [[5200, 1000, 900]], [[5100, 5000, 700]]], np.uint16)
    assert spectral_clouds(visible, 3000, 0.2).ravel().tolist() == [True, False, False]


@pytest.fixture
def scene_and_mask(write_raster, blobby_mask):
    rng = np.random.default_rng(1)
    scene = rng.integers(0, 5000, size=(3, 150, 170), dtype=np.uint16)
    mask = blobby_mask(150, 170, classes=4, nodata_fraction=0.3)
    return (
        scene,
        mask,
        write_raster("scene.tif", scene, block_px=64),
        write_raster("mask.tif", mask, nodata=0),
    )


def test_tiles_equal_their_scene_windows_and_count_their_classes(scene_and_mask, tmp_path) -> None:
    scene, mask, scene_path, mask_path = scene_and_mask
    classes = classes_from_values(mask_path, 0)
    inputs = TileInputs.seasons({"april": scene_path}, mask_path, classes)
    settings = TileSettings(size=64, overlap=16, split="block:1,0,0")
    store = make_tiles(inputs, tmp_path / "t.zarr", settings)
    index = store.index
    rows, cols = tile_offsets(150, 64, 48), tile_offsets(170, 64, 48)
    assert set(zip(index.row, index.col, strict=True)) <= {(r, c) for r in rows for c in cols}
    assert len(store) == len(rows) * len(cols)  # the nodata strip covers no whole tile
    for i in range(len(store)):
        image, tile_mask = store.read(i)
        r, c = int(index.row[i]), int(index.col[i])
        assert image.dtype == np.uint16
        assert np.array_equal(image, scene[:, r : r + 64, c : c + 64])
        assert np.array_equal(tile_mask, mask[r : r + 64, c : c + 64])
        counts = np.bincount(tile_mask[tile_mask > 0].ravel(), minlength=5)
        assert index.loc[i, [f"class_{k}" for k in range(5)]].tolist() == counts.tolist()
        assert index.valid_fraction[i] == pytest.approx((tile_mask > 0).mean())


def test_a_dask_cluster_stores_the_same_tiles_as_threads(scene_and_mask, tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    _, _, scene_path, mask_path = scene_and_mask
    inputs = TileInputs.seasons({"april": scene_path}, mask_path, classes_from_values(mask_path, 0))
    settings = TileSettings(size=32, overlap=8, band_memory_mb=16)
    threaded = make_tiles(inputs, tmp_path / "threads.zarr", settings)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        on_cluster = settings.model_copy(update={"scheduler": cluster.scheduler_address})
        clustered = make_tiles(inputs, tmp_path / "cluster.zarr", on_cluster)
    assert len(threaded) == len(clustered) > 20
    assert threaded.index.equals(clustered.index)
    for i in range(len(threaded)):
        for ours, theirs in zip(threaded.read(i), clustered.read(i), strict=True):
            assert np.array_equal(ours, theirs)


def test_band_statistics_are_over_valid_training_pixels(scene_and_mask, tmp_path) -> None:
    _, _, scene_path, mask_path = scene_and_mask
    inputs = TileInputs.seasons({"april": scene_path}, mask_path, classes_from_values(mask_path, 0))
    store = make_tiles(inputs, tmp_path / "t.zarr", TileSettings(size=50, split="block:1,0,0"))
    pixels = [store.read(int(i)) for i in store.indices("train")]
    values = np.concatenate([img[:, m > 0] for img, m in pixels], axis=1).astype(np.float64)
    assert np.allclose(store.band_mean, values.mean(axis=1))
    assert np.allclose(store.band_std, values.std(axis=1))


def test_tiles_without_valid_pixels_are_not_stored(write_raster, tmp_path) -> None:
    mask = np.full((128, 128), 3, np.uint8)
    mask[:, :64] = 0
    scene = np.ones((2, 128, 128), np.uint16)
    inputs = TileInputs.seasons(
        {"s": write_raster("s.tif", scene)},
        write_raster("m.tif", mask, nodata=0),
        classes_from_values(tmp_path / "m.tif", 0),
    )
    store = make_tiles(inputs, tmp_path / "t.zarr", TileSettings(size=64, split="block:1,0,0"))
    assert sorted(store.index.col.tolist()) == [64, 64]
