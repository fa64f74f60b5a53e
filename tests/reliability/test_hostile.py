"""Hostile and broken files end in one line naming the file, fast (catalogue 4, 8).

The issue's cases: a 700 KB GeoTIFF declaring 10^6 x 10^6 px made ``tile`` reach 5.3 GB and
``predict`` 6 GB; a checkpoint asking for 65536-wide layers or ``tile_size: 200000`` allocated
before loading; a float mask, a truncated file, ``--device cuda`` without CUDA, ``evaluate -o``
naming a file, a read-only output folder and bad mask values ended in tracebacks or left a
half-made store behind.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from safety_world import (
    TRANSFORM,
    World,
    assert_one_line,
    invoke,
    make_checkpoint,
    make_world,
    write_tif,
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def declared_huge(path: Path, *, bands: int, dtype: str) -> Path:
    """A few KB that declare 10^6 x 10^6 px (sparse strips: nothing is ever written)."""
    profile = {
        "driver": "GTiff", "width": 10**6, "height": 10**6, "count": bands, "dtype": dtype,
        "crs": "EPSG:32631", "transform": TRANSFORM, "tiled": False, "blockysize": 4096,
        "sparse_ok": True, "compress": "deflate", "bigtiff": "YES",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile):
        pass
    assert path.stat().st_size < 100_000
    return path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("command", ["tile", "predict"])
def test_a_tiny_file_declaring_a_huge_raster_fails_fast(world: World, command: str) -> None:
    huge = declared_huge(world.root / "huge.tif", bands=3, dtype="uint16")
    args = world.tile_args(world.root / "t.zarr") if command == "tile" else []
    args = [huge if a == str(world.scene) else a for a in args] or world.predict_args(
        world.root / "m.tif"
    )
    args = [huge if a == str(world.scene) else a for a in args]
    before, started = _peak_mib(), time.perf_counter()
    assert_one_line(invoke(*args), "huge.tif: declares 1,000,000 x 1,000,000 px", "re-create")
    assert time.perf_counter() - started < 30
    assert _peak_mib() - before < 500  # no allocation of what the header declares
    assert not (world.root / "t.zarr").exists() and not (world.root / "m.tif").exists()


def test_a_tiny_mask_declaring_a_huge_raster_fails_fast(world: World) -> None:
    huge = declared_huge(world.root / "huge_mask.tif", bands=1, dtype="uint8")
    args = [huge if a == str(world.mask) else a for a in world.tile_args(world.root / "t.zarr")]
    assert_one_line(invoke(*args), "huge_mask.tif: declares")


@pytest.mark.parametrize("command", ["tile", "predict"])
def test_a_scene_too_wide_for_the_memory_is_refused_before_anything_is_made(
    world: World, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("geotiler.limits.available_bytes", lambda: 20_000)
    out = world.root / ("t.zarr" if command == "tile" else "m.tif")
    args = world.tile_args(out) if command == "tile" else world.predict_args(out)
    assert_one_line(invoke(*args), f"{command} would hold", "crop the scene")
    assert sorted(p.name for p in world.root.iterdir()) == sorted(
        ["scene.tif", "mask.tif", "classes.yaml", "tiny.yaml", "model.pt", "project"]
    )


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        (
            {"model": {"preset": "x", "architecture": "unet", "arguments": {"widths": [65536, 8]}}},
            "does not match its weights",
        ),
        ({"tile_size": 200_000}, "tile_size 200000 is outside"),
        ({"band_mean": [0.0]}, "band_mean has 1 values for 3 bands"),
    ],
)
def test_checkpoint_metadata_is_checked_before_anything_is_built(
    world: World, changes: dict, says: str
) -> None:
    hostile = make_checkpoint(world.root / "hostile.pt", **changes)
    before, started = _peak_mib(), time.perf_counter()
    assert_one_line(invoke(*world.predict_args(world.root / "m.tif", "-m", hostile)), says)
    assert time.perf_counter() - started < 30 and _peak_mib() - before < 500
    assert not (world.root / "m.tif").exists()


def test_a_float_mask_is_one_line(world: World) -> None:
    with rasterio.open(world.mask) as dataset:
        labels = dataset.read().astype(np.float32)
    floats = write_tif(world.root / "float_mask.tif", labels, nodata=0)
    args = ["tile", world.scene, "--mask", floats, "-o", world.root / "t.zarr", "-q"]
    assert_one_line(invoke(*args), "float_mask.tif", "integer class ids", "float32")
    assert not (world.root / "t.zarr").exists()


def _truncated(world: World) -> Path:
    """The scene cut in half: its header is intact, the blocks at the end are gone."""
    with rasterio.open(world.scene) as dataset:  # written in one go: the header comes first
        data = write_tif(world.root / "whole.tif", dataset.read(), nodata=0).read_bytes()
    cut = world.root / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with rasterio.open(cut) as dataset:  # the header still reads
        assert dataset.width == 64
    return cut


@pytest.mark.parametrize("command", ["tile", "predict"])
def test_a_truncated_file_with_an_intact_header_is_named(world: World, command: str) -> None:
    cut = _truncated(world)
    if command == "tile":
        args = [cut if a == str(world.scene) else a for a in world.tile_args(world.root / "t")]
    else:
        args = world.predict_args(world.root / "m.tif")
        args[1] = str(cut)
    assert_one_line(invoke(*args), "cut.tif", "truncated or corrupt")
    assert not (world.root / "m.tif").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is there")
def test_device_cuda_without_cuda_is_one_line(world: World) -> None:
    args = world.predict_args(world.root / "m.tif", "--device", "cuda")
    assert_one_line(invoke(*args), "--device cuda", "no CUDA device", "--device cpu")


def test_evaluate_o_naming_an_existing_file_is_one_line(world: World) -> None:
    prediction = world.root / "map.tif"
    assert invoke(*world.predict_args(prediction)).exit_code == 0
    existing = world.root / "report.txt"
    existing.write_text("my report")
    for extra in ((), ("--overwrite",)):
        args = ["evaluate", prediction, "--truth", world.mask, "-o", existing, "-q", *extra]
        assert_one_line(invoke(*args), "report.txt")
    assert existing.read_text() == "my report"


@pytest.fixture
def read_only(world: World) -> Iterator[Path]:
    """A folder nobody can write into (chmod; for root, the immutable attribute)."""
    folder = world.root / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    undo = ["chmod"]
    if os.access(folder, os.W_OK) and _try_immutable(folder):
        undo.append("chattr")
    probe = folder / "probe"
    try:
        probe.touch()
    except OSError:
        pass
    else:
        probe.unlink()
        folder.chmod(0o755)
        pytest.skip("cannot make a read-only folder here")
    yield folder
    if "chattr" in undo:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    folder.chmod(0o755)


def _try_immutable(folder: Path) -> bool:
    try:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    except OSError:
        return False
    return done.returncode == 0


@pytest.mark.parametrize("command", ["tile", "train", "predict"])
def test_a_read_only_output_folder_is_one_line(world: World, read_only: Path, command: str) -> None:
    if command == "tile":
        args = world.tile_args(read_only / "t.zarr")
    elif command == "train":
        store = world.root / "tiles.zarr"
        assert invoke(*world.tile_args(store)).exit_code == 0
        args = world.train_args(store, read_only / "run")
    else:
        args = world.predict_args(read_only / "m.tif")
    assert_one_line(invoke(*args), str(read_only), "-o")
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize("problem", ["mask value not a class", "no valid pixel"])
def test_tile_refusing_bad_values_leaves_no_store_behind(world: World, problem: str) -> None:
    table = world.root / "two_classes.yaml"
    if problem == "mask value not a class":
        table.write_text(
            "nodata: 0\nclasses:\n  - {id: 1, name: a, color: '#000000'}\n"
            "  - {id: 2, name: b, color: '#ffffff'}\n"
        )
        mask = world.mask
        says = "mask value 3 is not a class"
    else:
        table.write_text(world.classes.read_text())
        mask = write_tif(world.root / "empty_mask.tif", np.zeros((1, 64, 64), np.uint8), nodata=0)
        says = "no tile has a valid pixel"
    out = world.root / "t.zarr"
    args = ["tile", world.scene, "--mask", mask, "--classes", table, "--size", "16", "-o", out]
    assert_one_line(invoke(*args, "-q"), says)
    assert not out.exists()
    assert not [p for p in world.root.iterdir() if p.name.startswith(".t.zarr")]
