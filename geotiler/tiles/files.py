"""Opening the many files of a tile run: each open is a fixed cost that chips pay per file.

``rasterio.open`` builds and tears down a GDAL environment around every open, even inside an
active one (about 0.1 ms, with the GIL held). The tile stage holds an environment in each of its
threads (:func:`geotiler.tiles.run.run_tile`), so local files are opened with
:class:`rasterio.io.DatasetReader` directly there; anything else, and any failure, goes through
:func:`geotiler.io.open_raster` (its checks and error messages).
"""

from __future__ import annotations

import os
import warnings
from os import PathLike
from typing import Any

from rasterio.env import hasenv
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.io import DatasetReader

from geotiler import limits
from geotiler.io import open_raster


def open_file(path: str | PathLike[str]) -> Any:
    """Open a raster for reading, like :func:`geotiler.io.open_raster` (same errors).

    Raises:
        RasterError: missing, corrupt or not a raster.
    """
    name = os.fspath(path)
    local = "://" not in name and not name.startswith("/vsi")
    if hasenv() and local and not os.path.isdir(name):
        try:
            with warnings.catch_warnings():
                # Chips without georeference are welcome: they get a plain pixel grid.
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                dataset = DatasetReader(name)
        except RasterioIOError:
            pass  # open_raster says what is wrong, in its words
        else:
            limits.check_declared_size(dataset, name)  # as open_raster does
            return dataset
    return open_raster(name)
