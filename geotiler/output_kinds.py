"""Output kinds and how geotiler recognises what it wrote.

Every output has a kind, recognised by what geotiler puts in it:

- ``geotiff``: a GeoTIFF with the ``GEOTILER_OUTPUT`` tag (set by every GeoTIFF writer);
- ``synthetic``: a file of a generated dataset (``GEOTILER_SYNTHETIC`` tag, or its manifest);
- ``store``: a Zarr group with geotiler's tile-store attrs, holding nothing but Zarr nodes;
- ``run`` / ``report``: a folder with its marker (``run.json`` / ``report.json``) that lists the
  files geotiler wrote there (a folder holding anything else is not geotiler's to replace);
- ``checkpoint`` / ``onnx`` / ``index``: a file that says it is a geotiler checkpoint, export or
  tile index.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Literal

from geotiler.locks import INNER_PARTIAL, PARTIAL

Kind = Literal["geotiff", "store", "run", "report", "checkpoint", "onnx", "index", "synthetic"]
FOLDER_KINDS = ("store", "run", "report")
WHAT: dict[str, str] = {
    "geotiff": "a GeoTIFF written by geotiler",
    "store": "a geotiler tile store",
    "run": "a geotiler training run folder",
    "report": "a geotiler evaluation report folder",
    "checkpoint": "a geotiler checkpoint",
    "onnx": "an ONNX model exported by geotiler",
    "index": "a tile index written by geotiler",
    "synthetic": "a file of a dataset geotiler generated",
}
SYNTH_TAG = "GEOTILER_SYNTHETIC"
INDEX_COLUMNS = {"scene", "row", "col", "verdict", "split"}
OUTPUT_TAG = "GEOTILER_OUTPUT"
MARKERS = {"run": "run.json", "report": "report.json"}
ALWAYS_OURS = {
    # Files a kind's writers make whatever the marker lists (a run killed before its first update).
    "run": {"best.pt", "last.pt", "metrics.csv", "tensorboard", "confusion_matrix.csv",
            "confusion_matrix.png"},
    "report": {"report.md", "training_curves.png"},
}  # fmt: skip


def output_tag(product: str) -> dict[str, str]:
    """The tag a GeoTIFF writer sets on every file it creates (``dataset.update_tags(**...)``)."""
    from geotiler import __version__

    return {OUTPUT_TAG: json.dumps({"product": product, "geotiler": __version__})}


def recognise(path: Path) -> Kind | None:
    """The kind of geotiler output at ``path``, or None when geotiler did not write it."""
    if path.is_symlink() or not path.exists():
        return None
    if path.is_dir():
        if (path / "zarr.json").is_file() and _is_tile_store(path):
            return "store"
        folder_kinds: tuple[Kind, ...] = ("run", "report")
        for kind in folder_kinds:
            if _marker(path, kind) is not None:
                return kind
        return "run" if _legacy_run(path) else None
    tags = _geotiff_tags(path)
    if tags is not None:
        return "geotiff" if OUTPUT_TAG in tags else "synthetic" if SYNTH_TAG in tags else None
    if path.suffix == ".json" and _is_synth_manifest(path):
        return "synthetic"
    if _is_checkpoint(path):
        return "checkpoint"
    if path.suffix == ".onnx" and _is_onnx_export(path):
        return "onnx"
    if path.suffix.lower() in (".gpkg", ".parquet") and _is_tile_index(path):
        return "index"
    return None


def foreign_entries(path: Path, kind: Kind) -> list[str]:
    """Names inside a folder output of ``kind`` that geotiler did not write there."""
    if kind == "store":
        return [entry.name for entry in path.iterdir() if not _zarr_node(entry)]
    marker = _marker(path, kind) or {}
    listed = set(marker.get("files", ())) | ALWAYS_OURS.get(kind, set())
    listed.add(MARKERS.get(kind, ""))
    return sorted(
        entry.name
        for entry in path.iterdir()
        if entry.name not in listed and not _temporary(entry.name)
    )


def _temporary(name: str) -> bool:
    return bool(INNER_PARTIAL.match(name) or PARTIAL.match(name) or name.endswith(".lock"))


def _zarr_node(entry: Path) -> bool:
    return entry.name == "zarr.json" or (entry.is_dir() and (entry / "zarr.json").is_file())


def _is_tile_store(path: Path) -> bool:
    from geotiler.tiles.store import read_attrs

    return read_attrs(path) is not None


def _marker(path: Path, kind: str) -> dict[str, Any] | None:
    name = MARKERS.get(kind)
    if name is None:
        return None
    try:
        content = json.loads((path / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(content, dict) and content.get("format") == f"geotiler-{kind}"
    return content if ok else None


def _legacy_run(path: Path) -> bool:
    # Runs made before run.json: only run files, and a checkpoint of ours among them.
    names = {entry.name for entry in path.iterdir() if not _temporary(entry.name)}
    ours = ALWAYS_OURS["run"]
    return bool(names) and names <= ours and any(_is_checkpoint(path / n) for n in names & ours)


def _geotiff_tags(path: Path) -> dict[str, str] | None:
    """The metadata tags of a GeoTIFF (None when ``path`` is not one)."""
    if path.suffix.lower() in (".json", ".pt", ".pth", ".onnx", ".gpkg", ".parquet"):
        return None  # not worth asking GDAL
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as dataset:
            return dict(dataset.tags()) if dataset.driver in ("GTiff", "COG") else None
    except (RasterioError, OSError):
        return None


def _is_synth_manifest(path: Path) -> bool:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and content.get("generator") == "geotiler.synthetic"


def _is_checkpoint(path: Path) -> bool:
    """A ``torch.save`` zip whose pickle names our format (read without unpickling anything)."""
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            return bool(pickles) and b"geotiler-checkpoint" in archive.read(pickles[0])
    except (OSError, zipfile.BadZipFile, KeyError):
        return False


def _is_tile_index(path: Path) -> bool:
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            columns = set(pq.read_schema(path).names)
        else:
            import pyogrio

            columns = set(pyogrio.read_info(path, layer="tiles")["fields"])
    except Exception:  # unreadable, another layout or the reader missing: not ours to replace
        return False
    return columns >= INDEX_COLUMNS


def _is_onnx_export(path: Path) -> bool:
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx missing, or not an ONNX file: not ours to replace
        return False
    return any(entry.key == "geotiler" for entry in model.metadata_props)


def write_marker(folder: Path, kind: Kind, *, since: float | None = None, **fields: Any) -> Path:
    """Write (atomically) the marker of a folder output, listing the files geotiler wrote there.

    With ``since`` (a time stamp), only entries modified since then join the files listed before:
    a file someone put there before the writer started is never taken for geotiler's.
    """
    name = MARKERS[kind]
    previous = _marker(folder, kind) or {}
    present = {e.name: e for e in folder.iterdir() if not _temporary(e.name) and e.name != name}
    kept = set(previous.get("files", ())) & set(present)
    new = {n for n, e in present.items() if since is None or e.stat().st_mtime >= since}
    files = sorted(kept | new)
    content = {**previous, **fields, "format": f"geotiler-{kind}", "files": files}
    content["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path = folder / name
    temporary = folder / f".{name}.partial"
    temporary.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_marker(folder: Path, kind: Kind) -> dict[str, Any] | None:
    """The marker of a folder output of ``kind`` (None when absent or not ours)."""
    return _marker(folder, kind)
