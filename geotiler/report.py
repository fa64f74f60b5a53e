"""A Markdown report of a pipeline run: stages, tiles, training curves, metrics, pictures."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from geotiler.catalog import Catalog
from geotiler.pipeline import PipelineReport

log = logging.getLogger(__name__)


def write_report(catalog: Catalog, report: PipelineReport) -> Path:
    """Write ``report.md`` (+ ``training_curves.png``) into the evaluate stage's folder."""
    name = report.dataset
    folder = catalog.output_path("evaluate", name)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# geotiler report: dataset `{name}`", ""]
    lines += ["| stage | status | seconds | details |", "|---|---|---:|---|"]
    for stage in report.stages:
        details = ", ".join(f"{k}: {v}" for k, v in stage.details.items())
        lines.append(f"| {stage.stage} | {stage.status} | {stage.seconds:.1f} | {details} |")
    lines += ["", *_tiles_section(catalog.output_path("tile", name))]
    run_dir = catalog.output_path("train", name)
    curves = _training_curves(run_dir, folder)
    comparison = _comparison_lines(run_dir)
    if curves is not None or comparison:
        lines += ["## Training", "", *comparison]
        if curves is not None:
            lines += [f"![training curves]({curves.name})", ""]
    lines += _metrics_section(folder / "metrics.json")
    for picture, title in (("quicklook.png", "Quick-look"), ("confusion_matrix.png", "Confusion")):
        if (folder / picture).is_file():
            lines += [f"## {title}", "", f"![{title}]({picture})", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _tiles_section(store: Path) -> list[str]:
    from geotiler.errors import GeotilerError
    from geotiler.tiles.decisions import dropped_label
    from geotiler.tiles.store import TileStore

    try:
        decisions = TileStore.open(store).attrs.decisions
        summary = decisions.summary if decisions is not None else None
    except GeotilerError:
        return []
    if not summary:
        return []
    lines = ["## Tiles", "", f"{summary['tiles']} tiles, {summary['kept']} kept.", ""]
    lines += ["| | tiles |", "|---|---:|"]
    lines += [f"| {dropped_label(reason)} | {n} |" for reason, n in summary["dropped"].items()]
    lines += [f"| kept in {split} | {n} |" for split, n in summary["splits"].items()]
    return [*lines, ""]


def _comparison_lines(run_dir: Path) -> list[str]:
    """The network beside the pixel baseline (and their average), from the run's metrics.json."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return []
    metrics = json.loads(path.read_text(encoding="utf-8"))
    baseline = (metrics.get("pixel_baseline") or {}).get("val_miou")
    network = (metrics.get("network") or {}).get("val_miou")
    chosen = metrics.get("chosen", "network")
    uses = {"network": "the network", "pixel-gbm": "the pixel baseline", "ensemble": "both"}
    if network is None and baseline is not None:
        return [f"Pixel baseline (the model): val mIoU {_num(baseline)}.", ""]
    if baseline is None:
        return [f"Network val mIoU {_num(network)} (no pixel baseline fitted).", ""]
    average = (metrics.get("ensemble") or {}).get("val_miou")
    return [
        f"**network val mIoU {_num(network)} vs pixel baseline {_num(baseline)}** (their "
        f"average {_num(average)}, on the same validation pixels); the default checkpoint "
        f"predicts with {uses.get(chosen, chosen)}.",
        "",
    ]


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _metrics_section(path: Path) -> list[str]:
    if not path.is_file():
        return []
    metrics = json.loads(path.read_text(encoding="utf-8"))
    lines = [
        "## Map against the reference (whole scene, all splits)",
        "",
        f"mIoU {_pct(metrics['miou'])}, pixel accuracy {_pct(metrics['pixel_accuracy'])}, "
        f"macro F1 {_pct(metrics['macro_f1'])}.",
        "",
        "| class | IoU | F1 | precision | recall | pixels |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in metrics["classes"]:
        lines.append(
            f"| {c['id']} {c['name']} | {_pct(c['iou'])} | {_pct(c['f1'])} | "
            f"{_pct(c['precision'])} | {_pct(c['recall'])} | {c['support']:,} |"
        )
    return [*lines, ""]


def _training_curves(run_dir: Path, folder: Path) -> Path | None:
    from geotiler.train.run_files import METRICS_CSV, read_metrics

    rows = read_metrics(run_dir / METRICS_CSV)
    if not rows:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [r["epoch"] for r in rows]
    fig, (loss_ax, iou_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in ("train_loss", "val_loss"):
        if key in rows[0]:
            loss_ax.plot(epochs, [r[key] for r in rows], label=key)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_title("loss")
    loss_ax.legend()
    for key in ("val_miou", "val_pixel_accuracy"):
        if key in rows[0]:
            iou_ax.plot(epochs, [r[key] for r in rows], label=key)
    iou_ax.set_xlabel("epoch")
    iou_ax.set_ylim(0, 1)
    iou_ax.set_title("validation")
    iou_ax.legend()
    fig.tight_layout()
    path = folder / "training_curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _pct(value: Any) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{100 * value:.1f}%")
    )
