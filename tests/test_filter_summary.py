"""``geotiler tile`` and ``filter`` summaries: filters in force; a warning for an empty split."""

from __future__ import annotations

import re
from pathlib import Path

from test_api import make_pair

from geotiler.cli import app
from geotiler.tiles.store import TileStore
from tests.conftest import write_geotiff


def test_filter_replaces_the_list_and_the_summary_shows_what_is_in_force(
    runner, tmp_path: Path
) -> None:
    scene, mask = make_pair(tmp_path)
    out = tmp_path / "t.zarr"
    args = ["tile", str(scene), "--mask", str(mask), "--size", "32", "-o", str(out)]
    tiled = runner.invoke(app, [*args, "--filter", "nodata:0.2", "--split", "block:0.6,0.2,0.2"])
    assert tiled.exit_code == 0, tiled.output
    assert "filters in force: nodata:0.2" in tiled.output

    changed = runner.invoke(app, ["filter", str(out), "--filter", "dominant:0.99"])
    assert changed.exit_code == 0, changed.output
    assert "filters in force: dominant:0.99" in changed.output  # nodata:0.2 is gone
    assert "nodata:0.2" not in set(TileStore.open(out).index.verdict)
    help_text = re.sub(r"[\s│]+", " ", runner.invoke(app, ["filter", "--help"]).output)
    assert "replaces the store's whole list of filters" in help_text

    cleared = runner.invoke(app, ["filter", str(out), "--no-filters"])
    assert "filters in force: none" in cleared.output


def test_an_empty_split_is_warned_about_even_when_quiet(runner, tmp_path: Path) -> None:
    scene, mask = make_pair(tmp_path)
    out = tmp_path / "t.zarr"
    args = ["tile", str(scene), "--mask", str(mask), "--size", "32", "-o", str(out), "--quiet"]
    result = runner.invoke(app, [*args, "--split", "block:1,0,0"])
    assert result.exit_code == 0, result.output
    assert "warning: no kept tile in the val and test split(s)" in result.output


def test_buffer_drops_are_explained_in_the_summary(runner, tmp_path: Path, monkeypatch) -> None:
    """Overlapping tiles next to another split are dropped; the summary says why."""
    from geotiler.cli.console import console

    monkeypatch.setattr(console, "width", 300)  # one table row a line, whatever ran before
    scene, mask = make_pair(tmp_path)
    out = tmp_path / "t.zarr"
    args = ["tile", str(scene), "--mask", str(mask), "--size", "32", "--overlap", "16"]
    result = runner.invoke(
        app,
        [*args, "-o", str(out), "--split", "block:0.6,0.4,0", "--block-tiles", "3"],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    decisions = TileStore.open(out).attrs.decisions
    assert decisions is not None and decisions.summary["dropped"].get("buffer", 0) > 0
    [line] = [line for line in result.output.splitlines() if "dropped: buffer" in line]
    assert "discarded so no pixel is in two splits" in line


def test_unnamed_bands_are_warned_about_once_with_the_fix(runner, tmp_path: Path, caplog) -> None:
    """A scene without band names gives band1..bandN: one warning naming the file and the fix."""
    import rasterio

    images, masks = [], []
    for name in ("a", "b"):
        scene, mask = make_pair(tmp_path / name)
        with rasterio.open(scene) as dataset:
            pixels = dataset.read()
        images.append(write_geotiff(tmp_path / name / f"{name}.tif", pixels))  # no names
        masks.append(mask.rename(tmp_path / name / f"{name}_mask.tif"))
    out = tmp_path / "t.zarr"
    args = ["tile", *map(str, images), *[f"--mask={m}" for m in masks], "--size", "32", "-q"]
    result = runner.invoke(app, [*args, "-o", str(out)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    warned = [r.getMessage() for r in caplog.records if "bands are not named" in r.getMessage()]
    assert len(warned) == 1, warned  # once per run, not per scene
    text = warned[0]
    assert f"{images[0]}: its 3 bands are not named" in text
    assert "rio edit-info --bidx 1 --description B02" in text and "bands: list" in text
    assert TileStore.open(out).attrs.bands == ("band1", "band2", "band3")

    caplog.clear()
    named, mask = make_pair(tmp_path / "named")
    ok = runner.invoke(app, ["tile", str(named), "--mask", str(mask), "--size", "32", "-q",
                             "-o", str(tmp_path / "n.zarr")])  # fmt: skip
    assert ok.exit_code == 0 and "not named" not in caplog.text
