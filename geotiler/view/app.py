"""The page: one Bokeh document per browser tab, built from the server's :class:`ViewState`.

BokehJS (served from the installed ``bokeh`` wheel) draws the slippy map: tile renderers whose
sources point at this server's ``/tiles`` endpoint, quads for the tile store, patches with a
polygon drawing tool for corrections. Widgets call back into Python over Bokeh's websocket; the
only JavaScript of our own is the upload (a file picker, drag and drop, one POST to ``/upload``).
"""

from __future__ import annotations

import html
import logging
from typing import Any
from urllib.parse import urlencode

from bokeh.events import Tap
from bokeh.layouts import column, row
from bokeh.models import (
    BasicTickFormatter,
    CheckboxGroup,
    CustomJS,
    Div,
    Range1d,
    RangeSlider,
    Select,
    Slider,
    TileRenderer,
    WMTSTileSource,
)
from bokeh.plotting import figure

from geotiler.view import render
from geotiler.view.server import ViewState

log = logging.getLogger(__name__)

LAYERS = {
    "scene": "scene",
    "truth": "reference mask",
    "map": "predicted map",
    "difference": "right / wrong",
    "confidence": "low confidence",
}
SIDEBAR_PX = 340


def build_document(doc: Any, state: ViewState) -> None:
    """Fill ``doc`` with the map and its controls."""
    from geotiler.view.app_edit import EditPanels

    page = MapPage(doc, state)
    edit = EditPanels(page)
    sidebar = column(
        *page.controls(),
        *edit.controls(),
        width=SIDEBAR_PX,
        sizing_mode="stretch_height",
        styles={"overflow-y": "auto", "padding-right": "6px"},
    )
    doc.add_root(row(page.figure, sidebar, sizing_mode="stretch_both", name="root"))
    doc.title = "geotiler view"


class MapPage:
    """The map figure, its tile layers and the layer controls."""

    def __init__(self, doc: Any, state: ViewState) -> None:
        self.doc, self.state = doc, state
        self.sources = state.sources
        self.grid = state.grid
        self.version = 0
        self.figure = self._figure()
        scenes = list(self.sources.scenes)
        self.scene = Select(title="scene", value=scenes[0], options=scenes, name="scene")
        self.bands = Select(title="bands", name="bands")
        self.red, self.green, self.blue = (Select(title=t, width=100) for t in "RGB")
        self.percent = RangeSlider(
            title="stretch (percentiles)", start=0, end=100, value=(2, 98), step=0.5
        )
        available = [key for key in LAYERS if key == "scene" or state.layer(key) is not None]
        self.layer_keys = available
        self.toggles = CheckboxGroup(
            labels=[LAYERS[k] for k in available],
            active=[i for i, k in enumerate(available) if k in ("scene", "map")],
            name="layers",
        )
        self.opacity = Slider(title="map opacity", start=0, end=1, step=0.05, value=0.7)
        self.class_ids = [c.id for c in self.sources.classes.classes]
        self.classes = CheckboxGroup(
            labels=[f"{c.id} {c.name}" for c in self.sources.classes.classes],
            active=list(range(len(self.class_ids))),
            name="classes",
        )
        self.threshold = Slider(title="confidence threshold", start=0, end=1, step=0.01, value=0.5)
        self.legend = Div(text=legend_html(self.sources.classes), name="legend")
        self.info = Div(text="Click the map for pixel values.", name="info", width=SIDEBAR_PX - 20)
        self.renderers: dict[str, TileRenderer] = {}
        self.tap_listeners: list[Any] = []
        self._band_options()
        self._add_layers()
        self._connect()

    def _figure(self) -> Any:
        left, bottom, right, top = self.grid.extent
        pad = 0.05 * max(right - left, top - bottom)
        plot = figure(
            x_range=Range1d(left - pad, right + pad),
            y_range=Range1d(bottom - pad, top + pad),
            match_aspect=True,
            tools="pan,wheel_zoom,box_zoom,reset,save",
            active_scroll="wheel_zoom",
            sizing_mode="stretch_both",
            min_width=400,
            min_height=400,
            name="map",
        )
        plot.grid.visible = False
        plot.xaxis.formatter = BasicTickFormatter(use_scientific=False)
        plot.yaxis.formatter = BasicTickFormatter(use_scientific=False)
        plot.background_fill_color = "#e9e9e9"
        plot.xaxis.axis_label = "x (px)" if self.grid.crs is None else "x"
        plot.yaxis.axis_label = "-row (px)" if self.grid.crs is None else "y"
        plot.toolbar.logo = None
        return plot

    # -- tile layers --------------------------------------------------------------------------

    def tile_source(self, layer: str, query: dict[str, Any]) -> WMTSTileSource:
        """A fresh tile source (fresh tile cache) for ``layer`` with ``query`` parameters."""
        self.version += 1
        params = urlencode({**query, "v": self.version})
        return WMTSTileSource(
            url=f"/tiles/{layer}/{{Z}}/{{X}}/{{Y}}.png?{params}",
            attribution="",
            **self.grid.tile_source_options(),
        )

    def _add_layers(self) -> None:
        for key in self.layer_keys:
            source = self.tile_source(self._layer_id(key), self._query(key))
            renderer = TileRenderer(tile_source=source, name=f"layer-{key}")
            if key in ("map", "truth"):
                renderer.alpha = self.opacity.value
            self.figure.renderers.append(renderer)
            self.renderers[key] = renderer
        self._visibility()

    def _layer_id(self, key: str) -> str:
        return f"scene:{self.scene.value}" if key == "scene" else key

    def _query(self, key: str) -> dict[str, Any]:
        if key == "scene":
            bands = self.band_indexes()
            stretch = self._stretch(bands)
            return {
                "b": ",".join(map(str, bands)),
                "lo": ",".join(f"{v:.6g}" for v in stretch.low),
                "hi": ",".join(f"{v:.6g}" for v in stretch.high),
            }
        if key in ("map", "truth"):
            hidden = [c for i, c in enumerate(self.class_ids) if i not in self.classes.active]
            return {"hide": ",".join(map(str, hidden))}
        if key == "confidence":
            return {"t": f"{self.threshold.value:.3f}"}
        return {}

    def refresh(self, *keys: str) -> None:
        """New tile sources for ``keys`` (so the browser fetches their tiles again)."""
        for key in keys:
            if key in self.renderers:
                self.renderers[key].tile_source = self.tile_source(
                    self._layer_id(key), self._query(key)
                )

    def _visibility(self) -> None:
        shown = {self.layer_keys[i] for i in self.toggles.active}
        for key, renderer in self.renderers.items():
            renderer.visible = key in shown

    # -- scene bands and stretch -------------------------------------------------------------

    def _band_options(self) -> None:
        path = self.sources.scenes[self.scene.value]
        names = list(render.band_names(path))
        self.band_labels = names
        self.presets = render.band_presets(names)
        self.bands.options = [*self.presets, "custom"]
        self.bands.value = next(iter(self.presets))
        labels = [f"{i + 1} {n}" for i, n in enumerate(names)]
        for select, index in zip(
            (self.red, self.green, self.blue), self.presets[self.bands.value], strict=True
        ):
            select.options = labels
            select.value = labels[index - 1]

    def band_indexes(self) -> tuple[int, int, int]:
        if self.bands.value in self.presets:
            return self.presets[self.bands.value]
        r, g, b = (int(s.value.split()[0]) for s in (self.red, self.green, self.blue))
        return r, g, b

    def _stretch(self, bands: tuple[int, int, int]) -> render.Stretch:
        path = self.sources.scenes[self.scene.value]
        low, high = self.percent.value
        return _cached_stretch(str(path), bands, (float(low), float(high)))

    # -- callbacks ----------------------------------------------------------------------------

    def _connect(self) -> None:
        self.toggles.on_change("active", lambda _a, _o, _n: self._visibility())
        self.classes.on_change("active", lambda _a, _o, _n: self.refresh("map", "truth"))
        self.threshold.on_change("value_throttled", lambda _a, _o, _n: self.refresh("confidence"))
        self.percent.on_change("value_throttled", lambda _a, _o, _n: self.refresh("scene"))
        self.bands.on_change("value", lambda _a, _o, _n: self._preset_chosen())
        for select in (self.red, self.green, self.blue):
            select.on_change("value", lambda _a, _o, _n: self._custom_bands())
        self.scene.on_change("value", lambda _a, _o, _n: self._scene_chosen())
        self.opacity.js_on_change(
            "value",
            CustomJS(
                args={
                    "layers": [self.renderers[k] for k in ("map", "truth") if k in self.renderers]
                },
                code="for (const layer of layers) { layer.alpha = cb_obj.value }",
            ),
        )
        self.figure.on_event(Tap, self._tapped)

    def _preset_chosen(self) -> None:
        if self.bands.value in self.presets:
            labels = self.red.options
            for select, index in zip(
                (self.red, self.green, self.blue), self.presets[self.bands.value], strict=True
            ):
                select.value = labels[index - 1]
        self.refresh("scene")

    def _custom_bands(self) -> None:
        chosen = tuple(int(s.value.split()[0]) for s in (self.red, self.green, self.blue))
        if self.presets.get(self.bands.value) != chosen:
            self.bands.value = "custom"
        self.refresh("scene")

    def _scene_chosen(self) -> None:
        self._band_options()
        self.refresh("scene")

    def _tapped(self, event: Any) -> None:
        from geotiler.view.probe import describe_pixel, format_pixel

        sources = self.sources
        info = describe_pixel(
            grid=self.grid,
            x=float(event.x),
            y=float(event.y),
            scene=(self.scene.value, sources.scenes[self.scene.value]),
            classes=sources.classes,
            map_path=sources.map,
            probabilities=sources.probabilities,
            confidence=sources.confidence,
            truth=sources.truth,
        )
        html = format_pixel(info)
        for callback in self.tap_listeners:
            extra = callback(float(event.x), float(event.y))
            if extra:
                html += "<hr>" + extra
        self.info.text = html

    def controls(self) -> list[Any]:
        widgets: list[Any] = [
            Div(text="<h3 style='margin:4px 0'>geotiler view</h3>" + _note(self.state.notes)),
            self.toggles,
            self.scene,
            self.bands,
            row(self.red, self.green, self.blue),
            self.percent,
        ]
        if "map" in self.renderers or "truth" in self.renderers:
            widgets += [self.opacity, self.legend, self.classes]
        if "confidence" in self.renderers:
            widgets.append(self.threshold)
        widgets.append(self.info)
        return widgets


_STRETCHES: dict[tuple[str, tuple[int, int, int], tuple[float, float]], render.Stretch] = {}


def _cached_stretch(
    path: str, bands: tuple[int, int, int], percentiles: tuple[float, float]
) -> render.Stretch:
    key = (path, bands, percentiles)
    if key not in _STRETCHES:
        _STRETCHES[key] = render.compute_stretch(path, bands, percentiles=percentiles)
    return _STRETCHES[key]


def _note(text: str) -> str:
    return f"<div name='notes' style='color:#155724'>{html.escape(text)}</div>" if text else ""


def legend_html(classes: Any) -> str:
    """The class table as colour swatches and names."""
    items = [
        f"<div style='white-space:nowrap'><span style='display:inline-block;width:12px;"
        f"height:12px;background:{c.color};border:1px solid #444;margin-right:5px'></span>"
        f"{c.id} {c.name}</div>"
        for c in classes.classes
    ]
    return "<b>legend</b>" + "".join(items)
