"""The tile index (tile --index, filter --index): plain column names and a class lookup."""

from __future__ import annotations

import builtins
import re
import sys

import numpy as np
import pytest

from geotiler.cli import app
from geotiler.tiles.footprints import read_index_classes
from geotiler.tiles.store import TileStore

CLASSES_YAML = """
nodata: 0
classes:
  - {id: 1, name: "Scrub, meadows and grasslands", color: "#f2e35a"}
  - {id: 2, name: forest, color: "#1e6b2a"}
  - {id: 3, name: "Watercourses and water bodies", color: "#1f78d1", tags: [water]}
"""
PLAIN = re.compile(r"^[a-z_][a-z0-9_]*$")


@pytest.fixture
def tile_args(write_raster, blobby_mask, tmp_path) -> list[str]:
    rng = np.random.default_rng(2)
    scene = write_raster("scene.tif", rng.integers(1, 999, (3, 96, 96), np.uint16))
    mask = write_raster("mask.tif", blobby_mask(96, 96, classes=3, blob_px=20), nodata=0)
    table = tmp_path / "classes.yaml"
    table.write_text(CLASSES_YAML)
    return ["tile", str(scene), "--mask", str(mask), "--classes", str(table), "--size", "32"]


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet"])
def test_index_has_plain_columns_and_a_class_lookup(runner, tile_args, tmp_path, suffix) -> None:
    import geopandas as gpd

    store, index = tmp_path / "tiles.zarr", tmp_path / f"tiles{suffix}"
    result = runner.invoke(app, [*tile_args, "-o", str(store), "--index", str(index), "-q"])
    assert result.exit_code == 0, result.output
    frame = gpd.read_parquet(index) if suffix == ".parquet" else gpd.read_file(index, layer="tiles")
    assert len(frame) == len(TileStore.open(store))
    assert all(PLAIN.match(str(c)) for c in frame.columns), list(frame.columns)
    assert {"share_1", "share_2", "share_3", "scene", "split", "verdict"} <= set(frame.columns)
    shares = frame[["share_1", "share_2", "share_3"]].to_numpy()
    labelled = shares.sum(axis=1) > 0
    assert np.allclose(shares.sum(axis=1)[labelled], 1.0)
    assert read_index_classes(index) == {
        1: "Scrub, meadows and grasslands",
        2: "forest",
        3: "Watercourses and water bodies",
    }
    # filter refreshes the index it wrote, with the same layout.
    again = runner.invoke(app, ["filter", str(store), "--index", str(index), "-q"])
    assert again.exit_code == 0, again.output
    assert read_index_classes(index)[2] == "forest"


def test_a_bad_index_name_is_refused_before_tiling(runner, tile_args, tmp_path) -> None:
    store = tmp_path / "tiles.zarr"
    result = runner.invoke(app, [*tile_args, "-o", str(store), "--index", str(tmp_path / "x.csv")])
    assert result.exit_code == 1 and "x.csv: index must end in .gpkg" in result.output
    assert not store.exists()


def test_parquet_without_pyarrow_says_what_to_install(
    runner, tile_args, tmp_path, monkeypatch
) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    monkeypatch.delitem(sys.modules, "pyarrow", raising=False)
    store = tmp_path / "tiles.zarr"
    args = [*tile_args, "-o", str(store), "--index", str(tmp_path / "t.parquet")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "pip install 'geotiler[parquet]'" in result.output
    assert not store.exists()
