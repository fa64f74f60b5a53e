"""`--co NAME=VALUE`: GDAL creation options on every GeoTIFF output, over geotiler's defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.cli import app
from geotiler.creation_options import parse_creation_options, with_creation_options
from geotiler.errors import InputError
from tests.conftest import named_two_band_scene, toy_unet_checkpoint

CLASSES = ClassTable(
    name="toy",
    nodata=0,
    classes=(
        ClassInfo(id=1, name="field", color="#ffff00"),
        ClassInfo(id=2, name="forest", color="#00aa00"),
    ),
)


@pytest.fixture
def mask(write_raster, blobby_mask) -> Path:
    return write_raster("mask.tif", blobby_mask(400, 300, seed=3), resolution=1, nodata=0)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return toy_unet_checkpoint(tmp_path / "run" / "best.pt", CLASSES)


@pytest.fixture
def scene(write_raster) -> Path:
    return named_two_band_scene(write_raster, 60, 70)


def _layout(path: Path) -> tuple[str | None, tuple[int, int], int]:
    with rasterio.open(path) as dataset:
        codec = dataset.compression.value if dataset.compression else None
        return codec, dataset.block_shapes[0], len(dataset.overviews(1))


def _pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def test_rescale_takes_creation_options_over_its_defaults(runner, mask, tmp_path) -> None:
    plain, custom = tmp_path / "plain.tif", tmp_path / "custom.tif"
    base = ["rescale", str(mask), "--factor", "4", "-q"]
    assert runner.invoke(app, [*base, "-o", str(plain)]).exit_code == 0
    options = ["--co", "COMPRESS=LZW", "--co", "blockxsize=32", "--co", "BLOCKYSIZE=32"]
    result = runner.invoke(app, [*base, "-o", str(custom), *options])
    assert result.exit_code == 0, result.output
    assert _layout(plain)[0] == "ZSTD"
    assert _layout(custom)[:2] == ("LZW", (32, 32))
    assert np.array_equal(_pixels(plain), _pixels(custom))


def test_rescale_cog_options_go_to_the_cog_driver(runner, mask, tmp_path) -> None:
    out = tmp_path / "cog.tif"
    args = ["rescale", str(mask), "--factor", "2", "-o", str(out), "--cog", "-q"]
    result = runner.invoke(app, [*args, "--co", "COMPRESS=LZW", "--co", "BLOCKSIZE=128"])
    assert result.exit_code == 0, result.output
    codec, blocks, overviews = _layout(out)
    assert codec == "LZW" and blocks == (128, 128) and overviews >= 1
    tiled = runner.invoke(app, [*args, "--overwrite", "--co", "TILED=YES"])
    assert tiled.exit_code == 1
    assert "--co TILED=YES" in tiled.output and "COG" in tiled.output


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("FOO=1", "--co FOO=1: driver GTiff does not support creation option FOO"),
        ("COMPRESS=zstdx", "--co COMPRESS=zstdx: 'zstdx' is an unexpected value for COMPRESS"),
        ("BLOCKXSIZE=100", "--co BLOCKXSIZE=100: tiles are a whole number of 16 px"),
        ("COMPRESS", "--co COMPRESS: a creation option is NAME=VALUE"),
        ("NODATA=3", "NODATA is not a GDAL creation option"),
    ],
)
def test_a_bad_option_is_one_line_and_nothing_is_written(
    runner, mask, tmp_path, option, message
) -> None:
    out = tmp_path / "out.tif"
    result = runner.invoke(
        app, ["rescale", str(mask), "--factor", "4", "-o", str(out), "--co", option]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert "Traceback" not in result.output and not out.exists()


def test_predict_applies_options_to_the_map_and_the_probabilities(
    runner, model, scene, tmp_path
) -> None:
    out, probs = tmp_path / "map.tif", tmp_path / "probs.tif"
    args = ["predict", str(scene), "-o", str(out), "--model", str(model), "-q"]
    options = ["--probabilities", str(probs), "--co", "COMPRESS=LZW", "--co", "BLOCKXSIZE=64"]
    result = runner.invoke(app, [*args, *options, "--co", "BLOCKYSIZE=64"])
    assert result.exit_code == 0, result.output
    for path in (out, probs):
        assert _layout(path)[:2] == ("LZW", (64, 64))
    cog = runner.invoke(app, [*args, "--overwrite", "--cog", "--co", "COMPRESS=ZSTD"])
    assert cog.exit_code == 0, cog.output
    assert _layout(out)[0] == "ZSTD"
    # PREDICTOR=3 suits floats only: refused for the uint8 map before any tile is predicted.
    bad = runner.invoke(app, [*args, "--overwrite", "--co", "PREDICTOR=3"])
    assert bad.exit_code == 1 and "map.tif: --co PREDICTOR=3" in bad.output


def test_the_python_api_takes_a_dict(mask, tmp_path) -> None:
    from geotiler.grid import Grid
    from geotiler.rescale import rescale

    out = tmp_path / "api.tif"
    target = Grid.from_raster(mask).zoom_out(4)
    rescale(mask, target, out, creation_options={"COMPRESS": "DEFLATE", "PREDICTOR": "2"})
    assert _layout(out)[0] == "DEFLATE"


def test_parsing_and_merging() -> None:
    assert parse_creation_options(["compress=lzw", "ZSTD_LEVEL = 9"]) == {
        "COMPRESS": "lzw",
        "ZSTD_LEVEL": "9",
    }
    with pytest.raises(InputError, match="given twice"):
        parse_creation_options(["COMPRESS=LZW", "compress=ZSTD"])
    profile = {"compress": "deflate", "predictor": 2, "tiled": True}
    merged = with_creation_options(profile, {"COMPRESS": "JPEG"})
    assert merged == {"tiled": True, "COMPRESS": "JPEG"}  # JPEG takes no predictor
    assert with_creation_options(profile, {"COMPRESS": "LZW"})["predictor"] == 2


def test_pipeline_yaml_takes_creation_options() -> None:
    from geotiler.config import resolve_settings
    from geotiler.errors import CatalogError
    from geotiler.predict import PredictSettings
    from geotiler.rescale import RescaleSettings

    pipeline = {"rescale": {"creation_options": {"compress": "lzw", "zstd_level": 9}}}
    settings = resolve_settings(RescaleSettings, stage="rescale", pipeline=pipeline)
    assert settings.creation_options == {"COMPRESS": "lzw", "ZSTD_LEVEL": "9"}
    with pytest.raises(CatalogError, match="COUNT is not a GDAL creation option"):
        resolve_settings(
            PredictSettings,
            stage="predict",
            pipeline={"predict": {"creation_options": {"count": 2}}},
        )
