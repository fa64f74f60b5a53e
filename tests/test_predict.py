from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.errors import InputError, OutputExistsError
from geotiler.grid import Grid
from geotiler.predict import blend_window, predict_scene, tile_offsets

CLASSES = ClassTable(
    name="toy",
    nodata=0,
    classes=tuple(ClassInfo(id=i, name=f"c{i}", color=f"#{i * 40:02x}2020") for i in (1, 2, 3)),
)
BANDS = ("B1", "B2", "B3")


class PixelModel:
    """Class probabilities from each pixel alone: tiling must not change the result at all."""

    bands = BANDS
    num_classes = 4
    tile_size = 32

    def __init__(self, context_px: int = 1) -> None:
        self.context_px = context_px
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(batch.shape)
        logits = np.stack(
            [np.full(batch[:, 0].shape, -1e3, np.float32), *(batch[:, i] / 100 for i in range(3))],
            axis=1,
        )
        if self.context_px > 1:  # a model that looks at neighbours, with zero padding at tile edges
            logits = box_mean(logits, self.context_px)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)


def box_mean(x: np.ndarray, size: int) -> np.ndarray:
    half = size // 2
    padded = np.pad(x, ((0, 0), (0, 0), (half, half), (half, half)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(2, 3))
    return windows.mean(axis=(-2, -1)).astype(np.float32)


def make_scene(write_raster, rows: int = 90, cols: int = 75, nodata_cols: int = 5) -> Path:
    rng = np.random.default_rng(3)
    base = rng.normal(300, 120, size=(3, rows // 5 + 1, cols // 5 + 1))
    scene = np.kron(base, np.ones((1, 5, 5)))[:, :rows, :cols]
    scene = np.clip(scene + rng.normal(0, 30, scene.shape), 1, None).astype(np.uint16)
    scene[:, :, :nodata_cols] = 0
    path = write_raster("scene.tif", scene, nodata=0, block_px=32)
    with rasterio.open(path, "r+") as dataset:
        dataset.descriptions = BANDS
    return path


def pixelwise_truth(scene: Path) -> np.ndarray:
    with rasterio.open(scene) as dataset:
        data = dataset.read().astype(np.float32)
    truth = (np.argmax(data, axis=0) + 1).astype(np.uint8)
    truth[(data == 0).all(axis=0)] = 0
    return truth


def test_tile_offsets_snap_last_tile_to_edge() -> None:
    assert tile_offsets(100, 32, 32) == [0, 32, 64, 68]
    assert tile_offsets(96, 32, 32) == [0, 32, 64]
    assert tile_offsets(100, 32, 24) == [0, 24, 48, 68]
    assert tile_offsets(20, 32, 32) == [0]
    assert blend_window(8).min() > 0


@pytest.mark.parametrize("overlap", [0, 8, 20])
def test_output_is_on_scene_grid_and_equals_pixelwise_truth(
    write_raster, tmp_path, overlap
) -> None:
    scene = make_scene(write_raster)
    out = tmp_path / "map.tif"
    result = predict_scene(scene, out, predictor=PixelModel(), classes=CLASSES, overlap_px=overlap)
    with rasterio.open(out) as dataset:
        assert Grid.from_dataset(dataset).almost_equals(Grid.from_raster(scene))
        assert dataset.nodata == 0
        assert dataset.colormap(1)[1][:3] == (40, 32, 32)
        labels = dataset.read(1)
    np.testing.assert_array_equal(labels, pixelwise_truth(scene))
    assert result.nodata_pixels == 90 * 5
    assert sum(result.class_pixels.values()) == 90 * 70


def test_scene_smaller_than_a_tile(write_raster, tmp_path) -> None:
    scene = make_scene(write_raster, rows=20, cols=25, nodata_cols=0)
    out = tmp_path / "small.tif"
    predict_scene(scene, out, predictor=PixelModel(), classes=CLASSES)
    with rasterio.open(out) as dataset:
        np.testing.assert_array_equal(dataset.read(1), pixelwise_truth(scene))


def test_blending_leaves_no_seams(write_raster, tmp_path) -> None:
    scene = make_scene(write_raster, rows=120, cols=120, nodata_cols=0)
    model = PixelModel(context_px=7)
    with rasterio.open(scene) as dataset:
        whole = dataset.read().astype(np.float32)[np.newaxis]
    big = PixelModel(context_px=7)
    big.tile_size = 120
    reference = (big(whole)[0].argmax(axis=0)).astype(np.uint8)
    maps = {}
    for overlap in (0, 16):
        out = tmp_path / f"o{overlap}.tif"
        predict_scene(scene, out, predictor=model, classes=CLASSES, overlap_px=overlap)
        with rasterio.open(out) as dataset:
            maps[overlap] = dataset.read(1)
    agree_blended = (maps[16] == reference).mean()
    agree_hard = (maps[0] == reference).mean()
    assert agree_blended >= 0.99
    assert agree_blended > agree_hard  # hard tile edges are where the seams were


def test_class_restriction_and_extra_outputs(write_raster, tmp_path) -> None:
    scene = make_scene(write_raster)
    out, conf, probs = tmp_path / "m.tif", tmp_path / "c.tif", tmp_path / "p.tif"
    predict_scene(
        scene,
        out,
        predictor=PixelModel(),
        classes=CLASSES,
        class_ids=[1, 3],
        confidence=conf,
        probabilities=probs,
    )
    truth = pixelwise_truth(scene)
    with rasterio.open(out) as dataset:
        labels = dataset.read(1)
    assert set(np.unique(labels)) <= {0, 1, 3}
    keep = (truth == 1) | (truth == 3)
    np.testing.assert_array_equal(labels[keep], truth[keep])
    with rasterio.open(conf) as dataset:
        confidence = dataset.read(1)
    assert confidence[:, :5].max() == -1
    assert confidence[:, 5:].min() > 0 and confidence.max() <= 1.0 + 1e-6
    with rasterio.open(probs) as dataset:
        # Probabilities stay the model's, over every class: --classes only masks the map.
        assert dataset.count == 3
        assert dataset.descriptions == ("c1", "c2", "c3")
        scaled = dataset.read()
    assert (scaled[:, :, 5:].astype(int).sum(axis=0) <= 255).all()


def test_tta_keeps_a_pixelwise_result(write_raster, tmp_path) -> None:
    scene = make_scene(write_raster, rows=40, cols=40)
    out = tmp_path / "tta.tif"
    predict_scene(scene, out, predictor=PixelModel(), classes=CLASSES, tta=True)
    with rasterio.open(out) as dataset:
        np.testing.assert_array_equal(dataset.read(1), pixelwise_truth(scene))


def test_bad_inputs(write_raster, tmp_path) -> None:
    scene = make_scene(write_raster)
    two_bands = write_raster("two.tif", np.ones((2, 40, 40), np.uint16))
    with pytest.raises(InputError, match="2 bands but the model expects 3"):
        predict_scene(two_bands, tmp_path / "x.tif", predictor=PixelModel(), classes=CLASSES)
    empty = write_raster("empty.tif", np.zeros((3, 40, 40), np.uint16), nodata=0)
    with pytest.raises(InputError, match="every pixel of the scene is nodata"):
        predict_scene(empty, tmp_path / "e.tif", predictor=PixelModel(), classes=CLASSES)
    assert not (tmp_path / "e.tif").exists()
    (tmp_path / "exists.tif").write_text("x")
    with pytest.raises(OutputExistsError):
        predict_scene(scene, tmp_path / "exists.tif", predictor=PixelModel(), classes=CLASSES)
    with pytest.raises(InputError, match="not classes of the model"):
        predict_scene(
            scene, tmp_path / "y.tif", predictor=PixelModel(), classes=CLASSES, class_ids=[9]
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "empty.tif",
        "exists.tif",
        "scene.tif",
        "two.tif",
    ]


def test_cog_output_has_overviews(write_raster, tmp_path, caplog) -> None:
    rng = np.random.default_rng(0)
    scene = write_raster("big.tif", rng.integers(1, 500, (3, 600, 600)).astype(np.uint16), nodata=0)
    out = tmp_path / "cog.tif"
    predict_scene(scene, out, predictor=PixelModel(), classes=CLASSES, cog=True)
    assert "unexpected value" not in caplog.text  # every creation option GDAL takes as given
    with rasterio.open(out) as dataset:
        assert dataset.overviews(1)
        assert dataset.colormap(1)[3][:3] == (120, 32, 32)
    assert (tmp_path / "cog.tif.aux.xml").exists()


def test_bands_are_matched_by_name_and_reordered(write_raster, tmp_path) -> None:
    scene = make_scene(write_raster)
    with rasterio.open(scene) as dataset:
        data, profile = dataset.read(), dataset.profile
    shuffled = tmp_path / "shuffled.tif"
    with rasterio.open(shuffled, "w", **profile) as dataset:
        dataset.write(data[[2, 0, 1]])
        dataset.descriptions = ("B3", "B1", "B2")
    predict_scene(scene, tmp_path / "a.tif", predictor=PixelModel(), classes=CLASSES)
    predict_scene(shuffled, tmp_path / "b.tif", predictor=PixelModel(), classes=CLASSES)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))
    # Unnamed bands named on the command line, in file order.
    unnamed = tmp_path / "unnamed.tif"
    with rasterio.open(unnamed, "w", **profile) as dataset:
        dataset.write(data[[2, 0, 1]])
    predict_scene(
        unnamed,
        tmp_path / "c.tif",
        predictor=PixelModel(),
        classes=CLASSES,
        bands=["B3", "B1", "B2"],
    )
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "c.tif") as c:
        assert np.array_equal(a.read(1), c.read(1))
    with pytest.raises(InputError, match="missing B2"):
        predict_scene(
            unnamed, tmp_path / "d.tif", predictor=PixelModel(), classes=CLASSES,
            bands=["B3", "B1", "B9"],
        )  # fmt: skip


def test_classes_leave_other_pixels_nodata_and_min_confidence_too(write_raster, tmp_path) -> None:
    scene = make_scene(write_raster)
    truth = pixelwise_truth(scene)
    out = tmp_path / "m.tif"
    result = predict_scene(scene, out, predictor=PixelModel(), classes=CLASSES, class_ids=[1])
    with rasterio.open(out) as dataset:
        labels = dataset.read(1)
    assert (labels[truth == 1] == 1).all()
    assert (labels[(truth == 2) | (truth == 3)] == 0).all()  # not forced into class 1
    assert result.class_pixels[1] == int((truth == 1).sum())
    confident = tmp_path / "c.tif"
    predict_scene(scene, confident, predictor=PixelModel(), classes=CLASSES, min_confidence=0.9)
    with rasterio.open(confident) as dataset:
        strict = dataset.read(1)
    with rasterio.open(scene) as dataset:
        data = dataset.read().astype(np.float64) / 100
    probs = np.exp(data - data.max(axis=0)) / np.exp(data - data.max(axis=0)).sum(axis=0)
    unsure = (probs.max(axis=0) < 0.9) & (truth > 0)
    assert unsure.any() and (strict[unsure] == 0).all()
    assert (strict[~unsure & (truth > 0)] == truth[~unsure & (truth > 0)]).all()


def test_clouds_are_nodata_and_seasons_fill_them_in(write_raster, tmp_path) -> None:
    april = make_scene(write_raster)
    truth = pixelwise_truth(april)
    with rasterio.open(april) as dataset:
        data, profile = dataset.read(), dataset.profile
    cloudy = np.zeros(truth.shape, np.uint8)
    cloudy[20:50, 30:60] = 1
    cloudy[60:70, 10:20] = 2  # shadow counts too
    clouds = write_raster("clouds.tif", cloudy, block_px=32)
    august = tmp_path / "august.tif"
    with rasterio.open(august, "w", **profile) as dataset:
        dataset.write(data)
        dataset.descriptions = BANDS
    with rasterio.open(april, "r+") as dataset:  # under the clouds April sees white, not land
        white = dataset.read()
        white[:, cloudy > 0] = 900
        dataset.write(white)

    alone = predict_scene(
        april, tmp_path / "a.tif", predictor=PixelModel(), classes=CLASSES, clouds=[clouds]
    )
    with rasterio.open(tmp_path / "a.tif") as dataset:
        labels = dataset.read(1)
    covered = (cloudy > 0) & (truth > 0)
    assert (labels[covered] == 0).all()  # never a land class under a cloud
    assert alone.cloudy_pixels == int(covered.sum())
    assert (labels[~covered] == truth[~covered]).all()

    fused = predict_scene(
        [april, august], tmp_path / "f.tif", predictor=PixelModel(), classes=CLASSES,
        clouds=[clouds, None],
    )  # fmt: skip
    with rasterio.open(tmp_path / "f.tif") as dataset:
        labels = dataset.read(1)
    assert np.array_equal(labels, truth)  # April's clouds mapped from August
    assert fused.cloudy_pixels == 0


def test_spectral_clouds_need_the_visible_bands(write_raster, tmp_path) -> None:
    scene = make_scene(write_raster)
    with pytest.raises(InputError, match="B02, B03, B04"):
        predict_scene(
            scene, tmp_path / "x.tif", predictor=PixelModel(), classes=CLASSES, detect_clouds=True
        )
