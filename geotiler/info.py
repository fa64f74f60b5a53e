"""What a raster holds, for ``geotiler info``: grid, layout, overviews and a class histogram."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling

from geotiler.grid import Grid
from geotiler.io import block_layout, open_raster, read_class_table

MAX_CLASSES = 256


@dataclass(frozen=True)
class RasterInfo:
    path: Path
    grid: Grid
    driver: str
    dtype: str
    bands: int
    band_names: tuple[str, ...]
    nodata: float | None
    block_rows: int
    block_cols: int
    striped: bool
    compression: str | None
    overviews: tuple[int, ...]
    histogram: dict[int, int] = field(default_factory=dict)
    class_names: dict[int, str] = field(default_factory=dict)
    sampled: bool = False

    def rows(self) -> list[tuple[str, str]]:
        layout = (
            "one-row strips"
            if self.striped and self.block_rows == 1
            else (f"strips of {self.block_rows} rows" if self.striped else "tiles")
        )
        return [
            ("grid", self.grid.describe()),
            ("bounds", ", ".join(f"{v:.2f}" for v in self.grid.bounds)),
            ("driver", self.driver),
            ("dtype", self.dtype),
            (
                "bands",
                f"{self.bands}"
                + (f" ({', '.join(self.band_names)})" if any(self.band_names) else ""),
            ),
            ("nodata", "none" if self.nodata is None else f"{self.nodata:g}"),
            ("blocks", f"{self.block_rows} x {self.block_cols} px ({layout})"),
            ("compression", self.compression or "none"),
            ("overviews", ", ".join(f"1/{f}" for f in self.overviews) or "none"),
        ]


def raster_info(path: str | PathLike[str], *, sample_px: int = 4_000_000) -> RasterInfo:
    """Describe a raster; single-band integer rasters get a class histogram (sampled when huge)."""
    with open_raster(path) as dataset:
        grid = Grid.from_dataset(dataset)
        layout = block_layout(dataset)
        histogram: dict[int, int] = {}
        sampled = False
        names: dict[int, str] = {}
        dtype = dataset.dtypes[0]
        if dataset.count == 1 and dtype in ("uint8", "int8", "uint16", "int16"):
            histogram, sampled = _histogram(dataset, sample_px)
            table = read_class_table(dataset)
            if table is not None:
                names = table.names
                if table.nodata is not None:
                    names[table.nodata] = "nodata"
        return RasterInfo(
            path=Path(path),
            grid=grid,
            driver=dataset.driver,
            dtype=dtype,
            bands=dataset.count,
            band_names=tuple(d or "" for d in dataset.descriptions),
            nodata=dataset.nodata,
            block_rows=layout.block_rows,
            block_cols=layout.block_cols,
            striped=layout.striped,
            compression=dataset.compression.value if dataset.compression else None,
            overviews=tuple(dataset.overviews(1)),
            histogram=histogram,
            class_names=names,
            sampled=sampled,
        )


def _histogram(dataset: object, sample_px: int) -> tuple[dict[int, int], bool]:
    rows, cols = dataset.height, dataset.width  # type: ignore[attr-defined]
    step = max(1, math.ceil(math.sqrt(rows * cols / max(sample_px, 1))))
    out_shape = (max(1, rows // step), max(1, cols // step))
    data = dataset.read(1, out_shape=out_shape, resampling=Resampling.nearest)  # type: ignore[attr-defined]
    values, counts = np.unique(data, return_counts=True)
    if len(values) > MAX_CLASSES:
        return {}, step > 1
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}, step > 1
