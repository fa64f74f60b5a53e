"""Predict from memory: numpy arrays and xarray DataArrays, the same map as predict_scene."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rioxarray
from test_predict import CLASSES, PixelModel, make_scene, pixelwise_truth

from geotiler.errors import InputError
from geotiler.predict import predict_scene
from geotiler.predict_array import predict_array


def _model(context_px: int = 1) -> PixelModel:
    model = PixelModel(context_px)
    model.classes = CLASSES  # type: ignore[attr-defined]
    return model


def test_a_dataarray_gives_the_map_predict_scene_writes_with_its_coords_and_crs(
    write_raster, tmp_path
) -> None:
    scene = make_scene(write_raster, rows=70, cols=90)
    model = _model(context_px=7)
    predict_scene(scene, tmp_path / "map.tif", predictor=model, classes=CLASSES, overlap_px=8)
    with rasterio.open(tmp_path / "map.tif") as dataset:
        written = dataset.read(1)
    data = rioxarray.open_rasterio(scene)
    result = predict_array(model, data, overlap=8)
    assert result.classes.dims == ("y", "x")
    np.testing.assert_array_equal(result.classes["x"], data["x"])
    assert result.classes.rio.crs == data.rio.crs
    assert result.classes.rio.transform() == data.rio.transform()
    assert result.classes.rio.nodata == 0
    assert (result.classes.values == written).mean() > 0.999
    assert result.probabilities.dims == ("class", "y", "x")
    assert list(result.probabilities["class"].values) == [1, 2, 3]
    valid = written != 0
    np.testing.assert_allclose(result.probabilities.values.sum(axis=0)[valid], 1, atol=1e-4)


def test_a_numpy_array_with_named_bands_is_reordered_to_the_model(write_raster) -> None:
    scene = make_scene(write_raster, rows=40, cols=50, nodata_cols=3)
    with rasterio.open(scene) as dataset:
        values = dataset.read()
    shuffled = values[[2, 0, 1]]
    result = predict_array(_model(), shuffled, bands=["B3", "B1", "B2"], nodata=0)
    assert isinstance(result.classes, np.ndarray)
    np.testing.assert_array_equal(result.classes, pixelwise_truth(scene))
    assert result.class_ids == (1, 2, 3)


def test_bad_arrays_say_what_is_wrong() -> None:
    with pytest.raises(InputError, match=r"\(bands, rows, cols\)"):
        predict_array(_model(), np.zeros((8, 8)))
    with pytest.raises(InputError, match="missing B3"):
        predict_array(_model(), np.zeros((2, 8, 8)), bands=["B1", "B2"])
