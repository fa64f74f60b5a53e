"""How the tile stage opens its many files: sidecars still found, the same clear errors."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from geotiler.cli import app
from geotiler.errors import RasterError
from geotiler.tiles.files import open_file
from geotiler.tiles.store import TileStore

AUX_XML = """<PAMDataset>
  <SRS dataAxisToSRSAxisMapping="1,2">EPSG:32631</SRS>
</PAMDataset>
"""


def test_chips_keep_the_georeference_of_world_files_and_aux_xml(runner, tmp_path: Path) -> None:
    """GDAL no longer lists the folder on each open, yet still finds each chip's sidecars."""
    rng = np.random.default_rng(3)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for n in range(12):
        labels = np.kron(rng.integers(1, 3, (4, 4)), np.ones((8, 8), np.int64)).astype(np.uint8)
        image = np.stack([labels * 60 + rng.integers(0, 20, labels.shape) for _ in range(3)])
        Image.fromarray(image.astype(np.uint8).transpose(1, 2, 0)).save(
            tmp_path / "images" / f"chip_{n:02d}.jpg", quality=95
        )
        Image.fromarray(labels).save(tmp_path / "masks" / f"chip_{n:02d}.png")
    # One chip is georeferenced by a world file (transform) and a PAM .aux.xml (CRS).
    (tmp_path / "images" / "chip_03.jgw").write_text("0.5\n0\n0\n-0.5\n500000.25\n4000000.25\n")
    (tmp_path / "images" / "chip_03.jpg.aux.xml").write_text(AUX_XML)
    (tmp_path / "classes.json").write_text(json.dumps({"1": "a", "2": "b"}))
    store_path = tmp_path / "tiles.zarr"
    result = runner.invoke(
        app,
        ["tile", str(tmp_path / "images"), "--mask", str(tmp_path / "masks"), "--classes",
         str(tmp_path / "classes.json"), "-o", str(store_path), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    store = TileStore.open(store_path)
    grid = store.grid("chip_03")
    assert grid.transform == Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.5)  # centre -> corner
    assert grid.crs is not None and grid.crs.to_epsg() == 32631
    assert store.grid("chip_04").crs is None
    assert store.grid("chip_04").transform == Affine.identity()


@pytest.mark.parametrize("with_env", [False, True])
def test_open_file_says_what_is_wrong_like_open_raster(tmp_path: Path, with_env: bool) -> None:
    """Inside the stage's GDAL env (DatasetReader directly) and outside it (open_raster)."""
    corrupt = tmp_path / "broken.tif"
    corrupt.write_bytes(b"not a raster at all")
    (tmp_path / "folder.tif").mkdir()
    good = tmp_path / "good.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(good)
    cases = {
        tmp_path / "missing.png": "file not found",
        tmp_path / "folder.tif": "is a folder",
        corrupt: "not a raster GDAL can read",
    }
    with rasterio.Env() if with_env else contextlib.nullcontext():
        for path, reason in cases.items():
            with pytest.raises(RasterError, match=reason) as caught:
                open_file(path)
            assert str(path) in str(caught.value)
        with open_file(good) as dataset:
            assert dataset.crs is None
            assert np.array_equal(dataset.read(1), np.arange(64).reshape(8, 8))


def test_many_scenes_save_the_attrs_a_bounded_number_of_times(tmp_path, monkeypatch) -> None:
    """Each attrs save rewrites every scene's record: with many chips, progress is recorded a
    few times a run, not every flush (which grew with the square of the chips)."""
    import geotiler.tiles.writer
    from geotiler.tiles.run import TileSettings, run_tile

    for n in range(12):
        labels = np.full((16, 16), 1 + n % 2, np.uint8)
        Image.fromarray(np.stack([labels * 90] * 3, axis=2)).save(tmp_path / f"c{n:02d}.png")
        Image.fromarray(labels).save(tmp_path / f"c{n:02d}_mask.png")
    (tmp_path / "classes.json").write_text(json.dumps({"1": "a", "2": "b"}))
    monkeypatch.setattr(geotiler.tiles.writer, "INDEX_FLUSH_TILES", 1)
    saves = []
    real_save = geotiler.tiles.writer.save_attrs

    def counting_save(group, attrs) -> None:
        saves.append(attrs.progress.tiles_written)
        real_save(group, attrs)

    monkeypatch.setattr(geotiler.tiles.writer, "save_attrs", counting_save)
    settings = TileSettings(classes=str(tmp_path / "classes.json"), shard_tiles=1)
    store = run_tile(
        None, None, settings, images=[str(tmp_path / "c*[0-9].png")],
        masks=[str(tmp_path / "*_mask.png")], output=tmp_path / "t.zarr",
    )  # fmt: skip
    assert len(store) == 12
    # created, progress every 12 // PROGRESS_SAVES = 3 tiles, finished, complete
    assert saves == [0, 3, 6, 9, 12, 12, 12]
