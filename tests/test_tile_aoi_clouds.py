"""``geotiler tile`` through the CLI: ``--aoi`` limits tiling to tiles touching polygons, and
``--clouds`` gives scenes cloud masks for the per-tile cloud fraction and ``--filter cloud``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from geotiler.cli import app
from geotiler.tiles.layout import tile_offsets
from geotiler.tiles.read import CLOUD_VALUES
from geotiler.tiles.store import TileStore
from tests.conftest import ORIGIN, UTM31

SIDE_PX, TILE_PX, PIXEL_M = 128, 32, 10.0


@pytest.fixture
def scene_and_mask(write_raster, blobby_mask) -> tuple[Path, Path, np.ndarray]:
    """A 2-band 128 x 128 px scene ``a`` and its mask (a nodata strip on the left)."""
    rng = np.random.default_rng(5)
    mask = blobby_mask(SIDE_PX, SIDE_PX, classes=3, nodata_fraction=0.1)
    scene = write_raster("a.tif", rng.integers(0, 999, (2, SIDE_PX, SIDE_PX), np.uint16))
    return scene, write_raster("m.tif", mask, nodata=0), mask


def _tile(args: list[str], runner) -> tuple[int, str]:
    result = runner.invoke(app, ["tile", *args, "--size", str(TILE_PX), "--split", "block:1,0,0"])
    return result.exit_code, result.output


def _one_line_error(code: int, output: str) -> str:
    """The error line of a failed run that printed nothing else (input checks come first)."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 1, output
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    return lines[0]


def _footprint(row_px: int, col_px: int) -> shapely.Polygon:
    x0, y0 = ORIGIN[0] + col_px * PIXEL_M, ORIGIN[1] - row_px * PIXEL_M
    side = TILE_PX * PIXEL_M
    return shapely.box(x0, y0 - side, x0 + side, y0)


def _write_area(polygon: shapely.Polygon, path: Path, crs: str) -> Path:
    import geopandas as gpd

    gpd.GeoDataFrame(geometry=[polygon], crs=UTM31).to_crs(crs).to_file(path, driver="GeoJSON")
    return path


# AOI


@pytest.mark.parametrize("crs", [UTM31, "EPSG:4326"])
def test_aoi_stores_exactly_the_tiles_touching_the_polygon(
    scene_and_mask, runner, tmp_path, crs
) -> None:
    scene, mask_path, mask = scene_and_mask
    # A triangle over the top-left corner: its bounding box holds 3 x 3 tiles, it touches 6.
    x0, y0 = ORIGIN[0] + 5, ORIGIN[1] - 5
    triangle = shapely.Polygon([(x0, y0), (x0 + 700, y0), (x0, y0 - 700)])
    area = _write_area(triangle, tmp_path / "region.geojson", crs)
    out = tmp_path / "t.zarr"
    code, output = _tile(
        [str(scene), "--mask", str(mask_path), "--aoi", str(area), "-o", str(out)], runner
    )
    assert code == 0, output
    offsets = tile_offsets(SIDE_PX, TILE_PX, TILE_PX)
    expected = {
        (r, c)
        for r in offsets
        for c in offsets
        if _footprint(r, c).intersects(triangle)
        and (mask[r : r + TILE_PX, c : c + TILE_PX] > 0).any()
    }
    index = TileStore.open(out).index
    assert len(expected) == 6
    assert set(zip(index.row.tolist(), index.col.tolist(), strict=True)) == expected
    assert "6/6 tiles" in output  # the progress total counts only the tiles in the area


def test_aoi_off_the_scene_is_a_one_line_error(scene_and_mask, runner, tmp_path) -> None:
    scene, mask_path, _ = scene_and_mask
    far = shapely.box(
        ORIGIN[0] + 50_000, ORIGIN[1] + 50_000, ORIGIN[0] + 51_000, ORIGIN[1] + 51_000
    )
    area = _write_area(far, tmp_path / "elsewhere.geojson", UTM31)
    out = tmp_path / "t.zarr"
    line = _one_line_error(
        *_tile([str(scene), "--mask", str(mask_path), "--aoi", str(area), "-o", str(out)], runner)
    )
    assert "elsewhere.geojson" in line and "no tile of any scene touches" in line


# Clouds


@pytest.fixture
def clouds(write_raster) -> tuple[Path, np.ndarray]:
    """A cloud mask for scene ``a``: two cloudy tiles, one mostly shadow, one half cloud."""
    flags = np.zeros((SIDE_PX, SIDE_PX), np.uint8)
    flags[0:32, 0:64] = 1  # tiles (0, 0) and (0, 32): all cloud
    flags[32:56, 0:32] = 2  # tile (32, 0): 24 of 32 rows shadow
    flags[32:48, 32:64] = 1  # tile (32, 32): exactly half cloud
    flags[100, 100] = 1  # tile (96, 96): one pixel
    return write_raster("clouds_a.tif", flags), flags


def _expected_fractions(flags: np.ndarray, mask: np.ndarray) -> dict[tuple[int, int], float]:
    """Cloudy share of the labelled pixels of each tile that has one."""
    offsets = tile_offsets(SIDE_PX, TILE_PX, TILE_PX)
    fractions = {}
    for r in offsets:
        for c in offsets:
            valid = mask[r : r + TILE_PX, c : c + TILE_PX] > 0
            cloudy = np.isin(flags[r : r + TILE_PX, c : c + TILE_PX], CLOUD_VALUES) & valid
            if valid.any():
                fractions[(int(r), int(c))] = cloudy.sum() / valid.sum()
    return fractions


def _fractions(index: pd.DataFrame) -> dict[tuple[int, int], float]:
    """Stored cloud fraction per tile position ``(row_px, col_px)``."""
    rows, cols, fractions = (index[k].tolist() for k in ("row", "col", "cloud_fraction"))
    return {(r, c): f for r, c, f in zip(rows, cols, fractions, strict=True)}


def test_clouds_give_the_cloud_fraction_and_the_cloud_filter_drops_cloudy_tiles(
    scene_and_mask, clouds, write_raster, runner, tmp_path
) -> None:
    scene, mask_path, mask = scene_and_mask
    other = write_raster("b.tif", np.ones((2, SIDE_PX, SIDE_PX), np.uint16))
    cloud_path, flags = clouds
    out = tmp_path / "t.zarr"
    args = [str(scene), str(other), "--mask", str(mask_path), "--clouds", f"a={cloud_path}"]
    code, output = _tile([*args, "--filter", "cloud:0.5", "-o", str(out)], runner)
    assert code == 0, output
    index = TileStore.open(out).index
    expected = _expected_fractions(flags, mask)
    assert expected[(0, 32)] == 1.0 and expected[(32, 32)] == 0.5 and expected[(96, 96)] > 0
    from_a = index[index.scene == "a"]
    assert _fractions(from_a) == pytest.approx(expected)
    cloudy = from_a.cloud_fraction > 0.5
    assert (from_a.verdict[cloudy] == "cloud:0.5").all()
    assert (from_a.verdict[~cloudy] == "keep").all()
    dropped = set(zip(from_a.row[cloudy].tolist(), from_a.col[cloudy].tolist(), strict=True))
    assert dropped == {(0, 0), (0, 32), (32, 0)}  # (32, 32) is exactly 0.5: kept
    # Scene b has no cloud mask and no visible bands: no cloud measure, and it is kept.
    from_b = index[index.scene == "b"]
    assert from_b.cloud_fraction.isna().all() and (from_b.verdict == "keep").all()
    assert TileStore.open(out).scene("a").clouds == str(cloud_path)
    assert TileStore.open(out).scene("b").clouds is None


def test_a_bare_cloud_mask_goes_to_the_only_scene(scene_and_mask, clouds, runner, tmp_path) -> None:
    scene, mask_path, mask = scene_and_mask
    out = tmp_path / "t.zarr"
    args = [str(scene), "--mask", str(mask_path), "--clouds", str(clouds[0]), "-o", str(out)]
    code, output = _tile(args, runner)
    assert code == 0, output
    index = TileStore.open(out).index
    assert _fractions(index) == pytest.approx(_expected_fractions(clouds[1], mask))


def test_clouds_override_the_catalog_cloud_mask(
    scene_and_mask, clouds, write_raster, runner, tmp_path
) -> None:
    scene, mask_path, mask = scene_and_mask
    write_raster("clear.tif", np.zeros((SIDE_PX, SIDE_PX), np.uint8))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        f"""
default_dataset: mini
data_dir: {tmp_path}
class_tables:
  three:
    nodata: 0
    classes:
      - {{id: 1, name: a, color: "#ff0000"}}
      - {{id: 2, name: b, color: "#00ff00"}}
      - {{id: 3, name: c, color: "#0000ff"}}
datasets:
  mini:
    class_table: three
    scenes: {{april: {scene.name}}}
    cloud_masks: {{april: clear.tif}}
"""
    )
    out = tmp_path / "t.zarr"
    args = ["--catalog", str(catalog), "--mask", str(mask_path), "-o", str(out)]
    code, output = _tile([*args, "--clouds", f"april={clouds[0]}"], runner)
    assert code == 0, output
    index = TileStore.open(out).index
    assert _fractions(index) == pytest.approx(_expected_fractions(clouds[1], mask))
    line = _one_line_error(*_tile([*args, "--clouds", f"a={clouds[0]}"], runner))
    assert "no scene 'a'" in line and "known scenes: april" in line


def test_clouds_for_an_unknown_scene_names_it_and_the_known_ones(
    scene_and_mask, clouds, write_raster, runner, tmp_path
) -> None:
    scene, mask_path, _ = scene_and_mask
    other = write_raster("b.tif", np.ones((2, SIDE_PX, SIDE_PX), np.uint16))
    args = [str(scene), str(other), "--mask", str(mask_path), "-o", str(tmp_path / "t.zarr")]
    line = _one_line_error(*_tile([*args, "--clouds", f"april={clouds[0]}"], runner))
    assert "no scene 'april'" in line and "known scenes: a, b" in line
    line = _one_line_error(*_tile([*args, "--clouds", str(clouds[0])], runner))
    assert "SCENE=FILE" in line and "a, b" in line
    twice = ["--clouds", f"a={clouds[0]}", "--clouds", f"a={clouds[0]}"]
    assert "two cloud masks" in _one_line_error(*_tile([*args, *twice], runner))
    assert not (tmp_path / "t.zarr").exists()


def test_a_missing_cloud_mask_names_the_file(scene_and_mask, runner, tmp_path) -> None:
    scene, mask_path, _ = scene_and_mask
    missing = tmp_path / "nowhere" / "clouds.tif"
    args = [str(scene), "--mask", str(mask_path), "--clouds", f"a={missing}"]
    line = _one_line_error(*_tile([*args, "-o", str(tmp_path / "t.zarr")], runner))
    assert str(missing) in line and "not found" in line


def test_a_cloud_mask_off_the_scene_grid_says_to_rescale(
    scene_and_mask, write_raster, runner, tmp_path
) -> None:
    scene, mask_path, _ = scene_and_mask
    coarse = write_raster("coarse.tif", np.zeros((64, 64), np.uint8), resolution=20.0)
    args = [str(scene), "--mask", str(mask_path), "--clouds", f"a={coarse}"]
    line = _one_line_error(*_tile([*args, "-o", str(tmp_path / "t.zarr")], runner))
    assert str(coarse) in line and "cloud mask 'a'" in line and "not on the scene grid" in line
    assert "geotiler rescale" in line
