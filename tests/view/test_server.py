"""The view server without a browser: tiles, pixel facts, uploads and what the page may read."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
import rasterio

pytest.importorskip("bokeh")
pytest.importorskip("rio_tiler")

from tests.view.conftest import serve, view_sources


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _post(url: str, body: bytes, filename: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"X-Filename": filename}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except urllib.error.URLError:  # refused before the body was sent: the pipe broke
        return -1, b""


def _png(data: bytes) -> np.ndarray:
    with rasterio.MemoryFile(io.BytesIO(data)) as memory, memory.open() as png:
        return png.read()


@pytest.fixture(scope="module")
def served(tiny_dataset: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    corrections = tmp_path_factory.mktemp("edits") / "corrections.gpkg"
    with serve(view_sources(tiny_dataset, corrections), max_upload_mb=1) as view:
        yield view


def test_page_and_bokeh_js_are_served_locally(served: Any) -> None:
    status, page = _get(served.url)
    assert status == 200
    text = page.decode()
    assert "/static/js/bokeh" in text
    assert "cdn." not in text and "https://" not in text


def test_map_tiles_hide_the_classes_asked(served: Any, tiny_dataset: Any) -> None:
    status, shown = _get(served.url + "tiles/map/0/0/0.png")
    assert status == 200
    rgba = _png(shown)
    assert rgba.shape == (4, 256, 256)
    assert (rgba[3] > 0).mean() > 0.3  # the 192 px map covers most of the 256 px tile
    with rasterio.open(tiny_dataset.map) as src:
        present = sorted(int(v) for v in np.unique(src.read(1)) if v)
    hidden_id = present[0]
    colour = next(c for c in served.sources.classes.classes if c.id == hidden_id).rgba[:3]
    _, hidden = _get(served.url + f"tiles/map/0/0/0.png?hide={hidden_id}")
    without = _png(hidden)
    had = (rgba[:3] == np.array(colour)[:, None, None]).all(axis=0) & (rgba[3] > 0)
    assert had.any()
    assert (without[3][had] == 0).all()


def test_scene_tiles_are_stretched_rgb(served: Any) -> None:
    status, data = _get(
        served.url + "tiles/scene:scene/0/0/0.png?b=3,2,1&lo=800,800,800&hi=3000,3000,3000"
    )
    assert status == 200
    rgba = _png(data)
    assert rgba[:3][:, rgba[3] > 0].std() > 20
    assert _get(served.url + "tiles/scene:scene/0/0/0.png?b=3,2")[0] == 400


@pytest.mark.parametrize(
    "layer",
    [
        "..",
        "scene:..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "scene:missing",
        "nothing",
        "confidence2",
    ],
)
def test_unknown_layers_and_paths_are_refused(served: Any, layer: str) -> None:
    assert _get(served.url + f"tiles/{layer}/0/0/0.png")[0] == 404


def test_tiles_outside_the_pyramid_are_refused(served: Any) -> None:
    assert _get(served.url + "tiles/map/0/1/0.png")[0] == 400
    assert _get(served.url + "tiles/map/40/0/0.png")[0] == 400


def test_upload_is_saved_under_a_server_made_name(served: Any, tiny_dataset: Any) -> None:
    body = tiny_dataset.scene.read_bytes()
    assert len(body) < 2**20
    status, answer = _post(served.url + "upload", body, "..%2F..%2Fevil%20name.tif")
    assert status == 200, answer
    import json

    token = json.loads(answer)["token"]
    saved = served.state.uploads[token]
    assert saved.parent == served.state.upload_dir
    assert saved.name.endswith("-evil_name.tif")
    assert saved.read_bytes() == body


def test_upload_limits(served: Any) -> None:
    before = set(served.state.upload_dir.iterdir())
    assert _post(served.url + "upload", b"x" * (2**20 + 10), "big.tif")[0] in (413, -1)
    assert _post(served.url + "upload", b"not a raster", "scene.tif")[0] == 400
    assert _post(served.url + "upload", b"hello", "notes.txt")[0] == 400
    assert set(served.state.upload_dir.iterdir()) == before


def test_pixel_facts(served: Any, tiny_dataset: Any) -> None:
    from geotiler.view.probe import describe_pixel, format_pixel

    sources = served.sources
    x, y = 240000 + 10 * 30.5, 4780000 - 10 * 40.5  # pixel row 40, col 30
    info = describe_pixel(
        grid=served.state.grid, x=x, y=y, scene=("scene", sources.scenes["scene"]),
        classes=sources.classes, map_path=sources.map, probabilities=sources.probabilities,
        truth=sources.truth,
    )  # fmt: skip
    with rasterio.open(tiny_dataset.scene) as src:
        expected = src.read()[:, 40, 30]
    assert list(info["values"].values()) == [float(v) for v in expected]
    with rasterio.open(tiny_dataset.mask) as src:
        truth = int(src.read(1)[40, 30])
    assert info["reference"].startswith(f"{truth} ")
    assert len(info["top3"]) == 3 and info["top3"][0][1] >= info["top3"][1][1]
    assert "top 3" in format_pixel(info)


def test_review_queue_ranks_by_entropy(served: Any) -> None:
    from geotiler.view.probe import review_queue

    cells = review_queue(served.sources.probabilities, served.state.grid)
    assert len(cells) >= 4
    entropies = [c.entropy for c in cells]
    assert entropies == sorted(entropies, reverse=True)


def test_tile_outlines_carry_verdict_split_and_weight(served: Any) -> None:
    from geotiler.view.outlines import describe_tile, tile_outlines

    data = tile_outlines(served.sources.store, served.state.grid)
    assert len(data["tile"]) == 16  # 192 px in 48 px tiles
    assert set(data["split"]) <= {"train", "val", "test"}
    assert all(r > left for r, left in zip(data["right"], data["left"], strict=True))
    html = describe_tile(served.sources.store, data["tile"][0])
    assert "sampling weight" in html and "verdict" in html
