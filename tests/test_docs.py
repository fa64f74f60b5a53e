"""Every function of the top-level API documents its arguments, result and an example.

The API reference (`make docs`, mkdocs.yml) is built from these docstrings, strictly, by CI.
"""

from __future__ import annotations

import inspect

import pytest

import geotiler
from geotiler import api
from geotiler.inference import TorchPredictor
from geotiler.predict_array import predict_array
from geotiler.tiles.store import TileStore

PUBLIC = [name for name in geotiler.__all__ if name != "__version__"]


@pytest.mark.parametrize("name", PUBLIC)
def test_top_level_functions_have_google_docstrings_with_examples(name: str) -> None:
    function = getattr(api, name)
    doc = inspect.getdoc(function) or ""
    for section in ("Args:", "Returns:", "Examples:"):
        assert f"\n{section}\n" in doc, (name, section)
    examples = doc.split("\nExamples:\n", 1)[1]
    assert ">>> " in examples, name
    parameters = [p for p in inspect.signature(function).parameters if p != "settings"]
    for parameter in parameters:
        assert f"    {parameter}:" in doc, (name, parameter)


@pytest.mark.parametrize("method", [TileStore.to_xarray, TorchPredictor.predict, predict_array])
def test_the_notebook_entry_points_have_examples(method) -> None:
    doc = inspect.getdoc(method) or ""
    assert "\nExamples:\n" in doc and ">>> " in doc, method.__qualname__
