"""The page's working panels: tile store outlines, corrections, review queue, upload and predict."""

from __future__ import annotations

import getpass
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from bokeh.models import (
    Button,
    CategoricalColorMapper,
    ColumnDataSource,
    CustomJS,
    DataTable,
    Div,
    PolyDrawTool,
    RadioButtonGroup,
    Select,
    TableColumn,
    TextInput,
    Toggle,
)
from bokeh.transform import transform

from geotiler.view.corrections import Correction, CorrectionLog

log = logging.getLogger(__name__)

POLL_MS = 500
REVIEW_COLUMNS = ("rank", "entropy", "margin", "reviewed")


class EditPanels:
    """Controls beyond the layers; each hooks into the page's map and tap events."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.state = page.state
        self.sources = page.sources
        self.widgets: list[Any] = []
        if self.sources.store is not None:
            self._outlines()
        self._corrections()
        if self.sources.probabilities is not None:
            self._review()
        from geotiler.view.app_upload import UploadPanel

        self.widgets += UploadPanel(page).widgets

    def controls(self) -> list[Any]:
        return self.widgets

    # -- tile store ---------------------------------------------------------------------------

    def _outlines(self) -> None:
        from geotiler.view.outlines import describe_tile, tile_outlines

        store = self.sources.store
        data = tile_outlines(store, self.page.grid, scene=self.page.scene.value)
        self.tiles = ColumnDataSource(data, name="tiles")
        glyph = self.page.figure.quad(
            left="left", right="right", bottom="bottom", top="top", source=self.tiles,
            fill_alpha=0.06, fill_color="verdict_colour", line_color="verdict_colour",
            line_width=1.2, name="outlines",
        )  # fmt: skip
        glyph.visible = False
        colour_by = RadioButtonGroup(labels=["verdict", "split"], active=0, name="colour-by")
        show = Toggle(label="tile store outlines", active=False, name="outlines-toggle")
        show.js_link("active", glyph, "visible")

        def recolour(_attr: str, _old: Any, new: int) -> None:
            field = "verdict_colour" if new == 0 else "split_colour"
            glyph.glyph.line_color = field
            glyph.glyph.fill_color = field

        colour_by.on_change("active", recolour)

        def tile_info(x: float, y: float) -> str:
            if not glyph.visible:
                return ""
            d = self.tiles.data
            for i, tile in enumerate(d["tile"]):
                if d["left"][i] <= x < d["right"][i] and d["bottom"][i] <= y < d["top"][i]:
                    return describe_tile(store, tile)
            return ""

        self.page.tap_listeners.append(tile_info)
        self.widgets += [Div(text="<b>tile store</b>"), show, colour_by]

    # -- corrections --------------------------------------------------------------------------

    def _corrections(self) -> None:
        classes = self.sources.classes
        self.log = CorrectionLog(self.sources.corrections, self.page.grid.crs)
        mapper = CategoricalColorMapper(
            factors=[str(c.id) for c in classes.classes],
            palette=[c.color for c in classes.classes],
            nan_color="#888888",
        )
        self.drawn = ColumnDataSource(self._columns(), name="corrections")
        patches = self.page.figure.patches(
            xs="xs", ys="ys", source=self.drawn, fill_alpha=0.45, line_width=2,
            fill_color=transform("cls", mapper), line_color="black", name="corrections-patches",
        )  # fmt: skip
        tool = PolyDrawTool(renderers=[patches], empty_value="", name="draw")
        self.page.figure.add_tools(tool)
        draw = Toggle(label="draw corrections", active=False, name="draw-toggle")
        draw.js_on_change(
            "active", CustomJS(args={"tool": tool}, code="tool.active = cb_obj.active")
        )
        self.correct_as = Select(
            title="correct as", options=[f"{c.id} {c.name}" for c in classes.classes],
            value=f"{classes.classes[0].id} {classes.classes[0].name}", name="correct-as",
        )  # fmt: skip
        self.author = TextInput(title="author", value=_user(), width=150)
        undo = Button(label="undo", width=70, name="undo")
        redo = Button(label="redo", width=70, name="redo")
        self.edit_status = Div(text=self._status(), name="corrections-status")
        self._syncing = False
        self.drawn.on_change("data", lambda _a, _o, _n: self._drawn_changed())
        undo.on_click(lambda: self._step(self.log.undo))
        redo.on_click(lambda: self._step(self.log.redo))
        from bokeh.layouts import row

        self.widgets += [
            Div(text="<b>corrections</b>: press and hold to start a polygon, click to add "
                "corners, press and hold to close it; click one and press Backspace to delete"),
            draw, self.correct_as, self.author, row(undo, redo), self.edit_status,
        ]  # fmt: skip
        if self.sources.run is not None and self.sources.store is not None:
            self.fine_tune = Button(label="fine-tune on corrections", width=200, name="fine-tune")
            self.fine_tune_status = Div(
                text=f"continues {self.sources.run.name}", name="fine-tune-status"
            )
            self.fine_tune.on_click(self._start_fine_tune)
            self.widgets += [self.fine_tune, self.fine_tune_status]

    def _start_fine_tune(self) -> None:
        from geotiler.view.jobs import FineTuneJob, free_name

        sources = self.sources
        if not self.log.items or sources.run is None or sources.store is None:
            self.fine_tune_status.text = "draw corrections first"
            return
        where = sources.map.parent if sources.map else sources.corrections.parent
        stem = sources.map.stem if sources.map else "landcover"
        self.tune_job = FineTuneJob(
            corrections=self.log.path, run=sources.run, store=sources.store,
            output=free_name(sources.run.parent, f"{sources.run.name}-corrected"),
            map_output=free_name(where, f"{stem}-corrected", ".tif"),
        ).start()  # fmt: skip
        self.fine_tune.disabled = True
        self.tune_poll = self.page.doc.add_periodic_callback(self._fine_tune_progress, POLL_MS)

    def _fine_tune_progress(self) -> None:
        job = self.tune_job
        if job.state == "running":
            self.fine_tune_status.text = f"fine-tuning: epoch {job.epoch} (then predicting again)"
            return
        self.page.doc.remove_periodic_callback(self.tune_poll)
        self.fine_tune.disabled = False
        if job.state == "failed":
            self.fine_tune_status.text = f"fine-tuning failed: {job.error}"
            return
        self.state.show(
            replace(
                self.sources,
                map=job.map_output,
                confidence=None,
                probabilities=None,
                run=job.output,
            )
        )
        self.state.notes = f"fine-tuned: {job.summary}"
        rebuild(self.page.doc, self.state)

    def _columns(self) -> dict[str, list[Any]]:
        items = self.log.items
        return {
            "xs": [list(c.xs) for c in items],
            "ys": [list(c.ys) for c in items],
            "cls": [str(c.class_id) for c in items],
            "author": [c.author for c in items],
            "time": [c.time for c in items],
        }

    def _drawn_changed(self) -> None:
        if self._syncing:
            return
        d = self.drawn.data
        class_id = int(self.correct_as.value.split()[0])
        items, fresh = [], False
        for i, xs in enumerate(d["xs"]):
            xs, ys = list(xs), list(d["ys"][i])
            if len(xs) < 3:
                continue
            if not d["cls"][i]:
                items.append(Correction.now(xs, ys, class_id, self.author.value or _user()))
                fresh = True
            else:
                items.append(Correction(tuple(xs), tuple(ys), int(d["cls"][i]),
                                        str(d["author"][i]), str(d["time"][i])))  # fmt: skip
        complete = all(len(xs) >= 3 for xs in d["xs"])
        if complete or fresh:
            self.log.replace(items)
        if fresh:
            self._push()
        self.edit_status.text = self._status()

    def _step(self, action: Any) -> None:
        action()
        self._push()
        self.edit_status.text = self._status()

    def _push(self) -> None:
        self._syncing = True
        try:
            self.drawn.data = self._columns()
        finally:
            self._syncing = False

    def _status(self) -> str:
        return f"{len(self.log.items)} polygon(s) saved to {self.log.path.name}"

    # -- review queue -------------------------------------------------------------------------

    def _review(self) -> None:
        from geotiler.view.probe import review_queue

        cells = review_queue(self.sources.probabilities, self.page.grid)
        self.reviewed_file = self.sources.corrections.with_suffix(".reviewed.json")
        reviewed = set(_read_json(self.reviewed_file))
        keys = [_cell_key(c.bounds) for c in cells]
        self.queue = ColumnDataSource(
            {
                "rank": list(range(1, len(cells) + 1)),
                "entropy": [round(c.entropy, 3) for c in cells],
                "margin": [round(c.margin, 3) for c in cells],
                "reviewed": ["yes" if k in reviewed else "" for k in keys],
                "key": keys,
                "bounds": [list(c.bounds) for c in cells],
            },
            name="review",
        )
        table = DataTable(
            source=self.queue, height=180, width=300, index_position=None, name="review-table",
            reorderable=False,
            columns=[TableColumn(field=f, title=f) for f in REVIEW_COLUMNS],
        )  # fmt: skip
        mark = Button(label="mark reviewed", width=120)
        self.queue.selected.on_change("indices", lambda _a, _o, new: self._go_to(new))
        mark.on_click(self._mark)
        self.widgets += [Div(text="<b>review queue</b> (most uncertain first)"), table, mark]

    def _go_to(self, indices: list[int]) -> None:
        if not indices:
            return
        left, bottom, right, top = self.queue.data["bounds"][indices[0]]
        pad = 0.25 * max(right - left, top - bottom)
        fig = self.page.figure
        fig.x_range.start, fig.x_range.end = left - pad, right + pad
        fig.y_range.start, fig.y_range.end = bottom - pad, top + pad

    def _mark(self) -> None:
        chosen = self.queue.selected.indices
        if not chosen:
            return
        reviewed = set(_read_json(self.reviewed_file))
        flags = list(self.queue.data["reviewed"])
        for i in chosen:
            reviewed.add(self.queue.data["key"][i])
            flags[i] = "yes"
        _write_json(self.reviewed_file, sorted(reviewed))
        self.queue.patch({"reviewed": [(slice(len(flags)), flags)]})

    # -- upload and predict -------------------------------------------------------------------


def rebuild(doc: Any, state: Any) -> None:
    """Build the page again on the state's new sources (a new map, a new scene)."""
    from geotiler.view.app import build_document

    doc.clear()
    build_document(doc, state)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _cell_key(bounds: Any) -> str:
    return ",".join(f"{v:.3f}" for v in bounds)


def _read_json(path: Path) -> list[str]:
    try:
        return list(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return []


def _write_json(path: Path, values: list[str]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(values), encoding="utf-8")
    temporary.replace(path)
