"""Every command of the README's CLI tour (the code block under "## The CLI"), run as written on a
tiny generated demo in a temporary folder with a temporary catalog.

The block is read from README.md, so a line that stops working fails here. Only what the tiny
data needs is changed (``SIZES``); lines whose inputs a test cannot make are skipped, each with
its reason (``SKIPPED``).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import rasterio
from test_pipeline import tiny_world

from geotiler.cli import app

REPO = Path(__file__).parents[1]
SKIPPED = {
    "chips/*.jpg": "RGB-coded JPEG/PNG chips: that layout is covered by tests/test_many_scenes.py",
    "mit-b0/model.safetensors": "pretrained SegFormer weights: nothing is downloaded in tests",
    "torchrun": "launches worker processes with torchrun (DDP is tested in tests/train)",
    "pipelines/catalonia.yaml": "the real Catalonia data ($GEOTILER_DATA_DIR) is not in tests",
}
SIZES = {
    "--size 300": "--size 32",  # the tiny demo's scenes are 96 px
    "--epochs 40": "--epochs 1",
    "--time 10m": "--time 10s",
    "--overlap 50": "--overlap 8",
}


def tour_lines(readme: str) -> list[str]:
    section = readme.split("## The CLI", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's CLI section has no bash block"
    lines = []
    for raw in block.group(1).splitlines():
        command = raw.split("  #", 1)[0].strip()
        if command:
            lines.append(command)
    return lines


def _inputs(root: Path) -> None:
    """The files the tour names, made from the generated demo."""
    data = root / "work" / "demo" / "data"
    copies = {
        "scene.tif": "scene_april.tif", "apr.tif": "scene_april.tif",
        "aug.tif": "scene_august.tif", "s2.tif": "scene_august.tif",
        "apr_clouds.tif": "clouds_april.tif", "mask.tif": "mask_1m.tif",
        "mask_1m.tif": "mask_1m.tif", "images/scene.tif": "scene_april.tif",
        "masks/scene.tif": "mask_1m.tif",
    }  # fmt: skip
    for target, source in copies.items():
        (root / target).parent.mkdir(exist_ok=True)
        shutil.copy(data / source, root / target)
    with rasterio.open(root / "scene.tif") as ds:
        left, bottom, right, top = ds.bounds
        crs = ds.crs.to_string()
    ring = [[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]
    (root / "region.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": crs}},
                "features": [
                    {"type": "Feature", "properties": {},
                     "geometry": {"type": "Polygon", "coordinates": [ring]}},
                ],
            }
        )
    )  # fmt: skip


@pytest.mark.slow
def test_every_readme_tour_command_runs(runner, tmp_path: Path, monkeypatch) -> None:
    catalog, _ = tiny_world(tmp_path)
    monkeypatch.chdir(tmp_path)
    env = {"GEOTILER_CATALOG": str(catalog)}
    lines = tour_lines((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(lines) > 15
    ran: list[str] = []
    waiting: list[str] = []  # a line reading an output a later line of the tour writes
    for line in lines:
        if any(marker in line for marker in SKIPPED):
            continue
        if _missing_output(line, tmp_path):
            waiting.append(line)
            continue
        _run(runner, line, tmp_path, env)
        ran.append(line)
        for later in [w for w in waiting if not _missing_output(w, tmp_path)]:
            _run(runner, later, tmp_path, env)
            waiting.remove(later)
            ran.append(later)
    assert not waiting, f"their inputs never appeared: {waiting}"
    assert len(ran) >= 18


def _missing_output(line: str, root: Path) -> bool:
    return any(
        word.startswith("work/demo/") and not (root / word).exists() for word in shlex.split(line)
    )


def _run(runner, line: str, root: Path, env: dict[str, str]) -> None:
    for command in line.split("&&"):
        for big, small in SIZES.items():
            command = command.replace(big, small)
        argv = shlex.split(command)
        assert argv[0] == "geotiler", line
        if argv[1] == "train" and not {"--epochs", "--time", "--resume"} & set(argv):
            argv += ["--epochs", "1"]  # a bare train plans a CPU-sized budget: minutes
        # the lines are alternatives: several write tiles.zarr, map.tif or the default run folder
        written = None
        if "-o" in argv:
            written = root / argv[argv.index("-o") + 1]
        elif argv[1] == "train" and "--resume" not in argv:
            written = root / "work" / "demo" / "run"
        if written is not None:
            if written.is_dir():
                shutil.rmtree(written)
            written.unlink(missing_ok=True)
        if "run/best.pt" in command and not (root / "run").exists():
            shutil.copytree(root / "work" / "demo" / "run", root / "run")
        result = runner.invoke(app, [*argv[1:], "--quiet"], env=env)
        assert result.exit_code == 0, f"{command}\n{result.output}"
        if argv[1] == "synth":
            _inputs(root)
