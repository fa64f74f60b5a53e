"""`geotiler run`: the whole chain on a tiny generated dataset, with up-to-date skipping."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from geotiler.cli import app

REPO = Path(__file__).parents[1]


def tiny_world(tmp_path: Path) -> tuple[Path, Path]:
    catalog = yaml.safe_load((REPO / "data_catalog.yaml").read_text())
    catalog["datasets"]["demo"]["synthetic"] = {
        "seed": 3, "scene_px": 96, "factor": 5, "cloud_fraction": 0.0, "mask_layout": "tiled",
    }  # fmt: skip
    catalog_path = tmp_path / "data_catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(catalog))
    pipeline = {
        "dataset": "demo",
        "rescale": {"method": "mode"},
        "tile": {"size": 32, "filters": ["nodata:0.9"], "split": "block:0.6,0.2,0.2"},
        "train": {"model": "unet", "epochs": 1, "batch_size": 4, "lr": 0.01},
        "predict": {"overlap": 8},
    }
    pipeline_path = tmp_path / "tiny.yaml"
    pipeline_path.write_text(yaml.safe_dump(pipeline))
    return catalog_path, pipeline_path


def statuses(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        for stage in ("rescale", "tile", "train", "predict", "evaluate"):
            if line.startswith(f"{stage}:"):
                found[stage] = "skipped" if "skipped" in line else "ran"
    return found


@pytest.mark.slow
def test_run_skips_up_to_date_stages_and_reruns_what_a_change_affects(runner, tmp_path) -> None:
    catalog, pipeline = tiny_world(tmp_path)
    args = ["run", str(pipeline), "--catalog", str(catalog)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert set(statuses(first.output).values()) == {"ran"}
    work = tmp_path / "work" / "demo"
    for name in ("mask.tif", "tiles.zarr", "run/best.pt", "landcover.tif", "report/metrics.json"):
        assert (work / name).exists(), name

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert set(statuses(second.output).values()) == {"skipped"}

    settings = yaml.safe_load(pipeline.read_text())
    settings["predict"]["overlap"] = 4
    pipeline.write_text(yaml.safe_dump(settings))
    third = runner.invoke(app, args)
    assert third.exit_code == 0, third.output
    assert statuses(third.output) == {
        "rescale": "skipped", "tile": "skipped", "train": "skipped",
        "predict": "ran", "evaluate": "ran",
    }  # fmt: skip

    only = runner.invoke(app, [*args, "--only", "evaluate"])
    assert statuses(only.output) == {"evaluate": "ran"}


def test_unknown_stage_and_pipeline_are_clear_errors(runner, tmp_path) -> None:
    catalog, pipeline = tiny_world(tmp_path)
    result = runner.invoke(app, ["run", str(pipeline), "--catalog", str(catalog), "--from", "tiel"])
    assert result.exit_code == 1
    assert "unknown stage 'tiel'" in result.output
    result = runner.invoke(app, ["run", "nope", "--catalog", str(catalog)])
    assert result.exit_code == 1
    assert "pipeline not found" in result.output


def test_shipped_pipelines_validate() -> None:
    from geotiler.catalog import Catalog
    from geotiler.config import load_pipeline
    from geotiler.pipeline import validate_pipeline

    catalog = Catalog.load(REPO / "data_catalog.yaml")
    paths = sorted((REPO / "pipelines").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"demo", "catalonia", "landcover-ai"}
    for path in paths:
        validate_pipeline(catalog, load_pipeline(path))
