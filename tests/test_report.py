"""The Markdown report shows the network beside the pixel baseline, never one without the other."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from geotiler.catalog import Catalog
from geotiler.pipeline import PipelineReport
from geotiler.report import write_report

REPO = Path(__file__).parents[1]


def _catalog(tmp_path: Path) -> Catalog:
    raw = yaml.safe_load((REPO / "data_catalog.yaml").read_text())
    raw["work_dir"] = str(tmp_path / "work" / "{dataset}")
    raw["absolute_outputs"] = True  # outputs outside the catalog folder are allowed on request
    path = tmp_path / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(raw))
    return Catalog.load(path)


def test_the_report_puts_the_network_beside_the_pixel_baseline(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    run = catalog.output_path("train", "demo")
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(
        json.dumps(
            {
                "network": {"val_miou": 0.31, "epoch": 4},
                "pixel_baseline": {"val_miou": 0.24},
                "ensemble": {"val_miou": 0.33},
                "chosen": "ensemble",
            }
        )
    )
    text = write_report(catalog, PipelineReport(dataset="demo")).read_text()
    assert "network val mIoU 0.310 vs pixel baseline 0.240" in text
    assert "average 0.330" in text and "predicts with both" in text


def test_a_pixel_model_run_is_reported_as_such(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    run = catalog.output_path("train", "demo")
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(
        json.dumps({"pixel_baseline": {"val_miou": 0.27}, "chosen": "pixel-gbm"})
    )
    text = write_report(catalog, PipelineReport(dataset="demo")).read_text()
    assert "Pixel baseline (the model): val mIoU 0.270" in text
