"""Direct strip reads: the same pixels as GDAL, or a clean refusal where the layout differs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geotiler.grid import Grid
from geotiler.rescale import rescale
from geotiler.rescale.rawstrips import RawStrips


@pytest.mark.parametrize(("dtype", "strip_rows"), [("uint8", 1), ("uint8", 7), ("uint16", 3)])
def test_direct_reads_equal_gdal_reads(write_raster, dtype, strip_rows) -> None:
    data = np.random.default_rng(0).integers(0, 200, size=(61, 47)).astype(dtype)
    path = write_raster("strips.tif", data, layout="strip", blockysize=strip_rows)
    with rasterio.open(path) as dataset, RawStrips.open(dataset) as raw:
        assert raw is not None
        for row, col, rows, cols in [
            (0, 0, 61, 47),
            (5, 0, 20, 47),
            (13, 9, 11, 30),
            (60, 46, 1, 1),
        ]:
            out = np.empty((rows, cols), dtype)
            assert raw.read(row, col, out)
            assert np.array_equal(out, dataset.read(1, window=Window(col, row, cols, rows)))


@pytest.mark.parametrize(
    "options",
    [{"compress": "deflate"}, {"tiled": True, "blockxsize": 16, "blockysize": 16}],
)
def test_compressed_or_tiled_files_are_left_to_gdal(write_raster, options) -> None:
    data = np.ones((32, 32), np.uint8)
    path = write_raster("other.tif", data, layout="strip", **options)
    with rasterio.open(path) as dataset, RawStrips.open(dataset) as raw:
        assert raw is None


def test_sparse_strips_fall_back_and_rescale_stays_exact(write_raster, tmp_path) -> None:
    # With SPARSE_OK, GDAL leaves all-nodata strips out of the file (offset 0): GDAL reads them.
    data = np.random.default_rng(1).integers(1, 5, size=(40, 40)).astype(np.uint8)
    data[10:20] = 0
    dense = write_raster("dense.tif", data, layout="strip", nodata=0)
    sparse = write_raster("sparse.tif", data, layout="strip", nodata=0, sparse_ok=True)
    with rasterio.open(sparse) as dataset, RawStrips.open(dataset) as raw:
        assert raw is not None and raw.row_offset(12) is None
        assert not raw.read(5, 0, np.empty((10, 40), np.uint8))
    for method in ("mode", "near"):
        outs = []
        for source in (dense, sparse):
            out = tmp_path / f"{source.stem}_{method}.tif"
            rescale(source, Grid.from_raster(source).zoom_out(4), out, method=method)
            with rasterio.open(out) as result:
                outs.append(result.read(1))
        assert np.array_equal(*outs), method
