"""Feeding tiles from the Zarr tile store to PyTorch.

:class:`TileDataset` keeps only the store's path, the tile ids and the band statistics; each
DataLoader worker opens the store itself on its first item, so nothing opened is shared across a
fork. Items are ``{"image": float32 (B, S, S) normalised, "mask": int64 (S, S)}``. Training items
get a random element of the dihedral group D4 (flips and 90-degree rotations), which keeps labels
correct. :class:`EpochSampler` draws the tiles of an epoch, by the store's sampling weights when
balancing is on, reproducibly from ``seed + epoch`` and split across DDP ranks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from geotiler.errors import InputError

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]


def open_store(path: str | os.PathLike[str]) -> Any:
    """Open the tile store at ``path`` (StoreError when missing or incomplete)."""
    from geotiler.tiles.store import TileStore

    return TileStore.open(path)


@dataclass(frozen=True)
class StoreSummary:
    """What training needs to know about a store, read once in the main process."""

    path: Path
    bands: tuple[str, ...]
    tile_size: int
    num_classes: int
    nodata: int | None
    band_mean: tuple[float, ...]
    band_std: tuple[float, ...]
    class_weights: tuple[float, ...] | None
    classes: Any  # geotiler.catalog.ClassTable
    splits: dict[str, np.ndarray]
    sampling_weights: np.ndarray  # of the train split's tiles, same order

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> StoreSummary:
        store = open_store(path)
        splits = {
            name: np.asarray(store.indices(name), dtype=np.int64) for name in ("train", "val")
        }
        for name, ids in splits.items():
            if len(ids) == 0:
                raise InputError(
                    f"{store.path}: no kept tiles in the {name!r} split; re-run `geotiler tile` "
                    "with a larger scene, laxer --filter settings or a --split that gives "
                    f"{name} a share"
                )
        weights = store.class_weights
        return cls(
            path=Path(store.path),
            bands=tuple(store.bands),
            tile_size=int(store.tile_size),
            num_classes=int(store.num_classes),
            nodata=store.nodata,
            band_mean=tuple(float(v) for v in store.band_mean),
            band_std=tuple(float(v) for v in store.band_std),
            class_weights=None if weights is None else tuple(float(v) for v in weights),
            classes=store.classes,
            splits=splits,
            sampling_weights=np.asarray(store.sampling_weights(splits["train"]), dtype=np.float64),
        )


def d4_transform(
    image: np.ndarray, mask: np.ndarray, k: int, flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (B, S, S) and (S, S) by ``k`` quarter turns, then mirror left-right if ``flip``."""
    image = np.rot90(image, k, axes=(-2, -1))
    mask = np.rot90(mask, k, axes=(-2, -1))
    if flip:
        image, mask = image[..., ::-1], mask[..., ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


class TileDataset(Dataset[dict[str, torch.Tensor]]):
    """Tiles ``ids`` of the store at ``path``, normalised with ``mean``/``std`` per band.

    With ``low`` and ``high``, band values are first clipped to that range (robust statistics).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        ids: Sequence[int] | np.ndarray,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        low: Sequence[float] | None = None,
        high: Sequence[float] | None = None,
        augment: bool = False,
    ) -> None:
        self.path = Path(path)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.clip = (
            None
            if low is None or high is None
            else (
                np.asarray(low, dtype=np.float32)[:, None, None],
                np.asarray(high, dtype=np.float32)[:, None, None],
            )
        )
        safe_std = np.where(np.asarray(std) > 0, np.asarray(std), 1.0)
        self.inv_std = (1.0 / safe_std).astype(np.float32)[:, None, None]
        self.augment = augment
        self._store: Any = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict[str, Any]:
        # An open store never travels to another process: the receiver opens its own.
        return {**self.__dict__, "_store": None}

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        if self._store is None:
            self._store = open_store(self.path)
        image, mask = self._store.read(int(self.ids[item]))
        if self.augment:
            k = int(torch.randint(4, ()).item())
            flip = bool(torch.randint(2, ()).item())
            image, mask = d4_transform(image, mask, k, flip)
        values = image.astype(np.float32)
        if self.clip is not None:
            values = np.clip(values, *self.clip)
        normalised = (values - self.mean) * self.inv_std
        return {
            "image": torch.from_numpy(normalised),
            "mask": torch.from_numpy(mask.astype(np.int64)),
        }


class EpochSampler(Sampler[int]):
    """Positions drawn for one epoch: weighted with replacement, else a shuffled permutation.

    The draw depends only on ``seed + epoch`` (call :meth:`set_epoch`), so every DDP rank draws
    the same list and keeps its own slice ``rank::world``; a resumed run redraws the same epoch.
    """

    def __init__(
        self,
        size: int,
        *,
        num_samples: int | None = None,
        weights: np.ndarray | None = None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.size = size
        self.num_samples = num_samples or size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.seed = seed
        self.rank = rank
        self.world = world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _draw(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.num_samples, True, generator=generator)
        repeats = -(-self.num_samples // self.size)
        perms = [torch.randperm(self.size, generator=generator) for _ in range(repeats)]
        return torch.cat(perms)[: self.num_samples]

    def __iter__(self) -> Iterator[int]:
        return iter(self._draw()[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world))


def balanced_weights(weights: np.ndarray) -> np.ndarray | None:
    """The sampling weights if they favour some tiles, else None (plain shuffling)."""
    if len(weights) == 0 or np.allclose(weights, weights[0]):
        return None
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise InputError("the store's sampling weights are not finite and non-negative")
    return weights


def make_loaders(
    summary: StoreSummary,
    *,
    batch_size: int,
    workers: int,
    augment: bool,
    balance: bool,
    seed: int,
    num_samples: int | None = None,
    pin_memory: bool = False,
    rank: int = 0,
    world: int = 1,
    norm: Any = None,
) -> tuple[DataLoader[dict[str, torch.Tensor]], DataLoader[dict[str, torch.Tensor]], EpochSampler]:
    """Train and validation loaders (validation: each rank its own disjoint slice, in order).

    ``norm`` (a :class:`~geotiler.train.fingerprint.BandNorm`) replaces the store's statistics.
    """
    common: dict[str, Any] = {"mean": summary.band_mean, "std": summary.band_std}
    if norm is not None:
        common = {"mean": norm.mean, "std": norm.std, "low": norm.low, "high": norm.high}
    train_ids = summary.splits["train"]
    train_set = TileDataset(summary.path, train_ids, augment=augment, **common)
    val_set = TileDataset(summary.path, summary.splits["val"][rank::world], **common)
    weights = balanced_weights(summary.sampling_weights) if balance else None
    sampler = EpochSampler(
        len(train_ids), num_samples=num_samples, weights=weights, seed=seed, rank=rank, world=world
    )
    options: dict[str, Any] = {
        "batch_size": batch_size,
        "num_workers": workers,
        "pin_memory": pin_memory,
        "persistent_workers": workers > 0,
    }
    train = DataLoader(train_set, sampler=sampler, **options)
    val = DataLoader(val_set, shuffle=False, **options)
    return train, val, sampler
