"""Clouds at predict on the generated demo: cloudy pixels are never a land class, and a second
season maps what the first one could not see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotiler.cli import app

REFERENCE = Path(__file__).parents[1] / "models" / "reference" / "demo-unet-tiny.pt"


@pytest.mark.slow
def test_april_clouds_are_nodata_alone_and_mapped_from_august(runner, tmp_path) -> None:
    data = tmp_path / "data"
    made = runner.invoke(app, ["synth", str(data), "--size", "128", "--clouds", "0.2", "-q"])
    assert made.exit_code == 0, made.output
    april, august = data / "scene_april.tif", data / "scene_august.tif"
    with rasterio.open(data / "clouds_april.tif") as dataset:
        april_clouds = np.isin(dataset.read(1), (1, 2))
    with rasterio.open(data / "clouds_august.tif") as dataset:
        august_clouds = np.isin(dataset.read(1), (1, 2))
    assert april_clouds.any()

    alone = tmp_path / "april.tif"
    args = ["predict", str(april), "-o", str(alone), "--model", str(REFERENCE)]
    result = runner.invoke(app, [*args, "--clouds", str(data / "clouds_april.tif")])
    assert result.exit_code == 0, result.output
    assert "under clouds" in " ".join(result.output.split())
    with rasterio.open(alone) as dataset:
        labels, nodata = dataset.read(1), dataset.nodata
    assert (labels[april_clouds] == nodata).all()

    fused = tmp_path / "fused.tif"
    args = ["predict", str(april), str(august), "-o", str(fused), "--model", str(REFERENCE)]
    args += ["--clouds", f"scene_april={data / 'clouds_april.tif'}"]
    args += ["--clouds", f"scene_august={data / 'clouds_august.tif'}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with rasterio.open(fused) as dataset:
        labels = dataset.read(1)
    seen_in_august = april_clouds & ~august_clouds
    assert seen_in_august.any()
    assert (labels[seen_in_august] != nodata).all()  # mapped from August
    assert (labels[april_clouds & august_clouds] == nodata).all()
