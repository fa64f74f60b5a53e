"""Batched tile reads: every backend returns exactly the tiles of the plain per-tile zarr path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from geotiler.errors import InputError
from geotiler.tiles.fastread import BatchReader, available_backends, runs
from geotiler.tiles.store import TileStore
from tests.train.conftest import make_real_store


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 tiles in shards of 8 (the last one partial), 3 bands of uint16."""
    return make_real_store(tmp_path_factory.mktemp("fast"), shard_tiles=8)


def _plain(path: Path, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    store = TileStore.open(path)
    images, masks = zip(*(store.read(int(i)) for i in ids), strict=True)
    return np.stack(images), np.stack(masks)


# Unsorted, repeated, across shard borders, a whole shard, the last partial shard.
PICKS = [
    np.array([3, 4, 5, 6, 7, 8, 9]),
    np.array([24, 0, 13, 13, 2, 8, 16, 1]),
    np.arange(8, 16),
    np.array([24]),
]


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("ids", PICKS, ids=["run", "shuffled", "shard", "last"])
def test_every_backend_reads_the_plain_zarr_tiles(
    store_path: Path, backend: str, ids: np.ndarray
) -> None:
    images, masks = BatchReader(store_path, backend=backend, threads=1).read(ids)
    expected_images, expected_masks = _plain(store_path, ids)
    assert images.dtype == expected_images.dtype and masks.dtype == np.uint8
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(masks, expected_masks)


def test_auto_takes_the_native_reader_and_the_store_serves_it(store_path: Path) -> None:
    store = TileStore.open(store_path)
    assert store.shard_tiles == 8 and len(store) == 25
    images, masks = store.read_many([5, 1])
    assert store._readers[("auto", None)].backend == "native"
    np.testing.assert_array_equal(images[0], store.read(5)[0])
    np.testing.assert_array_equal(masks[1], store.read(1)[1])


def test_out_of_range_ids_are_refused(store_path: Path) -> None:
    reader = BatchReader(store_path, backend="native", threads=None)
    with pytest.raises(IndexError, match="out of range"):
        reader.read([3, 25])


def test_a_missing_shard_reads_as_the_fill_value_like_zarr(
    store_path: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(store_path, tmp_path / "holes.zarr")
    (copy / "masks" / "c" / "1" / "0" / "0").unlink()  # tiles 8..15 of the masks
    ids = np.array([7, 8, 12, 16])
    images, masks = BatchReader(copy, backend="native", threads=1).read(ids)
    # TileStore.open refuses such a store (geotiler.tiles.verify); zarr itself reads it.
    group = zarr.open_group(str(copy), mode="r")
    expected_images = np.stack([group["images"][int(i)] for i in ids])
    expected_masks = np.stack([group["masks"][int(i)] for i in ids])
    np.testing.assert_array_equal(masks, expected_masks)
    assert not masks[1:3].any()
    np.testing.assert_array_equal(images, expected_images)


def test_another_layout_falls_back_to_zarr(store_path: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(store_path, tmp_path / "other.zarr")
    group = zarr.open_group(str(copy), mode="r+")
    data = group["images"][:]
    del group["images"]
    # Not the writer's layout: unsharded chunks of 2 tiles, zstd.
    group.create_array(
        "images", data=data, chunks=(2, *data.shape[1:]), compressors=zarr.codecs.ZstdCodec()
    )
    with pytest.raises(InputError, match="native tile reader"):
        BatchReader(copy, backend="native", threads=1)
    reader = BatchReader(copy, backend="auto", threads=1)
    assert reader.backend != "native"
    ids = np.array([6, 2, 3])
    for got, expected in zip(reader.read(ids), _plain(copy, ids), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_damaged_shard_index_is_an_error(store_path: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(store_path, tmp_path / "damaged.zarr")
    shard = copy / "masks" / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(OSError, match="damaged shard index"):
        BatchReader(copy, backend="native", threads=1).read([0])


def test_unknown_or_missing_backends_say_what_to_do(store_path: Path) -> None:
    with pytest.raises(InputError, match="unknown tile reader 'fastest'"):
        BatchReader(store_path, backend="fastest", threads=1)


def test_runs_splits_sorted_ids_at_gaps() -> None:
    assert runs(np.array([1, 2, 3, 7, 9, 10])) == [(1, 4), (7, 8), (9, 11)]
    assert runs(np.array([], dtype=np.int64)) == []
