"""``geotiler train`` end to end on a real (tiny) tile store: CLI, catalog defaults, resume, DDP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from geotiler.cli import app
from geotiler.train.run_files import read_metrics

TINY = "architecture: unet\narguments: {widths: [4, 8, 16]}\ntrain: {batch_size: 8, lr: 0.01}\n"


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_train_one_epoch_prints_the_class_table(
    runner: CliRunner, real_store: Path, tiny_preset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["train", str(real_store), "-m", str(tiny_preset), "--epochs", "1", "-o", str(run)]
    result = runner.invoke(app, [*args, "--reader", "zarr"])  # the plain-zarr fallback reader
    assert result.exit_code == 0, result.output
    assert "best epoch 1 of 1" in result.output
    assert "forest" in result.output and "mIoU" in result.output
    raw = torch.load(run / "best.pt", weights_only=True)
    assert raw["settings"]["batch_size"] == 8  # from the preset
    assert raw["settings"]["reader"] == "zarr"
    assert raw["store"] == str(real_store)


def test_bare_train_uses_the_catalog_and_pipeline_then_resumes(
    runner: CliRunner, real_store: Path, tiny_preset: Path, tmp_path: Path
) -> None:
    catalog = tmp_path / "data_catalog.yaml"
    catalog.write_text(
        "default_dataset: tiny\nwork_dir: work/{dataset}\n"
        "class_tables: {t: {nodata: 0, classes: [{id: 1, name: a, color: '#000000'}]}}\n"
        "datasets: {tiny: {class_table: t}}\n"
    )
    shutil.copytree(real_store, tmp_path / "work" / "tiny" / "tiles.zarr")
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"train: {{model: {tiny_preset}, epochs: 1, batch_size: 4}}\n")
    args = ["train", "--catalog", str(catalog), "--config", str(pipeline), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output == ""
    run = tmp_path / "work" / "tiny" / "run"
    assert torch.load(run / "last.pt", weights_only=True)["settings"]["batch_size"] == 4
    again = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2", "--quiet"])
    assert again.exit_code == 0, again.output
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "nowhere.zarr"], "tile store not found"),
        (["train", "STORE", "--model", "unet-huge"], "unknown model preset 'unet-huge'"),
        (["train", "STORE", "--loss", "ce+lovasz"], "unknown term 'lovasz'"),
        (["train", "STORE", "--resume", "RUN"], "not a readable checkpoint"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    runner: CliRunner, real_store: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"garbage")
    args = [
        str(real_store) if a == "STORE" else str(tmp_path / "run") if a == "RUN" else a
        for a in args
    ]
    result = runner.invoke(
        app, [*args, "-o", str(tmp_path / "out")] if "--resume" not in args else args
    )
    assert result.exit_code == 1, result.output
    assert message in result.output


@pytest.mark.slow
def test_torchrun_trains_with_ddp_on_cpu(
    real_store: Path, tiny_preset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "geotiler", "train", str(real_store), "-m", str(tiny_preset), "--epochs", "2",
        "--batch-size", "4", "-o", str(run), "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1.0, 2.0]
    # The confusion matrix was summed over both ranks: every val pixel with a label counted once.
    supports = sum(v for k, v in rows[-1].items() if k.startswith("val_support_"))
    from geotiler.tiles.store import TileStore

    store = TileStore.open(real_store)
    masks = [store.read(int(i))[1] for i in store.indices("val")]
    assert supports == sum(int((m != 0).sum()) for m in masks)
    assert done.stdout.count("best epoch") == 1  # only rank 0 prints
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] >= 1


@pytest.mark.slow
def test_torchrun_onto_a_taken_folder_says_so_once_and_every_rank_exits(
    real_store: Path, tmp_path: Path
) -> None:
    """Rank 0 checks the run folder and says it is taken, once; the other rank stands down
    instead of hanging until torchrun kills it."""
    run = tmp_path / "taken"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "geotiler", "train", str(real_store), "-o", str(run), "--epochs", "1", "-q",
        "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert output.count("holds files geotiler did not write") == 1, output
    assert (run / "notes.txt").read_text() == "mine"
    # Rank 0 failed and said why; rank 1 stood down by itself (not killed after waiting for rank
    # 0; if torchrun's SIGTERM catches it leaving, it says nothing), and no geotiler traceback:
    # what is left is torchrun's own report that its worker failed.
    assert output.count("exitcode  : 1 ") == 1 and "rank      : 0 " in output, output
    assert "SIGKILL" not in output, output
    assert "interrupted" not in output and "stood down" not in output, output
    import geotiler

    package = str(Path(geotiler.__file__).parent)
    assert not [line for line in output.splitlines() if 'File "' in line and package in line]
    assert output.count("Traceback") == output.count("ChildFailedError:") <= 1, output


def test_an_interrupted_train_says_so_without_a_blank_line(
    runner: CliRunner,
    real_store: Path,
    tiny_preset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from geotiler.cli import train as train_cli

    shown = train_cli._Display._end

    def end_then_ctrl_c(self: train_cli._Display, report: object) -> None:
        shown(self, report)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli._Display, "_end", end_then_ctrl_c)
    args = ["train", str(real_store), "-m", str(tiny_preset), "--epochs", "3"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "run")])
    assert result.exit_code == 130, result.output
    assert "interrupted: " in result.output
    assert "training interrupted after epoch 1 of 3" in result.output
    assert "\n\n" not in result.output.split("epoch 1/3", 1)[1]
