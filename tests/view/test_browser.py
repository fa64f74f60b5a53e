"""``geotiler view`` in a real headless browser (Debian's chromium + chromedriver, via selenium).

Skipped where no browser is installed; CI installs one (see .ci/run).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

pytest.importorskip("bokeh")
pytest.importorskip("rio_tiler")
webdriver = pytest.importorskip("selenium.webdriver")

from tests.view.conftest import serve, view_sources  # noqa: E402

pytestmark = pytest.mark.slow  # seconds each: a browser, or training

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROME_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1300,850",
    "--no-first-run",
    "--disable-extensions",
)
COPIED = ("scene", "mask", "store", "run", "map", "probabilities")
LOCAL = {"127.0.0.1", "localhost", "[::1]"}
DEEP_FIND = """
const [selector, text] = arguments
const found = []
const walk = (node) => {
  if (node.matches && node.matches(selector) && (!text || node.textContent.trim() === text)) {
    found.push(node)
  }
  if (node.shadowRoot) walk(node.shadowRoot)
  for (const child of node.children || []) walk(child)
}
walk(document.documentElement)
return found
"""


def _browser_paths() -> tuple[str, str] | None:
    binary = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    paths = _browser_paths()
    if paths is None:
        pytest.skip(
            "no chromium + chromedriver installed (apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for argument in CHROME_ARGUMENTS:
        options.add_argument(argument)
    options.binary_location = paths[0]
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def _served_copy(dataset: Any, folder: Path) -> Iterator[Any]:
    """Serve a copy of the tiny dataset: pages append to its store and write beside its map."""
    shutil.copytree(dataset.folder, folder)
    copied = {key: folder / getattr(dataset, key).name for key in COPIED}
    copy = replace(dataset, folder=folder, **copied)
    with serve(view_sources(copy, folder / "corrections.gpkg")) as view:
        yield view


def _load(browser: Any, view: Any) -> Any:
    browser.get(view.url)
    _wait(lambda: _find(browser, "canvas"), "the map canvas")
    _wait_for_tiles(browser)
    browser.get_log("browser")  # only what the test itself causes is checked after this
    return view


@pytest.fixture(scope="module")
def served(tiny_dataset: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One server for the tests that leave its sources as they are."""
    with _served_copy(tiny_dataset, tmp_path_factory.mktemp("browser") / "tiny") as view:
        yield view


@pytest.fixture
def page(browser: Any, served: Any) -> Any:
    """A fresh load of the page (tests stay independent under pytest-xdist)."""
    return _load(browser, served)


@pytest.fixture
def own_page(browser: Any, tiny_dataset: Any, tmp_path: Path) -> Iterator[Any]:
    """A page on a server of its own, for tests that change what the server shows."""
    with _served_copy(tiny_dataset, tmp_path / "tiny") as view:
        yield _load(browser, view)


def _wait(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _texts(browser: Any, prefix: str) -> list[str]:
    """Texts of the page's divs that start with ``prefix`` (no element kept: pages rebuild)."""
    script = DEEP_FIND.replace("return found", "return found.map(e => e.textContent.trim())")
    return [t for t in browser.execute_script(script, "div", None) if t.startswith(prefix)]


def _find(browser: Any, selector: str, text: str | None = None) -> list[Any]:
    return list(browser.execute_script(DEEP_FIND, selector, text))


def _map_canvas(browser: Any) -> Any:
    canvases = _find(browser, "canvas")
    return max(canvases, key=lambda c: c.size["width"] * c.size["height"])


def _map_pixels(browser: Any) -> np.ndarray:
    import rasterio

    png = _map_canvas(browser).screenshot_as_png
    with rasterio.MemoryFile(io.BytesIO(png)) as memory, memory.open() as image:
        return image.read()[:3].astype(np.int16)


def _wait_for_tiles(browser: Any, settle: float = 1.5) -> None:
    """Wait until the map's pixels stop changing (tiles loaded and painted)."""
    previous = _map_pixels(browser)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(settle)
        current = _map_pixels(browser)
        if np.abs(current - previous).mean() < 0.05:
            return
        previous = current


def _click(browser: Any, element: Any) -> None:
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    time.sleep(0.2)
    element.click()


def _requests(browser: Any) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        if message["method"] == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    return urls


def test_page_loads_locally_without_console_errors(browser: Any, served: Any) -> None:
    browser.get_log("performance")
    browser.get(served.url)
    _wait(lambda: _find(browser, "canvas"), "the map canvas")
    _wait_for_tiles(browser)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    urls = _requests(browser)
    assert any("/tiles/map/" in u for u in urls)
    remote = {
        urlparse(u).hostname for u in urls if urlparse(u).scheme in ("http", "https", "ws", "wss")
    }
    assert remote and remote <= {h.strip("[]") for h in LOCAL}, remote


def test_map_and_legend_render(browser: Any, page: Any, tmp_path: Path) -> None:
    pixels = _map_pixels(browser)
    assert pixels.std() > 10  # not a blank canvas
    legend = _find(browser, "div", None)
    text = " ".join(el.text for el in legend if "legend" in (el.text or ""))
    for c in page.sources.classes.classes:
        assert c.name in text
    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_toggling_a_class_changes_the_rendered_tiles(browser: Any, page: Any) -> None:
    before = _map_pixels(browser)
    label = _wait(lambda: _find(browser, "label", "2 forest"), "the class toggles")[0]
    _click(browser, label)
    _wait(lambda: any("hide=2" in u for u in _requests(browser)), "a tile request without class 2")
    _wait_for_tiles(browser)
    after = _map_pixels(browser)
    changed = np.abs(after - before).sum(axis=0) > 30
    assert changed.mean() > 0.02
    _click(browser, label)  # and back
    _wait_for_tiles(browser)


def _draw_square(browser: Any) -> None:
    """Draw a square of 120 px around the map's centre with BokehJS's PolyDrawTool.

    Press and hold starts a polygon, taps add corners, press and hold again sets the last
    corner and closes it.
    """
    from selenium.webdriver.common.action_chains import ActionChains

    toggle = _wait(lambda: _find(browser, "button", "draw corrections"), "the draw toggle")[0]
    _click(browser, toggle)
    canvas = _map_canvas(browser)
    points = [(-60, -60), (60, -60), (60, 60), (-60, 60)]
    actions = ActionChains(browser)
    actions.move_to_element_with_offset(canvas, *points[0]).click_and_hold().pause(0.7).release()
    for x, y in points[1:-1]:
        actions.pause(0.5).move_to_element_with_offset(canvas, x, y).click()
    actions.pause(0.5).move_to_element_with_offset(canvas, *points[-1])
    actions.click_and_hold().pause(0.7).release()
    actions.perform()
    _click(browser, toggle)


def test_drawn_polygon_is_saved_to_the_corrections_file(browser: Any, page: Any) -> None:
    from geotiler.view.corrections import read_corrections

    path = page.sources.corrections
    before = len(read_corrections(path)) if path.is_file() else 0
    _draw_square(browser)
    _wait(lambda: path.is_file() and len(read_corrections(path)) == before + 1, "the polygon")
    saved = read_corrections(path)
    assert int(saved["class_id"].iloc[-1]) == 1  # the first class is the default choice
    assert saved.crs is not None and saved.crs.to_epsg() == 32631
    minx, miny, maxx, maxy = saved.geometry.iloc[-1].bounds
    assert 240000 < minx < maxx < 240000 + 1920 and 4780000 - 1920 < miny < maxy < 4780000
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_fine_tune_button_trains_on_the_corrections_and_shows_the_new_map(
    browser: Any, own_page: Any
) -> None:
    page = own_page
    _draw_square(browser)
    _wait(page.sources.corrections.is_file, "the saved polygon")
    button = _wait(lambda: _find(browser, "button", "fine-tune on corrections"), "the button")[0]
    _click(browser, button)
    notes = _wait(
        lambda: _texts(browser, "fine-tuned:") or _texts(browser, "fine-tuning failed"),
        "the fine-tuned page",
        timeout=240,
    )
    assert "corrected tiles" in notes[0], notes
    new_map = page.state.sources.map
    assert new_map.name == "landcover-corrected-1.tif" and new_map.is_file()
    assert (page.state.sources.run / "last.pt").is_file()
    _wait(lambda: any("/tiles/map/" in u for u in _requests(browser)), "tiles of the new map")


def test_dropped_scene_is_predicted_and_shown(browser: Any, own_page: Any) -> None:
    page = own_page
    scene = page.sources.scenes["scene"]
    payload = base64.b64encode(scene.read_bytes()).decode()
    browser.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0))
        const transfer = new DataTransfer()
        transfer.items.add(new File([bytes], 'dropped scene.tif', {type: 'image/tiff'}))
        document.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}))
        """,
        payload,
    )
    _wait(lambda: _texts(browser, "uploaded 001-dropped_scene.tif"), "the upload")
    _click(browser, _wait(lambda: _find(browser, "button", "predict"), "the predict button")[0])
    _wait(lambda: _texts(browser, "predicted ") or _texts(browser, "prediction failed"),
          "the page with the new map", timeout=120)  # fmt: skip
    assert _texts(browser, "predicted "), _texts(browser, "prediction failed")
    sources = page.state.sources
    assert next(iter(sources.scenes)) == "001-dropped_scene"
    assert sources.map.is_file() and sources.map.parent == page.state.upload_dir
    _wait(lambda: any("/tiles/scene:001-dropped_scene/" in u for u in _requests(browser)),
          "tiles of the dropped scene")  # fmt: skip
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
