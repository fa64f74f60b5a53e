"""The tile pyramid, tile rendering and source resolution of ``geotiler view`` (no server)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

pytest.importorskip("rio_tiler")

from geotiler.cli import app
from geotiler.view import render
from geotiler.view.grid import TILE_PX, ViewGrid
from tests.view.conftest import TRANSFORM, write_tif


def test_pyramid_starts_at_the_scene_corner_with_native_pixels() -> None:
    grid = ViewGrid.from_georeference("EPSG:32631", TRANSFORM, (1000, 600))
    assert grid.native_zoom == 2  # 1000 px need 4 tiles of 256 px
    assert grid.resolution(grid.native_zoom) == pytest.approx(10)
    left, _bottom, right, top = grid.tile_bounds(0, 0, 0)
    assert (left, top) == (240000, 4780000)
    assert right - left == pytest.approx(10 * TILE_PX * 4)
    assert grid.tile_bounds(2, 1, 2)[3] == pytest.approx(4780000 - 2 * 2560)
    options = grid.tile_source_options()
    # BokehJS: tile pixel x = (x + x_origin_offset) / resolution, from the bottom-left corner.
    assert options["x_origin_offset"] == -240000
    assert options["y_origin_offset"] == pytest.approx(-(4780000 - 10 * 1024))
    with pytest.raises(ValueError, match="outside"):
        grid.tile_bounds(1, 2, 0)


def test_scene_without_crs_is_shown_in_pixels(tmp_path: Path) -> None:
    data = np.zeros((3, 100, 300), np.uint8)
    data[0, :, :150] = 200  # left half red
    path = write_tif(tmp_path / "plain.tif", data, crs=None)
    grid = ViewGrid.from_raster(path)
    assert grid.crs is None and grid.extent == (0.0, -100.0, 300.0, 0.0)
    read = render.read_tile(path, grid, 1, 0, 0, indexes=[1, 2, 3])
    assert read is not None
    values, valid = read
    # Zoom 1: tile (0, 0) covers pixels [0, 256) of both axes; rows past 100 are outside.
    assert valid[:90, :250].all() and not valid[110:].any()
    assert values[0, 10, 10] == 200 and values[0, 10, 200] == 0


def test_large_scene_opens_in_seconds(tmp_path: Path) -> None:
    """30000 x 30000 px with an overview: grid, stretch and tiles without a full read.

    The scene is sparse (no block written but one) and its 1/64 overview (an external .ovr, as
    ``gdaladdo -ro`` writes) holds noise: a zoom-0 tile with that noise came from the overview.
    """
    path = tmp_path / "big.tif"
    profile = {
        "driver": "GTiff", "height": 30000, "width": 30000, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32631", "transform": TRANSFORM, "tiled": True, "blockxsize": 512,
        "blockysize": 512, "compress": "deflate", "sparse_ok": True,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(
            np.full((3, 512, 512), 77, np.uint8), window=rasterio.windows.Window(0, 0, 512, 512)
        )
    side = -(-30000 // 64)
    noise = np.random.default_rng(0).integers(1, 255, size=(3, side, side)).astype(np.uint8)
    overview = {**profile, "height": side, "width": side, "transform": TRANSFORM @ Affine.scale(64)}
    with rasterio.open(tmp_path / "big.tif.ovr", "w", **overview) as dst:
        dst.write(noise)
    started = time.perf_counter()
    grid = ViewGrid.from_raster(path)
    stretch = render.compute_stretch(path, (1, 2, 3))
    tiles = [
        render.read_tile(path, grid, zoom, x, y, indexes=[1, 2, 3])
        for zoom, x, y in ((0, 0, 0), (3, 1, 1), (grid.native_zoom, 0, 0))
    ]
    for read in tiles:
        assert read is not None
        render.encode_png(render.rgb_rgba(*read, stretch))
    assert time.perf_counter() - started < 5
    assert tiles[0][0][:, :100, :100].std() > 30  # the overview's noise
    assert (tiles[2][0][:, :10, :10] == 77).all()  # full resolution at the native zoom


def test_stretch_of_a_large_raster_without_overviews_samples_windows(tmp_path: Path) -> None:
    data = np.full((1, 5000, 5000), 100, np.uint16)
    data[0, ::2] = 300
    path = write_tif(tmp_path / "noovr.tif", data)
    sample = render.sample_pixels(path, [1])
    assert sample[0].size == render.SAMPLE_WINDOWS**2 * render.SAMPLE_WINDOW_PX**2
    stretch = render.compute_stretch(path, [1], percentiles=(1, 99))
    assert stretch.low == (100.0,) and stretch.high == (300.0,)


def test_png_encoding_round_trips() -> None:
    rgba = np.random.default_rng(1).integers(0, 256, size=(4, 256, 256)).astype(np.uint8)
    png = render.encode_png(rgba)
    with rasterio.MemoryFile(png) as memory, memory.open() as image:
        assert (image.read() == rgba).all()


def test_band_presets_from_names() -> None:
    sentinel = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    presets = render.band_presets(sentinel)
    assert presets["true colour"] == (3, 2, 1)
    assert presets["false colour (NIR-R-G)"] == (7, 3, 2)
    assert render.band_presets(("band 1", "band 2", "band 3"))["true colour"] == (1, 2, 3)
    assert list(render.band_presets(("a", "b"))) == ["first bands"]


def test_difference_and_confidence_colours() -> None:
    predicted = np.array([[1, 2], [3, 0]], np.uint8)
    truth = np.array([[1, 3], [3, 3]], np.uint8)
    valid = np.ones((2, 2), bool)
    diff = render.difference_rgba(predicted, truth, valid, nodata=0)
    assert tuple(diff[:, 0, 0]) == render.RIGHT and tuple(diff[:, 0, 1]) == render.WRONG
    conf = render.confidence_rgba(np.array([[0.2, 0.9]]), np.ones((1, 2), bool), 0.5)
    assert tuple(conf[:, 0, 0]) == render.GREY_BELOW and conf[3, 0, 1] == 0


def test_view_refuses_missing_files_in_one_line(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["view", str(tmp_path / "missing.tif")])
    assert result.exit_code == 1
    assert "missing.tif: file not found" in result.output
    assert "Traceback" not in result.output


def test_view_help_lists_the_options(runner: CliRunner) -> None:
    result = runner.invoke(app, ["view", "--help"])
    assert result.exit_code == 0
    for option in ("--map", "--store", "--probabilities", "--truth", "--port", "--host", "--open"):
        assert option in result.output


def test_sources_from_a_folder(tiny_dataset: Any) -> None:
    from geotiler.catalog import Catalog
    from geotiler.view.sources import resolve_sources

    sources = resolve_sources(Catalog.load(), None, scenes=[tiny_dataset.folder])
    assert list(sources.scenes.values()) == [tiny_dataset.scene]
    assert sources.map == tiny_dataset.map
    assert sources.truth == tiny_dataset.mask
    assert sources.probabilities == tiny_dataset.probabilities
    assert sources.store == tiny_dataset.store
    assert sources.corrections == tiny_dataset.folder / "corrections.gpkg"
    assert [c.name for c in sources.classes.classes] == ["water", "forest", "urban"]


def test_default_dataset_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bare ``geotiler view``: the catalog's default dataset, its scenes and outputs."""
    from geotiler.catalog import Catalog
    from geotiler.view.sources import resolve_sources

    catalog = tmp_path / "data_catalog.yaml"
    catalog.write_text(
        "default_dataset: mini\nclass_tables:\n  t:\n    classes:\n"
        "      - {id: 1, name: a, color: '#ff0000'}\n"
        "datasets:\n  mini:\n    class_table: t\n    data_dir: raw\n"
        "    scenes: {spring: s.tif}\n",
        encoding="utf-8",
    )
    (tmp_path / "data" / "raw").mkdir(parents=True)
    write_tif(tmp_path / "data" / "raw" / "s.tif", np.ones((3, 64, 64), np.uint16))
    work = tmp_path / "work" / "mini"
    work.mkdir(parents=True)
    write_tif(work / "landcover.tif", np.ones((1, 64, 64), np.uint8))
    sources = resolve_sources(Catalog.load(catalog), None)
    assert list(sources.scenes) == ["spring"]
    assert sources.map == work / "landcover.tif"
    assert sources.truth is None and sources.store is None
    assert sources.corrections == work / "corrections.gpkg"


def test_prediction_job_runs_in_the_background(tiny_dataset: Any, tmp_path: Path) -> None:
    from geotiler.view.jobs import PredictJob, safe_upload_name

    job = PredictJob(
        scene=tiny_dataset.scene, model=tiny_dataset.run / "last.pt",
        output=tmp_path / "map.tif", probabilities=tmp_path / "probs.tif",
    ).start()  # fmt: skip
    job.wait(120)
    assert job.state == "done", job.error
    assert job.done == job.total > 0
    with rasterio.open(tmp_path / "map.tif") as src, rasterio.open(tiny_dataset.map) as ref:
        assert (src.read(1) == ref.read(1)).mean() > 0.99
    assert safe_upload_name("../../x y.TIF", 3) == "003-x_y.TIF"
    with pytest.raises(ValueError, match="GeoTIFF"):
        safe_upload_name("scene.exe", 1)


def test_affine_of_the_fixture_is_north_up() -> None:
    assert TRANSFORM.b == 0 and TRANSFORM.d == 0 and isinstance(TRANSFORM, Affine)
