"""A damaged store is named, never read as zeros (catalogue 3, 13, 15).

The issue's case: a missing image shard read back as zeros and ``train`` exited 0 after training
on blank images with full labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from safety_world import World, assert_one_line, invoke, make_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def store(world: World) -> Path:
    out = world.root / "tiles.zarr"
    result = invoke(*world.tile_args(out))
    assert result.exit_code == 0, result.output
    return out


def _shard(store: Path, number: int = 1) -> Path:
    return store / "images" / "c" / str(number) / "0" / "0" / "0"


def _damage_missing(shard: Path) -> str:
    shard.unlink()
    return "missing"


def _damage_index(shard: Path) -> str:
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # inside the shard index, under its CRC32C
    shard.write_bytes(bytes(data))
    return "checksum"


def _damage_truncated(shard: Path) -> str:
    shard.write_bytes(shard.read_bytes()[:-300])
    return "corrupt"


@pytest.mark.parametrize("damage", [_damage_missing, _damage_index, _damage_truncated])
@pytest.mark.parametrize("command", ["train", "info"])
def test_a_damaged_shard_is_one_line_naming_tiles_and_shard(
    world: World, store: Path, damage, command: str
) -> None:
    what = damage(_shard(store))
    args = world.train_args(store, world.root / "run") if command == "train" else ["info", store]
    line = assert_one_line(
        invoke(*args), f"store {store}: tiles 8-15 unreadable", "shard images/c/1/0/0/0", what
    )
    assert "re-run tile" in line
    assert not (world.root / "run").exists()  # nothing trained on blank tiles


def test_verify_reads_every_tile_and_finds_garbled_data(store: Path) -> None:
    ok = invoke("info", store, "--verify")
    assert ok.exit_code == 0, ok.output
    assert "verified 16 tiles in 2 shards" in ok.output
    shard = _shard(store, 0)
    data = bytearray(shard.read_bytes())
    for offset in range(200, 1200, 7):  # tile bytes, not the index: the quick check passes
        data[offset] ^= 0x5A
    shard.write_bytes(bytes(data))
    assert invoke("info", store, "-q").exit_code == 0
    assert_one_line(invoke("info", store, "--verify", "-q"), str(store), "re-run tile")


def test_a_damaged_tile_index_is_refused_on_open(world: World, store: Path) -> None:
    group = zarr.open_group(str(store), mode="r+")
    valid = np.asarray(group["index"]["valid_px"][:])
    valid[3] = 0  # every stored tile has a valid pixel
    group["index"]["valid_px"][:] = valid
    assert_one_line(
        invoke(*world.train_args(store, world.root / "run")), "per-tile index is damaged", "tile 3"
    )


def test_an_interrupted_filter_says_to_rerun_filter_not_tile(
    world: World, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geotiler.tiles.decisions

    def killed(group, decisions, arrays):  # stopped between "complete: false" and the arrays
        meta = dict(group.attrs["geotiler"])
        group.attrs["geotiler"] = {**meta, "complete": False}
        raise KeyboardInterrupt

    monkeypatch.setattr(geotiler.tiles.decisions, "write_decisions", killed)
    assert_one_line(
        invoke("filter", store, "--no-filters", "-q"),
        "filter stopped",
        "re-run `geotiler filter`",
        code=130,
    )
    monkeypatch.undo()
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]["geotiler"]
    assert attrs["complete"] is False
    line = assert_one_line(invoke(*world.train_args(store, world.root / "run")))
    assert f"run `geotiler filter {store}`" in line and "geotiler tile" not in line
    assert invoke("filter", store, "-q").exit_code == 0
    assert invoke("info", store, "--verify", "-q").exit_code == 0
