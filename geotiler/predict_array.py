"""Predict from memory: class ids and probabilities for a numpy array or an xarray DataArray.

The in-memory counterpart of :func:`geotiler.predict.predict_scene` for notebooks: the same
sliding window, Hann blending, band matching by name and test-time augmentation, on an array
already loaded (``rioxarray.open_rasterio(...)``, a dask-backed cube computed, a numpy array).
Every predictor :func:`geotiler.inference.load_predictor` returns has it as ``predictor.predict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from geotiler.errors import InputError
from geotiler.predict import (
    Predictor,
    band_order,
    blend_window,
    check_overlap,
    d4_predict,
    tile_offsets,
)


@dataclass(frozen=True)
class ArrayPrediction:
    """What :func:`predict_array` returns: numpy arrays, or DataArrays for a DataArray input.

    Attributes:
        classes: ``(rows, cols)`` uint8 class ids; pixels with a nodata or non-finite band are
            the class table's nodata (255 when it has none).
        probabilities: ``(classes, rows, cols)`` float32, one plane per class id of the table
            (coordinate ``class`` of a DataArray); zero where ``classes`` is nodata.
        class_ids: The class id of each plane of ``probabilities``.
    """

    classes: Any
    probabilities: Any
    class_ids: tuple[int, ...]


def predict_array(
    predictor: Predictor,
    data: Any,
    *,
    bands: Sequence[str] | None = None,
    nodata: float | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    tta: bool = False,
) -> ArrayPrediction:
    """Class ids and probabilities for an in-memory ``(bands, rows, cols)`` image.

    Args:
        predictor: A loaded model (:func:`geotiler.inference.load_predictor`).
        data: A numpy array or an ``xarray.DataArray`` (e.g. from ``rioxarray.open_rasterio``),
            band axis first. A DataArray's coordinates, CRS and nodata carry over to the result.
        bands: The band names in ``data``'s order; default: a DataArray's ``band`` coordinate
            when it holds names, or its ``long_name`` attribute (rioxarray's band descriptions);
            unnamed bands are taken in the model's order.
        nodata: Pixel value meaning "no data" in every band; default: the DataArray's
            ``rio.nodata`` / ``_FillValue``. Non-finite values are nodata too.
        overlap: Pixels neighbouring windows share (default: a quarter of the model's tile).
        batch_size: Windows per model call.
        tta: Average the eight flips and rotations (8x slower, often a little better).

    Returns:
        The class map and per-class probabilities.

    Raises:
        InputError: not three dimensions, a model band the image lacks, or an overlap that does
            not fit the model's tile.

    Examples:
        >>> import rioxarray
        >>> from geotiler.inference import load_predictor
        >>> predictor = load_predictor("run/best.pt")
        >>> scene = rioxarray.open_rasterio("scene.tif")
        >>> result = predictor.predict(scene)
        >>> result.classes.rio.to_raster("map.tif")
    """
    values = np.asarray(getattr(data, "values", data))
    if values.ndim != 3:
        raise InputError(f"an image of (bands, rows, cols) is needed, got shape {values.shape}")
    names = list(bands) if bands is not None else _band_names(data)
    described: list[str | None] = list(names) or [None] * values.shape[0]
    source = SimpleNamespace(name="the array", count=values.shape[0], descriptions=described)
    order = [number - 1 for number in band_order(source, predictor, names or None)]
    image = values[order].astype(np.float32)
    nodata = _nodata(data) if nodata is None else nodata
    valid = np.isfinite(image).all(axis=0)
    if nodata is not None:
        valid &= (image != nodata).all(axis=0)  # as predict_scene: any band at nodata
    image = np.where(np.isfinite(image), image, 0.0).astype(np.float32)
    classes = predictor.classes  # type: ignore[attr-defined]
    chosen = np.array(sorted(c for c in classes.ids if c < predictor.num_classes), np.int64)
    probs = _blend(predictor, image, overlap, batch_size, tta)[chosen]
    labels = chosen[probs.argmax(axis=0)].astype(np.uint8)
    fill = classes.nodata if classes.nodata is not None else 255
    labels[~valid] = fill
    probs[:, ~valid] = 0.0
    if hasattr(data, "dims"):
        return _as_dataarrays(data, labels, probs, chosen, fill)
    return ArrayPrediction(labels, probs, tuple(int(c) for c in chosen))


def _blend(
    predictor: Predictor, image: np.ndarray, overlap: int | None, batch_size: int, tta: bool
) -> np.ndarray:
    """Per-class probabilities over the whole image, windows blended with a Hann weight."""
    tile = predictor.tile_size
    _, rows, cols = image.shape
    pad_rows, pad_cols = max(tile - rows, 0), max(tile - cols, 0)
    if pad_rows or pad_cols:
        image = np.pad(image, ((0, 0), (0, pad_rows), (0, pad_cols)), mode="reflect")
    stride = tile - check_overlap(tile, overlap)
    offsets = [
        (y0, x0)
        for y0 in tile_offsets(image.shape[1], tile, stride)
        for x0 in tile_offsets(image.shape[2], tile, stride)
    ]
    acc = np.zeros((predictor.num_classes, *image.shape[1:]), np.float32)
    weights = np.zeros(image.shape[1:], np.float32)
    window = blend_window(tile)
    for first in range(0, len(offsets), max(1, batch_size)):
        chunk = offsets[first : first + max(1, batch_size)]
        batch = np.stack([image[:, y0 : y0 + tile, x0 : x0 + tile] for y0, x0 in chunk])
        probs = d4_predict(predictor, batch) if tta else predictor(batch)
        for (y0, x0), tile_probs in zip(chunk, probs, strict=True):
            acc[:, y0 : y0 + tile, x0 : x0 + tile] += tile_probs * window
            weights[y0 : y0 + tile, x0 : x0 + tile] += window
    return (acc / np.maximum(weights, 1e-12))[:, :rows, :cols]


def _band_names(data: Any) -> list[str]:
    """A DataArray's band names: its band coordinate's strings, or rioxarray's ``long_name``."""
    dims = getattr(data, "dims", ())
    if dims and dims[0] in data.coords:
        values = data.coords[dims[0]].values.tolist()
        if all(isinstance(v, str) for v in values):
            return [str(v) for v in values]
    long_name = getattr(data, "attrs", {}).get("long_name")
    if isinstance(long_name, list | tuple) and all(long_name):
        return [str(name) for name in long_name]
    return []


def _nodata(data: Any) -> float | None:
    rio = getattr(data, "rio", None) if hasattr(data, "dims") else None
    value = rio.nodata if rio is not None else None
    if value is None:
        value = getattr(data, "attrs", {}).get("_FillValue")
    return None if value is None or np.isnan(value) else float(value)


def _as_dataarrays(
    data: Any, labels: np.ndarray, probs: np.ndarray, chosen: np.ndarray, fill: int
) -> ArrayPrediction:
    import xarray as xr

    y, x = data.dims[1], data.dims[2]
    spatial = {k: v for k, v in data.coords.items() if y not in v.dims or x in v.dims}
    spatial = {k: v for k, v in spatial.items() if data.dims[0] not in v.dims}
    classes = xr.DataArray(labels, dims=(y, x), coords=spatial, name="classes")
    probabilities = xr.DataArray(
        probs,
        dims=("class", y, x),
        coords={**spatial, "class": chosen},
        name="probabilities",
    )
    if getattr(data, "rio", None) is not None and data.rio.crs is not None:
        import rioxarray  # noqa: F401  (the .rio accessor)

        classes = classes.rio.write_crs(data.rio.crs).rio.write_nodata(fill)
        probabilities = probabilities.rio.write_crs(data.rio.crs)
    return ArrayPrediction(classes, probabilities, tuple(int(c) for c in chosen))
