"""Every stage killed outright (SIGKILL) mid-work, then re-run: the same output as an
uninterrupted run, and nothing left behind (catalogue 7).

Each stage runs as ``python -m geotiler ...`` in its own process and is killed at the first sign
of work on disk (its temporary output, its first shard, its first finished epoch), so nothing of
geotiler's clean-up runs: what is left is what a power cut leaves.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from affine import Affine
from safety_world import (
    World,
    geotiler_process,
    invoke,
    make_world,
    write_tif,
)

pytestmark = pytest.mark.slow


def kill_when(args: list[str], ready: Callable[[], bool], *, timeout_s: float = 300) -> int:
    """Start ``geotiler ARGS``, SIGKILL it as soon as ``ready()``; its exit status."""
    process = geotiler_process(*args)
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    return process.returncode


def partial_of(target: Path) -> Callable[[], bool]:
    return lambda: any(target.parent.glob(f".{target.name}.partial-*"))


def no_leftovers(folder: Path) -> None:
    names = [p.name for p in folder.rglob("*") if ".partial" in p.name or p.suffix == ".lock"]
    assert names == [], names


def same_files(folder: Path, reference: Path, *, skip: tuple[str, ...] = ()) -> None:
    names = sorted(p.name for p in folder.iterdir() if p.name not in skip)
    assert names == sorted(p.name for p in reference.iterdir() if p.name not in skip)
    for name in names:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A 384 px world: enough work that a kill lands while it is going on."""
    return make_world(tmp_path_factory.mktemp("big"), size_px=384)


def test_predict(big: World, tmp_path: Path) -> None:
    reference, out = tmp_path / "reference.tif", tmp_path / "m.tif"
    assert invoke(*big.predict_args(reference)).exit_code == 0
    assert kill_when(big.predict_args(out), partial_of(out)) == -signal.SIGKILL
    assert not out.exists()
    assert invoke(*big.predict_args(out)).exit_code == 0
    assert out.read_bytes() == reference.read_bytes()
    no_leftovers(tmp_path)


def test_rescale(tmp_path: Path) -> None:
    # A 6144 px mask at 0.625 m onto 13 m pixels: GDAL's warper, then a COG.
    fine = np.kron(np.random.default_rng(1).integers(1, 4, (97, 97)), np.ones((64, 64)))
    transform = Affine(0.625, 0, 240000, 0, -0.625, 4780000)
    mask = write_tif(tmp_path / "fine.tif", fine[np.newaxis, :6144, :6144].astype(np.uint8),
                     nodata=0, blockxsize=512, blockysize=512, transform=transform)  # fmt: skip
    args = lambda out: ["rescale", str(mask), "--resolution", "13", "--method", "mode",  # noqa: E731
                        "--cog", "--workers", "1", "-o", str(out), "-q"]  # fmt: skip
    reference, out = tmp_path / "reference.tif", tmp_path / "r.tif"
    assert invoke(*args(reference)).exit_code == 0
    assert kill_when(args(out), partial_of(out)) == -signal.SIGKILL
    assert not out.exists()
    assert invoke(*args(out)).exit_code == 0
    assert out.read_bytes() == reference.read_bytes()
    no_leftovers(tmp_path)


def _arrays(store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(store), mode="r")
    found = {name: np.asarray(group[name][:]) for name in ("images", "masks")}
    found |= {f"index/{n}": np.asarray(a[:]) for n, a in group["index"].arrays()}
    return found


def _same_store(store: Path, reference: Path) -> None:
    mine, theirs = _arrays(store), _arrays(reference)
    assert sorted(mine) == sorted(theirs)
    for name, values in mine.items():
        assert np.array_equal(values, theirs[name]), name
    attrs = [json.loads((s / "zarr.json").read_text())["attributes"] for s in (store, reference)]
    for found in attrs:
        found["geotiler"].pop("command", None)  # names its own -o
    assert attrs[0] == attrs[1]


def test_tile(big: World, tmp_path: Path) -> None:
    reference, out = tmp_path / "reference.zarr", tmp_path / "t.zarr"
    assert invoke(*big.tile_args(reference)).exit_code == 0
    first_shard = lambda: (out / "masks" / "c" / "0").exists()  # noqa: E731
    assert kill_when(big.tile_args(out), first_shard) == -signal.SIGKILL
    assert invoke(*big.tile_args(out)).exit_code == 0  # resumes
    _same_store(out, reference)
    no_leftovers(tmp_path)


def test_filter(tmp_path: Path) -> None:
    world = make_world(tmp_path / "world")
    store = tmp_path / "t.zarr"
    assert invoke(*world.tile_args(store)).exit_code == 0
    reference = tmp_path / "reference.zarr"
    shutil.copytree(store, reference)
    args = lambda s: ["filter", str(s), "--filter", "dominant:0.6", "--balance", "inverse", "-q"]  # noqa: E731
    assert invoke(*args(reference)).exit_code == 0
    lock = tmp_path / ".t.zarr.lock"
    # Filter rewrites a few small arrays: the kill may land before or after it is done.
    assert kill_when(args(store), lock.exists) in (-signal.SIGKILL, 0)
    assert invoke(*args(store)).exit_code == 0
    _same_store(store, reference)
    no_leftovers(tmp_path)


def _epochs_done(run: Path) -> int:
    try:
        return int(json.loads((run / "run.json").read_text()).get("epoch", 0))
    except (OSError, ValueError):
        return 0


def test_train(tmp_path: Path) -> None:
    world = make_world(tmp_path / "world")
    store = tmp_path / "t.zarr"
    assert invoke(*world.tile_args(store)).exit_code == 0
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert invoke(*world.train_args(store, reference, "--epochs", "4")).exit_code == 0
    assert (
        kill_when(world.train_args(store, run, "--epochs", "4"), lambda: _epochs_done(run) >= 2)
        == -signal.SIGKILL
    )
    assert json.loads((run / "run.json").read_text())["state"] == "running"  # its pid is gone
    resumed = invoke("train", "--resume", run, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    for name in ("best.pt", "last.pt"):
        mine, theirs = (torch.load(r / name, weights_only=True) for r in (run, reference))
        assert mine["epoch"] == theirs["epoch"] == 4
        for key, value in mine["state_dict"].items():
            assert torch.equal(value, theirs["state_dict"][key]), (name, key)

    def timing(column: str) -> bool:  # wall-clock columns differ between any two runs
        return column in ("seconds", "tiles_per_s") or column.endswith("_seconds")

    rows = [
        [{k: v for k, v in row.items() if not timing(k)} for row in _csv(r / "metrics.csv")]
        for r in (run, reference)
    ]
    assert rows[0] == rows[1]
    no_leftovers(tmp_path)


def _csv(path: Path) -> list[dict[str, float]]:
    from geotiler.train.run_files import read_metrics

    return [
        {k: (round(v, 6) if math.isfinite(v) else None) for k, v in row.items()}
        for row in read_metrics(path)
    ]


def test_evaluate(big: World, tmp_path: Path) -> None:
    prediction = tmp_path / "map.tif"
    assert invoke(*big.predict_args(prediction)).exit_code == 0
    args = lambda out: ["evaluate", str(prediction), "--truth", str(big.mask), "--scene",  # noqa: E731
                        str(big.scene), "-o", str(out), "-q"]  # fmt: skip
    reference, out = tmp_path / "reference", tmp_path / "report"
    assert invoke(*args(reference)).exit_code == 0
    assert kill_when(args(out), partial_of(out)) == -signal.SIGKILL
    assert not out.exists()  # no half report that looks complete
    assert invoke(*args(out)).exit_code == 0
    same_files(out, reference, skip=("report.json",))
    no_leftovers(tmp_path)


def test_synth(tmp_path: Path) -> None:
    args = lambda out: ["synth", str(out), "--size", "128", "--seed", "4", "-q"]  # noqa: E731
    reference, out = tmp_path / "reference", tmp_path / "data"
    assert invoke(*args(reference)).exit_code == 0
    assert kill_when(args(out), partial_of(out)) == -signal.SIGKILL
    assert invoke(*args(out)).exit_code == 0
    same_files(out, reference)
    no_leftovers(tmp_path)
