"""Overhead of `geotiler predict` over the bare model forward pass, and its peak memory.

For each scene size, one run measures, each in its own process (so peak RSS is its own):
- ``forward``: the model alone over the same number of tiles at the same batch size (random input,
  softmax included): the floor any sliding-window predictor stands on;
- ``predict o=0``: our whole pipeline at overlap 0 (read, normalise, forward, blend, write);
- ``predict o=64``: the same with 64 px overlap (more tiles: its own forward floor is printed).
The goal is overhead <= 1.15 at overlap 0, and peak RSS that does not grow with scene height.

    python benchmarks/bench_predict.py --sizes 2048 4096 --tile 256 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from geotiler.catalog import Catalog
from geotiler.predict import tile_offsets

BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]


def make_scene(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": len(BANDS), "dtype": "uint16",
        "crs": "EPSG:32631", "transform": Affine(10, 0, 240000, 0, -10, 4780000), "nodata": 0,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 512):
            height = min(512, size - row)
            block = rng.integers(200, 4000, (len(BANDS), height, size), dtype=np.uint16)
            dst.write(block, window=((row, row + height), (0, size)))
        dst.descriptions = tuple(BANDS)


def make_checkpoint(path: Path, tile: int) -> None:
    from geotiler.train.checkpoint import save_checkpoint
    from geotiler.train.models import get_model, load_preset

    preset = load_preset("unet-small")
    classes = Catalog.load().class_table("catalonia12")
    model = get_model(
        preset.architecture, in_channels=len(BANDS), num_classes=13, **preset.arguments
    )
    save_checkpoint(
        path,
        {
            "state_dict": model.state_dict(),
            "model": {"preset": "unet-small", "architecture": preset.architecture,
                      "arguments": dict(preset.arguments)},
            "bands": BANDS, "band_mean": [1500.0] * 10, "band_std": [800.0] * 10,
            "classes": classes.model_dump(mode="json"), "num_classes": 13, "nodata": 0,
            "tile_size": tile,
        },
    )  # fmt: skip


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    if args.child == "forward":
        from geotiler.inference import load_predictor

        predictor = load_predictor(args.checkpoint, device="cpu")
        batch = np.random.default_rng(0).integers(
            200, 4000, (args.batch_size, 10, args.tile, args.tile)
        )
        batch = batch.astype(np.float32)
        done = 0
        while done < args.tiles:
            n = min(args.batch_size, args.tiles - done)
            predictor(batch[:n])
            done += n
    else:
        from geotiler.inference import load_predictor
        from geotiler.predict import predict_scene

        predictor = load_predictor(args.checkpoint, device="cpu")
        predict_scene(
            args.scene, args.out, predictor=predictor, classes=predictor.classes,
            overlap_px=args.overlap, batch_size=args.batch_size, overwrite=True,
        )  # fmt: skip
    print(json.dumps({"seconds": time.perf_counter() - started}))


def measure(argv: list[str]) -> tuple[float, float]:
    process = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    output = process.stdout.read() if process.stdout else ""
    if status != 0:
        raise SystemExit(f"child failed: {argv}")
    return json.loads(output.strip().splitlines()[-1])["seconds"], usage.ru_maxrss / 1024


def tiles_for(size: int, tile: int, overlap: int) -> int:
    return len(tile_offsets(size, tile, tile - overlap)) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--child", choices=["forward", "predict"])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--scene", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--overlap", type=int, default=0)
    parser.add_argument("--tiles", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"machine: {os.cpu_count()} cores, {cpu}; load average {load}")
    print(f"model unet-small, tile {args.tile} px, batch {args.batch_size}, 10 bands, CPU")
    row = "{:>7} {:>14} {:>6} {:>8} {:>8} {:>7} {:>10}"
    print(row.format("scene", "run", "tiles", "seconds", "tiles/s", "RSS MB", "vs forward"))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        checkpoint = work / "model.pt"
        make_checkpoint(checkpoint, args.tile)
        common = ["--checkpoint", str(checkpoint), "--tile", str(args.tile)]
        common += ["--batch-size", str(args.batch_size)]
        for size in args.sizes:
            scene = work / f"scene_{size}.tif"
            make_scene(scene, size)
            for overlap in (0, 64):
                tiles = tiles_for(size, args.tile, overlap)
                floor, floor_rss = measure([*common, "--child", "forward", "--tiles", str(tiles)])
                predict_args = ["--scene", str(scene), "--out", str(work / "map.tif")]
                predict_args += ["--overlap", str(overlap)]
                ours, rss = measure([*common, "--child", "predict", *predict_args])
                floor_row = (size, "forward", tiles, f"{floor:.1f}", f"{tiles / floor:.1f}")
                print(row.format(*floor_row, f"{floor_rss:.0f}", ""))
                ours_row = (
                    size,
                    f"predict o={overlap}",
                    tiles,
                    f"{ours:.1f}",
                    f"{tiles / ours:.1f}",
                )
                print(row.format(*ours_row, f"{rss:.0f}", f"{ours / floor:.2f}x"))


if __name__ == "__main__":
    main()
