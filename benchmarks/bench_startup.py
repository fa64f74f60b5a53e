"""Start-up cost of geotiler's command paths: whole-process time, CPU, and what each imports.

Runs each command as a fresh process ``--repeat`` times (median wall and CPU seconds, from
``/usr/bin/time``) beside a bare ``python -c pass``, lists the heavy packages each path loads,
and, from one more run under ``python -X importtime``, its costliest top-level imports. The
rescales run on a generated 2000 x 2000 blobby mask (4 Mpx: the work itself takes milliseconds,
so their time is start-up), and on ``--size`` if given.

    python benchmarks/bench_startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HEAVY = ("numpy", "rasterio", "pydantic", "yaml", "dask", "distributed", "torch", "numba", "zarr")
PROBE = (
    "import sys, json, atexit\n"
    "atexit.register(lambda: print('LOADED=' + json.dumps("
    f"[m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr))\n"
    "sys.argv = ['geotiler', *{args!r}]\n"
    "from geotiler.cli import main\n"
    "main()\n"
)


def run(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds and stderr of one run."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as times:
        done = subprocess.run(
            ["/usr/bin/time", "-o", times.name, "-f", "%e %U %S", *command],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-1500:]}")
        wall, user, system = (float(v) for v in times.read().split()[-3:])
    return wall, user + system, done.stderr


def top_imports(args: list[str], count: int = 5) -> list[tuple[str, float]]:
    """The ``count`` costliest top-level imports of a run (``-X importtime``, cumulative ms)."""
    code = PROBE.format(args=args)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue  # the header
        if name.startswith(" ") and not name.startswith("  "):  # top-level: one space
            rows.append((name.strip(), int(cumulative) / 1000))
    return sorted(rows, key=lambda row: -row[1])[:count]


def make_mask(path: Path, size: int) -> Path:
    if not path.exists():
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_rescale import generate

        generate(path, size, size)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", type=int, help="also rescale a SIZE x SIZE mask")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="geotiler-startup-") as tmp:
        measure_all(Path(tmp), args.repeat, args.size)


def measure_all(folder: Path, repeat: int, size: int | None) -> None:
    """The table and the import lists (see the module docstring), working in ``folder``."""
    small = make_mask(folder / "mask_2000.tif", 2000)
    paths: dict[str, list[str]] = {
        "geotiler --help": ["--help"],
        "geotiler rescale --help": ["rescale", "--help"],
        "geotiler rescale 2000² --method mode": [
            "rescale", str(small), "--factor", "10", "-o", str(folder / "m.tif"), "--overwrite",
            "-q",
        ],
        "geotiler rescale 2000² --method near": [
            "rescale", str(small), "--factor", "10", "--method", "near",
            "-o", str(folder / "n.tif"), "--overwrite", "-q",
        ],
    }  # fmt: skip
    if size:
        big = make_mask(folder / f"mask_{size}.tif", size)
        paths[f"geotiler rescale {size}² --method mode"] = [
            "rescale", str(big), "--factor", "10", "-o", str(folder / "b.tif"), "--overwrite",
            "-q",
        ]  # fmt: skip
    baseline = [run([sys.executable, "-c", "pass"]) for _ in range(repeat)]
    base_wall = statistics.median(r[0] for r in baseline)
    base_cpu = statistics.median(r[1] for r in baseline)
    print(f"python -c pass: {base_wall:.2f} s wall, {base_cpu:.2f} s CPU (medians)\n")
    print(f"{'command':<40} {'wall s':>7} {'CPU s':>6}  heavy imports")
    for name, argv in paths.items():
        runs = [run([sys.executable, "-c", PROBE.format(args=argv)]) for _ in range(repeat)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        loaded = next(json.loads(x[7:]) for x in runs[0][2].splitlines() if x.startswith("LOADED="))
        print(f"{name:<40} {wall:7.2f} {cpu:6.2f}  {', '.join(loaded) or '-'}")
    print("\ncostliest top-level imports (python -X importtime, cumulative ms, one run):")
    for name, argv in paths.items():
        shown = ", ".join(f"{module} {ms:.0f}" for module, ms in top_imports(argv))
        print(f"  {name}: {shown}")


if __name__ == "__main__":
    main()
