"""What other tools read from geotiler's rasters: band scale, class names inside, sidecar merged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.cli import app
from geotiler.io import read_class_table, write_class_metadata
from tests.conftest import named_two_band_scene, toy_unet_checkpoint

CLASSES = ClassTable(
    name="toy",
    nodata=0,
    classes=(
        ClassInfo(id=1, name="field", color="#ffff00"),
        ClassInfo(id=2, name="Scrub, meadows and grasslands", color="#00aa00"),
    ),
)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return toy_unet_checkpoint(tmp_path / "run" / "best.pt", CLASSES)


@pytest.fixture
def scene(write_raster) -> Path:
    return named_two_band_scene(write_raster, 50, 60)


def _without_sidecar(path: Path) -> None:
    path.with_name(path.name + ".aux.xml").unlink(missing_ok=True)


@pytest.mark.parametrize("cog", [False, True])
def test_probabilities_carry_gdal_band_scale_and_names_inside(
    runner, model, scene, tmp_path, cog
) -> None:
    out, probs = tmp_path / "map.tif", tmp_path / "probs.tif"
    args = ["predict", str(scene), "-o", str(out), "--model", str(model), "-q"]
    args += ["--probabilities", str(probs), *(["--cog"] if cog else [])]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for path in (out, probs):
        _without_sidecar(path)
    with rasterio.open(probs) as dataset:
        assert dataset.scales == pytest.approx((1 / 254,) * 2)  # one band per class
        assert dataset.offsets == (0.0,) * 2
        assert "SCALE" not in dataset.tags()  # no free-text tag any more
        assert dataset.descriptions == ("field", "Scrub, meadows and grasslands")
        assert dataset.tags(2)["CLASS_ID"] == "2"
        scaled = dataset.read(masked=True).astype(np.float64) * dataset.scales[0]
    assert scaled.min() >= 0.0 and scaled.max() <= 1.0  # probabilities, once scaled
    with rasterio.open(out) as dataset:
        assert dataset.tags(1)["CLASS_2"] == "Scrub, meadows and grasslands"
        assert read_class_table(dataset).names[1] == "field"


def test_class_names_survive_a_lost_sidecar_and_our_tag(write_raster) -> None:
    path = write_raster("classes.tif", np.ones((20, 20), np.uint8), nodata=0)
    write_class_metadata(path, CLASSES)
    _without_sidecar(path)
    with rasterio.open(path, "r+") as dataset:
        dataset.update_tags(GEOTILER_CLASSES="")  # another tool dropped it
    with rasterio.open(path) as dataset:
        table = read_class_table(dataset)
    assert table is not None
    assert table.names == {1: "field", 2: "Scrub, meadows and grasslands"}


def test_an_existing_sidecar_is_merged_not_overwritten(write_raster) -> None:
    path = write_raster("classes.tif", np.ones((20, 20), np.uint8), nodata=0)
    sidecar = path.with_name(path.name + ".aux.xml")
    sidecar.write_text(
        '<PAMDataset><Metadata><MDI key="SOURCE">survey 2023</MDI></Metadata>'
        '<PAMRasterBand band="1"><Metadata><MDI key="STATISTICS_MEAN">1</MDI></Metadata>'
        "<CategoryNames><Category>old</Category></CategoryNames>"
        "<Histograms><HistItem><HistMin>-0.5</HistMin><HistMax>2.5</HistMax>"
        "<BucketCount>3</BucketCount><IncludeOutOfRange>0</IncludeOutOfRange>"
        "<Approximate>0</Approximate><HistCounts>0|400|0</HistCounts></HistItem></Histograms>"
        "</PAMRasterBand></PAMDataset>"
    )
    write_class_metadata(path, CLASSES)
    text = sidecar.read_text()
    assert "<Category>old</Category>" not in text and text.count("<CategoryNames>") == 1
    assert "<HistCounts>0|400|0</HistCounts>" in text  # only a sidecar can hold it: kept
    with rasterio.open(path) as dataset:
        # What the sidecar held is kept (GDAL may move some of it into the file on update).
        assert dataset.tags()["SOURCE"] == "survey 2023"
        assert dataset.tags(1)["STATISTICS_MEAN"] == "1"
        table = read_class_table(dataset)
    assert table is not None and table.names[2] == "Scrub, meadows and grasslands"
