"""Datasets of many scenes: folders of pairs, chips without georeference, RGB masks, coarse labels.

Each test generates a tiny dataset in the layout of a public one (LandCover.ai: GeoTIFF pairs on
their own grids; Kaggle's aerial imagery: JPEG chips with RGB-coded PNG masks; alpine: labels 2x
coarser than the images) and runs it through the CLI: tile -> train -> predict folder ->
evaluate folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from PIL import Image

from geotiler.cli import app
from geotiler.tiles.store import TileStore
from tests.conftest import write_geotiff

TINY = "architecture: unet\narguments: {widths: [4, 8]}\ntrain: {batch_size: 4, lr: 0.01}\n"
COLOURS = {0: (0, 0, 0), 1: (60, 16, 152), 2: (132, 41, 246), 3: (226, 169, 41)}
KAGGLE_CLASSES = {
    "1": {"name": "building", "color": "#3c1098"},
    "2": {"name": "land", "color": "#8429f6"},
    "3": {"name": "water", "color": "#e2a929"},
}


def _labels(rng: np.random.Generator, rows: int, cols: int, classes: int, blob: int = 8):
    coarse = rng.integers(1, classes + 1, size=(rows // blob + 1, cols // blob + 1))
    return np.kron(coarse, np.ones((blob, blob), np.int64))[:rows, :cols].astype(np.uint8)


def _image(rng: np.random.Generator, labels: np.ndarray, dtype=np.uint8) -> np.ndarray:
    bands = [np.where(labels == k + 1, 200, 40) + rng.normal(0, 10, labels.shape) for k in range(3)]
    return np.stack(bands).clip(0, 255).astype(dtype)


@pytest.fixture
def landcover_ai(tmp_path: Path) -> Path:
    """12 orthophoto pairs, each on its own grid (EPSG:2180), of varied sizes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "landcover-ai"
    for n in range(12):
        rows, cols = 64 + 16 * (n % 3), 64 + 16 * (n % 2)
        labels = _labels(rng, rows, cols, 4)
        labels[:4] = 0  # class 0 is "background" here, a real class
        origin = (400000.0 + 1000 * n, 500000.0 + 700 * n)
        options = {"crs": "EPSG:2180", "resolution": 0.5, "origin": origin}
        write_geotiff(root / "images" / f"N-34-{n:02d}.tif", _image(rng, labels), **options)
        write_geotiff(root / "masks" / f"N-34-{n:02d}.tif", labels, **options)
    (root / "classes.json").write_text(
        json.dumps({"0": "background", "1": "building", "2": "woodland", "3": "water", "4": "road"})
    )
    return root


def _tile(runner, *args: str):
    return runner.invoke(app, ["tile", *args, "--quiet"])


def test_landcover_ai_layout_tiles_trains_predicts_and_evaluates(
    landcover_ai: Path, runner, tmp_path: Path
) -> None:
    store_path = tmp_path / "tiles.zarr"
    root = landcover_ai
    result = runner.invoke(
        app,
        ["tile", str(root / "images"), "--mask", str(root / "masks"), "--classes",
         str(root / "classes.json"), "-o", str(store_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    store = TileStore.open(store_path)
    assert len(store.scenes) == 12 and store.nodata is None  # 0 is a class in this table
    assert store.tile_size == 64  # chips: the smallest scene's side
    grids = {store.grid(name).transform.c for name in store.scenes}
    assert len(grids) == 12 and all(store.grid(n).crs.to_epsg() == 2180 for n in store.scenes)
    # Whole-scene splits: every scene's tiles are in one split, and each split has scenes.
    index = store.index
    assert (index.groupby("scene", observed=True).split.nunique() == 1).all()
    assert set(index.split) == {"train", "val", "test"}
    assert store.decisions.split_policy.startswith("scene")
    # xarray reads the store with named dimensions and the band coordinate.
    dataset = xr.open_zarr(store_path, consolidated=False)
    assert dataset.images.dims == ("tile", "band", "y", "x")
    assert list(dataset.band.values) == ["band1", "band2", "band3"]
    tree = xr.open_datatree(store_path, engine="zarr", consolidated=False)
    assert "flag_meanings" in tree["index"]["split"].attrs

    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY)
    run = tmp_path / "run"
    trained = runner.invoke(
        app, ["train", str(store_path), "-m", str(preset), "--epochs", "1", "-o", str(run), "-q"]
    )
    assert trained.exit_code == 0, trained.output
    maps = tmp_path / "maps"
    predicted = runner.invoke(
        app, ["predict", str(root / "images"), "-o", str(maps), "--model", str(run / "best.pt")]
    )
    assert predicted.exit_code == 0, predicted.output
    written = sorted(p.name for p in maps.glob("*.tif"))
    assert written == sorted(p.name for p in (root / "images").glob("*.tif"))
    with (
        rasterio.open(maps / "N-34-05.tif") as out,
        rasterio.open(root / "images" / "N-34-05.tif") as image,
    ):
        assert out.crs == image.crs and out.transform == image.transform
    report = tmp_path / "report"
    scored = runner.invoke(
        app, ["evaluate", str(maps), "--truth", str(root / "masks"), "-o", str(report)]
    )
    assert scored.exit_code == 0, scored.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["pairs"] == 12 and len(metrics["per_pair"]) == 12
    assert 0 <= metrics["miou"] <= 1 and (report / "pairs.csv").is_file()


@pytest.fixture
def kaggle(tmp_path: Path) -> Path:
    """JPEG chips without georeference and RGB colour-coded PNG masks."""
    rng = np.random.default_rng(1)
    root = tmp_path / "kaggle"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for n in range(10):
        labels = _labels(rng, 48, 48, 3)
        rgb = np.zeros((48, 48, 3), np.uint8)
        for value, colour in COLOURS.items():
            rgb[labels == value] = colour
        Image.fromarray(_image(rng, labels).transpose(1, 2, 0)).save(
            root / "images" / f"image_part_{n:03d}.jpg", quality=95
        )
        Image.fromarray(rgb).save(root / "masks" / f"image_part_{n:03d}.png")
    (root / "classes.json").write_text(json.dumps(KAGGLE_CLASSES))
    return root


def test_kaggle_chips_with_rgb_masks_get_pixel_grids_and_maps_without_crs(
    kaggle: Path, runner, tmp_path: Path
) -> None:
    store_path = tmp_path / "tiles.zarr"
    result = runner.invoke(
        app,
        ["tile", str(kaggle / "images" / "*.jpg"), "--mask", str(kaggle / "masks"),
         "--classes", str(kaggle / "classes.json"), "-o", str(store_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "RGB masks mapped to class ids: 10" in result.output
    store = TileStore.open(store_path)
    assert all(store.grid(name).crs is None for name in store.scenes)
    assert all(store.scene(name).mask_rgb for name in store.scenes)
    _, mask = store.read(0)
    with Image.open(kaggle / "masks" / f"{store.scenes[0]}.png") as png:
        rgb = np.asarray(png)
    expected = np.zeros(rgb.shape[:2], np.uint8)
    for value, colour in COLOURS.items():
        expected[(rgb == colour).all(axis=2)] = value
    assert np.array_equal(mask, expected)  # black is nodata (0), the colours their ids
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY)
    run = tmp_path / "run"
    trained = runner.invoke(
        app, ["train", str(store_path), "-m", str(preset), "--epochs", "1", "-o", str(run), "-q"]
    )
    assert trained.exit_code == 0, trained.output
    maps = tmp_path / "maps"
    predicted = runner.invoke(
        app, ["predict", str(kaggle / "images"), "-o", str(maps), "-m", str(run / "best.pt"), "-q"]
    )
    assert predicted.exit_code == 0, predicted.output
    with rasterio.open(maps / "image_part_003.tif") as out:
        assert out.crs is None and out.shape == (48, 48)
    scored = runner.invoke(
        app,
        ["evaluate", str(maps), "--truth", str(kaggle / "masks"), "-o", str(tmp_path / "r"),
         "-q"],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output


def test_an_unknown_mask_colour_names_the_colour_the_file_and_a_pixel(
    kaggle: Path, runner, tmp_path: Path
) -> None:
    bad = kaggle / "masks" / "image_part_004.png"
    rgb = np.asarray(Image.open(bad)).copy()
    rgb[5, 7] = (1, 2, 3)
    Image.fromarray(rgb).save(bad)
    result = _tile(
        runner, str(kaggle / "images"), "--mask", str(kaggle / "masks"), "--classes",
        str(kaggle / "classes.json"), "-o", str(tmp_path / "t.zarr"),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "#010203" in result.output and "image_part_004.png" in result.output
    assert "row 5, col 7" in result.output
    assert not (tmp_path / "t.zarr").exists(), "a refused run left a half-written store"


def test_coarse_labels_are_resampled_per_pair_with_nearest(runner, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for n in range(3):
        labels = _labels(rng, 40, 40, 3, blob=4)
        fine = np.kron(labels, np.ones((2, 2), np.uint8))
        origin = (600000.0 + 5000 * n, 5100000.0)
        write_geotiff(tmp_path / "img" / f"a{n}.tif", _image(rng, fine), origin=origin)
        write_geotiff(tmp_path / "lab" / f"a{n}_label.tif", labels, origin=origin, resolution=20.0)
    out = tmp_path / "t.zarr"
    result = runner.invoke(
        app,
        ["tile", str(tmp_path / "img"), "--mask", str(tmp_path / "lab"), "--size", "32",
         "--nodata", "0", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "masks resampled onto their image grid: 3" in result.output and "nearest" in result.output
    )
    store = TileStore.open(out)
    with rasterio.open(tmp_path / "lab" / "a1_label.tif") as source:
        expected = np.kron(source.read(1), np.ones((2, 2), np.uint8))
    at = np.flatnonzero(store.index.scene == "a1")
    for i in at:
        row, col = int(store.index.row[i]), int(store.index.col[i])
        assert np.array_equal(store.read(int(i))[1], expected[row : row + 32, col : col + 32])


def test_finer_labels_are_resampled_with_mode(runner, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    labels = _labels(rng, 40, 40, 3, blob=4)
    fine = np.kron(labels, np.ones((4, 4), np.uint8))
    fine[::4, ::4] = 3  # a minority pixel in every 4x4 block: the mode ignores it
    scene = write_geotiff(tmp_path / "s.tif", _image(rng, labels))
    mask = write_geotiff(tmp_path / "m.tif", fine, resolution=2.5)
    out = tmp_path / "t.zarr"
    result = _tile(runner, str(scene), "--mask", str(mask), "--size", "40", "--nodata", "0",
                   "--split", "block:1,0,0", "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    store = TileStore.open(out)
    assert store.scene("s").mask_resampled == "mode"
    expected = labels.copy()
    assert np.array_equal(store.read(0)[1], expected)


def test_dataset_split_folders_are_kept(runner, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for split, count in (("train", 3), ("val", 1), ("test", 1)):
        for n in range(count):
            labels = _labels(rng, 32, 32, 2)
            name = f"{split}{n}"
            write_geotiff(tmp_path / split / "images" / f"{name}.tif", _image(rng, labels))
            write_geotiff(tmp_path / split / "masks" / f"{name}.tif", labels)
    out = tmp_path / "t.zarr"
    images = [str(tmp_path / s / "images") for s in ("train", "val", "test")]
    masks = [str(tmp_path / s / "masks") for s in ("train", "val", "test")]
    args = [*images, *[a for m in masks for a in ("--mask", m)], "--nodata", "0", "-o", str(out)]
    result = _tile(runner, *args)
    assert result.exit_code == 0, result.output
    index = TileStore.open(out).index
    for scene, split in zip(index.scene, index.split, strict=True):
        assert scene.startswith(split)


def test_unpaired_files_are_one_line_or_skipped(landcover_ai: Path, runner, tmp_path) -> None:
    (landcover_ai / "masks" / "N-34-03.tif").unlink()
    args = [str(landcover_ai / "images"), "--mask", str(landcover_ai / "masks")]
    args += ["--classes", str(landcover_ai / "classes.json"), "-o", str(tmp_path / "t.zarr")]
    result = _tile(runner, *args)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "1 image(s) without a mask" in result.output and "N-34-03.tif" in result.output
    skipped = _tile(runner, *args, "--unpaired", "skip")
    assert skipped.exit_code == 0, skipped.output
    assert len(TileStore.open(tmp_path / "t.zarr").scenes) == 11


def test_mixed_band_counts_and_an_empty_folder_are_refused(runner, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    labels = _labels(rng, 32, 32, 2)
    write_geotiff(tmp_path / "i" / "a.tif", _image(rng, labels))
    write_geotiff(tmp_path / "i" / "b.tif", _image(rng, labels)[:2])
    for name in ("a", "b"):
        write_geotiff(tmp_path / "m" / f"{name}.tif", labels)
    result = _tile(runner, str(tmp_path / "i"), "--mask", str(tmp_path / "m"), "-o",
                   str(tmp_path / "t.zarr"))  # fmt: skip
    assert result.exit_code == 1 and "every image of a store must be alike" in result.output
    (tmp_path / "empty").mkdir()
    empty = _tile(runner, str(tmp_path / "empty"), "--mask", str(tmp_path / "m"))
    assert empty.exit_code == 1 and "holds no raster files" in empty.output


def test_a_corrupt_jpeg_is_named_and_skip_bad_goes_on(kaggle: Path, runner, tmp_path) -> None:
    bad = kaggle / "images" / "image_part_002.jpg"
    bad.write_bytes(bad.read_bytes()[:400])  # header intact, data cut
    args = [str(kaggle / "images"), "--mask", str(kaggle / "masks"), "--classes"]
    args += [str(kaggle / "classes.json"), "-o", str(tmp_path / "t.zarr")]
    result = _tile(runner, *args)
    assert result.exit_code == 1 and "image_part_002.jpg" in result.output
    assert "--skip-bad" in result.output and not (tmp_path / "t.zarr").exists()
    skipped = runner.invoke(app, ["tile", *args, "--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    assert "skipped (unreadable)" in skipped.output and "image_part_002" in skipped.output
    assert "image_part_002" not in set(TileStore.open(tmp_path / "t.zarr").index.scene)


def test_pixel_grid_scene_needs_no_crs_anywhere(tmp_path: Path) -> None:
    """A PNG pair through the library API: the scene record has no CRS and an identity grid."""
    from geotiler.tiles.classes import parse_class_table
    from geotiler.tiles.run import TileInputs, TileSettings, make_tiles
    from geotiler.tiles.scenes import resolve_scenes

    rng = np.random.default_rng(7)
    labels = _labels(rng, 40, 40, 2)
    Image.fromarray(_image(rng, labels).transpose(1, 2, 0)).save(tmp_path / "c.png")
    Image.fromarray(labels).save(tmp_path / "c_mask.png")
    scenes = resolve_scenes([tmp_path / "c.png"], [tmp_path / "c_mask.png"])
    classes = parse_class_table({"1": "a", "2": "b"}, name="t", where="test")
    store = make_tiles(
        TileInputs(scenes, classes), tmp_path / "t.zarr", TileSettings(split="block:1,0,0")
    )
    record = store.scene("c")
    assert record.crs is None and Affine(*record.transform) == Affine.identity()
    assert store.tile_size == 32  # the largest planner size that fits a 40 px scene


@pytest.mark.slow
def test_run_landcover_ai_pipeline_on_a_generated_folder(landcover_ai: Path, runner, tmp_path):
    """The shipped pipeline's dataset entry (images/masks globs), end to end, small."""
    import yaml

    repo = Path(__file__).parents[1]
    catalog = yaml.safe_load((repo / "data_catalog.yaml").read_text())
    catalog["data_dir"] = str(tmp_path)
    catalog_path = tmp_path / "data_catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(catalog))
    pipeline = yaml.safe_load((repo / "pipelines" / "landcover-ai.yaml").read_text())
    pipeline["tile"]["size"] = 64
    pipeline["train"] = {"model": "unet", "epochs": 1, "batch_size": 4, "lr": 0.01}
    pipeline["predict"] = {"overlap": 8}
    pipeline_path = tmp_path / "lcai.yaml"
    pipeline_path.write_text(yaml.safe_dump(pipeline))
    result = runner.invoke(app, ["run", str(pipeline_path), "--catalog", str(catalog_path)])
    assert result.exit_code == 0, result.output
    assert "rescale: not needed" in result.output
    work = tmp_path / "work" / "landcover-ai"
    store = TileStore.open(work / "tiles.zarr")
    assert len(store.scenes) == 12 and store.decisions.split_policy.startswith("scene")
    held_out = set(store.index.scene[store.index.split == "test"])
    assert {p.stem for p in (work / "landcover").glob("*.tif")} == held_out
    metrics = json.loads((work / "report" / "metrics.json").read_text())
    assert metrics["pairs"] == len(held_out)


def test_a_mask_given_as_a_second_image_is_one_line_asking_for_mask(runner, tmp_path) -> None:
    rng = np.random.default_rng(7)
    labels = _labels(rng, 32, 32, 2)
    write_geotiff(tmp_path / "scene.tif", _image(rng, labels))
    write_geotiff(tmp_path / "mask.tif", labels)
    out = tmp_path / "t.zarr"
    result = _tile(runner, str(tmp_path / "scene.tif"), str(tmp_path / "mask.tif"), "-o", str(out))
    assert result.exit_code == 1, result.output
    assert "no mask to label the tiles with; pass --mask" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_evaluate_of_folders_never_writes_into_inputs_or_a_users_folder(
    runner, tmp_path: Path
) -> None:
    from geotiler.catalog import ClassInfo, ClassTable
    from geotiler.io import write_class_metadata

    table = ClassTable(
        name="t", nodata=0,
        classes=tuple(ClassInfo(id=i, name=f"c{i}", color="#808080") for i in (1, 2)),
    )  # fmt: skip
    masks = tmp_path / "masks"
    rng = np.random.default_rng(8)
    for name in ("a", "b"):
        path = write_geotiff(masks / f"{name}.tif", _labels(rng, 32, 32, 2), nodata=0)
        write_class_metadata(path, table)
    args = ["evaluate", str(masks), "--truth", str(masks), "-q"]
    inside = runner.invoke(app, [*args, "-o", str(masks / "report")])
    assert inside.exit_code == 1 and not (masks / "report").exists(), inside.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    refused = runner.invoke(app, [*args, "-o", str(mine), "--overwrite"])
    assert refused.exit_code == 1 and (mine / "notes.txt").read_text() == "keep"
    report = tmp_path / "report"
    first = runner.invoke(app, [*args, "-o", str(report)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, [*args, "-o", str(report)])
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert runner.invoke(app, [*args, "-o", str(report), "--overwrite"]).exit_code == 0
    assert {"metrics.json", "pairs.csv"} <= {p.name for p in report.iterdir()}
