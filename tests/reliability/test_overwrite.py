"""--overwrite replaces only an output of the same kind that geotiler wrote (catalogue 1, 5, 6).

Cases of the issue: ``predict s.tif -o ~/project --overwrite`` removed the folder and all in it;
tile, rescale and export did the same; the tile refusal told users to "pass --overwrite".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safety_world import (
    World,
    assert_one_line,
    digest,
    invoke,
    make_world,
    write_tif,
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _store(world: World) -> Path:
    out = world.root / "tiles.zarr"
    assert invoke(*world.tile_args(out)).exit_code == 0
    return out


def _prediction(world: World) -> Path:
    out = world.root / "map.tif"
    result = invoke(*world.predict_args(out))
    assert result.exit_code == 0, result.output
    return out


# Each command writing its output over the folder ``target``, with --overwrite.
COMMANDS: dict[str, Callable[[World, Path], list[str]]] = {
    "predict": lambda w, t: w.predict_args(t, "--overwrite"),
    "rescale": lambda w, t: w.rescale_args(t, "--overwrite"),
    "tile": lambda w, t: w.tile_args(t, "--overwrite"),
    "export": lambda w, t: ["export", str(w.checkpoint), "-o", str(t), "--overwrite", "-q"],
    "evaluate": lambda w, t: [
        "evaluate",
        str(_prediction(w)),
        "--truth",
        str(w.mask),
        "-o",
        str(t),
        "--overwrite",
        "-q",
    ],
    "train": lambda w, t: w.train_args(_store(w), t, "--overwrite"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_overwrite_never_replaces_a_folder_of_the_users(world: World, command: str) -> None:
    target = world.user
    if command == "export":  # a .pt name, so export writes a checkpoint there
        target = target.rename(target.with_suffix(".pt"))
    before = digest(target)
    if command == "predict":  # a folder output is a folder of maps: one is added, nothing lost
        result = invoke(*COMMANDS[command](world, target))
        assert result.exit_code == 0, result.output
        assert (target / "notes.txt").read_text() == "my notes"
        assert {p.name for p in target.iterdir()} >= {"notes.txt", f"{world.scene.stem}.tif"}
        return
    line = assert_one_line(invoke(*COMMANDS[command](world, target)), str(target))
    assert "pass --overwrite" not in line  # the wrong fix: it would delete the user's files
    assert digest(target) == before
    assert (target / "notes.txt").read_text() == "my notes"


@pytest.mark.parametrize("command", ["predict", "rescale", "export"])
def test_overwrite_never_replaces_a_file_of_the_users(world: World, command: str) -> None:
    if command == "export":
        target = world.root / "weights.pt"
        target.write_bytes(b"my own weights, not a geotiler checkpoint")
    else:  # a GeoTIFF of the user's: right format, but geotiler did not write it
        target = write_tif(world.root / "mine.tif", np.ones((1, 8, 8), np.uint8))
    before = digest(target)
    line = assert_one_line(invoke(*COMMANDS[command](world, target)), "geotiler did not write")
    assert "choose another -o" in line
    assert digest(target) == before


def test_overwrite_never_replaces_another_kind_of_geotiler_output(world: World) -> None:
    store = _store(world)
    before = digest(store)
    assert_one_line(invoke(*world.predict_args(store, "--overwrite")), "is a geotiler tile store")
    prediction = _prediction(world)
    mapped = digest(prediction)
    assert_one_line(
        invoke(*world.tile_args(prediction, "--overwrite")), "is a GeoTIFF written by geotiler"
    )
    assert digest(store) == before and digest(prediction) == mapped


OWN: dict[str, Callable[[World], tuple[Path, list[str]]]] = {
    "predict": lambda w: (w.root / "m.tif", w.predict_args(w.root / "m.tif")),
    "rescale": lambda w: (w.root / "r.tif", w.rescale_args(w.root / "r.tif")),
    "tile": lambda w: (w.root / "t.zarr", w.tile_args(w.root / "t.zarr")),
    "export": lambda w: (
        w.root / "slim.pt",
        ["export", str(w.checkpoint), "-o", str(w.root / "slim.pt"), "-q"],
    ),
    "evaluate": lambda w: (
        w.root / "report",
        [
            "evaluate",
            str(_prediction(w)),
            "--truth",
            str(w.mask),
            "-o",
            str(w.root / "report"),
            "-q",
        ],
    ),
    "train": lambda w: (w.root / "run", w.train_args(_store(w), w.root / "run")),
}


@pytest.mark.parametrize("command", sorted(OWN))
def test_own_output_needs_overwrite_and_is_then_replaced(world: World, command: str) -> None:
    target, args = OWN[command](world)
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    again = invoke(*args)
    assert_one_line(again, str(target), "pass --overwrite")
    replaced = invoke(*args, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert target.exists()
    leftovers = [p.name for p in target.parent.iterdir() if ".partial-" in p.name]
    assert leftovers == [] and not list(target.parent.glob(".*.lock"))


def test_tile_refusals_never_advise_overwrite_for_foreign_content(world: World) -> None:
    folder = world.root / "tiles.zarr"
    folder.mkdir()
    (folder / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    (folder / "readme.txt").write_text("someone else's zarr")
    for extra in ((), ("--overwrite",)):
        line = assert_one_line(invoke(*world.tile_args(folder, *extra)), str(folder))
        assert "--overwrite to" not in line
    assert (folder / "readme.txt").read_text() == "someone else's zarr"


def test_the_tile_index_replaces_only_an_index_geotiler_wrote(world: World) -> None:
    store, index = world.root / "t.zarr", world.root / "tiles.gpkg"
    assert invoke(*world.tile_args(store, "--index", str(index))).exit_code == 0
    refreshed = invoke("filter", store, "--no-filters", "--index", index, "-q")
    assert refreshed.exit_code == 0, refreshed.output  # its own index, refreshed
    mine = world.root / "survey.gpkg"
    mine.write_bytes(b"SQLite format 3\x00 the user's survey plots")
    before = digest(mine)
    assert_one_line(invoke("filter", store, "--index", mine, "-q"), "survey.gpkg", "did not write")
    assert digest(mine) == before
