"""The web server: a Bokeh application for the page plus tile and upload endpoints.

Tiles are addressed by a layer id the server made (``scene:april``, ``map``, ``truth``,
``confidence``, ``difference``), never by a path: the page can only read the files the view was
started with and the uploads the server itself saved. Rendering runs in a thread pool so the page
stays responsive while tiles are read.
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geotiler.errors import InputError
from geotiler.view.grid import ViewGrid
from geotiler.view.render import has_overviews
from geotiler.view.sources import ViewSources

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_MB = 512
TILE_WORKERS = 4


@dataclass
class ViewState:
    """What every page of one ``geotiler view`` server shares."""

    sources: ViewSources
    upload_dir: Path
    max_upload_bytes: int = DEFAULT_UPLOAD_MB * 2**20
    uploads: dict[str, Path] = field(default_factory=dict)
    upload_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    """Never reused (a discarded upload leaves a gap), so two uploads never share a file."""
    notes: str = ""
    """A line for the top of the page after the sources changed (a prediction, a fine-tune)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.grid = ViewGrid.from_raster(next(iter(self.sources.scenes.values())))

    def show(self, sources: ViewSources) -> None:
        """Switch every page to ``sources`` (after a prediction of an uploaded scene)."""
        with self.lock:
            self.sources = sources
            self.grid = ViewGrid.from_raster(next(iter(sources.scenes.values())))

    def layer(self, layer_id: str) -> tuple[str, list[Path]] | None:
        """The kind and files of a layer id, or None when the id names nothing."""
        sources = self.sources
        if layer_id.startswith("scene:"):
            path = sources.scenes.get(layer_id.removeprefix("scene:"))
            return ("scene", [path]) if path else None
        table: dict[str, tuple[str, list[Path | None]]] = {
            "map": ("classes", [sources.map]),
            "truth": ("classes", [sources.truth]),
            "confidence": ("confidence", [sources.confidence or sources.probabilities]),
            "difference": ("difference", [sources.map, sources.truth]),
        }
        kind, paths = table.get(layer_id, ("", [None]))
        if not kind or any(p is None for p in paths):
            return None
        return kind, [p for p in paths if p is not None]


def render_layer(state: ViewState, layer_id: str, zoom: int, x: int, y: int, query: dict) -> bytes:
    """PNG bytes of one tile of a layer. Raises KeyError for an unknown layer id."""
    from geotiler.view import render

    found = state.layer(layer_id)
    if found is None:
        raise KeyError(layer_id)
    kind, paths = found
    grid = state.grid
    if kind == "scene":
        bands = _ints(query.get("b", "1,2,3"))[:3]
        stretch = render.Stretch(_floats(query.get("lo", "")), _floats(query.get("hi", "")))
        if len(bands) != 3 or len(stretch.low) != 3 or len(stretch.high) != 3:
            raise ValueError("a scene tile needs three bands b=, lo= and hi=")
        read = render.read_tile(paths[0], grid, zoom, x, y, indexes=bands, resampling="bilinear")
        return (
            render.empty_png()
            if read is None
            else render.encode_png(render.rgb_rgba(*read, stretch))
        )
    classes = state.sources.classes
    if kind == "classes":
        read = render.read_tile(paths[0], grid, zoom, x, y, indexes=[1])
        if read is None:
            return render.empty_png()
        lut = render.class_lut(classes, hidden=_ints(query.get("hide", "")))
        return render.encode_png(render.classes_rgba(read[0][0], read[1], lut))
    if kind == "confidence":
        probabilities = paths[0] == state.sources.probabilities
        read = render.read_tile(paths[0], grid, zoom, x, y)
        if read is None:
            return render.empty_png()
        confidence = render.confidence_from(*read, probabilities=probabilities)
        threshold = float(query.get("t", "0.5"))
        return render.encode_png(render.confidence_rgba(confidence, read[1], threshold))
    predicted = render.read_tile(paths[0], grid, zoom, x, y, indexes=[1])
    truth = render.read_tile(paths[1], grid, zoom, x, y, indexes=[1])
    if predicted is None or truth is None:
        return render.empty_png()
    valid = predicted[1] & truth[1]
    return render.encode_png(
        render.difference_rgba(predicted[0][0], truth[0][0], valid, classes.nodata)
    )


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def make_handlers(state: ViewState) -> list[tuple[str, Any, dict[str, Any]]]:
    """Tornado routes: ``/tiles/<layer>/<z>/<x>/<y>.png`` and ``/upload``."""
    from tornado import web
    from tornado.ioloop import IOLoop

    pool = ThreadPoolExecutor(TILE_WORKERS, thread_name_prefix="geotiler-tiles")

    class TileHandler(web.RequestHandler):
        async def get(self, layer_id: str, zoom: str, x: str, y: str) -> None:
            query = {k: self.get_argument(k) for k in self.request.arguments}
            try:
                png = await IOLoop.current().run_in_executor(
                    pool, render_layer, state, layer_id, int(zoom), int(x), int(y), query
                )
            except KeyError:
                raise web.HTTPError(404, reason="no such layer") from None
            except ValueError as exc:
                raise web.HTTPError(400, reason=str(exc).splitlines()[0][:200]) from None
            self.set_header("Content-Type", "image/png")
            self.set_header("Cache-Control", "no-store")
            self.finish(png)

    return [
        (r"/tiles/([A-Za-z0-9:_.-]+)/(\d+)/(\d+)/(\d+)\.png", TileHandler, {}),
        (r"/upload", make_upload_handler(state), {}),
    ]


def make_upload_handler(state: ViewState) -> Any:
    """A streaming upload endpoint: size-limited, saved under a server-made name."""
    from tornado import web

    from geotiler.view.jobs import safe_upload_name

    @web.stream_request_body
    class UploadHandler(web.RequestHandler):
        def prepare(self) -> None:
            self.received = 0
            self.handle: Any = None
            length = int(self.request.headers.get("Content-Length", "0") or 0)
            if length > state.max_upload_bytes:
                raise web.HTTPError(413, reason="upload larger than the limit")
            connection: Any = self.request.connection
            connection.set_max_body_size(state.max_upload_bytes)
            from urllib.parse import unquote

            name = unquote(self.request.headers.get("X-Filename", ""))
            try:
                with state.lock:
                    number = next(state.upload_numbers)
                    safe = safe_upload_name(name, number)
                    self.token = f"u{number}"
                    state.uploads[self.token] = state.upload_dir / safe
            except ValueError as exc:
                raise web.HTTPError(400, reason=str(exc)) from None
            self.path = state.uploads[self.token]
            self.handle = self.path.open("xb")  # a new file, never another upload's

        def data_received(self, chunk: bytes) -> None:
            self.received += len(chunk)
            if self.received > state.max_upload_bytes:
                self._discard()
                raise web.HTTPError(413, reason="upload larger than the limit")
            self.handle.write(chunk)

        def post(self) -> None:
            self.handle.close()
            import rasterio

            try:
                with rasterio.open(self.path) as dataset:
                    bands = dataset.count
            except rasterio.errors.RasterioIOError:
                self._discard()
                raise web.HTTPError(400, reason="not a readable GeoTIFF") from None
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"token": self.token, "name": self.path.name, "bands": bands}))

        def _discard(self) -> None:
            if self.handle is not None:
                self.handle.close()
            self.path.unlink(missing_ok=True)
            state.uploads.pop(self.token, None)

        def on_connection_close(self) -> None:
            if self.handle is not None and not self.handle.closed:
                self._discard()

    return UploadHandler


def _shape(path: Path) -> tuple[int, int]:
    import rasterio

    with rasterio.open(path) as dataset:
        return dataset.height, dataset.width


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningView:
    """A started server: its URL, and how to stop it."""

    url: str
    port: int
    state: ViewState
    stop: Callable[[], None]


def start_view(
    sources: ViewSources,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_upload_mb: int = DEFAULT_UPLOAD_MB,
    upload_dir: Path | None = None,
    allow_origins: tuple[str, ...] = (),
) -> tuple[Any, RunningView]:
    """Create the server (not yet serving until the IO loop runs); port 0 picks a free one."""
    import warnings

    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server
    from rio_tiler.errors import NoOverviewWarning

    from geotiler.view.app import build_document

    # A raster without overviews is still read window by window; say it once, in the log.
    warnings.filterwarnings("ignore", category=NoOverviewWarning)
    for path in sources.files():
        if not has_overviews(path) and max(_shape(path)) > 4096:
            log.warning("%s has no overviews: zoomed-out tiles read many blocks", path)
    folder = upload_dir or Path(tempfile.mkdtemp(prefix="geotiler-view-"))
    state = ViewState(sources, folder, max_upload_bytes=max_upload_mb * 2**20)

    def modify(doc: Any) -> None:
        build_document(doc, state)

    port = port or free_port(host)
    origins = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", host)}
    try:
        server = Server(
            {"/": Application(FunctionHandler(modify))},
            address=host,
            port=port,
            allow_websocket_origin=sorted(origins | set(allow_origins)),
            extra_patterns=make_handlers(state),
            websocket_max_message_size=64 * 2**20,
        )
    except OSError as exc:
        if upload_dir is None:
            folder.rmdir()  # the empty temporary folder made above
        raise InputError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --port, or "
            "--port 0 for any free one"
        ) from None
    actual = int(server.port or port)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{actual}/"
    return server, RunningView(url=url, port=actual, state=state, stop=server.stop)
