"""An output is never one of the command's inputs, inside one, or around one (catalogue 2).

The issue's case: ``predict s.tif -o s.tif --overwrite`` replaced the scene with the map, exit 0.
Links are resolved, so a symlink to the input is the input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from safety_world import World, assert_one_line, digest, invoke, make_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _store(world: World) -> Path:
    out = world.root / "tiles.zarr"
    assert invoke(*world.tile_args(out)).exit_code == 0
    return out


def _link(world: World, to: Path) -> Path:
    link = world.root / "link.tif"
    link.symlink_to(to)
    return link


CASES: dict[str, tuple[Callable[[World], Path], Callable[[World, Path], list[str]], str]] = {
    # name: (the input that must survive, the command writing over it, what the line says)
    "predict -o the scene": (
        lambda w: w.scene,
        lambda w, s: w.predict_args(s, "--overwrite"),
        "is the input",
    ),
    "predict -o the model": (
        lambda w: w.checkpoint,
        lambda w, m: w.predict_args(m, "--overwrite"),
        "is the input",
    ),
    "predict --confidence the scene": (
        lambda w: w.scene,
        lambda w, s: w.predict_args(w.root / "m.tif", "--confidence", str(s), "--overwrite"),
        "is the input",
    ),
    "rescale -o a link to the mask": (
        lambda w: w.mask,
        lambda w, m: w.rescale_args(_link(w, m), "--overwrite"),
        "is the input",
    ),
    "tile -o the mask": (
        lambda w: w.mask,
        lambda w, m: w.tile_args(m, "--overwrite"),
        "is the input",
    ),
    "tile -o the folder holding the scene": (
        lambda w: w.root,
        lambda w, r: w.tile_args(r, "--overwrite"),
        "holds the input",
    ),
    "train -o inside the store": (
        _store,
        lambda w, s: w.train_args(s, s / "run"),
        "is inside the input",
    ),
    "export -o the checkpoint": (
        lambda w: w.checkpoint,
        lambda w, c: ["export", str(c), "-o", str(c), "--overwrite", "-q"],
        "is the checkpoint itself",
    ),
    "evaluate -o the folder holding the prediction": (
        lambda w: w.root,
        lambda w, r: [
            "evaluate",
            str(w.scene),
            "--truth",
            str(w.mask),
            "-o",
            str(r),
            "-q",
            "--overwrite",
        ],
        "holds the input",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_is_never_an_input(world: World, case: str) -> None:
    source_of, args_for, says = CASES[case]
    source = source_of(world)
    before = digest(source)
    assert_one_line(invoke(*args_for(world, source)), says, "-o")
    assert digest(source) == before
