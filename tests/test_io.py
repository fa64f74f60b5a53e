from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotiler.catalog import Catalog
from geotiler.errors import InputError, OutputExistsError, RasterError
from geotiler.io import (
    atomic_output,
    block_layout,
    open_raster,
    read_class_table,
    require_single_band_integer,
    write_class_metadata,
)
from geotiler.outputs import output_tag
from tests.conftest import write_geotiff

REPO_CATALOG = Path(__file__).parents[1] / "data_catalog.yaml"


def test_open_raster_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match=r"missing\.tif: file not found"):
        open_raster(tmp_path / "missing.tif")
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(RasterError, match=r"notes\.tif: not a raster GDAL can read"):
        open_raster(text)
    with pytest.raises(RasterError, match="is a folder"):
        open_raster(tmp_path)


def test_truncated_tiff_is_reported(write_raster, tmp_path: Path) -> None:
    path = write_raster("full.tif", np.ones((64, 64), np.uint8))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(RasterError, match=r"cut\.tif"), open_raster(cut) as dataset:
        dataset.read()


def test_atomic_output_moves_into_place_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.tif"
    with atomic_output(target) as temporary:
        assert temporary.parent == target.parent
        write_geotiff(temporary, np.ones((8, 8), np.uint8))
        with rasterio.open(temporary, "r+") as dataset:
            dataset.update_tags(**output_tag("test"))  # what geotiler's writers put in
        assert not target.exists()
    done = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_output(target, overwrite=True) as temporary:
        temporary.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == done
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.tif"]


def test_atomic_output_refuses_existing_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "a.tif"
    target.write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_output(target):
        pass


def test_class_metadata_round_trip_and_sidecar_follows_rename(write_raster, tmp_path) -> None:
    table = Catalog.load(REPO_CATALOG).class_table("catalonia12")
    target = tmp_path / "classes.tif"
    with atomic_output(target) as temporary:
        write_geotiff(temporary, np.arange(13, dtype=np.uint8).reshape(1, 13), nodata=0)
        write_class_metadata(temporary, table)
    assert (tmp_path / "classes.tif.aux.xml").is_file()
    with rasterio.open(target) as dataset:
        assert dataset.colormap(1)[12][:3] == (0x1F, 0x78, 0xD1)
        assert read_class_table(dataset) == table
    # Without our tag, colour map + GDAL category names still give the classes back.
    with rasterio.open(target, "r+") as dataset:
        dataset.update_tags(GEOTILER_CLASSES="")
    with rasterio.open(target) as dataset:
        recovered = read_class_table(dataset)
    assert recovered is not None
    assert recovered.names == table.names
    assert recovered.nodata == 0


def test_block_layout_of_strips_and_tiles(write_raster) -> None:
    striped = write_raster("s.tif", np.zeros((20, 600), np.uint8), layout="strip")
    tiled = write_raster("t.tif", np.zeros((600, 600), np.uint8), block_px=256)
    with rasterio.open(striped) as dataset:
        layout = block_layout(dataset)
        assert (layout.block_rows, layout.striped) == (1, True)
        assert layout.aligned_rows(100) == 100
    with rasterio.open(tiled) as dataset:
        layout = block_layout(dataset)
        assert (layout.block_rows, layout.block_cols, layout.striped) == (256, 256, False)
        assert layout.aligned_rows(300) == 256


def test_class_raster_checks(write_raster) -> None:
    floats = write_raster("f.tif", np.zeros((8, 8), np.float32))
    multi = write_raster("m.tif", np.zeros((2, 8, 8), np.uint8))
    with rasterio.open(floats) as dataset, pytest.raises(InputError, match="float32"):
        require_single_band_integer(dataset, purpose="mode")
    with rasterio.open(multi) as dataset, pytest.raises(InputError, match="2 bands"):
        require_single_band_integer(dataset, purpose="mode")
