"""Benchmark ``geotiler rescale`` against GDAL's tools and a raw read pass, in one run.

Generates (once, cached in ``--cache-dir``) a blobby 12-class uint8 mask, uncompressed, in one-row
strips like the real 300000 x 300000 Catalonia mask, with a nodata strip on the left. Then runs
each contender as its own process, measuring whole-process wall time and peak RSS (via
``/usr/bin/time -v``, else psutil polling): our ``mode`` and ``near`` (the library in a fresh
Python, imports included), ``gdalwarp -r mode`` (2 threads, 1 GB warp memory, and defaults),
``gdal_translate -r mode|nearest -outsize 10% 10%``, the ``geotiler rescale`` command itself
(whose start-up includes every command's imports), and a raw read pass (rasterio, full-width row
bands, GDAL_CACHEMAX=64). Prints source Mpx/s, peak RSS, ratios and the issue's goals, and
extrapolates to the full 300000 x 300000 mask.

With ``--deflate`` the mask is DEFLATE-compressed one-row strips like the full-size run's
(generated from a pool of strips compressed once: :func:`bench_fullsize.generate_mask`), and
``--only near`` (or ``mode``) runs just that method's contenders; near also runs with
``--compress none``, an uncompressed output like ``gdal_translate``'s. CPU seconds (user + sys) are
printed beside wall time: on a shared machine they are the steadier figure.

Examples:
    python benchmarks/bench_rescale.py --repeat 3            # 30000 x 30000, medians of 3
    python benchmarks/bench_rescale.py --size 10000          # a quick smoke run
    python benchmarks/bench_rescale.py --size 100000 --deflate --only near --repeat 3
    python benchmarks/bench_rescale.py --rows 8000 --cols 300000 --cache-dir /data/bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

FACTOR = 10
FULL_PX = 300_000 * 300_000
OURS = """
import gc, sys, time
from geotiler.grid import Grid
from geotiler.rescale import rescale
src, out, method, compress = (sys.argv[1:] + ["zstd"])[:4]
start = time.perf_counter()
target = Grid.from_raster(src).zoom_out({factor})
rescale(src, target, out, method=method, overwrite=True, compress=compress)
print(f"SECONDS={{time.perf_counter() - start}}")
gc.freeze()  # as geotiler's CLI does on exit: skip the final collection
"""
RAW_READ = """
import sys, numpy as np, rasterio
from rasterio.windows import Window
with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(sys.argv[1]) as src:
    band = 1000
    buf = np.empty((band, src.width), src.dtypes[0])
    for row in range(0, src.height, band):
        rows = min(band, src.height - row)
        src.read(1, window=Window(0, row, src.width, rows), out=buf[:rows])
"""


@dataclass(frozen=True)
class Timing:
    name: str
    seconds: float
    peak_rss_mb: float
    inner_seconds: float | None = None  # the work alone, without process start-up and imports
    cpu_seconds: float | None = None  # user + sys


def generate(path: Path, rows: int, cols: int, seed: int = 0, blob_px: int = 40) -> Path:
    """A blobby 12-class uint8 strip-layout mask, written in row bands (bounded memory)."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 13, size=(rows // blob_px + 2, cols // blob_px + 2), dtype=np.uint8)
    profile = {
        "driver": "GTiff", "width": cols, "height": rows, "count": 1, "dtype": "uint8",
        "crs": "EPSG:32631", "transform": Affine(1, 0, 240000, 0, -1, 4780000), "nodata": 0,
        "tiled": False, "blockysize": 1, "compress": "none", "bigtiff": "IF_SAFER",
    }  # fmt: skip
    partial = path.with_name(path.name + ".partial")
    band = max(blob_px, (64 << 20) // cols // blob_px * blob_px)
    with rasterio.open(partial, "w", **profile) as dst:
        for top in range(0, rows, band):
            height = min(band, rows - top)
            block = coarse[top // blob_px : (top + height) // blob_px + 1]
            fine = np.repeat(np.repeat(block, blob_px, axis=0), blob_px, axis=1)[:height, :cols]
            noise = rng.random((height, cols), dtype=np.float32) < 0.05
            fine[noise] = rng.integers(1, 13, size=int(noise.sum()), dtype=np.uint8)
            fine[:, : cols // 10] = 0
            dst.write(fine, 1, window=rasterio.windows.Window(0, top, cols, height))
    os.replace(partial, path)
    return path


def measure(name: str, command: list[str]) -> Timing:
    """Run ``command`` as a process; its wall time and peak RSS."""
    full_env = dict(os.environ)
    if Path("/usr/bin/time").exists():
        start = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-v", *command], env=full_env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{done.stderr[-2000:]}")
        lines = done.stderr.splitlines()
        line = next(x for x in lines if "Maximum resident set size" in x)
        cpu = sum(float(x.split(":")[1]) for x in lines if "time (seconds)" in x)
        inner = [float(x[8:]) for x in done.stdout.splitlines() if x.startswith("SECONDS=")]
        rss = int(line.split(":")[1]) / 1024
        return Timing(name, seconds, rss, inner[0] if inner else None, cpu)
    import psutil

    start = time.perf_counter()
    process = psutil.Popen(command, env=full_env, stdout=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.02)
    stdout = process.stdout.read() if process.stdout else ""
    inner = [float(x[8:]) for x in stdout.splitlines() if x.startswith("SECONDS=")]
    return Timing(name, time.perf_counter() - start, peak / 2**20, inner[0] if inner else None)


RAW = "raw read pass (rasterio, row bands)"
MODE = "geotiler rescale --method mode"
NEAR = "geotiler rescale --method near"
NEAR_RAW = "geotiler rescale --method near --compress none"  # gdal_translate's raw output
CLI = "geotiler rescale (the CLI, all commands imported)"
WARP2 = "gdalwarp -r mode -multi -wo NUM_THREADS=2 -wm 1024"
TRANSLATE_MODE = "gdal_translate -r mode -outsize 10% 10%"
TRANSLATE_NEAR = "gdal_translate -r nearest -outsize 10% 10%"


def contenders(mask: Path, work: Path, gdal: bool, only: str | None) -> dict[str, list[str]]:
    """Command line of every contender, by name."""
    ours = [sys.executable, "-c", OURS.format(factor=FACTOR), str(mask)]
    command = str(Path(sys.executable).with_name("geotiler"))
    runs = {
        RAW: [sys.executable, "-c", RAW_READ, str(mask)],
        MODE: [*ours, str(work / "mode.tif"), "mode"],
        NEAR: [*ours, str(work / "near.tif"), "near"],
        NEAR_RAW: [*ours, str(work / "near_raw.tif"), "near", "none"],
        CLI: [
            command,
            "rescale",
            str(mask),
            "--factor",
            str(FACTOR),
            "-o",
            str(work / "c.tif"),
            "--overwrite",
            "-q",
        ],
    }
    if gdal:
        warp = ["gdalwarp", "-q", "-overwrite", "-tr", str(FACTOR), str(FACTOR), "-r", "mode"]
        translate = ["gdal_translate", "-q", "-outsize", "10%", "10%", "-r"]
        runs[WARP2] = [*warp, "-multi", "-wo", "NUM_THREADS=2", "-wm", "1024"]
        runs[WARP2] += [str(mask), str(work / "warp2.tif")]
        runs["gdalwarp -r mode"] = [*warp, str(mask), str(work / "warp.tif")]
        runs[TRANSLATE_MODE] = [*translate, "mode", str(mask), str(work / "tmode.tif")]
        runs[TRANSLATE_NEAR] = [*translate, "nearest", str(mask), str(work / "tnear.tif")]
    if only == "near":
        return {k: v for k, v in runs.items() if k in (RAW, NEAR, NEAR_RAW, TRANSLATE_NEAR)}
    if only == "mode":
        return {k: v for k, v in runs.items() if k not in (NEAR, NEAR_RAW, TRANSLATE_NEAR)}
    return runs


def report(timings: dict[str, Timing], source_px: int) -> None:
    """The table, the goals of the issue, and the extrapolation to the full mask."""
    rate = {name: source_px / t.seconds / 1e6 for name, t in timings.items()}
    print(f"\nsource {source_px / 1e6:,.0f} Mpx, factor {FACTOR}; whole-process wall time")
    head = f"{'contender':<52} {'s':>8} {'CPU s':>7} {'Mpx/s':>8} {'peak RSS MB':>12}"
    print(f"{head} {'work alone':>16}")
    for name, t in timings.items():
        alone = (
            f"{t.inner_seconds:6.2f} s {source_px / t.inner_seconds / 1e6:5.0f}"
            if t.inner_seconds
            else ""
        )
        cpu = f"{t.cpu_seconds:7.2f}" if t.cpu_seconds is not None else f"{'':7}"
        row = f"{name:<52} {t.seconds:8.2f} {cpu} {rate[name]:8.0f} {t.peak_rss_mb:12.0f}"
        print(f"{row} {alone:>16}")
    goals = [(MODE, RAW, 0.5), (MODE, WARP2, 5.0), (MODE, TRANSLATE_MODE, 2.0)]
    goals += [(NEAR, TRANSLATE_NEAR, 1.0), (NEAR_RAW, TRANSLATE_NEAR, 1.0)]
    print("\nratios (goal)")
    for ours, theirs, need in goals:
        if theirs in rate and ours in rate:
            value = rate[ours] / rate[theirs]
            verdict = "ok" if value >= need else "MISSED"
            print(f"  {ours[17:]} / {theirs:<52} {value:6.2f}x (>= {need:g}x) {verdict}")
    worst = max(timings[k].peak_rss_mb for k in (MODE, NEAR) if k in timings)
    print(f"  our peak RSS {worst:.0f} MB (<= 1024 MB) {'ok' if worst <= 1024 else 'MISSED'}")
    print("\nextrapolated to the full 300000 x 300000 mask (90 Gpx; ours: start-up + work rate):")
    for name, t in timings.items():
        if t.inner_seconds:
            seconds = (t.seconds - t.inner_seconds) + FULL_PX * t.inner_seconds / source_px
        else:
            seconds = FULL_PX * t.seconds / source_px
        print(f"  {name:<52} {seconds / 60:7.1f} min")


def _seconds(timing: Timing) -> float:
    return timing.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=30000, help="square mask side (px)")
    parser.add_argument("--rows", type=int, help="mask rows (with --cols, overrides --size)")
    parser.add_argument("--cols", type=int, help="mask cols")
    parser.add_argument("--cache-dir", type=Path, help="where the generated mask is kept")
    parser.add_argument("--no-gdal", action="store_true", help="skip the GDAL tools")
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (median kept)")
    parser.add_argument("--deflate", action="store_true", help="DEFLATE strips (full-size run's)")
    parser.add_argument("--only", choices=["near", "mode"], help="just one method's contenders")
    args = parser.parse_args()
    rows, cols = (args.rows, args.cols) if args.rows and args.cols else (args.size, args.size)
    cache = args.cache_dir or Path(tempfile.gettempdir()) / "geotiler-bench-rescale"
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.deflate:
        from bench_fullsize import generate_mask

        mask = generate_mask(cache / f"mask_{rows}x{cols}_deflate.tif", rows, cols, noise=0.01)
    else:
        mask = generate(cache / f"mask_{rows}x{cols}_strip.tif", rows, cols)
    print(f"mask {mask} ready in {time.perf_counter() - started:.1f} s")
    from bench_fullsize import machine

    print(f"{machine()}; load average {os.getloadavg()[0]:.1f} before")
    gdal = not args.no_gdal and shutil.which("gdalwarp") is not None
    with tempfile.TemporaryDirectory(dir=cache) as folder:
        timings = {}
        for name, command in contenders(mask, Path(folder), gdal, args.only).items():
            runs = sorted((measure(name, command) for _ in range(args.repeat)), key=_seconds)
            timings[name] = runs[len(runs) // 2]
            load = os.getloadavg()[0]
            walls = ", ".join(f"{t.seconds:.2f}" for t in runs)
            print(f"  {name}: {walls} s (load {load:.1f} after)", flush=True)
    report(timings, rows * cols)


if __name__ == "__main__":
    main()
