"""Batches of tile ids that read fast: shard-local order, shuffled within a buffer.

Reading is fast when a batch's tiles sit next to each other in the store (a run of consecutive
tiles of a shard is one read; see :mod:`geotiler.tiles.shards`), and training wants batches of
unrelated tiles. :func:`shard_local_order` reconciles the two the way WebDataset does for its
shards: the tiles drawn for the epoch (the same multiset :class:`~geotiler.train.data.EpochSampler`
draws: weighted with replacement, or a permutation) are grouped by shard, shards come in a random
order, each shard's tiles are cut into *pieces* of consecutive ids, and a buffer holding about
``BUFFER_SHARDS`` shards' pieces is shuffled as they stream through it. A batch of 16 is then
four pieces of four tiles from shards that can be far apart: four reads, not sixteen, and tiles
from across the store.

The epoch's tiles are exactly the drawn ones, each as often as drawn, so weighted sampling keeps
its expectation; only their order is local. DDP ranks take contiguous, equal-sized spans of the
order (each reads its own shards; the last span is padded with the first tiles so that every
rank runs the same number of steps); :class:`ShardBatchSampler` yields each rank's batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Protocol

import numpy as np
from torch.utils.data import Sampler

PIECES_PER_BATCH = 4
"""A batch mixes this many pieces (runs of consecutive tiles of a shard)."""
BUFFER_SHARDS = 8
"""The shuffle buffer holds about this many shards' pieces: how many shards a batch draws from."""


class _Draw(Protocol):
    num_samples: int

    def set_epoch(self, epoch: int) -> None: ...

    def draw(self) -> np.ndarray:
        """Positions drawn for the epoch (every rank's)."""
        ...


def shard_local_order(
    ids: np.ndarray,
    shard_tiles: int,
    *,
    piece: int,
    rng: np.random.Generator,
    buffer_shards: int = BUFFER_SHARDS,
) -> np.ndarray:
    """``ids`` (drawn tile ids, repeats allowed) reordered: see the module docstring.

    Args:
        ids: the epoch's tile ids.
        shard_tiles: tiles per shard in the store.
        piece: tiles per piece (consecutive ids of one shard).
        rng: the epoch's random generator (the order depends only on it and ``ids``).
        buffer_shards: the shuffle buffer holds this many shards' pieces (on average).
    """
    if len(ids) == 0:
        return np.asarray(ids, dtype=np.int64)
    ordered = np.sort(np.asarray(ids, dtype=np.int64))
    shard = ordered // shard_tiles
    shards = np.unique(shard)
    rank = np.empty(int(shards.max()) + 1, np.int64)
    rank[shards] = rng.permutation(len(shards))
    # Stable: within a shard the ids stay sorted, so pieces are runs.
    ordered = ordered[np.argsort(rank[shard], kind="stable")]
    bounds = [0, *(np.flatnonzero(np.diff(ordered // shard_tiles)) + 1).tolist(), len(ordered)]
    starts = [s for a, b in itertools.pairwise(bounds) for s in range(a, b, piece)]
    stops = [*starts[1:], len(ordered)]
    pieces = [ordered[a:b] for a, b in zip(starts, stops, strict=True)]
    buffer = buffer_shards * -(-len(pieces) // len(shards))
    return np.concatenate(_buffer_shuffle(pieces, buffer, rng))


def _buffer_shuffle(
    items: list[np.ndarray], size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """WebDataset's shuffle: each incoming item replaces a random one of ``size`` held."""
    held: list[np.ndarray] = []
    out: list[np.ndarray] = []
    for item in items:
        if len(held) < size:
            held.append(item)
            continue
        k = int(rng.integers(len(held)))
        out.append(held[k])
        held[k] = item
    out.extend(held[k] for k in rng.permutation(len(held)))
    return out


def rank_span(count: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous share of ``count`` items (shares differ by one at most)."""
    share, extra = divmod(count, world)
    start = rank * share + min(rank, extra)
    return slice(start, start + share + (rank < extra))


class ShardBatchSampler(Sampler[np.ndarray]):
    """Batches of tile ids for one epoch (call :meth:`set_epoch`), in shard-local order.

    Args:
        tile_ids: the ids of the train split's tiles in the store.
        shard_tiles: tiles per shard of the store.
        batch_size: tiles per batch (the last batch of a rank may be smaller).
        draw: returns the positions (into ``tile_ids``) drawn for an epoch, e.g.
            :meth:`geotiler.train.data.EpochSampler.draw`.
        seed: with the epoch, seeds the order.
    """

    def __init__(
        self,
        tile_ids: np.ndarray,
        *,
        shard_tiles: int,
        batch_size: int,
        draw: _Draw,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        pieces_per_batch: int = PIECES_PER_BATCH,
        buffer_shards: int = BUFFER_SHARDS,
    ) -> None:
        self.tile_ids = np.asarray(tile_ids, dtype=np.int64)
        self.shard_tiles = shard_tiles
        self.batch_size = batch_size
        self.draw = draw
        self.seed = seed
        self.rank, self.world = rank, world
        self.piece = max(1, batch_size // pieces_per_batch)
        self.buffer_shards = buffer_shards
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.draw.set_epoch(epoch)

    def epoch_ids(self) -> np.ndarray:
        """This rank's tile ids for the epoch, in reading order."""
        ids = self.tile_ids[self.draw.draw()]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = shard_local_order(
            ids, self.shard_tiles, piece=self.piece, rng=rng, buffer_shards=self.buffer_shards
        )
        share = self._share(len(order))
        if share * self.world > len(order):
            # Every DDP rank must run as many steps: pad with the epoch's first tiles, as
            # torch's DistributedSampler does.
            order = np.concatenate([order, order[: share * self.world - len(order)]])
        return order[self.rank * share : (self.rank + 1) * share]

    def _share(self, count: int) -> int:
        """Tiles each rank gets: all ranks the same number (the last ones padded)."""
        return -(-count // self.world)

    def __iter__(self) -> Iterator[np.ndarray]:
        ids = self.epoch_ids()
        for start in range(0, len(ids), self.batch_size):
            yield ids[start : start + self.batch_size]

    def __len__(self) -> int:
        return -(-self._share(self.draw.num_samples) // self.batch_size)


class OrderedBatches(Sampler[np.ndarray]):
    """This rank's contiguous share of ``ids``, in order, in batches (validation)."""

    def __init__(self, ids: np.ndarray, *, batch_size: int, rank: int = 0, world: int = 1) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)[rank_span(len(ids), rank, world)]
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.ids), self.batch_size):
            yield self.ids[start : start + self.batch_size]

    def __len__(self) -> int:
        return -(-len(self.ids) // self.batch_size)
