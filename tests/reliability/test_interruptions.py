"""Interruptions leave nothing that looks finished, and say how to go on (catalogue 7).

The issue's cases: hidden ``.partial-*`` files were never cleaned up; a killed ``train`` left a
run that looked finished (predict accepted it); Ctrl-C printed a blank line; ``evaluate`` wrote
half a report that looked complete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safety_world import (
    REPO,
    World,
    assert_one_line,
    digest,
    geotiler_process,
    invoke,
    make_world,
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def _store(world: World) -> Path:
    out = world.root / "tiles.zarr"
    assert invoke(*world.tile_args(out)).exit_code == 0
    return out


def test_leftovers_of_dead_writers_are_removed_at_the_next_start(world: World) -> None:
    folder = world.root
    dead = [
        folder / ".m.tif.partial-deadbeef.tif",
        folder / ".m.tif.partial-deadbeef.tif.aux.xml",
        folder / ".old.tif.partial-0badf00d.tif",
        folder / ".tiles.zarr.partial-12345678",
    ]
    for path in dead[:3]:
        path.write_bytes(b"half a file")
    dead[3].mkdir()
    (dead[3] / "zarr.json").write_text("{}")
    (folder / ".m.tif.lock").write_text(str(_dead_pid()))  # the lock file a killed writer left
    alive = folder / ".busy.tif.partial-cafebabe.tif"
    alive.write_bytes(b"being written")
    mine = folder / ".notes.partial.txt"  # not a name geotiler gives
    mine.write_text("mine")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom pathlib import Path\n"
         "from geotiler.locks import writer_lock\nwith writer_lock(Path(sys.argv[1])):\n"
         "    print('held', flush=True)\n    sys.stdin.readline()\n", str(folder / "busy.tif")],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = invoke(*world.predict_args(folder / "m.tif"))
        assert result.exit_code == 0, result.output
    finally:
        holder.communicate("\n", timeout=30)
    assert not any(path.exists() for path in dead)
    assert alive.exists() and mine.read_text() == "mine"
    assert not (folder / ".m.tif.lock").exists()


def test_ctrl_c_is_one_line_saying_what_became_of_the_output(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geotiler.tiles.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(geotiler.tiles.run, "_stream", interrupted)
    result = invoke(*world.tile_args(world.root / "t.zarr"))
    line = assert_one_line(result, "tile stopped", "re-run the same command to resume", code=130)
    assert line.startswith("interrupted:") and result.output.strip() == line  # no blank line
    monkeypatch.undo()
    assert invoke(*world.tile_args(world.root / "t.zarr")).exit_code == 0  # it resumes

    monkeypatch.setattr("geotiler.predict_engine.Engine.run", interrupted)
    out = world.root / "m.tif"
    assert_one_line(invoke(*world.predict_args(out)), "predict stopped", code=130)
    assert not out.exists() and not [p for p in world.root.iterdir() if ".m.tif" in p.name]


def test_an_interrupted_evaluate_leaves_no_half_report(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    prediction = world.root / "map.tif"
    assert invoke(*world.predict_args(prediction)).exit_code == 0
    report = world.root / "report"
    args = ["evaluate", prediction, "--truth", world.mask, "-o", report, "-q"]
    assert invoke(*args).exit_code == 0
    before = digest(report)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("geotiler.evaluate.write_quicklook", interrupted)
    assert_one_line(invoke(*args, "--overwrite"), "evaluate stopped", code=130)
    assert digest(report) == before  # the old report, whole
    report_files = json.loads((report / "report.json").read_text())["files"]
    assert "metrics.json" in report_files and "confusion_matrix.csv" in report_files
    assert not [p for p in world.root.iterdir() if p.name.startswith(".report")]
    monkeypatch.undo()
    assert invoke(*args, "--overwrite").exit_code == 0


def test_an_interrupted_run_says_how_to_resume_and_predict_refuses_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, run = _store(world), world.root / "run"
    from geotiler.train import trainer

    real = trainer._Run._epoch

    def stop_after_first(self, epoch: int):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(trainer._Run, "_epoch", stop_after_first)
    result = invoke(*world.train_args(store, run, "--epochs", "3"))
    assert_one_line(
        result, "training interrupted after epoch 1 of 3 (last.pt holds it)",
        f"resume with `geotiler train --resume {run}`", code=130,
    )  # fmt: skip
    monkeypatch.undo()
    state = json.loads((run / "run.json").read_text())
    assert (state["state"], state["epoch"], state["epochs"]) == ("interrupted", 1, 3)
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1

    out = world.root / "m.tif"
    model = run / "best.pt"
    assert_one_line(
        invoke(*world.predict_args(out, "-m", str(model))),
        "was interrupted after epoch 1 of 3", "--resume", "--allow-unfinished",
    )  # fmt: skip
    assert not out.exists()
    allowed = invoke(*world.predict_args(out, "-m", str(model), "--allow-unfinished"))
    assert allowed.exit_code == 0, allowed.output

    resumed = invoke("train", "--resume", run, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "run.json").read_text())["state"] == "finished"
    assert invoke(*world.predict_args(out, "-m", str(model), "--overwrite")).exit_code == 0


def test_a_killed_run_is_not_taken_for_finished(world: World) -> None:
    store, run = _store(world), world.root / "run"
    assert invoke(*world.train_args(store, run)).exit_code == 0
    state = json.loads((run / "run.json").read_text())
    assert state["state"] == "finished"
    # What a run killed outright (SIGKILL, power cut) leaves: "running", by a process now gone.
    (run / "run.json").write_text(json.dumps({**state, "state": "running", "pid": _dead_pid()}))
    line = assert_one_line(invoke(*world.predict_args(world.root / "m.tif", "-m", run / "best.pt")))
    assert "was killed after epoch 1 of 1" in line and f"--resume {run}" in line


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_training_at_a_safe_point(world: World, signum: int) -> None:
    store, run = _store(world), world.root / "run"
    process = geotiler_process(*world.train_args(store, run, "--epochs", "200"))
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if json.loads((run / "run.json").read_text()).get("epoch", 0) >= 1:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    text = stderr.decode()
    assert process.returncode == 130, text
    assert "Traceback" not in text and text.count("\n") == 1 and not text.startswith("\n")
    state = json.loads((run / "run.json").read_text())
    assert state["state"] == "interrupted" and state["epoch"] >= 1
    assert f"after epoch {state['epoch']} of 200 (last.pt holds it)" in text
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == state["epoch"]
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["best"]["epoch"] <= state["epoch"]
    assert f"geotiler train --resume {run}" in text
    assert not [p for p in run.iterdir() if "partial" in p.name or p.suffix == ".lock"]
