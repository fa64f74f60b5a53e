"""Parameters and training/inference speed of every model preset, side by side.

For each preset in ``models/``: parameters, forward+backward (a training step without the
optimiser) tiles/s and forward-only (inference) tiles/s on random 256 px tiles, and the training
speed relative to the reference preset measured in the same run (``unet-small``, the default).
On CUDA the step runs as training does there: autocast fp16 and channels-last layout.

    python benchmarks/bench_models.py                      # every preset, CPU, a few iterations
    python benchmarks/bench_models.py --presets segformer-b0 unet-resnet34 --iterations 5
    python benchmarks/bench_models.py --device cuda --batch-size 16 --iterations 20
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from typing import Any

import torch
import torch.nn.functional as F

from geotiler.train.models import available_presets, load_preset

REFERENCE = "unet-small"


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda":
        return torch.autocast("cuda", torch.float16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    name: str, *, bands: int, classes: int, size: int, batch: int, iterations: int,
    device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    """Parameters, training and inference tiles/s of preset ``name``."""
    torch.manual_seed(0)
    model = load_preset(name).build(bands, classes).to(device)
    image = torch.randn(batch, bands, size, size, device=device)
    mask = torch.randint(0, classes, (batch, size, size), device=device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        image = image.contiguous(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")

    def step() -> None:
        with _autocast(device):
            loss = F.cross_entropy(model(image), mask)
        model.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()

    model.train()
    step()  # warm-up: allocator, kernels, oneDNN primitives
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    _sync(device)
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad(), _autocast(device):
        model(image)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iterations):
            model(image)
        _sync(device)
    infer_s = time.perf_counter() - start
    tiles = batch * iterations
    return {
        "preset": name,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "train": tiles / train_s,
        "infer": tiles / infer_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", help="default: every preset")
    parser.add_argument("--bands", type=int, default=10, help="input bands (the demo has 10)")
    parser.add_argument("--classes", type=int, default=13, help="output classes")
    parser.add_argument("--size", type=int, default=256, help="tile size in px")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3, help="timed steps per preset")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = args.presets or [p for p in available_presets() if load_preset(p).description]
    names = [REFERENCE, *(n for n in names if n != REFERENCE)]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"{device.type} ({where or platform.machine()}), {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; {args.batch_size} x {args.bands} bands x {args.size} px, "
        f"{args.iterations} timed steps"
        + (", AMP fp16 + channels_last" if device.type == "cuda" else "")
    )
    rows = []
    for name in names:
        row = measure(
            name, bands=args.bands, classes=args.classes, size=args.size,
            batch=args.batch_size, iterations=args.iterations, device=device,
        )  # fmt: skip
        rows.append(row)
        print(f"  {name}: {row['train']:.2f} tiles/s", flush=True)
    reference = rows[0]["train"]
    print(f"\n| preset | parameters | train tiles/s | vs {REFERENCE} | inference tiles/s |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['preset']} | {row['params_m']:.1f} M | {row['train']:.2f} | "
            f"{row['train'] / reference:.2f}x | {row['infer']:.2f} |"
        )


if __name__ == "__main__":
    main()
