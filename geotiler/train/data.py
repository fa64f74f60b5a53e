"""Feeding tiles from the Zarr tile store to PyTorch.

The training loaders (:func:`make_loaders`) read whole batches: :class:`EpochSampler` draws the
tiles of an epoch (by the store's sampling weights when balancing is on, reproducibly from
``seed + epoch``), :class:`~geotiler.train.batches.ShardBatchSampler` puts them in shard-local
order and cuts each DDP rank's share into batches, and :class:`TileBatches` reads a batch's tiles
in a few runs (:meth:`geotiler.tiles.store.TileStore.read_many`) and returns them as stored:
``{"image": uint8/int16-as-uint16 (N, B, S, S), "mask": uint8 (N, S, S)}``. Normalisation and
D4 augmentation happen on the training device (:class:`geotiler.train.augment.DeviceBatches`).

:class:`TileDataset` is the per-tile path (an item is one tile, normalised and augmented in the
worker), kept for code that wants tiles one at a time.

Datasets keep only the store's path; each DataLoader worker opens the store itself on its first
item, so nothing opened is shared across a fork.
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
from geotiler.train.augment import as_tensor
from geotiler.train.batches import OrderedBatches, ShardBatchSampler, rank_span

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
    shard_tiles: int
    image_dtype: str
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
            shard_tiles=int(store.shard_tiles),
            image_dtype=str(np.dtype(store.image_dtype)),
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

    def draw(self) -> np.ndarray:
        """Every rank's positions for the epoch (what the ranks' slices are taken from)."""
        return self._draw().numpy()

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


PREFETCH = 2
"""Batches each DataLoader worker prepares ahead of the training loop."""
RING = PREFETCH + 2
"""Shared-memory batch buffers a worker cycles through."""
TRANSPORTED = {np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "int32", "float32")}
"""Image dtypes that travel to the training process as they are stored."""


class TileBatches(Dataset[dict[str, torch.Tensor]]):
    """Batches of tiles of the store at ``path``, as stored; an item is a batch of tile ids.

    In a DataLoader worker a batch lives in a ring of ``RING`` shared-memory buffers: a batch
    is valid until the worker has served ``RING`` more (copy it to keep it longer; the
    training loop and :class:`~geotiler.train.augment.DeviceBatches` use each batch at once).

    Args:
        path: the tile store.
        reader: the tile reader backend (``auto``: the fastest that reads the store; see
            :mod:`geotiler.tiles.fastread`).
    """

    def __init__(self, path: str | os.PathLike[str], *, reader: str = "auto") -> None:
        self.path = Path(path)
        self.reader = reader
        self._store: Any = None
        self._threads: int | None = None
        self._in_worker = False
        self._shapes: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
        self._dtype = np.dtype(np.uint8)
        self._ring: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._served = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None, "_ring": [], "_served": 0}

    def _open(self) -> Any:
        self._in_worker = torch.utils.data.get_worker_info() is not None
        if self._in_worker:
            # A worker is one of several processes: one decoding thread each (Blosc's own
            # threads would only contend with the other workers for the cores).
            from numcodecs import blosc

            blosc.use_threads = False
            self._threads = 1
        store = open_store(self.path)
        self._shapes = (
            (len(store.bands), store.tile_size, store.tile_size),
            (store.tile_size, store.tile_size),
        )
        self._dtype = np.dtype(store.image_dtype)
        return store

    def __getitem__(self, ids: np.ndarray) -> dict[str, torch.Tensor]:
        if self._store is None:
            self._store = self._open()
        if self._dtype not in TRANSPORTED:
            images, masks = self._store.read_many(ids, backend=self.reader, threads=self._threads)
            return {"image": as_tensor(images), "mask": torch.from_numpy(masks)}
        image, mask = self._buffers(len(ids))
        out = (image.numpy().view(self._dtype), mask.numpy())
        self._store.read_many(ids, backend=self.reader, threads=self._threads, out=out)
        return {"image": image, "mask": mask}

    def _buffers(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Where a batch is decoded: in a worker, the next of a ring of shared-memory buffers.

        Decoding straight into shared memory spares DataLoader its copy of each batch, and
        reusing the memory spares fresh pages (each a page fault: together ~3 ms a 10-band
        tile). A worker is at most ``PREFETCH`` batches ahead of the training loop,
        so a buffer is rewritten ``RING`` batches later, after its batch has been used.
        """
        shapes = ((count, *self._shapes[0]), (count, *self._shapes[1]))
        if not self._in_worker:
            image = as_tensor(np.empty(shapes[0], self._dtype))
            return image, torch.empty(shapes[1], dtype=torch.uint8)
        slot = self._served % RING
        self._served += 1
        if slot >= len(self._ring) or self._ring[slot][0].shape != shapes[0]:
            image = as_tensor(np.empty(shapes[0], self._dtype)).share_memory_()
            pair = (image, torch.empty(shapes[1], dtype=torch.uint8).share_memory_())
            if slot < len(self._ring):
                self._ring[slot] = pair
            else:
                self._ring.append(pair)
        return self._ring[slot]


def val_share(ids: np.ndarray, rank: int, world: int) -> np.ndarray:
    """DDP rank ``rank``'s validation tiles of ``ids``, in the order its loader serves them."""
    ids = np.asarray(ids, dtype=np.int64)
    return ids[rank_span(len(ids), rank, world)]


def make_loaders(
    summary: StoreSummary,
    *,
    batch_size: int,
    workers: int,
    balance: bool,
    seed: int,
    num_samples: int | None = None,
    pin_memory: bool = False,
    rank: int = 0,
    world: int = 1,
    reader: str = "auto",
) -> tuple[
    DataLoader[dict[str, torch.Tensor]], DataLoader[dict[str, torch.Tensor]], ShardBatchSampler
]:
    """Train and validation loaders of raw batches (see the module docstring).

    Training batches are in shard-local order; validation batches are each rank's contiguous
    share of the validation tiles (:func:`val_share`), in order. Batches are prefetched (two
    per worker) and, with ``pin_memory``, copied to page-locked memory for fast transfers to
    the GPU. Normalisation is the caller's (:class:`~geotiler.train.augment.DeviceBatches`).
    """
    train_ids = summary.splits["train"]
    weights = balanced_weights(summary.sampling_weights) if balance else None
    draw = EpochSampler(len(train_ids), num_samples=num_samples, weights=weights, seed=seed)
    sampler = ShardBatchSampler(
        train_ids,
        shard_tiles=summary.shard_tiles,
        batch_size=batch_size,
        draw=draw,
        seed=seed,
        rank=rank,
        world=world,
    )
    val = OrderedBatches(val_share(summary.splits["val"], rank, world), batch_size=batch_size)
    options: dict[str, Any] = {
        "batch_size": None,  # items are whole batches
        "num_workers": workers,
        "pin_memory": pin_memory,
        "persistent_workers": workers > 0,
        "prefetch_factor": PREFETCH if workers > 0 else None,
    }
    dataset = TileBatches(summary.path, reader=reader)
    return (
        DataLoader(dataset, sampler=sampler, **options),
        DataLoader(dataset, sampler=val, **options),
        sampler,
    )
