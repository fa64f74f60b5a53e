from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from geotiler.catalog import Catalog
from geotiler.config import StageSettings, load_pipeline, resolve_settings
from geotiler.errors import CatalogError

REPO_CATALOG = Path(__file__).parents[1] / "data_catalog.yaml"


def test_shipped_catalog_loads_with_expected_tables() -> None:
    catalog = Catalog.load(REPO_CATALOG)
    assert catalog.default_dataset == "demo"
    cat12 = catalog.class_table("catalonia12")
    assert cat12.nodata == 0
    assert cat12.ids == list(range(1, 13))
    assert cat12.with_tag("water") == [12]
    assert len({c.color for c in cat12.classes}) == 12
    lcai = catalog.class_table("landcoverai")
    assert lcai.names == {0: "background", 1: "building", 2: "woodland", 3: "water", 4: "road"}
    assert lcai.with_tag("water") == [3]
    real = catalog.dataset("catalonia")
    assert real.shape == (30000, 30000)
    assert real.origin == (240000, 4780000)
    assert len(real.bands) == 10
    assert catalog.mask_path("catalonia").name == "LC_2018_UTM_WGS84_31N_1m_12_Classes.tif"


def test_paths_resolve_against_catalog_folder_and_env(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "cat.yaml").write_text(REPO_CATALOG.read_text())
    catalog = Catalog.load(tmp_path / "cat.yaml")
    assert catalog.output_path("tile") == tmp_path / "work/demo/tiles.zarr"
    assert catalog.scene_paths()["april"] == tmp_path / "work/demo/data/scene_april.tif"
    assert catalog.mask_path("catalonia") == (
        tmp_path / "data/catalonia/LC_2018_UTM_WGS84_31N_1m_12_Classes.tif"
    )
    monkeypatch.setenv("GEOTILER_DATA_DIR", "/mnt/big")
    assert catalog.scene_paths("catalonia")["august"].parent == Path("/mnt/big/catalonia")


def test_object_store_urls_become_gdal_virtual_paths(tmp_path: Path) -> None:
    text = REPO_CATALOG.read_text().replace("scene_april.tif", "s3://bucket/s2/april.tif")
    (tmp_path / "cat.yaml").write_text(text.replace("scene_august.tif", "/vsigs/b/august.tif"))
    scenes = Catalog.load(tmp_path / "cat.yaml").scene_paths()
    assert str(scenes["april"]) == "/vsis3/bucket/s2/april.tif"
    assert str(scenes["august"]) == "/vsigs/b/august.tif"
    (tmp_path / "web.yaml").write_text(text.replace("s3://", "https://"))
    with pytest.raises(CatalogError, match=r"https://bucket/s2/april\.tif: URLs other than"):
        Catalog.load(tmp_path / "web.yaml").scene_paths()


def test_catalog_found_in_parent_folder(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "data_catalog.yaml").write_text(REPO_CATALOG.read_text())
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    monkeypatch.delenv("GEOTILER_CATALOG", raising=False)
    assert Catalog.load().path == tmp_path / "data_catalog.yaml"


def _broken(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(REPO_CATALOG.read_text())
    edit(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["datasets"]["demo"].update(clas_table="x"),
            r"datasets\.demo: unknown key 'clas_table'",
        ),
        (lambda d: d["datasets"]["demo"].update(class_table="nope"), r"unknown table 'nope'"),
        (lambda d: d.update(default_dataset="moon"), r"default_dataset 'moon'"),
        (
            lambda d: d["class_tables"]["catalonia12"]["classes"][0].update(color="red"),
            r"classes\.0\.color",
        ),
        (
            lambda d: d["class_tables"]["landcoverai"]["classes"][1].update(id=0),
            r"class ids repeat",
        ),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path: Path, edit, message: str) -> None:
    path = _broken(tmp_path, edit)
    with pytest.raises(CatalogError, match=message) as info:
        Catalog.load(path)
    assert str(path) in str(info.value)


def test_a_misspelt_required_key_is_named_not_hidden(tmp_path: Path) -> None:
    # The typo also leaves class_table missing; the message must name the typo and its fix, not
    # "required key is missing (and 1 more problem(s))".
    def misspell(data: dict) -> None:
        data["datasets"]["demo"]["clas_table"] = data["datasets"]["demo"].pop("class_table")

    with pytest.raises(CatalogError) as info:
        Catalog.load(_broken(tmp_path, misspell))
    message = str(info.value)
    assert "datasets.demo: unknown key 'clas_table' (typo? did you mean 'class_table'?)" in message
    assert "missing" not in message and "more problem" not in message


def test_settings_errors_carry_no_pydantic_wording(tmp_path: Path) -> None:
    from geotiler.tiles.settings import TileSettings

    pipeline_file = tmp_path / "p.yaml"
    pipeline_file.write_text("tile: {size: 64, overlap: 64}\n")
    with pytest.raises(CatalogError) as info:
        resolve_settings(TileSettings, stage="tile", pipeline=load_pipeline(pipeline_file))
    message = str(info.value)
    assert message.endswith("p.yaml: tile: overlap 64 must be smaller than size 64")
    assert "Value error" not in message and "top level" not in message


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed")
    with pytest.raises(CatalogError, match="not valid YAML"):
        Catalog.load(bad)
    with pytest.raises(CatalogError, match="not found"):
        Catalog.load(tmp_path / "missing.yaml")


def test_unknown_dataset_lists_known() -> None:
    with pytest.raises(CatalogError, match=r"no dataset 'mars'.*demo"):
        Catalog.load(REPO_CATALOG).dataset("mars")


def test_class_resolution_by_name_or_id() -> None:
    table = Catalog.load(REPO_CATALOG).class_table("catalonia12")
    assert table.resolve("forest") == 3
    assert table.resolve("12") == 12
    with pytest.raises(CatalogError, match="no class 'lava'"):
        table.resolve("lava")


class _Demo(StageSettings):
    size: int = 300
    overlap: int = 0


def test_settings_precedence_cli_over_pipeline_over_dataset(tmp_path: Path) -> None:
    pipeline_file = tmp_path / "p.yaml"
    pipeline_file.write_text("tile: {size: 256, overlap: 32}\n")
    pipeline = load_pipeline(pipeline_file)
    merged = resolve_settings(
        _Demo,
        stage="tile",
        cli={"size": 128, "overlap": None},
        pipeline=pipeline,
        dataset_defaults={"size": 512, "overlap": 8},
    )
    assert (merged.size, merged.overlap) == (128, 32)
    assert resolve_settings(_Demo, stage="tile").size == 300


def test_pipeline_errors_name_file_and_key(tmp_path: Path) -> None:
    pipeline_file = tmp_path / "p.yaml"
    pipeline_file.write_text("tile: {sise: 256}\n")
    with pytest.raises(CatalogError, match=r"p\.yaml: tile: unknown key 'sise'"):
        resolve_settings(_Demo, stage="tile", pipeline=load_pipeline(pipeline_file))
    pipeline_file.write_text("tiles: {}\n")
    with pytest.raises(CatalogError, match="tiles: unknown pipeline section"):
        load_pipeline(pipeline_file)
