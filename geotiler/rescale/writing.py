"""Running a rescale's windows (threads, or Dask) and writing their results, in order.

:func:`executor` says how a batch of windows is computed; :func:`write_units` drives the
computing a batch ahead of the writer and assembles results into whole rows of output blocks
(:class:`BlockRowWriter`), counting the class histograms of the summary on the way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from geotiler.errors import InputError
from geotiler.outputs import output_tag
from geotiler.rescale.methods import (
    Plan,
    Unit,
    UnitResult,
    compute_unit,
    count_into,
    counts_fast,
)
from geotiler.rescale.plan import Schedule

LOCAL_SCHEDULERS = (None, "threads", "synchronous")
Progress = Callable[[int], None]
ComputeBatch = Callable[[Plan, Sequence[Unit], int], Sequence[UnitResult]]


@contextlib.contextmanager
def executor(scheduler: str | None, workers: int | None) -> Iterator[tuple[ComputeBatch, int]]:
    """How a batch of windows is computed, and by how many threads in all."""
    if scheduler in LOCAL_SCHEDULERS:
        threads = 1 if scheduler == "synchronous" else workers or os.cpu_count() or 1
        with ThreadPoolExecutor(threads, thread_name_prefix="geotiler-rescale-unit") as pool:

            def compute(plan: Plan, units: Sequence[Unit], start: int) -> list[UnitResult]:
                return list(pool.map(partial(compute_unit, plan), units))

            yield compute, threads
        return
    from geotiler.parallel import use_scheduler

    with use_scheduler(scheduler, workers=workers) as client:
        threads = workers or os.cpu_count() or 1
        if client is not None:
            threads = max(1, sum(client.nthreads().values()))
        yield _dask_batch, threads


def results_in_order(
    plan: Plan, units: Sequence[Unit], threads: int, compute: ComputeBatch
) -> Iterator[UnitResult]:
    """Unit results in order, a batch at a time; the next batch computes while one is written.

    A helper thread drives the computing so the writer (this thread) never stops the workers; at
    most two batches of ``2 * threads`` windows are in flight, which bounds the memory.
    """
    size = 2 * threads
    ahead = ThreadPoolExecutor(1, thread_name_prefix="geotiler-rescale")
    try:
        pending: Future[Sequence[UnitResult]] | None = None
        for start in range(0, len(units), size):
            following = ahead.submit(compute, plan, units[start : start + size], start)
            if pending is not None:
                yield from pending.result()
            pending = following
        if pending is not None:
            yield from pending.result()
    finally:
        ahead.shutdown(wait=True, cancel_futures=True)


def _dask_batch(plan: Plan, units: Sequence[Unit], start: int) -> tuple[UnitResult, ...]:
    import dask

    task = dask.delayed(compute_unit, pure=True)
    keys = [f"rescale-{plan.token}-{start + n}" for n in range(len(units))]
    return dask.compute(*[task(plan, u, dask_key_name=k) for u, k in zip(units, keys, strict=True)])


class BlockRowWriter:
    """Assembles unit results into whole rows of output blocks and writes each once, complete.

    Writing whole compressed blocks once keeps the file compact: a block written in parts could
    be flushed half-done and stored twice. Rows no unit covers are left to GDAL, which fills
    blocks never written with the nodata value.
    """

    def __init__(
        self, dataset: Any, plan: Plan, units: Sequence[Unit], nodata: Any | None = None
    ) -> None:
        self.dataset = dataset
        self.plan = plan
        self.nodata = nodata  # --dst-nodata: written where the result is the plan's nodata
        self.block_rows = int(dataset.block_shapes[0][0])
        self.buffers: dict[int, np.ndarray] = {}
        self.missing: dict[int, int] = {}
        for unit in units:
            for block, (lo, hi) in self._blocks(unit):
                self.missing[block] = self.missing.get(block, 0) + (hi - lo) * (
                    unit.col_stop - unit.col_start
                )

    def _blocks(self, unit: Unit) -> Iterator[tuple[int, tuple[int, int]]]:
        first, last = unit.row_start // self.block_rows, (unit.row_stop - 1) // self.block_rows
        for block in range(first, last + 1):
            top = block * self.block_rows
            yield block, (max(unit.row_start, top), min(unit.row_stop, top + self.block_rows))

    def put(self, result: UnitResult) -> None:
        unit, target = result.unit, self.plan.target
        for block, (lo, hi) in self._blocks(unit):
            top = block * self.block_rows
            if block not in self.buffers:
                height = min(self.block_rows, target.rows - top)
                self.buffers[block] = np.full(
                    (height, target.cols), self.plan.nodata, self.plan.dtype
                )
            buffer = self.buffers[block]
            rows = slice(lo - unit.row_start, hi - unit.row_start)
            buffer[lo - top : hi - top, unit.col_start : unit.col_stop] = result.data[rows]
            self.missing[block] -= (hi - lo) * (unit.col_stop - unit.col_start)
            if self.missing[block] == 0:
                window = rasterio.windows.Window(0, top, target.cols, buffer.shape[0])
                data = self.buffers.pop(block)
                if self.nodata is not None:
                    data[data == self.plan.nodata] = self.nodata
                self.dataset.write(data, 1, window=window)


def write_units(
    path: Path,
    plan: Plan,
    profile: dict[str, Any],
    schedule: Schedule,
    threads: int,
    compute: ComputeBatch,
    progress: Progress | None,
    nodata: Any | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    target = plan.target
    src_hist = np.zeros(plan.n_values, np.int64)
    out_hist = np.zeros(plan.n_values, np.int64)
    profile = {
        **profile,
        "width": target.cols,
        "height": target.rows,
        "crs": target.crs,
        "transform": target.transform,
    }
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.update_tags(**output_tag("rescale"))
        writer = BlockRowWriter(dataset, plan, schedule.units, nodata)
        results = results_in_order(plan, schedule.units, threads, compute)
        fast = counts_fast(plan)
        for result, advance in zip(results, schedule.advances, strict=True):
            writer.put(result)
            if result.source_hist is not None:
                src_hist += result.source_hist
            if plan.n_values:
                count_into(result.data, out_hist, fast=fast)
            if progress is not None and advance:
                progress(advance)
    if nodata is not None and 0 <= nodata < len(out_hist) and out_hist[nodata]:
        raise InputError(
            f"{plan.source}: --dst-nodata {nodata} is a value the mask's classes take; choose "
            "a value no class uses"
        )
    left = plan.source_shape[0] - sum(schedule.advances)  # mask rows outside the target
    if progress is not None and left > 0:
        progress(left)
    return src_hist, out_hist
