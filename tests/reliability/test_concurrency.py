"""One writer per output (catalogue 5).

The issue's cases: ``predict ... -o m.tif --confidence m.tif`` dropped one output; two predicts
to one ``-o`` both exited 0 and one map was lost (a check-then-rename race, even without
``--overwrite``); two tile runs to one store: one crashed with a zarr traceback, and with
``--overwrite`` the first run's store was deleted under it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from safety_world import (
    REPO,
    World,
    assert_one_line,
    geotiler_process,
    invoke,
    make_world,
    read_pixels,
)

HOLDER = (
    "import sys\nfrom pathlib import Path\nfrom geotiler.locks import writer_lock\n"
    "with writer_lock(Path(sys.argv[1])):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.readline()\n"
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def holder() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """``holder(path)``: another process that holds ``path``'s writer lock until the test ends."""
    started: list[subprocess.Popen[str]] = []

    def hold(path: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        started.append(process)
        return process

    yield hold
    for process in started:
        if process.poll() is None and process.stdin and not process.stdin.closed:
            process.communicate("\n", timeout=30)


def _store(world: World) -> Path:
    out = world.root / "tiles.zarr"
    assert invoke(*world.tile_args(out)).exit_code == 0
    return out


WRITERS: dict[str, Callable[[World], tuple[Path, list[str]]]] = {
    "predict": lambda w: (w.root / "m.tif", w.predict_args(w.root / "m.tif")),
    "rescale": lambda w: (w.root / "r.tif", w.rescale_args(w.root / "r.tif")),
    "tile": lambda w: (w.root / "t.zarr", w.tile_args(w.root / "t.zarr")),
    "train": lambda w: (w.root / "run", w.train_args(_store(w), w.root / "run")),
    "export": lambda w: (
        w.root / "slim.pt",
        ["export", str(w.checkpoint), "-o", str(w.root / "slim.pt"), "-q"],
    ),
    "evaluate": lambda w: (
        w.root / "report",
        [
            "evaluate",
            str(w.mask),
            "--truth",
            str(w.mask),
            "--classes",
            "catalonia12",
            "-o",
            str(w.root / "report"),
            "-q",
        ],
    ),
}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_second_writer_is_told_who_holds_the_output(
    world: World, holder: Callable[[Path], subprocess.Popen[str]], command: str
) -> None:
    target, args = WRITERS[command](world)
    first = holder(target)
    line = assert_one_line(
        invoke(*args), f"{target}: is being written by another geotiler (pid {first.pid})"
    )
    assert "-o" in line
    assert not target.exists()
    first.communicate("\n", timeout=30)
    done = invoke(*args)
    assert done.exit_code == 0, done.output


def test_two_outputs_of_one_predict_may_not_be_one_file(world: World) -> None:
    out = world.root / "m.tif"
    args = world.predict_args(out, "--confidence", str(out))
    assert_one_line(invoke(*args), "m.tif: given as both -o and --confidence")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [False, True])
def test_two_predicts_racing_for_one_output_lose_nothing(world: World, overwrite: bool) -> None:
    reference = world.root / "reference.tif"
    assert invoke(*world.predict_args(reference)).exit_code == 0
    out = world.root / "m.tif"
    extra = ("--overwrite",) if overwrite else ()
    racers = [geotiler_process(*world.predict_args(out, *extra)) for _ in range(2)]
    results = [(p.wait(timeout=180), p.stderr.read().decode()) for p in racers if p.stderr]
    codes = sorted(code for code, _ in results)
    if overwrite:  # both may run one after the other; never at once
        assert set(codes) <= {0, 1} and 0 in codes
    else:
        assert codes == [0, 1], results
    for code, stderr in results:
        if code:
            assert stderr.count("\n") == 1 and "Traceback" not in stderr
            assert "being written by another geotiler" in stderr or "pass --overwrite" in stderr
    assert np.array_equal(read_pixels(out), read_pixels(reference))
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name or p.suffix == ".lock"]


@pytest.mark.slow
def test_two_tile_runs_racing_for_one_store_keep_one_whole_store(world: World) -> None:
    out = world.root / "t.zarr"
    racers = [geotiler_process(*world.tile_args(out, "--overwrite")) for _ in range(2)]
    time.sleep(0.05)
    results = [(p.wait(timeout=180), p.stderr.read().decode()) for p in racers if p.stderr]
    assert 0 in [code for code, _ in results], results
    for code, stderr in results:
        assert "Traceback" not in stderr
        if code:
            assert "being written by another geotiler" in stderr
    verified = invoke("info", out, "--verify", "-q")
    assert verified.exit_code == 0, verified.output
