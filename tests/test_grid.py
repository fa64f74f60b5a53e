from __future__ import annotations

import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geotiler.errors import GridMismatchError, InputError
from geotiler.grid import Grid, clip_window

UTM = CRS.from_epsg(32631)


def scene_grid(rows: int = 300, cols: int = 400, res: float = 10.0) -> Grid:
    return Grid(UTM, Affine(res, 0, 240000, 0, -res, 4780000), (rows, cols))


def test_from_bounds_and_bounds_round_trip() -> None:
    grid = Grid.from_bounds((240000, 4777000, 244000, 4780000), 10, "EPSG:32631")
    assert grid.shape == (300, 400)
    assert grid.bounds == (240000, 4777000, 244000, 4780000)
    assert grid.resolution == (10, 10)
    assert grid.almost_equals(scene_grid())


def test_from_raster(write_raster) -> None:
    import numpy as np

    path = write_raster("a.tif", np.zeros((30, 40), np.uint8))
    grid = Grid.from_raster(path)
    assert grid.shape == (30, 40)
    assert grid.crs == UTM


def test_rejects_bad_shape_and_rotation() -> None:
    with pytest.raises(InputError):
        Grid(UTM, Affine.identity(), (0, 5))
    with pytest.raises(InputError):
        Grid(UTM, Affine(10, 1, 0, 0, -10, 0), (5, 5))


def test_windows_cover_grid_row_major() -> None:
    grid = scene_grid(250, 130)
    windows = list(grid.windows(100, 100))
    assert windows[0] == Window(0, 0, 100, 100)
    assert windows[1] == Window(100, 0, 30, 100)
    assert windows[-1] == Window(100, 200, 30, 50)
    assert sum(w.width * w.height for w in windows) == 250 * 130


def test_row_bands_are_full_width() -> None:
    bands = list(scene_grid(250, 130).row_bands(100))
    assert [(b.row_off, b.height, b.width) for b in bands] == [
        (0, 100, 130),
        (100, 100, 130),
        (200, 50, 130),
    ]


def test_crop_moves_origin() -> None:
    grid = scene_grid()
    sub = grid.crop(Window(10, 20, 5, 6))
    assert sub.shape == (6, 5)
    assert (sub.transform.c, sub.transform.f) == (240100, 4779800)


def test_zoom_in_and_out_are_inverse_refinements() -> None:
    coarse = scene_grid(30, 40)
    fine = coarse.zoom_in(10)
    assert fine.shape == (300, 400)
    assert fine.resolution == (1, 1)
    assert fine.bounds == coarse.bounds
    assert fine.refinement_factor(coarse) == 10
    assert fine.zoom_out(10).almost_equals(coarse)
    assert scene_grid(31, 41, res=1).zoom_out(10).shape == (4, 5)


def test_refinement_needs_aligned_origin_and_integer_factor() -> None:
    coarse = scene_grid(30, 40)
    shifted = Grid(UTM, Affine(1, 0, 240005, 0, -1, 4780000), (300, 400))
    assert shifted.refinement_factor(coarse) == 10  # 5 fine px: still on the fine lattice
    half_px = Grid(UTM, Affine(1, 0, 240000.5, 0, -1, 4780000), (300, 400))
    assert half_px.refinement_factor(coarse) is None
    odd = Grid(UTM, Affine(3, 0, 240000, 0, -3, 4780000), (100, 100))
    assert odd.refinement_factor(coarse) is None
    other_crs = Grid(CRS.from_epsg(32630), Affine(1, 0, 240000, 0, -1, 4780000), (300, 400))
    assert other_crs.refinement_factor(coarse) is None


def test_intersection_and_disjoint() -> None:
    a = scene_grid(100, 100)
    b = Grid(UTM, Affine(10, 0, 240500, 0, -10, 4779500), (100, 100))
    inter = a.intersection(b)
    assert inter.shape == (50, 50)
    assert (inter.transform.c, inter.transform.f) == (240500, 4779500)
    far = Grid(UTM, Affine(10, 0, 300000, 0, -10, 4779500), (10, 10))
    assert not a.intersects(far)
    with pytest.raises(GridMismatchError, match="do not overlap"):
        a.intersection(far)
    with pytest.raises(GridMismatchError, match="different CRS"):
        a.intersection(Grid(CRS.from_epsg(4326), Affine(1, 0, 0, 0, -1, 0), (5, 5)))


def test_almost_equals_tolerance() -> None:
    a = scene_grid()
    nudged = Grid(UTM, Affine(10, 0, 240000 + 1e-9, 0, -10, 4780000), a.shape)
    assert a.almost_equals(nudged)
    moved = Grid(UTM, Affine(10, 0, 240001, 0, -10, 4780000), a.shape)
    assert not a.almost_equals(moved)
    assert not a.almost_equals(scene_grid(301, 400))


def test_window_of_bounds_and_clip() -> None:
    grid = scene_grid()
    window = grid.window_of((240015, 4779000, 240100, 4779995))
    assert window == Window(1, 0, 9, 100)
    assert clip_window(Window(-5, -5, 20, 20), (10, 10)) == Window(0, 0, 10, 10)
    assert clip_window(Window(50, 50, 5, 5), (10, 10)).width == 0


def test_describe_names_the_unit_of_projected_and_geographic_grids() -> None:
    utm = Grid(CRS.from_epsg(32631), Affine(10, 0, 240000, 0, -10, 4780000), (4, 5))
    wgs84 = Grid(CRS.from_epsg(4326), Affine(0.0001, 0, 2, 0, -0.0001, 41), (4, 5))
    assert "10 x 10 metre, EPSG:32631" in utm.describe()
    assert "0.0001 x 0.0001 degree, EPSG:4326" in wgs84.describe()
