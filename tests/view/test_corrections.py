"""Corrections: saved at every edit, undo and redo, reloaded, refused clearly when broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from geotiler.errors import InputError
from geotiler.view.corrections import Correction, CorrectionLog, read_corrections


def _square(x: float, class_id: int) -> Correction:
    return Correction.now([x, x + 10, x + 10, x], [0, 0, 10, 10], class_id, "ann")


def test_every_edit_is_saved_and_undo_redo_step_through_them(tmp_path: Path) -> None:
    path = tmp_path / "corrections.gpkg"
    log = CorrectionLog(path, "EPSG:32631")
    log.add(_square(0, 3))
    log.add(_square(20, 5))
    saved = read_corrections(path)
    assert list(saved["class_id"]) == [3, 5]
    assert list(saved["author"]) == ["ann", "ann"]
    assert saved.crs.to_epsg() == 32631
    assert log.undo()
    assert list(read_corrections(path)["class_id"]) == [3]
    assert log.redo()
    assert list(read_corrections(path)["class_id"]) == [3, 5]
    assert log.undo() and log.undo() and not log.undo()
    assert len(read_corrections(path)) == 0
    assert log.redo()
    log.add(_square(40, 1))  # a new edit drops what could be redone
    assert not log.can_redo
    reloaded = CorrectionLog(path, "EPSG:32631")  # what a page reload sees
    assert [c.class_id for c in reloaded.items] == [3, 1]
    assert reloaded.items[0].xs == (0.0, 10.0, 10.0, 0.0)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_pixel_space_corrections_have_no_crs(tmp_path: Path) -> None:
    path = tmp_path / "c.gpkg"
    CorrectionLog(path, None).add(_square(0, 2))
    assert read_corrections(path).crs is None


def test_bad_corrections_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="corrections file not found"):
        read_corrections(tmp_path / "missing.gpkg")
    junk = tmp_path / "junk.gpkg"
    junk.write_text("not a geopackage")
    with pytest.raises(InputError, match="not a corrections GeoPackage"):
        read_corrections(junk)
