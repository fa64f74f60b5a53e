from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geotiler.cli import app

REPO_CATALOG = Path(__file__).parents[1] / "data_catalog.yaml"


def test_help_lists_commands(runner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output


def test_version(runner) -> None:
    from geotiler import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_shell_completion_is_offered(runner) -> None:
    assert "--install-completion" in runner.invoke(app, ["--help"]).output
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="geotiler")
    assert script.exit_code == 0 and "_geotiler_completion" in script.output


def test_every_command_has_help_with_an_example(runner) -> None:
    names = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
    assert "info" in names
    for name in names:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Example" in result.output, name


def test_info_describes_a_class_raster(runner, write_raster, blobby_mask) -> None:
    path = write_raster("mask.tif", blobby_mask(120, 150), nodata=0)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "120 x 150 px" in result.output
    assert "EPSG:32631" in result.output
    assert "class histogram" in result.output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.tif", "file not found"),
        (lambda tmp: _text(tmp / "notes.txt"), "not a raster GDAL can read"),
    ],
)
def test_info_bad_input_is_one_line_and_exit_1(runner, tmp_path: Path, make, message) -> None:
    path = make(tmp_path)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 1
    assert message in result.output
    assert str(path.name) in result.output
    assert "Traceback" not in result.output


def test_bad_option_exits_2(runner, write_raster) -> None:
    path = write_raster("a.tif", np.zeros((4, 4), np.uint8))
    result = runner.invoke(app, ["info", str(path), "--sample-px", "lots"])
    assert result.exit_code == 2


@pytest.mark.parametrize("command", ["tile", "filter"])
def test_short_f_is_not_filter(runner, tmp_path, command) -> None:
    # In rio, -f is the output format: geotiler leaves it free rather than mean --filter.
    result = runner.invoke(app, [command, str(tmp_path / "tiles.zarr"), "-f", "nodata"])
    assert result.exit_code == 2 and "No such option: -f" in result.output
    help_text = runner.invoke(app, [command, "--help"], terminal_width=200).output
    assert "--filter" in help_text and "-f," not in help_text


def _text(path: Path) -> Path:
    path.write_text("hello")
    return path


def test_predict_of_a_missing_scene_names_it_as_missing(runner, tmp_path: Path) -> None:
    from geotiler.catalog import ClassInfo, ClassTable
    from tests.conftest import toy_unet_checkpoint

    classes = ClassTable(name="t", nodata=0, classes=(ClassInfo(id=1, name="a", color="#ff0000"),))
    model = toy_unet_checkpoint(tmp_path / "m.pt", classes, num_classes=2)
    for output in ("map.tif", "maps/"):
        result = runner.invoke(app, ["predict", str(tmp_path / "nope.tif"), "-o",
                                     str(tmp_path / output), "--model", str(model)])  # fmt: skip
        assert result.exit_code == 1
        assert "nope.tif: scene file not found" in result.output, result.output
    assert not (tmp_path / "maps").exists()
