"""geotiler rescale: exact block mode and near with GDAL's conventions, the warp path, the CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.cli import app
from geotiler.errors import GridMismatchError, InputError
from geotiler.grid import Grid
from geotiler.io import read_class_table, write_class_metadata
from geotiler.rescale import rescale, target_grid

UTM = CRS.from_epsg(32631)
ORIGIN = (240000.0, 4780000.0)
needs_gdal = pytest.mark.skipif(shutil.which("gdalwarp") is None, reason="gdalwarp not installed")


def mask_grid(rows: int, cols: int, res: float = 1.0, origin=ORIGIN) -> Grid:
    return Grid(UTM, Affine(res, 0, origin[0], 0, -res, origin[1]), (rows, cols))


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(1)


def blocks(path: Path, factor: int, tmp_path: Path, **options) -> np.ndarray:
    out = tmp_path / f"out_{factor}_{options.get('method', 'mode')}.tif"
    rescale(path, Grid.from_raster(path).zoom_out(factor), out, overwrite=True, **options)
    return read(out)


# -- hand-made blocks -------------------------------------------------------------------------


def test_mode_tie_goes_to_the_value_that_reached_the_count_first(write_raster, tmp_path) -> None:
    # Block 1: 5 and 7 both reach 2, 7 first (row-major). Block 2: 3 then 4, 4 reaches 2 first.
    data = np.array([[5, 7, 3, 4], [7, 5, 4, 3]], np.uint8)
    data = np.vstack([data, [[9, 9, 1, 1], [2, 2, 1, 6]]])
    path = write_raster("ties.tif", data, resolution=1, nodata=0)
    assert blocks(path, 2, tmp_path).tolist() == [[7, 4], [9, 1]]


def test_nodata_ignored_and_all_nodata_block_is_nodata(write_raster, tmp_path) -> None:
    data = np.array([[0, 0, 0, 3], [0, 0, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]], np.uint8)
    path = write_raster("nodata.tif", data, resolution=1, nodata=0)
    # 0 is the majority of every block yet never wins; the empty block stays nodata.
    assert blocks(path, 2, tmp_path).tolist() == [[0, 3], [2, 0]]


def test_weighted_mode_keeps_a_narrow_heavy_class(write_raster, tmp_path) -> None:
    data = np.full((4, 4), 3, np.uint8)
    data[:, 1] = 11  # a road one pixel wide: 4 of 16 pixels in the block
    path = write_raster("road.tif", data, resolution=1, nodata=0)
    assert blocks(path, 4, tmp_path).tolist() == [[3]]
    weighted = blocks(path, 4, tmp_path, method="weighted-mode", weights={11: 4.0})
    assert weighted.tolist() == [[11]]
    # Equal final scores (4 x 3.0 vs 12 x 1.0): the first to reach 12 in row-major order wins.
    tied = blocks(path, 4, tmp_path, method="weighted-mode", weights={11: 3.0})
    assert tied.tolist() == [[11]]  # its 4th pixel (row 3, col 1) comes before 3's 12th
    data[:, 1], data[:, 3] = 3, 11
    path = write_raster("road_right.tif", data, resolution=1, nodata=0)
    tied = blocks(path, 4, tmp_path, method="weighted-mode", weights={11: 3.0})
    assert tied.tolist() == [[3]]  # now 3's 12th pixel (row 3, col 2) comes first


def reference_mode(
    data: np.ndarray, factor: int, nodata: int, weights: dict[int, float]
) -> np.ndarray:
    """GDAL's rule written plainly: the running mode, replaced only on a strictly larger score."""
    rows, cols = -(-data.shape[0] // factor), -(-data.shape[1] // factor)
    out = np.full((rows, cols), nodata, data.dtype)
    for i in range(rows):
        for j in range(cols):
            counts: dict[int, int] = {}
            best, best_score = nodata, 0.0
            for value in data[i * factor : (i + 1) * factor, j * factor : (j + 1) * factor].ravel():
                if value == nodata:
                    continue
                counts[value] = counts.get(value, 0) + 1
                score = counts[value] * weights.get(int(value), 1.0)
                if score > best_score:
                    best, best_score = value, score
            out[i, j] = best
    return out


@pytest.mark.parametrize(
    ("n_values", "factor"),
    [(3, 10), (13, 10), (4, 3), (16, 15), (40, 4), (5, 16)],  # the last two: > 16 values, > 15 px
)
def test_mode_equals_the_plain_rule_on_noisy_masks(
    write_raster, tmp_path, n_values, factor
) -> None:
    # Noise over few values makes ties common; edge blocks are partial (the size is no multiple).
    rng = np.random.default_rng(n_values * 100 + factor)
    data = rng.integers(0, n_values, size=(5 * factor + 3, 7 * factor + 1), dtype=np.uint8)
    data[: factor + 1, : 2 * factor] = 1  # whole-block runs next to noise
    path = write_raster(f"noise_{n_values}_{factor}.tif", data, resolution=1, nodata=0)
    assert np.array_equal(blocks(path, factor, tmp_path), reference_mode(data, factor, 0, {}))
    weights = {1: 2.0, 2: 0.5, 3: 1.5}
    got = blocks(path, factor, tmp_path, method="weighted-mode", weights=weights)
    assert np.array_equal(got, reference_mode(data, factor, 0, weights))


def test_near_takes_the_centre_pixel_rounded_down_right(write_raster, tmp_path) -> None:
    data = (np.arange(100 * 100) % 251).reshape(100, 100).astype(np.uint8)
    path = write_raster("ramp.tif", data, resolution=1)
    for factor in (10, 3, 4):
        centres = (2 * np.arange(100 // factor) + 1) * factor // 2
        expected = data[np.ix_(centres, centres)]
        got = blocks(path, factor, tmp_path, method="near")
        assert np.array_equal(got[: len(centres), : len(centres)], expected), factor


# -- GDAL's conventions, checked against GDAL itself -------------------------------------------


def gdalwarp(src: Path, target: Grid, out: Path, method: str) -> np.ndarray:
    left, bottom, right, top = target.bounds
    extent = [str(v) for v in (left, bottom, right, top)]
    size = [str(target.cols), str(target.rows)]
    command = ["gdalwarp", "-q", "-overwrite", "-r", method, "-t_srs", target.crs.to_wkt()]
    subprocess.run([*command, "-te", *extent, "-ts", *size, str(src), str(out)], check=True)
    return read(out)


@needs_gdal
@pytest.mark.parametrize(("layout", "factor"), [("strip", 10), ("tiled", 3), ("strip", 7)])
def test_mode_and_near_equal_gdalwarp(write_raster, blobby_mask, tmp_path, layout, factor) -> None:
    # 437 x 523 px: edge blocks are partial; the target also reaches past the mask on one side.
    mask = blobby_mask(437, 523, blob_px=12, seed=factor)
    path = write_raster("mask.tif", mask, resolution=1, nodata=0, layout=layout, block_px=64)
    target = mask_grid(-(-437 // factor) + 3, -(-523 // factor), res=factor)
    for method, gdal_method in (("mode", "mode"), ("near", "near")):
        ours = tmp_path / f"ours_{method}.tif"
        rescale(path, target, ours, method=method)
        theirs = gdalwarp(path, target, tmp_path / f"gdal_{method}.tif", gdal_method)
        assert np.array_equal(read(ours), theirs), (method, np.mean(read(ours) != theirs))


@needs_gdal
def test_mode_equals_gdal_translate_outsize(write_raster, blobby_mask, tmp_path) -> None:
    path = write_raster("mask.tif", blobby_mask(400, 300, blob_px=10), resolution=1, nodata=0)
    theirs = tmp_path / "translate.tif"
    subprocess.run(
        ["gdal_translate", "-q", "-r", "mode", "-outsize", "10%", "10%", str(path), str(theirs)],
        check=True,
    )
    assert np.array_equal(blocks(path, 10, tmp_path), read(theirs))


# -- the general (warp) path -------------------------------------------------------------------


@needs_gdal
def test_non_integer_factor_goes_through_the_warper(write_raster, blobby_mask, tmp_path) -> None:
    path = write_raster("mask.tif", blobby_mask(300, 300, seed=3), resolution=1, nodata=0)
    target = target_grid(Grid.from_raster(path), resolution=2.5)
    result = rescale(path, target, tmp_path / "out.tif", method="mode")
    assert result.factor is None
    assert any("GDAL's warper" in notice for notice in result.notices)
    theirs = gdalwarp(path, target, tmp_path / "gdal.tif", "mode")
    assert np.mean(read(result.path) == theirs) > 0.99


@needs_gdal
def test_other_crs_works_with_a_notice(write_raster, blobby_mask, tmp_path) -> None:
    path = write_raster("mask.tif", blobby_mask(200, 200, seed=4), resolution=1, nodata=0)
    footprint = rasterio.warp.transform_bounds(UTM, "EPSG:3857", *Grid.from_raster(path).bounds)
    target = Grid.from_bounds(footprint, 4.0, "EPSG:3857")
    result = rescale(path, target, tmp_path / "out.tif", method="mode")
    assert any("differs from the target" in notice for notice in result.notices)
    assert Grid.from_raster(result.path).almost_equals(target)
    theirs = gdalwarp(path, target, tmp_path / "gdal.tif", "mode")
    assert np.mean(read(result.path) == theirs) > 0.98


def test_weighted_mode_refuses_the_warp_path(write_raster, blobby_mask, tmp_path) -> None:
    path = write_raster("mask.tif", blobby_mask(60, 60), resolution=1, nodata=0)
    target = target_grid(Grid.from_raster(path), resolution=2.5)
    with pytest.raises(InputError, match="integer-factor"):
        rescale(path, target, tmp_path / "out.tif", method="weighted-mode")


# -- out of core: layouts, windows, schedulers ----------------------------------------------


@pytest.mark.parametrize("method", ["mode", "near"])
def test_strip_and_tiled_sources_and_window_sizes_agree(
    write_raster, blobby_mask, tmp_path, method
) -> None:
    mask = blobby_mask(1500, 1700, seed=5)
    strip = write_raster("strip.tif", mask, resolution=1, nodata=0, layout="strip")
    tiled = write_raster("tiled.tif", mask, resolution=1, nodata=0, block_px=128)
    target = mask_grid(150, 170, res=10)
    outputs = []
    for source, memory_mb in ((strip, 256), (tiled, 256), (tiled, 16), (strip, 16)):
        out = tmp_path / f"{source.stem}_{memory_mb}.tif"
        rescale(source, target, out, method=method, memory_mb=memory_mb, block_px=64)
        outputs.append(read(out))
    for other in outputs[1:]:
        assert np.array_equal(outputs[0], other)


def test_dask_cluster_gives_the_same_bytes_as_threads(write_raster, blobby_mask, tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    path = write_raster("mask.tif", blobby_mask(300, 400, seed=6), resolution=1, nodata=0)
    target = Grid.from_raster(path).zoom_out(10)
    threaded = rescale(path, target, tmp_path / "threads.tif", memory_mb=16)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        clustered = rescale(
            path, target, tmp_path / "cluster.tif", scheduler=cluster.scheduler_address
        )
    assert threaded.path.read_bytes() == clustered.path.read_bytes()


def test_interrupted_run_leaves_no_output(write_raster, blobby_mask, tmp_path) -> None:
    path = write_raster("mask.tif", blobby_mask(400, 400), resolution=1, nodata=0, layout="strip")

    def stop(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rescale(path, Grid.from_raster(path).zoom_out(10), tmp_path / "out.tif", progress=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]


# -- output: grid, nodata, class metadata, COG --------------------------------------------------

CLASSES = ClassTable(
    name="three",
    nodata=0,
    classes=(
        ClassInfo(id=1, name="field", color="#f2e35a"),
        ClassInfo(id=2, name="forest", color="#1e6b2a"),
        ClassInfo(id=3, name="water", color="#1f78d1"),
    ),
)


def test_output_grid_nodata_and_class_metadata(write_raster, blobby_mask, tmp_path) -> None:
    path = write_raster("mask.tif", blobby_mask(200, 200, classes=3), resolution=1, nodata=0)
    write_class_metadata(path, CLASSES)
    # The target starts 5 coarse pixels left of and above the mask and reaches past it.
    target = mask_grid(30, 30, res=10, origin=(ORIGIN[0] - 50, ORIGIN[1] + 50))
    result = rescale(path, target, tmp_path / "out.tif", progress=None)
    with rasterio.open(result.path) as out:
        assert Grid.from_dataset(out).almost_equals(target)
        assert out.nodata == 0
        assert out.block_shapes[0] == (512, 512) and out.compression is not None
        data = out.read(1)
        table = read_class_table(out)
        assert out.colormap(1)[3][:3] == (0x1F, 0x78, 0xD1)
    assert table is not None and table.names == CLASSES.names
    assert (data[:5] == 0).all() and (data[:, :5] == 0).all() and (data[25:] == 0).all()
    assert (data[5:25, 7:25] > 0).all()  # covered, right of the mask's nodata strip
    assert result.factor == 10 and not result.source_sampled
    assert sum(result.source_counts.values()) == 200 * 200


def test_cog_output_has_mode_overviews(write_raster, blobby_mask, tmp_path) -> None:
    path = write_raster("mask.tif", blobby_mask(2000, 2000, classes=3), resolution=1, nodata=0)
    result = rescale(path, Grid.from_raster(path).zoom_out(2), tmp_path / "o.tif", cog=True)
    with rasterio.open(result.path) as out:
        assert out.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert out.overviews(1) and out.nodata == 0
        overview = out.read(1, out_shape=(out.height // 2, out.width // 2))
    assert set(np.unique(overview)) <= {0, 1, 2, 3}  # classes, not averages
    assert [p.name for p in tmp_path.iterdir() if "staged" in p.name or "partial" in p.name] == []


def test_no_overlap_is_refused(write_raster, blobby_mask, tmp_path) -> None:
    path = write_raster("mask.tif", blobby_mask(100, 100), resolution=1, nodata=0)
    far = mask_grid(10, 10, res=10, origin=(ORIGIN[0] + 5000, ORIGIN[1]))
    with pytest.raises(GridMismatchError, match="does not overlap"):
        rescale(path, far, tmp_path / "out.tif")


# -- the command line --------------------------------------------------------------------------


def test_cli_rescales_like_a_scene_and_prints_class_shares(
    runner, write_raster, blobby_mask, tmp_path
) -> None:
    mask = write_raster("mask.tif", blobby_mask(300, 200, seed=7), resolution=1, nodata=0)
    scene = write_raster("scene.tif", np.zeros((3, 30, 20), np.uint16), resolution=10)
    out = tmp_path / "mask_10m.tif"
    args = ["rescale", str(mask), "--like", str(scene), "--method", "mode", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert Grid.from_raster(out).almost_equals(Grid.from_raster(scene))
    assert "exact, factor 10" in result.output and "Mpx/s" in result.output
    assert "class shares" in result.output and "pp" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert runner.invoke(app, [*args, "--overwrite", "--quiet"]).output == ""


def test_cli_weighted_mode_with_class_weights(runner, write_raster, tmp_path) -> None:
    data = np.full((20, 20), 3, np.uint8)
    data[:, 4] = 11
    mask = write_raster("mask.tif", data, resolution=1, nodata=0)
    out = tmp_path / "out.tif"
    base = ["rescale", str(mask), "--factor", "10", "-o", str(out), "-q", "--overwrite"]
    assert runner.invoke(app, [*base, "--method", "weighted-mode"]).exit_code == 0
    assert (read(out) == 3).all()
    result = runner.invoke(app, [*base, "--method", "weighted-mode", "--class-weight", "11=10"])
    assert result.exit_code == 0, result.output
    assert read(out).tolist() == [[11, 3], [11, 3]]  # the road runs through the left blocks
    bad = runner.invoke(app, [*base, "--class-weight", "11=-1"])
    assert bad.exit_code == 2 and "--class-weight" in bad.output


def _text(path: Path) -> Path:
    path.write_text("not a raster\n")
    return path


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda tmp, w, b: tmp / "missing.tif", [], "file not found"),
        (lambda tmp, w, b: _text(tmp / "notes.txt"), [], "not a raster GDAL can read"),
        (
            lambda tmp, w, b: w("float.tif", b(50, 50).astype("float32"), resolution=1),
            ["--method", "mode"],
            "needs integer class labels, got float32",
        ),
        (
            lambda tmp, w, b: w("bands.tif", np.stack([b(50, 50)] * 2), resolution=1),
            [],
            "single-band class raster, got 2",
        ),
        (
            lambda tmp, w, b: w("far.tif", b(50, 50), resolution=1, origin=(100000.0, 100.0)),
            ["--like", "SCENE"],
            "does not overlap the target grid",
        ),
    ],
)
def test_cli_bad_input_is_one_line_naming_the_file(
    runner, write_raster, blobby_mask, tmp_path, make, extra, message
) -> None:
    path = make(tmp_path, write_raster, blobby_mask)
    scene = write_raster("scene.tif", np.zeros((10, 10), np.uint8), resolution=10)
    extra = [str(scene) if arg == "SCENE" else arg for arg in extra]
    if "--like" not in extra:
        extra += ["--factor", "5"]
    result = runner.invoke(app, ["rescale", str(path), *extra, "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 1, result.output
    assert message in result.output and path.name in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.tif").exists()


def test_cli_refuses_two_target_grids(runner, write_raster, blobby_mask, tmp_path) -> None:
    path = write_raster("mask.tif", blobby_mask(50, 50), resolution=1, nodata=0)
    result = runner.invoke(app, ["rescale", str(path), "--factor", "5", "--resolution", "5"])
    assert result.exit_code == 2 and "--factor and --resolution" in result.output


def test_cli_settings_from_a_pipeline_file_and_the_command_line_wins(
    runner, write_raster, tmp_path
) -> None:
    data = np.full((20, 20), 3, np.uint8)
    data[:, 4] = 11
    mask = write_raster("mask.tif", data, resolution=1, nodata=0)
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        "rescale:\n  method: weighted-mode\n  factor: 10\n  class_weights: {11: 10}\n"
    )
    out = tmp_path / "out.tif"
    base = ["rescale", str(mask), "--config", str(config), "-o", str(out), "-q", "--overwrite"]
    assert runner.invoke(app, base).exit_code == 0
    assert read(out).tolist() == [[11, 3], [11, 3]]
    assert runner.invoke(app, [*base, "--method", "mode"]).exit_code == 0
    assert read(out).tolist() == [[3, 3], [3, 3]]
    config.write_text("rescale:\n  methd: near\n")
    result = runner.invoke(app, base)
    assert result.exit_code == 1
    assert "rescale: unknown key 'methd' (typo? did you mean 'method'?)" in result.output


def test_progress_counts_every_mask_row_once(write_raster, blobby_mask, tmp_path) -> None:
    path = write_raster("mask.tif", blobby_mask(300, 200), resolution=1, nodata=0, layout="strip")
    part = mask_grid(12, 30, res=10, origin=(ORIGIN[0] + 50, ORIGIN[1] - 100))
    for method in ("mode", "near"):
        done: list[int] = []
        rescale(path, part, tmp_path / f"{method}.tif", method=method, progress=done.append)
        assert sum(done) == 300 and all(n > 0 for n in done)
