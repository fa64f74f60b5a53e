"""The generated mini-Catalonia: determinism, grids, classes, spectra, clouds, streaming, CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml
from typer.testing import CliRunner

from geotiler.catalog import Catalog
from geotiler.cli import app
from geotiler.errors import CatalogError, InputError, OutputExistsError
from geotiler.grid import Grid
from geotiler.io import read_class_table
from geotiler.synthetic import SynthResult, ensure_demo, generate
from geotiler.synthetic.spectra import BANDS, SEASONS, spectra_matrix

REPO_CATALOG = Path(__file__).resolve().parents[1] / "data_catalog.yaml"
FILES = (
    "mask_1m.tif",
    "scene_april.tif",
    "scene_august.tif",
    "clouds_april.tif",
    "clouds_august.tif",
    "manifest.json",
)
B04, B08 = BANDS.index("B04"), BANDS.index("B08")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """A 1 x 1 km dataset (100 scene px, 1000 mask px) with 10% clouds."""
    return generate(tmp_path_factory.mktemp("synth") / "demo", scene_px=100, cloud_fraction=0.1)


@pytest.fixture(scope="module")
def clear(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """The same dataset without clouds."""
    return generate(tmp_path_factory.mktemp("synth") / "clear", scene_px=100, cloud_fraction=0.0)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def blocks(mask: np.ndarray, factor: int = 10) -> np.ndarray:
    """``(rows, cols, factor * factor)`` 1 m classes of each 10 m pixel."""
    rows, cols = mask.shape[0] // factor, mask.shape[1] // factor
    return mask.reshape(rows, factor, cols, factor).swapaxes(1, 2).reshape(rows, cols, -1)


def pure(mask: np.ndarray, class_id: int) -> np.ndarray:
    """10 m pixels made only of ``class_id``."""
    return (blocks(mask) == class_id).all(axis=2)


def test_same_seed_same_bytes_another_seed_differs(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", scene_px=64, seed=3)
    second = generate(tmp_path / "b", scene_px=64, seed=3)
    other = generate(tmp_path / "c", scene_px=64, seed=4)
    for a, b in zip(first.files, second.files, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert not np.array_equal(read(first.mask), read(other.mask))
    assert not np.array_equal(read(first.scenes["april"]), read(other.scenes["april"]))


def test_every_class_present_and_nodata_region(demo: SynthResult) -> None:
    mask = read(demo.mask)[0]
    counts = np.bincount(mask.ravel(), minlength=13)
    assert (counts[1:] > 0).all(), counts
    shares = counts / mask.size
    assert 0.02 < shares[0] < 0.2  # the unmapped corner
    assert demo.class_shares == pytest.approx({k: float(v) for k, v in enumerate(shares)})
    # the unmapped corner is imaged all the same: scenes hold no nodata anywhere
    with rasterio.open(demo.scenes["april"]) as scene:
        assert scene.nodata == 0
        assert (scene.read() > 0).all()


def test_mask_refines_scene_grid_tenfold(demo: SynthResult) -> None:
    mask_grid, scene_grid = Grid.from_raster(demo.mask), Grid.from_raster(demo.scenes["august"])
    assert mask_grid.refinement_factor(scene_grid) == 10
    assert mask_grid.shape == (1000, 1000) and scene_grid.shape == (100, 100)
    assert mask_grid.bounds == scene_grid.bounds
    assert (scene_grid.transform.c, scene_grid.transform.f) == (240000.0, 4780000.0)
    assert scene_grid.crs.to_epsg() == 32631
    assert Grid.from_raster(demo.cloud_masks["april"]) == scene_grid


def test_metadata(demo: SynthResult) -> None:
    with rasterio.open(demo.mask) as mask:
        assert mask.nodata == 0 and mask.dtypes[0] == "uint8"
        table = read_class_table(mask)
        assert table is not None and table.name == "catalonia12"
        assert mask.colormap(1)[3][:3] == (0x1E, 0x6B, 0x2A)
    with rasterio.open(demo.scenes["april"]) as scene:
        assert scene.count == 10 and scene.dtypes[0] == "uint16"
        assert scene.descriptions == BANDS
        assert scene.tags()["SEASON"] == "april"
    with rasterio.open(demo.cloud_masks["april"]) as clouds:
        assert set(np.unique(clouds.read(1))) <= {0, 1, 2}
        assert clouds.tags()["CLOUD_MASK_VALUES"] == "0=clear,1=cloud,2=shadow"
        cloud_table = read_class_table(clouds)
        assert cloud_table is not None and cloud_table.names[2] == "shadow"


def test_streets_and_rivers_narrower_than_a_scene_pixel(demo: SynthResult) -> None:
    mask = read(demo.mask)[0]
    per_pixel = blocks(mask)
    for class_id in (11, 12):
        share = (per_pixel == class_id).mean(axis=2)
        minority = (share > 0) & (share < 0.5)
        # 1 m pixels of the class inside 10 m pixels where it is a minority: sub-pixel features
        assert (share * minority).sum() * 100 > 500, class_id


def test_spectra_look_like_sentinel2(clear: SynthResult) -> None:
    mask = read(clear.mask)[0]
    april, august = read(clear.scenes["april"]).astype(float), read(clear.scenes["august"])
    water, forest, crops = pure(mask, 12), pure(mask, 3), pure(mask, 1)
    assert water.sum() > 50 and forest.sum() > 50 and crops.sum() > 50
    assert april[B08][water].mean() < 0.3 * april[B08][forest].mean()
    ndvi_april = (april[B08] - april[B04]) / (april[B08] + april[B04])
    ndvi_august = (august[B08] - august[B04]) / (august[B08] + august[B04])
    assert ndvi_april[crops].mean() > 0.6 > ndvi_august[crops].mean()  # harvested by August
    assert ndvi_august[forest].mean() > 0.6
    # a mixed pixel lies between its classes' spectra
    share = (blocks(mask) == 12).mean(axis=2)
    mixed = (share > 0.3) & (share < 0.7)
    assert april[B08][water].mean() < april[B08][mixed].mean()


def test_every_class_has_its_own_signature_in_each_season() -> None:
    # Classes a 10 m model must tell apart (isolated farmsteads vs woody crops, parks vs crops,
    # quarries vs bare fields) differ by more than a feature's tone in at least one band.
    for season in SEASONS:
        log_spectra = np.log(spectra_matrix(season)[1:])
        gap = np.abs(log_spectra[:, None] - log_spectra[None]).max(axis=2)
        np.fill_diagonal(gap, np.inf)
        assert gap.min() > 0.15, season
    roofs = spectra_matrix("april")[7]
    assert roofs[BANDS.index("B04")] > 1.4 * roofs[BANDS.index("B03")]  # terracotta roofs


def test_clouds_where_the_cloud_mask_says(demo: SynthResult, clear: SynthResult) -> None:
    cloudy, plain = read(demo.scenes["april"]).astype(int), read(clear.scenes["april"]).astype(int)
    flags = read(demo.cloud_masks["april"])[0]
    cloud, shadow, free = flags == 1, flags == 2, flags == 0
    assert 0.03 < cloud.mean() < 0.25 and shadow.any()
    visible = slice(0, 3)
    assert (cloudy[visible][:, cloud] > plain[visible][:, cloud]).mean() > 0.95
    whiteness = cloudy[visible][:, cloud].std(axis=0) / cloudy[visible][:, cloud].mean(axis=0)
    assert np.median(whiteness) < 0.1
    assert (cloudy[:, shadow] < plain[:, shadow]).mean() > 0.9
    # clear pixels are untouched but for thin, unflagged haze at cloud edges
    assert (np.abs(cloudy[:, free] - plain[:, free]) <= 1).mean() > 0.95
    assert not np.array_equal(flags, read(demo.cloud_masks["august"])[0])


def test_window_size_does_not_change_the_output(tmp_path: Path) -> None:
    whole = generate(tmp_path / "whole", scene_px=64, seed=1)
    windows = generate(tmp_path / "windows", scene_px=64, seed=1, window_px=170, workers=2)
    for a, b in zip(whole.files[:-1], windows.files[:-1], strict=True):
        assert np.array_equal(read(a), read(b)), a.name


def test_strip_layout_writes_one_row_strips(tmp_path: Path) -> None:
    tiled = generate(tmp_path / "tiled", scene_px=64, cloud_fraction=0)
    strip = generate(tmp_path / "strip", scene_px=64, cloud_fraction=0, mask_layout="strip")
    strip_small_windows = generate(
        tmp_path / "strip2", scene_px=64, cloud_fraction=0, mask_layout="strip", window_px=200
    )
    with rasterio.open(strip.mask) as mask:
        assert mask.block_shapes[0] == (1, 640)
        assert mask.compression is None
    with rasterio.open(tiled.mask) as mask:
        assert mask.block_shapes[0] == (512, 512)
    assert np.array_equal(read(tiled.mask), read(strip.mask))
    assert np.array_equal(read(strip.mask), read(strip_small_windows.mask))


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="multiple of the factor"):
        generate(tmp_path / "x", scene_px=64, window_px=25)
    with pytest.raises(InputError, match="too small"):
        generate(tmp_path / "x", scene_px=4)
    generate(tmp_path / "x", scene_px=64)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        generate(tmp_path / "x", scene_px=64)


def demo_catalog(tmp_path: Path, **synthetic: Any) -> Path:
    """A copy of the repository's catalog whose demo is 64 px (and ``synthetic`` overrides)."""
    raw = yaml.safe_load(REPO_CATALOG.read_text(encoding="utf-8"))
    raw["datasets"]["demo"]["synthetic"].update({"scene_px": 64, **synthetic})
    path = tmp_path / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_ensure_demo_generates_once_and_refuses_when_the_spec_changes(tmp_path: Path) -> None:
    catalog = Catalog.load(demo_catalog(tmp_path))
    paths = ensure_demo(catalog)
    assert paths["mask"] == tmp_path / "work" / "demo" / "data" / "mask_1m.tif"
    assert set(paths) == {
        "mask",
        "scene_april",
        "scene_august",
        "clouds_april",
        "clouds_august",
        "manifest",
    }
    assert all(path.is_file() for path in paths.values())
    assert Grid.from_raster(paths["scene_april"]).shape == (64, 64)
    stamps = {key: path.stat().st_mtime_ns for key, path in paths.items()}
    assert ensure_demo(catalog) == paths
    assert {key: path.stat().st_mtime_ns for key, path in paths.items()} == stamps
    assert not [p for p in paths["mask"].parent.parent.iterdir() if "partial" in p.name]

    # Files made with other settings are never regenerated silently: the error names both.
    reseeded = Catalog.load(demo_catalog(tmp_path, seed=5))
    before = paths["mask"].read_bytes()
    with pytest.raises(CatalogError, match=r"seed=0 there vs 5 asked.*synth --dataset demo"):
        ensure_demo(reseeded)
    assert paths["mask"].read_bytes() == before
    assert '"seed": 0' in paths["manifest"].read_text()


def test_ensure_demo_refuses_a_dataset_that_is_not_generated(tmp_path: Path) -> None:
    catalog = Catalog.load(demo_catalog(tmp_path))
    with pytest.raises(CatalogError, match="not generated"):
        ensure_demo(catalog, "catalonia")


def test_cli_help(runner: CliRunner) -> None:
    result = runner.invoke(app, ["synth", "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and "--mask-layout" in result.output


def test_cli_generates_the_demo_and_refuses_to_overwrite(tmp_path: Path, runner: CliRunner) -> None:
    catalog = demo_catalog(tmp_path)
    result = runner.invoke(app, ["synth", "--catalog", str(catalog)])
    assert result.exit_code == 0, result.output
    assert "Transport network" in result.output and "cloud" in result.output
    data = tmp_path / "work" / "demo" / "data"
    assert sorted(p.name for p in data.glob("*.tif")) == sorted(f for f in FILES if ".tif" in f)
    again = runner.invoke(app, ["synth", "--catalog", str(catalog)])
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_cli_options_override_the_catalog(tmp_path: Path, runner: CliRunner) -> None:
    catalog = demo_catalog(tmp_path)
    out = tmp_path / "custom"
    args = ["synth", str(out), "--size", "64", "--factor", "5", "--clouds", "0", "--quiet"]
    result = runner.invoke(app, [*args, "--mask-layout", "strip", "--catalog", str(catalog)])
    assert result.exit_code == 0, result.output
    assert result.output == ""
    with rasterio.open(out / "mask_1m.tif") as mask:
        assert (mask.height, mask.width) == (320, 320) and mask.block_shapes[0] == (1, 320)
    assert not read(out / "clouds_april.tif").any()
    bad = runner.invoke(
        app, ["synth", str(out), "--mask-layout", "zigzag", "--catalog", str(catalog)]
    )
    assert bad.exit_code == 2 and "zigzag" in bad.output
