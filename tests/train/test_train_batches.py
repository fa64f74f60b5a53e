"""Batch loading: shard-local order, device-side normalisation and D4, old stores still train."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from geotiler.tiles.store import ATTRS_KEY, TileStore
from geotiler.train.augment import DeviceBatches, as_tensor, d4_batch
from geotiler.train.batches import OrderedBatches, ShardBatchSampler, rank_span, shard_local_order
from geotiler.train.data import EpochSampler, StoreSummary, TileBatches, TileDataset, make_loaders
from tests.train.conftest import make_real_store


@pytest.fixture(scope="module")
def sharded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 tiles of 36 px in shards of 4."""
    return make_real_store(tmp_path_factory.mktemp("sharded"), shard_tiles=4)


def _segments(batch: np.ndarray, shard_tiles: int) -> int:
    """Stretches of a batch that stay in one shard with ids not decreasing (one read each)."""
    breaks = (np.diff(batch // shard_tiles) != 0) | (np.diff(batch) < 0)
    return int(breaks.sum()) + 1


def test_shard_local_order_keeps_the_drawn_tiles_and_reads_in_runs() -> None:
    rng = np.random.default_rng(0)
    ids = rng.choice(400, 1024)  # with repeats, as a weighted draw
    order = shard_local_order(ids, 20, piece=4, rng=np.random.default_rng(1))
    assert Counter(order.tolist()) == Counter(ids.tolist())  # the same multiset
    batches = order.reshape(-1, 16)
    # A batch is a few pieces of one shard each (ids ascending within a piece) ...
    assert np.mean([_segments(b, 20) for b in batches]) <= 5
    # ... from shards far apart, and the epoch does not walk the store in order.
    assert np.mean([len(set(b // 20)) for b in batches]) > 3
    first_shards = [int(b[0] // 20) for b in batches]
    assert first_shards != sorted(first_shards)
    again = shard_local_order(ids, 20, piece=4, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(order, again)


def test_a_whole_permutation_reads_one_run_per_piece() -> None:
    ids = np.random.default_rng(2).permutation(64)
    order = shard_local_order(ids, 16, piece=4, rng=np.random.default_rng(0), buffer_shards=2)
    assert sorted(order.tolist()) == list(range(64))
    pieces = order.reshape(-1, 4)
    assert all(np.all(np.diff(p) == 1) for p in pieces)


def test_weighted_batches_follow_the_weights_in_expectation() -> None:
    weights = np.array([0.0, 1.0, 1.0, 8.0, 2.0, 0.5])
    tile_ids = np.array([10, 11, 12, 13, 40, 41])
    draw = EpochSampler(6, num_samples=600, weights=weights, seed=5)
    sampler = ShardBatchSampler(tile_ids, shard_tiles=4, batch_size=16, draw=draw, seed=5)
    counts: Counter[int] = Counter()
    for epoch in range(4):
        sampler.set_epoch(epoch)
        epoch_ids = np.concatenate(list(sampler))
        # Exactly the epoch's weighted draw, reordered.
        assert Counter(epoch_ids.tolist()) == Counter(tile_ids[draw.draw()].tolist())
        counts.update(epoch_ids.tolist())
    total = sum(counts.values())
    expected = weights / weights.sum()
    observed = np.array([counts[int(i)] / total for i in tile_ids])
    np.testing.assert_allclose(observed, expected, atol=0.03)


def test_ranks_take_equal_contiguous_shares() -> None:
    draw = EpochSampler(50, seed=1)
    samplers = [
        ShardBatchSampler(np.arange(50), shard_tiles=8, batch_size=4, draw=draw, rank=r, world=3)
        for r in range(3)
    ]
    shares = [np.concatenate(list(s)) for s in samplers]
    # Every rank runs as many steps (DDP would hang otherwise): 50 tiles + 1 repeated.
    assert [len(s) for s in shares] == [17, 17, 17]
    assert [len(s) for s in samplers] == [5, 5, 5]  # batches, the last one partial
    everything = np.concatenate(shares).tolist()
    assert set(everything) == set(range(50)) and len(everything) == 51
    assert [rank_span(10, r, 4) for r in range(4)] == [
        slice(0, 3),
        slice(3, 6),
        slice(6, 8),
        slice(8, 10),
    ]


def test_validation_batches_are_in_order() -> None:
    batches = list(OrderedBatches(np.arange(10, 20), batch_size=4, rank=1, world=2))
    assert [b.tolist() for b in batches] == [[15, 16, 17, 18], [19]]


def test_device_batches_normalise_like_the_per_tile_path(sharded_store: Path) -> None:
    store = TileStore.open(sharded_store)
    ids = store.indices("train")[:6]
    per_tile = TileDataset(sharded_store, ids, mean=store.band_mean, std=store.band_std)
    batch = TileBatches(sharded_store)[ids]
    assert batch["image"].dtype == torch.int16 and batch["mask"].dtype == torch.uint8
    device = DeviceBatches(store.band_mean, store.band_std, dtype="uint16")
    image, mask = device(batch["image"], batch["mask"], augment=False)
    for k in range(len(ids)):
        assert torch.equal(image[k], per_tile[k]["image"])
        assert torch.equal(mask[k], per_tile[k]["mask"])


def test_uint16_above_int16_survives_the_trip() -> None:
    raw = np.array([[[[0, 40000], [65535, 123]]]], dtype=np.uint16)
    device = DeviceBatches([0.0], [1.0], dtype="uint16")
    image, _ = device(as_tensor(raw), torch.zeros(1, 2, 2, dtype=torch.uint8), augment=False)
    assert image.flatten().tolist() == [0.0, 40000.0, 65535.0, 123.0]


def test_d4_on_the_device_keeps_labels_on_their_pixels() -> None:
    torch.manual_seed(0)
    image = torch.randint(0, 1000, (64, 2, 9, 9)).float()
    mask = (image[:, 0] % 5).long()  # a label that is a function of the pixel
    new_image, new_mask = d4_batch(image, mask)
    assert torch.equal(new_mask, (new_image[:, 0] % 5).long())
    orientations = {new_image[k, 1].numpy().tobytes() for k in range(64)} - {
        image[k, 1].numpy().tobytes() for k in range(64)
    }
    assert orientations  # some tiles moved
    variants = set()
    for k in range(64):
        candidates = [torch.rot90(image[k], r, (-2, -1)) for r in range(4)]
        candidates += [c.flip(-1) for c in candidates]
        matches = [i for i, c in enumerate(candidates) if torch.equal(c, new_image[k])]
        assert matches  # every tile is a D4 image of itself
        variants.add(matches[0])
    assert len(variants) == 8


def test_loader_batches_read_through_workers_equal_the_store(sharded_store: Path) -> None:
    summary = StoreSummary.read(sharded_store)
    train, val, sampler = make_loaders(summary, batch_size=4, workers=1, balance=False, seed=0)
    store = TileStore.open(sharded_store)
    seen = []
    for batch, ids in zip(train, sampler, strict=True):
        expected = store.read_many(ids)
        np.testing.assert_array_equal(batch["image"].numpy().view(np.uint16), expected[0])
        np.testing.assert_array_equal(batch["mask"].numpy(), expected[1])
        seen.extend(ids.tolist())
    assert sorted(seen) == sorted(summary.splits["train"].tolist())
    assert len(train) == len(sampler) == -(-len(summary.splits["train"]) // 4)
    assert sum(len(b["mask"]) for b in val) == len(summary.splits["val"])


def _as_version_1(path: Path) -> None:
    """Rewrite the store's attrs in the layout the previous release wrote (one grid for all)."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    raw = dict(group.attrs[ATTRS_KEY])
    scene = raw["scenes"][0]
    old = {k: v for k, v in raw.items() if k not in ("scenes", "version")}
    old.update(
        version=1,
        scenes=[s["name"] for s in raw["scenes"]],
        crs=scene["crs"],
        transform=scene["transform"],
        shape=scene["shape"],
        tiling={
            **raw["tiling"],
            "scenes": {s["name"]: s["image"] for s in raw["scenes"]},
            "mask": scene["mask"],
        },
        decisions={**raw["decisions"], "dropped_in_v2": True},
    )
    group.attrs[ATTRS_KEY] = old


@pytest.mark.slow
def test_a_store_of_the_previous_release_still_trains(tmp_path: Path) -> None:
    from geotiler.train.settings import TrainSettings
    from geotiler.train.trainer import train

    path = make_real_store(tmp_path / "v1", shard_tiles=4)
    _as_version_1(path)
    store = TileStore.open(path)
    assert store.attrs.version == 1 and store.scenes == ("april",)
    settings = TrainSettings(
        model="unet-tiny", epochs=1, batch_size=4, device="cpu", seed=0, amp=False
    )
    result = train(path, tmp_path / "run", settings)
    assert result.epochs_run == 1
    assert (tmp_path / "run" / "best.pt").exists()
