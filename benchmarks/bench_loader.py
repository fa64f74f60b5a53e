"""Tiles/s into the training loop vs decoding the same tiles' bytes, side by side in one run.

The reference is the codec's own speed: the train split's tiles (image and mask chunks), their
bytes read from the shard files beforehand, Blosc-decoded by numcodecs in one thread. Against
it, in the same run, on the same tiles:

- the training loader (``make_loaders``: shard-local batches read in runs, ``--workers``
  DataLoader workers) with each tile reader, its batches normalised and D4-augmented by
  ``DeviceBatches`` in the loop, as ``geotiler train`` does;
- the first reader again without the device-side work (what the CPU does when a GPU normalises
  and augments);
- the per-tile path of the previous release (``TileDataset``: one tile per item, normalised and
  augmented in the worker), for comparison.

Each row gives tiles/s (wall), the CPU seconds of every process involved (the loop and its
workers) and tiles per CPU second: on a shared machine the per-core figure is the steadier one.
With ``--model``, it also times training steps fed by the loader against the same steps on
synthetic tensors already on the device (on a GPU: what the loader costs the training).

    python benchmarks/bench_loader.py                      # generates a 6000² 10-band store
    python benchmarks/bench_loader.py work/demo/tiles.zarr --batch-size 16 --workers 2
    python benchmarks/bench_loader.py --model unet-small --device cuda --steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader

from geotiler.tiles.fastread import available_backends
from geotiler.train.augment import DeviceBatches
from geotiler.train.data import StoreSummary, TileDataset, make_loaders


@dataclass(frozen=True)
class Rate:
    name: str
    tiles: int
    seconds: float
    cpu_seconds: float

    @property
    def per_s(self) -> float:
        return self.tiles / self.seconds

    @property
    def per_cpu_s(self) -> float:
        return self.tiles / max(self.cpu_seconds, 1e-9)


def cpu_seconds() -> float:
    """CPU time of this process and its live children (DataLoader workers)."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def timed(name: str, tiles: int, run: Callable[[], Any]) -> Rate:
    cpu, start = cpu_seconds(), time.perf_counter()
    run()
    return Rate(name, tiles, time.perf_counter() - start, cpu_seconds() - cpu)


def chunk_bytes(store: Path, ids: np.ndarray) -> list[bytes]:
    """The encoded image and mask chunks of tiles ``ids``, read from the shard files."""
    chunks = []
    for name in ("images", "masks"):
        meta = json.loads((store / name / "zarr.json").read_text())
        per_shard = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        rest = "/0" * (len(meta["shape"]) - 1)
        for shard in np.unique(ids // per_shard):
            data = (store / name / "c" / f"{shard}{rest}").read_bytes()
            index_at = len(data) - 16 * per_shard - 4
            index = np.frombuffer(data[index_at:-4], "<u8").reshape(per_shard, 2)
            for i in ids[ids // per_shard == shard]:
                offset, length = index[int(i) % per_shard]
                chunks.append(data[int(offset) : int(offset + length)])
    return chunks


def decode_reference(store: Path, ids: np.ndarray, repeat: int) -> Rate:
    """numcodecs' Blosc on the tiles' bytes, one thread (Blosc's threads off)."""
    from numcodecs import blosc

    chunks = chunk_bytes(store, ids)
    previous, blosc.use_threads = blosc.use_threads, False
    try:

        def run() -> None:
            for _ in range(repeat):
                for chunk in chunks:
                    blosc.decompress(chunk)

        return timed("numcodecs Blosc decode, 1 thread", len(ids) * repeat, run)
    finally:
        blosc.use_threads = previous


def drain(batches: Iterable[dict[str, torch.Tensor]], device: DeviceBatches | None) -> int:
    """Pull every batch through the loop (device-side transform when given); tiles seen."""
    count = 0
    for batch in batches:
        if device is not None:
            image, _ = device(batch["image"], batch["mask"], augment=True)
        else:
            image = batch["image"]
        count += image.shape[0]
    return count


def loader_rate(
    summary: StoreSummary, reader: str, args: argparse.Namespace, *, transform: bool = True
) -> Rate:
    train, _, sampler = make_loaders(
        summary, batch_size=args.batch_size, workers=args.workers, balance=True, seed=0,
        pin_memory=args.device == "cuda", reader=reader,
    )  # fmt: skip
    device = DeviceBatches(
        summary.band_mean, summary.band_std, dtype=summary.image_dtype, device=args.device
    )
    sampler.set_epoch(0)
    drain(train, device)  # warm-up: worker start-up and first opens are not timed
    tiles = 0

    def run() -> None:
        nonlocal tiles
        for epoch in range(1, args.epochs + 1):
            sampler.set_epoch(epoch)
            tiles += drain(train, device if transform else None)

    name = f"loader, {reader} reader, {args.workers} workers"
    if not transform:
        name = f"{reader} loader, normalise + D4 left to a GPU"
    rate = timed(name, 0, run)
    return Rate(rate.name, tiles, rate.seconds, rate.cpu_seconds)


def per_tile_rate(summary: StoreSummary, args: argparse.Namespace) -> Rate:
    ids = summary.splits["train"]
    dataset = TileDataset(
        summary.path, ids, mean=summary.band_mean, std=summary.band_std, augment=True
    )
    loader = DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )  # fmt: skip
    drain(loader, None)
    rate = timed(
        f"per-tile TileDataset, {args.workers} workers",
        0,
        lambda: [drain(loader, None) for _ in range(args.epochs)],
    )
    return Rate(rate.name, len(ids) * args.epochs, rate.seconds, rate.cpu_seconds)


def training_rates(summary: StoreSummary, args: argparse.Namespace) -> list[Rate]:
    """Training steps fed by the loader vs by synthetic tensors on the device."""
    from geotiler.train.models import load_preset

    device = torch.device(args.device)
    net = load_preset(args.model).build(len(summary.bands), summary.num_classes).to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(image: torch.Tensor, mask: torch.Tensor) -> None:
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            loss = loss_fn(net(image), mask)
        loss.backward()
        optimiser.step()

    def synced(run: Callable[[], None]) -> Callable[[], None]:
        def wrapped() -> None:
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()

        return wrapped

    train, _, sampler = make_loaders(
        summary, batch_size=args.batch_size, workers=args.workers, balance=True, seed=0,
        pin_memory=device.type == "cuda", num_samples=args.steps * args.batch_size,
    )  # fmt: skip
    batches = DeviceBatches(summary.band_mean, summary.band_std, dtype=summary.image_dtype,
                            device=device)  # fmt: skip
    size = summary.tile_size
    image = torch.randn(args.batch_size, len(summary.bands), size, size, device=device)
    mask = torch.randint(0, summary.num_classes, (args.batch_size, size, size), device=device)

    def from_loader() -> None:
        for batch in train:
            step(*batches(batch["image"], batch["mask"], augment=True))

    def synthetic() -> None:
        for _ in range(args.steps):
            step(image, mask)

    sampler.set_epoch(0)
    synced(synthetic)()  # warm-up (cuDNN autotuning, allocator)
    tiles = args.steps * args.batch_size
    return [
        timed(f"train {args.model}: synthetic tensors on {device}", tiles, synced(synthetic)),
        timed(f"train {args.model}: fed by the loader", tiles, synced(from_loader)),
    ]


def make_store(folder: Path, size: int) -> Path:
    """A ``size``² 10-band uint16 scene tiled at 300 px by geotiler (kept in ``folder``)."""
    store = folder / "tiles.zarr"
    if not store.exists():
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_tile import generate, ours

        folder.mkdir(parents=True, exist_ok=True)
        generate(folder, size, size)
        ours(folder, 300)
    return store


def report(rows: list[Rate], reference: Rate) -> None:
    print(
        f"\n{'':<44} {'tiles/s':>9} {'CPU s':>7} {'tiles/CPU-s':>12} {'vs decode':>10} "
        f"{'per core':>9}"
    )
    for row in [reference, *rows]:
        print(
            f"{row.name:<44} {row.per_s:9.1f} {row.cpu_seconds:7.1f} {row.per_cpu_s:12.1f} "
            f"{row.per_s / reference.per_s:9.2f}x {row.per_cpu_s / reference.per_cpu_s:8.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, nargs="?", help="tile store (default: generate)")
    parser.add_argument("--size", type=int, default=6000, help="generated scene side (px)")
    parser.add_argument("--cache-dir", type=Path, help="where the generated store is kept")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after a warm-up")
    parser.add_argument("--readers", nargs="+", default=available_backends())
    parser.add_argument("--no-per-tile", action="store_true", help="skip the per-tile path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", help="also time training steps with this preset")
    parser.add_argument("--steps", type=int, default=30, help="training steps timed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = args.cache_dir or Path(tempfile.gettempdir()) / "geotiler-bench-loader"
    store = args.store or make_store(cache / str(args.size), args.size)
    summary = StoreSummary.read(store)
    ids = summary.splits["train"]
    print(
        f"{store}: {len(ids)} train tiles of {summary.tile_size} px x {len(summary.bands)} "
        f"bands ({summary.image_dtype}), shards of {summary.shard_tiles}; batch "
        f"{args.batch_size}, {args.workers} workers, D4 on, {args.epochs} epochs; "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    )
    reference = decode_reference(Path(store), ids, args.epochs)
    rows = [loader_rate(summary, reader, args) for reader in args.readers]
    # What the CPU does when training on a GPU: the loader alone (the GPU normalises, augments).
    rows.append(loader_rate(summary, args.readers[0], args, transform=False))
    if not args.no_per_tile:
        rows.append(per_tile_rate(summary, args))
    report(rows, reference)
    if args.model:
        synthetic, fed = training_rates(summary, args)
        print(f"\n{synthetic.name:<44} {synthetic.per_s:9.1f} tiles/s")
        print(f"{fed.name:<44} {fed.per_s:9.1f} tiles/s")
        print(f"the loader costs the training {1 - fed.per_s / synthetic.per_s:.0%} (goal < 10 %)")


if __name__ == "__main__":
    main()
