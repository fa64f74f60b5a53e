"""The record of a run: ``metrics.csv`` per epoch, TensorBoard events when installed, JSON files.

TensorBoard's tags and pictures are :mod:`geotiler.train.tensorboard`'s.

``metrics.csv`` is rewritten whole (temporary file + rename) after every epoch, so it is always
complete; a resumed run keeps the rows up to the checkpoint's epoch and goes on from there.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from geotiler.train.tensorboard import Board

METRICS_CSV = "metrics.csv"


class RunLog:
    """Epoch rows kept in memory, mirrored to ``metrics.csv`` and TensorBoard (rank 0 only)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        resume_epoch: int = 0,
        class_names: dict[int, str] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.class_names = class_names or {}
        self.enabled = enabled
        self.history: list[dict[str, float]] = []
        if resume_epoch:
            self.history = [
                r for r in read_metrics(run_dir / METRICS_CSV) if r["epoch"] <= resume_epoch
            ]
        self.board: Board | None = Board(run_dir) if enabled else None

    def append(self, row: dict[str, float]) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / METRICS_CSV
        columns = list(dict.fromkeys(key for r in self.history for key in r))
        temporary = path.with_name(f".{path.name}.partial")
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for r in self.history:
                writer.writerow({k: _fmt(k, r.get(k, math.nan)) for k in columns})
        temporary.replace(path)
        if self.board is not None:
            self.board.scalars(row, self.class_names)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None


def _fmt(key: str, value: float) -> str:
    return str(int(value)) if key == "epoch" else f"{value:.6g}"


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` as floats (empty when there is none)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            {k: float(v) if v not in ("", None) else math.nan for k, v in r.items()}
            for r in csv.DictReader(handle)
        ]


def write_json(path: Path, content: dict[str, Any]) -> Path:
    """Write ``content`` as indented JSON atomically (NaN becomes null)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    text = json.dumps(_json_safe(content), indent=2, sort_keys=False)
    temporary.write_text(text + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value
