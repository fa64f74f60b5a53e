"""The full-size run: rescale the 300000 x 300000 mask and tile a 30000² scene, measured.

Generates into ``--dir`` (not the repository), with bounded memory, every block of each file
one of a small pool compressed once (:mod:`tiffpool`: hours of DEFLATE on 2 cores otherwise):

- ``mask.tif``: a ``--cols`` x ``--rows`` blobby 12-class uint8 mask in one-row strips (the real
  Catalonia file's layout) with a nodata strip on the left, DEFLATE-compressed so 90 Gpx fit on
  a small disk, with a class table so the rescaled mask carries it;
- ``scene.tif``: a ``--scene`` x ``--scene`` 10-band uint16 scene (tiled 512 px, DEFLATE) on the
  mask's grid zoomed out ``--factor`` x.

Then runs each contender as its own process, one after the other, with whole-process wall time
and peak RSS (``/usr/bin/time -v``): a raw read pass over the mask (rasterio, full-width row
bands: the disk- and decode-bound floor), ``geotiler rescale --method mode`` and ``near``,
``gdal_translate -r mode`` and ``-r nearest`` (``-outsize 10% 10%``), ``gdalwarp -r mode -multi``
(stopped after ``--warp-timeout`` s); then ``geotiler tile`` of the scene + the rescaled mask at
300 px against a raw read pass over both. Prints the tables and writes them to
``--dir/results.json``. Deletes the generated data at the end unless ``--keep``.

It takes an hour or more; run it in the background, e.g.

    nice -n 10 python benchmarks/bench_fullsize.py --dir /work/fullsize > fullsize.log 2>&1 &

and ``--cols 30000 --rows 30000 --scene 3000`` for a quick smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from bench_rescale import RAW_READ
from rasterio.crs import CRS
from tiffpool import deflate, predict16, write_tiff

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.io import write_class_metadata

RAW = "raw read pass (rasterio, row bands)"
MODE = "geotiler rescale --method mode"
NEAR = "geotiler rescale --method near"

BANDS = 10
CLASSES = 12
BLOB_PX = 40
POOL_PATTERNS = 64
POOL_TILES = 48
TILE_PX = 512
ORIGIN = (240000.0, 4780000.0)
SCENE_RAW_READ = """
import sys, rasterio
from rasterio.windows import Window
for name in sys.argv[1:]:
    with rasterio.open(name) as src:
        step = src.block_shapes[0][0] * max(1, 1024 // src.block_shapes[0][0])
        for row in range(0, src.height, step):
            src.read(window=Window(0, row, src.width, min(step, src.height - row)))
"""


def class_table() -> ClassTable:
    classes = tuple(
        ClassInfo(id=i, name=f"class {i}", color=f"#{(i * 20) % 256:02x}80{(255 - i * 20):02x}")
        for i in range(1, CLASSES + 1)
    )
    return ClassTable(name="fullsize", nodata=0, classes=classes)


def generate_mask(path: Path, rows: int, cols: int, *, noise: float, seed: int = 0) -> Path:
    """Blobs of ``BLOB_PX`` px with ``noise`` of the pixels random, in one-row DEFLATE strips.

    Each band of ``BLOB_PX`` rows is one of ``POOL_PATTERNS`` random rows of blobs (each row of it
    with its own noise), compressed once (see :mod:`tiffpool`).
    """
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(POOL_PATTERNS):
        blobs = rng.integers(1, CLASSES + 1, cols // BLOB_PX + 1, np.uint8)
        band = np.repeat(blobs, BLOB_PX)[:cols]
        for _ in range(BLOB_PX):
            row = band.copy()
            count = int(cols * noise)
            row[rng.integers(0, cols, count)] = rng.integers(1, CLASSES + 1, count, np.uint8)
            row[: cols // 10] = 0
            pool.append(deflate(row.tobytes()))
    pattern = rng.integers(0, POOL_PATTERNS, rows // BLOB_PX + 1)
    partial = path.with_name(path.name + ".partial.tif")
    write_tiff(
        partial, width=cols, height=rows, samples=1, bits=8, layout=None, blocks=rows,
        pick=lambda r: int(pattern[r // BLOB_PX]) * BLOB_PX + r % BLOB_PX, pool=pool,
    )  # fmt: skip
    georeference(partial, 1.0, nodata=0)
    write_class_metadata(partial, class_table())
    os.replace(partial, path)
    os.replace(partial.with_name(partial.name + ".aux.xml"), path.with_name(path.name + ".aux.xml"))
    return path


def generate_scene(path: Path, size: int, pixel: float, *, seed: int = 1) -> Path:
    """A 10-band uint16 scene of class-like patches with 5 bits of noise, 512 px DEFLATE tiles.

    Each tile is one of ``POOL_TILES`` tiles, compressed once (predictor 2, see :mod:`tiffpool`).
    """
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    spectra = rng.integers(500, 4000, (CLASSES + 1, BANDS)).astype(np.uint16)
    pool = []
    for _ in range(POOL_TILES):
        patches = rng.integers(0, CLASSES + 1, (TILE_PX // 16, TILE_PX // 16))
        labels = np.repeat(np.repeat(patches, 16, axis=0), 16, axis=1)
        pixels = spectra[labels] + rng.integers(0, 32, (TILE_PX, TILE_PX, BANDS), np.uint16)
        pool.append(deflate(predict16(pixels).astype("<u2").tobytes()))
    across = -(-size // TILE_PX)
    choice = rng.integers(0, POOL_TILES, across * across)
    partial = path.with_name(path.name + ".partial.tif")
    write_tiff(
        partial, width=size, height=size, samples=BANDS, bits=16, layout=(TILE_PX, TILE_PX),
        blocks=across * across, pick=lambda i: int(choice[i]), pool=pool, predictor=2,
    )  # fmt: skip
    georeference(partial, pixel, nodata=None)
    os.replace(partial, path)
    return path


def georeference(path: Path, pixel: float, *, nodata: float | None) -> None:
    """CRS, transform and nodata onto a file written by :mod:`tiffpool` (GDAL appends them)."""
    with rasterio.open(path, "r+") as dataset:
        dataset.crs = CRS.from_epsg(32631)
        dataset.transform = Affine(pixel, 0, ORIGIN[0], 0, -pixel, ORIGIN[1])
        if nodata is not None:
            dataset.nodata = nodata


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {memory:.0f} GB RAM, Python "
        f"{platform.python_version()}, rasterio {rasterio.__version__} (GDAL "
        f"{rasterio.__gdal_version__}), {_gdal_tools_version()}"
    )


def _gdal_tools_version() -> str:
    if shutil.which("gdal_translate") is None:
        return "no gdal-bin"
    done = subprocess.run(["gdal_translate", "--version"], capture_output=True, text=True)
    return f"gdal-bin {done.stdout.split(',')[0].replace('GDAL ', '')}"


@dataclass(frozen=True)
class Timing:
    """One contender's run: wall and CPU (user + system) seconds, peak RSS."""

    seconds: float
    cpu_seconds: float
    peak_rss_mb: float


def measure(command: list[str]) -> Timing:
    """Run ``command`` under ``/usr/bin/time -v``; RuntimeError with its stderr if it fails."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    fields = dict(
        line.strip().split(": ", 1) for line in done.stderr.splitlines() if ": " in line.strip()
    )
    cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
    return Timing(seconds, cpu, int(fields["Maximum resident set size (kbytes)"]) / 1024)


def timed(name: str, command: list[str], *, timeout: float | None = None) -> Timing | None:
    """:func:`measure` with an optional time limit (None when it ran past it or failed)."""
    if timeout is not None:
        command = ["timeout", str(int(timeout)), *command]
    load = os.getloadavg()[0]
    try:
        result = measure(command)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        print(f"  {name}: did not finish: {' / '.join(lines[-3:])}", flush=True)
        return None
    print(
        f"  {name}: {result.seconds:.1f} s, CPU {result.cpu_seconds:.1f} s, peak RSS "
        f"{result.peak_rss_mb:.0f} MB (load {load:.1f} before)",
        flush=True,
    )
    return result


def geotiler_command() -> list[str]:
    return [sys.executable, "-m", "geotiler"]


def ours_rescale(mask: Path, work: Path, factor: int) -> dict[str, list[str]]:
    """The raw read pass and our two methods, by name."""
    gt = [*geotiler_command(), "rescale", str(mask), "--factor", str(factor), "-q"]
    return {
        RAW: [sys.executable, "-c", RAW_READ, str(mask)],
        MODE: [*gt, "--method", "mode", "-o", str(work / "mask_mode.tif")],
        NEAR: [*gt, "--method", "near", "-o", str(work / "mask_near.tif")],
    }


def gdal_rescale(mask: Path, work: Path, factor: int) -> dict[str, list[str]]:
    """``gdal_translate -r mode|nearest``, by name (none without gdal-bin)."""
    if not shutil.which("gdal_translate"):
        return {}
    pct = f"{100 / factor:g}%"
    translate = ["gdal_translate", "-q", "-outsize", pct, pct, "-r"]
    return {
        "gdal_translate -r nearest": [*translate, "nearest", str(mask), str(work / "t_near.tif")],
        "gdal_translate -r mode": [*translate, "mode", str(mask), str(work / "t_mode.tif")],
    }


def warp_run(mask: Path, work: Path, factor: int, timeout: float) -> dict[str, Timing]:
    """``gdalwarp -r mode -multi`` (2 threads, 1 GB warp memory), stopped after ``timeout``."""
    if not shutil.which("gdalwarp"):
        return {}
    name = "gdalwarp -r mode -multi -wo NUM_THREADS=2"
    command = ["gdalwarp", "-q", "-tr", str(factor), str(factor), "-r", "mode", "-multi"]
    command += ["-wo", "NUM_THREADS=2", "-wm", "1024", str(mask), str(work / "warp.tif")]
    result = timed(name, command, timeout=timeout)
    (work / "warp.tif").unlink(missing_ok=True)
    return {} if result is None else {name: result}


def tile_runs(scene: Path, mask: Path, work: Path) -> tuple[dict[str, Timing], int]:
    """``geotiler tile`` of the scene + rescaled mask at 300 px vs a raw read of both."""
    store = work / "tiles.zarr"
    raw = [sys.executable, "-c", SCENE_RAW_READ, str(scene), str(mask)]
    tile = [*geotiler_command(), "tile", str(scene), "--mask", str(mask), "--size", "300"]
    tile += ["-o", str(store), "-q"]
    results: dict[str, Timing] = {}
    for name, command in (("raw read pass (scene + mask)", raw), ("geotiler tile", tile)):
        os.sync()
        result = timed(name, command)
        if result is not None:
            results[name] = result
    tiles = 0
    if store.exists():
        import zarr

        tiles = int(zarr.open_array(str(store / "masks"), mode="r").shape[0])
        shutil.rmtree(store)
    return results, tiles


class Results:
    """The timings so far, saved to ``path`` after each one (a stopped run keeps them)."""

    def __init__(self, path: Path, machine: str) -> None:
        self.path = path
        self.machine = machine
        self.tiles = 0
        self.runs: dict[str, dict[str, Timing]] = {"rescale": {}, "tile": {}}

    def add(self, stage: str, name: str, timing: Timing | None) -> None:
        if timing is None:
            return
        self.runs[stage][name] = timing
        runs = {stage: {n: vars(t) for n, t in got.items()} for stage, got in self.runs.items()}
        payload = {"machine": self.machine, "tiles": self.tiles, "runs": runs}
        self.path.write_text(json.dumps(payload, indent=1))


def print_table(title: str, timings: dict[str, Timing], units: float, unit: str) -> None:
    """Wall and CPU seconds, the rate over wall time and per CPU second, peak RSS."""
    print(f"\n{title}")
    print(
        f"{'contender':<44} {'wall s':>8} {'CPU s':>8} {unit:>10} {unit + ' per CPU-s':>16} "
        f"{'peak RSS MB':>12}"
    )
    for name, t in timings.items():
        print(
            f"{name:<44} {t.seconds:8.1f} {t.cpu_seconds:8.1f} {units / t.seconds:10.1f} "
            f"{units / max(t.cpu_seconds, 1e-9):16.1f} {t.peak_rss_mb:12.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/work/fullsize"))
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--cols", type=int, default=300_000)
    parser.add_argument("--scene", type=int, default=30_000, help="scene side (px)")
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.01, help="share of random mask pixels")
    parser.add_argument("--warp-timeout", type=float, default=3600)
    parser.add_argument("--no-warp", action="store_true", help="skip gdalwarp")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()
    folder = args.dir
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / "out"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    print(f"machine: {machine()}", flush=True)
    started = time.perf_counter()
    mask = generate_mask(folder / "mask.tif", args.rows, args.cols, noise=args.noise)
    print(
        f"mask {args.rows} x {args.cols}: {mask.stat().st_size / 2**30:.1f} GiB on disk, "
        f"ready after {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    scene = generate_scene(folder / "scene.tif", args.scene, float(args.factor))
    print(
        f"scene {args.scene}² x {BANDS}: {scene.stat().st_size / 2**30:.1f} GiB on disk, "
        f"ready after {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    results = Results(folder / "results.json", machine())
    source_px = args.rows * args.cols
    try:
        for name, command in ours_rescale(mask, work, args.factor).items():
            results.add("rescale", name, timed(name, command))
        rescaled = work / "mask_mode.tif"
        if rescaled.exists() and args.scene * args.factor == args.cols == args.rows:
            timings, count = tile_runs(scene, rescaled, work)
            results.tiles = count
            for name, timing in timings.items():
                results.add("tile", name, timing)
        for name, command in gdal_rescale(mask, work, args.factor).items():
            results.add("rescale", name, timed(name, command))
            Path(command[-1]).unlink(missing_ok=True)
        if not args.no_warp:
            for name, timing in warp_run(mask, work, args.factor, args.warp_timeout).items():
                results.add("rescale", name, timing)
        print_table(f"rescale {source_px / 1e9:.0f} Gpx, factor {args.factor}",
                    results.runs["rescale"], source_px / 1e6, "Mpx/s")  # fmt: skip
        print_table(f"tile {args.scene}² x {BANDS} bands at 300 px ({results.tiles} tiles)",
                    results.runs["tile"], results.tiles, "tiles/s")  # fmt: skip
    finally:
        if not args.keep:
            for path in (mask, mask.with_name(mask.name + ".aux.xml"), scene):
                path.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ndone after {(time.perf_counter() - started) / 60:.0f} min", flush=True)


if __name__ == "__main__":
    main()
