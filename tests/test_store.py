"""The tile store: resuming interrupted runs, refusing incomplete stores, and the CLI on top."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import geotiler.tiles.writer
from geotiler.cli import app
from geotiler.errors import OutputExistsError, StoreError
from geotiler.tiles.classes import classes_from_values
from geotiler.tiles.run import TileInputs, TileSettings, make_tiles
from geotiler.tiles.store import TileStore
from tests.conftest import write_geotiff  # at import: later conftests (train/, view/) take the name

CLASSES_YAML = """
nodata: 0
classes:
  - {id: 1, name: field, color: "#f2e35a"}
  - {id: 2, name: forest, color: "#1e6b2a"}
  - {id: 3, name: water, color: "#1f78d1", tags: [water]}
"""


@pytest.fixture
def two_seasons(write_raster, blobby_mask, tmp_path):
    rng = np.random.default_rng(2)
    mask = blobby_mask(160, 128, classes=3, nodata_fraction=0.2)
    # One-row strips: each band of tile rows is one unit, so a crash can fall between units.
    april = write_raster(
        "april.tif", rng.integers(0, 999, (3, 160, 128), np.uint16), layout="strip"
    )
    august = write_raster("august.tif", rng.integers(0, 999, (3, 160, 128), np.uint16))
    mask_path = write_raster("mask.tif", mask, nodata=0)
    classes = classes_from_values(mask_path, 0)
    return TileInputs.seasons({"april": april, "august": august}, mask_path, classes)


SETTINGS = TileSettings(size=32, overlap=8, shard_tiles=5, filters=("dominant:0.9",))


class Crash(RuntimeError):
    pass


def _crash_after(calls: int):
    seen = []

    def progress(n: int) -> None:
        seen.append(n)
        if len(seen) > calls:
            raise Crash

    return progress


@pytest.mark.parametrize("flush_tiles", [5, 1024])  # progress recorded every shard, or never
def test_interrupted_run_resumes_to_the_same_store(
    two_seasons, tmp_path, monkeypatch, flush_tiles
) -> None:
    monkeypatch.setattr(geotiler.tiles.writer, "INDEX_FLUSH_TILES", flush_tiles)
    reference = make_tiles(two_seasons, tmp_path / "ref.zarr", SETTINGS)
    target = tmp_path / "t.zarr"
    with pytest.raises(Crash):
        make_tiles(
            two_seasons, target, SETTINGS, progress=_crash_after(6), command="geotiler tile x"
        )
    with pytest.raises(StoreError, match=r"incomplete.*re-run `geotiler tile x`"):
        TileStore.open(target)
    resumed_calls: list[int] = []
    store = make_tiles(two_seasons, target, SETTINGS, progress=resumed_calls.append)
    if flush_tiles < len(reference):
        assert resumed_calls[0] > 0, "the resumed run started from scratch"
    assert len(store) == len(reference)
    assert store.index.equals(reference.index)
    for i in range(len(store)):
        for ours, theirs in zip(store.read(i), reference.read(i), strict=True):
            assert np.array_equal(ours, theirs)


def test_store_is_sharded_and_follows_the_reader_contract(two_seasons, tmp_path) -> None:
    store = make_tiles(two_seasons, tmp_path / "t.zarr", SETTINGS)
    shards = list((tmp_path / "t.zarr" / "images").rglob("c/*/*/*/*"))
    assert 0 < len(shards) <= -(-len(store) // 5)
    assert store.scenes == ("april", "august")
    assert store.num_classes == 4 and store.nodata == 0
    assert store.image_dtype == np.uint16 and store.bands == ("band1", "band2", "band3")
    kept = store.indices()
    assert set(store.index.verdict[kept]) == {"keep"}
    by_split = [store.indices(s) for s in ("train", "val", "test")]
    assert sorted(np.concatenate(by_split).tolist()) == kept.tolist()
    assert np.all(store.sampling_weights(kept) == 1.0)
    assert store.class_weights is None
    image, mask = pickle.loads(pickle.dumps(store)).read(int(kept[0]))
    assert image.shape == (3, 32, 32) and mask.dtype == np.uint8


def test_complete_store_is_not_overwritten_without_asking(two_seasons, tmp_path) -> None:
    make_tiles(two_seasons, tmp_path / "t.zarr", SETTINGS)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        make_tiles(two_seasons, tmp_path / "t.zarr", SETTINGS)
    assert len(make_tiles(two_seasons, tmp_path / "t.zarr", SETTINGS, overwrite=True)) > 0


def test_cli_tiles_filters_exports_and_reports(two_seasons, runner, tmp_path) -> None:
    table = tmp_path / "classes.yaml"
    table.write_text(CLASSES_YAML)
    scenes = [str(s.image) for s in two_seasons.scenes]
    out, index = tmp_path / "cli.zarr", tmp_path / "tiles.gpkg"
    args = ["tile", *scenes, "--mask", str(two_seasons.scenes[0].mask), "--classes", str(table)]
    args += ["--size", "32", "--filter", "water-only", "--balance", "inverse", "-o", str(out)]
    result = runner.invoke(app, [*args, "--index", str(index)])
    assert result.exit_code == 0, result.output
    assert "kept in train" in result.output and "forest" in result.output
    store = TileStore.open(out)
    assert store.classes.names[3] == "water" and store.class_weights is not None
    water = store.index.class_3 == store.index[["class_1", "class_2", "class_3"]].sum(axis=1)
    assert (store.index.verdict[water] == "water-only:1").all()
    import geopandas as gpd

    assert len(gpd.read_file(index)) == len(store)
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "kept in train" in info.output
    refiltered = runner.invoke(app, ["filter", str(out), "--no-filters", "--quiet"])
    assert refiltered.exit_code == 0, refiltered.output
    assert "water-only:1" not in set(TileStore.open(out).index.verdict)


def test_cli_empty_result_after_filtering_is_a_clear_error(two_seasons, runner, tmp_path) -> None:
    table = tmp_path / "classes.yaml"
    table.write_text(CLASSES_YAML)
    scenes = [str(s.image) for s in two_seasons.scenes]
    args = ["tile", *scenes, "--mask", str(two_seasons.scenes[0].mask), "--classes", str(table)]
    result = runner.invoke(
        app, [*args, "--size", "32", "--filter", "water-only:0", "-o", str(tmp_path / "x.zarr")]
    )
    assert result.exit_code == 1
    assert "no training tile left" in result.output and "water-only:0" in result.output


def test_cli_refuses_a_mask_over_another_extent(write_raster, blobby_mask, runner) -> None:
    scene = write_raster("s.tif", np.zeros((2, 64, 64), np.uint16))
    mask = write_raster("m.tif", blobby_mask(320, 640), resolution=1.0)  # half the scene's height
    result = runner.invoke(app, ["tile", str(scene), "--mask", str(mask), "--size", "32"])
    assert result.exit_code == 1
    assert "another extent" in result.output and "geotiler rescale" in result.output


def test_cli_refuses_scenes_with_different_band_counts(write_raster, blobby_mask, runner) -> None:
    a = write_raster("a.tif", np.zeros((2, 64, 64), np.uint16))
    b = write_raster("b.tif", np.zeros((3, 64, 64), np.uint16))
    mask = write_raster("m.tif", blobby_mask(64, 64), nodata=0)
    result = runner.invoke(app, ["tile", str(a), str(b), "--mask", str(mask), "--size", "32"])
    assert result.exit_code == 1
    assert "3 bands" in result.output and "2 of uint16" in result.output


def test_cli_missing_mask_says_to_rescale(write_raster, runner, tmp_path: Path) -> None:
    scene = write_raster("s.tif", np.zeros((2, 64, 64), np.uint16))
    result = runner.invoke(app, ["tile", str(scene), "--mask", str(tmp_path / "none.tif")])
    assert result.exit_code == 1 and "none.tif: mask file not found" in result.output


# sha256 of the arrays of the store below, as written by geotiler before scenes had their own
# grids (commit e21b8e1): the single-grid (Catalonia) path must keep writing the same store.
SINGLE_GRID_STORE_SHA256 = "c8fd8a3338481b6aa2636f80caed55e4e5c1681697d86fd3b3bbab14608e8e79"


def test_single_grid_seasons_write_the_same_store_as_before(runner, tmp_path) -> None:
    import hashlib

    import zarr

    rng = np.random.default_rng(11)
    coarse = rng.integers(0, 5, size=(12, 10))
    mask = np.kron(coarse, np.ones((16, 16), np.int64))[:180, :150].astype(np.uint8)
    data = rng.integers(0, 4000, (4, 180, 150), np.uint16)
    april = write_geotiff(tmp_path / "april.tif", data, layout="strip")
    august = write_geotiff(tmp_path / "august.tif", rng.integers(0, 4000, (4, 180, 150), np.uint16))
    mask_path = write_geotiff(tmp_path / "mask.tif", mask, nodata=0)
    out = tmp_path / "t.zarr"
    args = ["tile", str(april), str(august), "--mask", str(mask_path), "--size", "40"]
    args += ["--overlap", "8", "--filter", "nodata:0.6", "--split", "block:0.6,0.2,0.2"]
    result = runner.invoke(app, [*args, "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    group = zarr.open_group(str(out), mode="r")
    digest = hashlib.sha256()
    for name in ("images", "masks"):
        digest.update(np.ascontiguousarray(group[name][:]).tobytes())
    for name in sorted(group["index"].array_keys()):
        values = np.asarray(group["index"][name][:])
        values = values.astype(np.int64) if name == "scene" else values
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    assert digest.hexdigest() == SINGLE_GRID_STORE_SHA256
