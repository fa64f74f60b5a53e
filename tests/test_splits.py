"""Block splits: deterministic, close to the fractions, and leakage-free under overlap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geotiler.errors import InputError
from geotiler.tiles.classes import classes_from_values
from geotiler.tiles.layout import tile_grid_index, tile_offsets
from geotiler.tiles.run import TileInputs, TileSettings, make_tiles
from geotiler.tiles.splits import (
    SplitSpec,
    assign_blocks,
    block_ids,
    buffer_positions,
    parse_split,
)


def _positions(length: int, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    offsets = tile_offsets(length, size, stride)
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    return rows.ravel(), cols.ravel()


def test_blocks_are_dealt_deterministically_near_the_fractions() -> None:
    rows, cols = _positions(3000, 30, 30)  # 100 x 100 positions
    i, j = tile_grid_index(rows, 30), tile_grid_index(cols, 30)
    spec = parse_split("block:0.8,0.1,0.1")
    split = assign_blocks(block_ids(0 * i, i, j, block_tiles=10), spec, seed=3)
    again = assign_blocks(block_ids(0 * i, i, j, block_tiles=10), spec, seed=3)
    other = assign_blocks(block_ids(0 * i, i, j, block_tiles=10), spec, seed=4)
    assert np.array_equal(split, again) and not np.array_equal(split, other)
    assert np.allclose(np.bincount(split, minlength=3) / len(split), [0.8, 0.1, 0.1], atol=0.03)
    blocks = (i // 10) * 10 + j // 10
    for block in np.unique(blocks):
        assert len(np.unique(split[blocks == block])) == 1


def test_buffer_leaves_no_shared_pixel_between_splits() -> None:
    size, stride = 30, 20
    rows, cols = _positions(400, size, stride)
    i, j = tile_grid_index(rows, stride), tile_grid_index(cols, stride)
    split = assign_blocks(block_ids(0 * i, i, j, block_tiles=3), SplitSpec((0.6, 0.2, 0.2)), seed=0)
    buffer = buffer_positions(rows, cols, split, np.ones(len(rows), bool), size_px=size)
    assert 0 < buffer.sum() < len(rows)
    kept = np.flatnonzero(~buffer)
    for a in kept:
        overlap = (np.abs(rows[kept] - rows[a]) < size) & (np.abs(cols[kept] - cols[a]) < size)
        assert (split[kept][overlap] == split[a]).all()


def test_no_buffer_without_overlap() -> None:
    rows, cols = _positions(300, 30, 30)
    i, j = tile_grid_index(rows, 30), tile_grid_index(cols, 30)
    split = assign_blocks(block_ids(np.zeros_like(i), i, j, block_tiles=2), SplitSpec(), seed=0)
    assert not buffer_positions(rows, cols, split, np.ones(len(rows), bool), size_px=30).any()


@pytest.mark.parametrize("spec", ["random", "block:1,2", "block:a,b,c", "block:-1,1,1"])
def test_bad_split_specs(spec: str) -> None:
    with pytest.raises(InputError):
        parse_split(spec)


def test_split_aoi_forces_touching_tiles_into_a_split(write_raster, blobby_mask, tmp_path) -> None:
    scene = write_raster("s.tif", np.ones((2, 128, 128), np.uint16))
    mask_path = write_raster("m.tif", blobby_mask(128, 128, nodata_fraction=0), nodata=0)
    # The scene's top-left 640 m x 640 m (10 m pixels from the fixture origin).
    x0, y0 = 240000.0, 4780000.0
    square = [[x0, y0], [x0 + 600, y0], [x0 + 600, y0 - 600], [x0, y0 - 600], [x0, y0]]
    area = tmp_path / "val.geojson"
    area.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "EPSG:32631"}},
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {"type": "Polygon", "coordinates": [square]},
                    }
                ],
            }
        )
    )
    inputs = TileInputs.seasons({"s": scene}, mask_path, classes_from_values(mask_path, 0))
    settings = TileSettings(size=32, split="block:1,0,0", split_aoi={"val": str(area)})
    index = make_tiles(inputs, tmp_path / "t.zarr", settings).index
    in_area = (index.row < 60) & (index.col < 60)
    assert (index.split[in_area] == "val").all() and (index.split[~in_area] == "train").all()
