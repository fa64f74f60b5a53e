"""The data path: store tiles -> normalised tensors, D4 augmentation, the epoch sampler."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from geotiler.errors import InputError
from geotiler.tiles.store import TileStore
from geotiler.train.data import EpochSampler, StoreSummary, TileDataset, d4_transform, make_loaders


def _expected(store: object, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images, masks = zip(*(store.read(int(i)) for i in ids), strict=True)  # type: ignore[attr-defined]
    mean = store.band_mean[:, None, None]  # type: ignore[attr-defined]
    std = store.band_std[:, None, None]  # type: ignore[attr-defined]
    return (np.stack(images) - mean) / std, np.stack(masks).astype(np.int64)


def test_a_batch_equals_the_stored_tiles_after_normalisation(real_store: Path) -> None:
    store = TileStore.open(real_store)
    ids = store.indices("train")
    data = TileDataset(real_store, ids, mean=store.band_mean, std=store.band_std)
    # One worker process: the store is opened inside it, not inherited.
    batch = next(iter(DataLoader(data, batch_size=len(ids), num_workers=1)))
    image, mask = _expected(store, ids)
    assert batch["image"].dtype == torch.float32 and batch["mask"].dtype == torch.int64
    assert batch["image"].shape == (len(ids), 3, 36, 36)
    np.testing.assert_allclose(batch["image"].numpy(), image, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batch["mask"].numpy(), mask)


def test_summary_serves_only_kept_tiles_of_each_split(fake_store: Path) -> None:
    summary = StoreSummary.read(fake_store)
    train, val = summary.splits["train"], summary.splits["val"]
    assert not set(train) & set(val)
    assert 23 not in set(train) | set(val)  # the one dropped tile
    assert len(train) + len(val) == 23
    assert summary.sampling_weights.shape == train.shape


def test_dataset_pickles_without_an_open_store(fake_store: Path) -> None:
    summary = StoreSummary.read(fake_store)
    data = TileDataset(fake_store, summary.splits["train"], mean=[0, 0, 0], std=[1, 1, 1])
    first = data[0]
    clone = pickle.loads(pickle.dumps(data))
    assert clone._store is None
    assert torch.equal(clone[0]["mask"], first["mask"])


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("flip", [False, True])
def test_d4_transforms_keep_labels_on_their_pixels(k: int, flip: bool) -> None:
    rng = np.random.default_rng(k)
    image = rng.integers(0, 1000, (2, 9, 9)).astype(np.uint16)
    mask = (image[0] % 5).astype(np.uint8)  # a label that is a function of the pixel
    new_image, new_mask = d4_transform(image, mask, k, flip)
    np.testing.assert_array_equal(new_mask, new_image[0] % 5)
    assert sorted(new_image[1].ravel()) == sorted(image[1].ravel())
    moved = not np.array_equal(new_image, image)
    assert moved == (k != 0 or flip)


def test_augmentation_draws_several_orientations(fake_store: Path) -> None:
    summary = StoreSummary.read(fake_store)
    data = TileDataset(
        fake_store, summary.splits["train"][:1], mean=[0] * 3, std=[1] * 3, augment=True
    )
    torch.manual_seed(0)
    seen = {data[0]["mask"].numpy().tobytes() for _ in range(40)}
    assert len(seen) == 8


def test_weighted_sampler_follows_weights_and_splits_ranks() -> None:
    weights = np.array([0.0, 1.0, 1.0, 8.0])
    draws = [
        EpochSampler(4, num_samples=400, weights=weights, seed=3, rank=r, world=2) for r in range(2)
    ]
    lists = [list(s) for s in draws]
    full = list(EpochSampler(4, num_samples=400, weights=weights, seed=3))
    assert sorted(lists[0] + lists[1]) == sorted(full)
    assert 0 not in full
    assert full.count(3) > 3 * full.count(1)
    again = EpochSampler(4, num_samples=400, weights=weights, seed=3)
    assert list(again) == full
    again.set_epoch(1)
    assert list(again) != full


def test_unweighted_sampler_is_a_permutation() -> None:
    sampler = EpochSampler(10, seed=1)
    assert sorted(sampler) == list(range(10))


def test_loaders_balance_with_the_store_weights(fake_store: Path) -> None:
    summary = StoreSummary.read(fake_store)
    train, val, sampler = make_loaders(summary, batch_size=4, workers=0, balance=True, seed=0)
    assert sampler.draw.weights is not None  # type: ignore[attr-defined]
    assert sum(len(b["mask"]) for b in val) == len(summary.splits["val"])
    batch = next(iter(train))
    assert batch["image"].shape == (4, 3, 36, 36)
    assert batch["image"].dtype == torch.int16  # uint16 as stored, same bits
    assert batch["mask"].dtype == torch.uint8


def test_a_split_without_tiles_is_an_error(fake_store_factory: Callable[..., Path]) -> None:
    path = fake_store_factory("no-val", val_share=0.0)
    with pytest.raises(InputError, match="no kept tiles in the 'val' split"):
        StoreSummary.read(path)
