"""Where a catalog may send outputs, what ``geotiler run`` may replace, generated datasets
(catalogue 1, 6, 8).

The issue's cases: a catalog with ``outputs: {rescale: ""}`` made ``geotiler run`` wipe
``work/demo`` including ``data/`` and ``run/``; ``work_dir: work/{0}`` was an IndexError;
``geotiler synth --size 256`` into the demo's folder and then a bare ``geotiler rescale``
regenerated the user's files at 1024 px without a word.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from safety_world import REPO, assert_one_line, digest, invoke, write_tif


def catalog(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The repository's catalog with a tiny generated demo, edited, in ``tmp_path``."""
    raw = yaml.safe_load((REPO / "data_catalog.yaml").read_text())
    raw["datasets"]["demo"]["synthetic"] = {
        "seed": 3, "scene_px": 64, "factor": 2, "cloud_fraction": 0.0, "mask_layout": "tiled",
    }  # fmt: skip
    if edit is not None:
        edit(raw)
    path = tmp_path / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda c: c.update(work_dir="work/{0}"), "work_dir: 'work/{0}' is not a valid pattern"),
        (lambda c: c.update(work_dir="work/{user}"), "use {dataset} as its only placeholder"),
        (lambda c: c["outputs"].update(rescale=""), "outputs.rescale: '' would be the work folder"),
        (lambda c: c["outputs"].update(tile="."), "outputs.tile: '.' would be the work folder"),
        (lambda c: c["outputs"].update(train="../run"), "outputs.train: '../run' climbs out"),
        (lambda c: c["outputs"].update(predict="/tmp/map.tif"), "is outside the catalog's folder"),
        (lambda c: c.update(work_dir="/scratch/{dataset}"), "set absolute_outputs: true"),
        (lambda c: c["outputs"].update(rescale="data"), "'data' is the rescale output 'data'"),
        (lambda c: c["outputs"].update(synth="run/data"), "outputs.train: 'run' holds the synth"),
        (lambda c: c["outputs"].update(teil="x"), "outputs.teil: unknown stage"),
    ],
)
def test_catalog_outputs_stay_inside_and_apart(tmp_path: Path, edit, says: str) -> None:
    path = catalog(tmp_path, edit)
    work = tmp_path / "work" / "demo"
    (work / "data").mkdir(parents=True)
    (work / "data" / "survey.csv").write_text("mine")
    before = digest(work)
    for args in (["run", "demo"], ["rescale"], ["tile"]):
        assert_one_line(invoke(*args, "--catalog", path), str(path), says)
    assert digest(work) == before


def test_absolute_outputs_can_be_allowed_explicitly(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"

    def edit(raw: dict[str, Any]) -> None:
        raw.update(work_dir=str(outside / "{dataset}"), absolute_outputs=True)

    from geotiler.catalog import Catalog

    loaded = Catalog.load(catalog(tmp_path, edit))
    assert loaded.output_path("tile") == outside / "demo" / "tiles.zarr"


def test_run_replaces_only_outputs_it_recognises(tmp_path: Path) -> None:
    path = catalog(tmp_path)
    work = tmp_path / "work" / "demo"
    work.mkdir(parents=True)
    mine = write_tif(work / "mask.tif", np.ones((1, 8, 8), np.uint8))  # the user's own file
    before = digest(mine)
    line = assert_one_line(invoke("run", "demo", "--only", "rescale", "--catalog", path, "-q"))
    assert "mask.tif" in line and "geotiler did not write it" in line
    assert digest(mine) == before
    mine.unlink()
    first = invoke("run", "demo", "--only", "rescale", "--catalog", path, "-q")
    assert first.exit_code == 0, first.output
    again = invoke("run", "demo", "--from", "rescale", "--only", "rescale", "--catalog", path, "-q")
    assert again.exit_code == 0, again.output  # its own output, replaced


def test_generated_files_are_never_regenerated_silently(tmp_path: Path) -> None:
    path = catalog(tmp_path)
    data = tmp_path / "work" / "demo" / "data"
    made = invoke("synth", "--size", "96", "--catalog", path, "-q")
    assert made.exit_code == 0, made.output
    before = digest(data)
    for args in (["rescale"], ["tile"], ["run", "demo"]):
        line = assert_one_line(invoke(*args, "--catalog", path, "-q"), str(data))
        assert (
            "scene_px=96 there vs 64 asked" in line and "synth --dataset demo --overwrite" in line
        )
    assert digest(data) == before
    again = invoke("synth", "--catalog", path, "--overwrite", "-q")
    assert again.exit_code == 0, again.output
    assert invoke("rescale", "--catalog", path, "-q").exit_code == 0


def test_synth_never_replaces_a_file_it_did_not_generate(tmp_path: Path) -> None:
    path = catalog(tmp_path)
    data = tmp_path / "work" / "demo" / "data"
    scene = write_tif(data / "scene_april.tif", np.ones((3, 8, 8), np.uint16))  # the user's
    before = digest(scene)
    for extra in ((), ("--overwrite",)):
        line = assert_one_line(invoke("synth", "--catalog", path, "-q", *extra), "scene_april.tif")
        assert "geotiler did not write it" in line
    line = assert_one_line(invoke("rescale", "--catalog", path, "-q"), "scene_april.tif")
    assert "no manifest.json says geotiler generated it" in line
    assert digest(scene) == before
