"""GDAL-style --src-nodata / --dst-nodata (rescale, predict) and --bands by number (predict)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.cli import app
from tests.conftest import toy_unet_checkpoint

CLASSES = ClassTable(
    name="toy",
    nodata=0,
    classes=(
        ClassInfo(id=1, name="field", color="#ffff00"),
        ClassInfo(id=2, name="forest", color="#00aa00"),
    ),
)


def _read(path: Path) -> tuple[np.ndarray, float | None]:
    with rasterio.open(path) as dataset:
        return dataset.read(1), dataset.nodata


def _one_line_error(result, expected: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.output


# -- rescale ------------------------------------------------------------------------------------


def test_rescale_src_nodata_overrides_the_file(runner, write_raster, tmp_path) -> None:
    data = np.full((4, 4), 9, np.uint8)
    data[0, 0] = 1  # one labelled pixel among three 9s: 9 is nodata, so 1 wins the block
    path = write_raster("mask.tif", data, resolution=1)  # the file declares no nodata
    out = tmp_path / "out.tif"
    base = ["rescale", str(path), "--factor", "2", "-o", str(out), "-q"]
    result = runner.invoke(app, [*base, "--src-nodata", "9"])
    assert result.exit_code == 0, result.output
    values, nodata = _read(out)
    assert nodata == 9 and values.tolist() == [[1, 9], [9, 9]]
    plain = runner.invoke(app, [*base, "--overwrite"])
    assert plain.exit_code == 0 and _read(out)[0].tolist() == [[9, 9], [9, 9]]
    bad = runner.invoke(app, [*base, "--overwrite", "--src-nodata", "300"])
    _one_line_error(bad, "--src-nodata 300: the mask is uint8; choose an integer in 0..255")


def test_rescale_dst_nodata_rewrites_nodata_only(runner, write_raster, tmp_path) -> None:
    data = np.zeros((4, 6), np.uint8)
    data[:, 2:4] = 1
    data[:, 4:] = 2
    path = write_raster("mask.tif", data, resolution=1, nodata=0)
    out = tmp_path / "out.tif"
    base = ["rescale", str(path), "--factor", "2", "-o", str(out), "-q"]
    result = runner.invoke(app, [*base, "--dst-nodata", "255"])
    assert result.exit_code == 0, result.output
    values, nodata = _read(out)
    assert nodata == 255 and values.tolist() == [[255, 1, 2], [255, 1, 2]]
    clash = tmp_path / "clash.tif"
    # Without a class table the clash shows only in the result: refused, nothing published.
    args = ["rescale", str(path), "--factor", "2", "-o", str(clash), "-q", "--dst-nodata", "2"]
    _one_line_error(runner.invoke(app, args), "--dst-nodata 2 is a value the mask's classes take")
    assert not clash.exists()


# -- predict ------------------------------------------------------------------------------------


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return toy_unet_checkpoint(
        tmp_path / "run" / "best.pt", CLASSES, mean=(300.0, 500.0), std=(100.0, 50.0)
    )


@pytest.fixture
def pixels() -> np.ndarray:
    rng = np.random.default_rng(4)
    red = rng.normal(300, 100, (50, 60))
    nir = rng.normal(500, 50, (50, 60))
    return np.stack([red, nir]).clip(10, None).astype(np.uint16)


def _predict(runner, scene: Path, model: Path, out: Path, *extra: str):
    args = ["predict", str(scene), "-o", str(out), "--model", str(model), "-q", *extra]
    return runner.invoke(app, args)


def test_predict_bands_by_number(runner, write_raster, model, pixels, tmp_path) -> None:
    named = write_raster("named.tif", pixels)
    with rasterio.open(named, "r+") as dataset:
        dataset.descriptions = ("B04", "B08")
    swapped = write_raster("swapped.tif", pixels[::-1].copy())  # B08, B04; no names
    assert _predict(runner, named, model, tmp_path / "a.tif").exit_code == 0
    result = _predict(runner, swapped, model, tmp_path / "b.tif", "--bands", "2,1")
    assert result.exit_code == 0, result.output
    assert np.array_equal(_read(tmp_path / "a.tif")[0], _read(tmp_path / "b.tif")[0])
    wrong = _predict(runner, swapped, model, tmp_path / "c.tif", "--bands", "3,1")
    _one_line_error(wrong, "--bands 3: the scene has bands 1..2")
    short = _predict(runner, swapped, model, tmp_path / "d.tif", "--bands", "1")
    _one_line_error(short, "--bands gives 1 band numbers but the model takes 2 bands")


def test_predict_src_and_dst_nodata(runner, write_raster, model, pixels, tmp_path) -> None:
    pixels[:, :10] = 7
    scene = write_raster("scene.tif", pixels)  # declares no nodata
    with rasterio.open(scene, "r+") as dataset:
        dataset.descriptions = ("B04", "B08")
    out = tmp_path / "map.tif"
    result = _predict(runner, scene, model, out, "--src-nodata", "7", "--dst-nodata", "200")
    assert result.exit_code == 0, result.output
    values, nodata = _read(out)
    assert nodata == 200
    assert (values[:10] == 200).all() and set(np.unique(values[10:])) <= {1, 2}
    plain = _predict(runner, scene, model, out, "--overwrite")
    assert plain.exit_code == 0 and not (_read(out)[0][:10] == 0).all()  # 7s were predicted
    clash = _predict(runner, scene, model, tmp_path / "x.tif", "--dst-nodata", "2")
    _one_line_error(clash, "--dst-nodata 2: is the class forest of the model")
    assert not (tmp_path / "x.tif").exists()


# -- the same through the Python API ------------------------------------------------------------


def test_api_rescale_mask_takes_nodata_and_creation_options(write_raster, tmp_path) -> None:
    import geotiler

    data = np.full((4, 4), 9, np.uint8)
    data[0, 0] = 1
    path = write_raster("mask.tif", data, resolution=1)  # the file declares no nodata
    out = tmp_path / "out.tif"
    geotiler.rescale_mask(
        path, out, factor=2, src_nodata=9, dst_nodata=250, creation_options={"COMPRESS": "LZW"}
    )
    with rasterio.open(out) as dataset:
        assert dataset.nodata == 250 and dataset.compression.name.lower() == "lzw"
        assert dataset.read(1).tolist() == [[1, 250], [250, 250]]


def test_api_predict_takes_nodata_and_creation_options(write_raster, model, pixels, tmp_path):
    import geotiler

    pixels[:, :10] = 7
    scene = write_raster("scene.tif", pixels)
    with rasterio.open(scene, "r+") as dataset:
        dataset.descriptions = ("B04", "B08")
    out = tmp_path / "map.tif"
    geotiler.predict(
        scene, out, model=model, src_nodata=7, dst_nodata=200, creation_options={"COMPRESS": "LZW"}
    )
    with rasterio.open(out) as dataset:
        values = dataset.read(1)
        assert dataset.nodata == 200 and dataset.compression.name.lower() == "lzw"
    assert (values[:10] == 200).all() and set(np.unique(values[10:])) <= {1, 2}
