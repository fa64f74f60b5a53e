"""Start-up: each command path imports only what it needs; small masks skip numba."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geotiler.rescale.kernels import mode_kernel
from geotiler.rescale.smallmode import numpy_mode
from tests.conftest import WriteRaster

HEAVY = ("numpy", "rasterio", "pydantic", "yaml", "dask", "distributed", "torch", "numba", "zarr")


def _imported_after(code: str, tmp_path: Path) -> set[str]:
    """The heavy modules a fresh interpreter has loaded after running ``code``."""
    script = (
        "import sys\n"
        f"{code}\n"
        f"print('LOADED=' + __import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOADED="))
    return set(json.loads(line[len("LOADED=") :]))


def test_help_imports_no_library(tmp_path: Path) -> None:
    code = "from geotiler.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _imported_after(code, tmp_path) == set()


@pytest.mark.parametrize("method", ["mode", "near"])
def test_a_small_rescale_needs_no_dask_numba_or_torch(
    tmp_path: Path, write_raster: WriteRaster, blobby_mask: object, method: str
) -> None:
    mask = write_raster("mask.tif", blobby_mask(200, 300), nodata=0)  # type: ignore[operator]
    code = (
        "from geotiler.cli import main\n"
        f"try:\n    main(['rescale', {str(mask)!r}, '--factor', '10', '--method', {method!r},"
        f" '-o', 'out.tif', '-q'])\nexcept SystemExit as e:\n    assert not e.code, e.code"
    )
    loaded = _imported_after(code, tmp_path)
    assert (tmp_path / "out.tif").exists()
    assert not loaded & {"dask", "distributed", "torch", "numba", "zarr"}


def test_scoring_maps_needs_no_torch(tmp_path: Path) -> None:
    code = "import geotiler.evaluate, geotiler.evaluate_many, geotiler.train.metrics"
    assert "torch" not in _imported_after(code, tmp_path)


def test_numpy_mode_equals_the_numba_kernel() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        factor = int(rng.integers(1, 8))
        dtype = np.uint8 if trial % 2 else np.uint16
        rows, cols = (int(v) for v in rng.integers(1, 40, 2))
        # Few values and small blocks: ties everywhere.
        src = rng.integers(0, int(rng.integers(2, 7)), (rows, cols)).astype(dtype)
        row0, col0 = (int(v) for v in rng.integers(-factor, factor + 1, 2))
        shape = (max(1, (rows - row0) // factor + 1), max(1, (cols - col0) // factor + 1))
        n_values = 256 if dtype == np.uint8 else 300
        weights = np.ones(n_values) if trial % 3 else rng.choice([0.5, 1.0, 2.0], n_values)
        nodata, has_nodata = int(rng.integers(0, 3)), bool(trial % 4)
        outputs = []
        for kernel in ("numba", "numpy"):
            out = np.zeros(shape, dtype)
            hist = np.zeros(n_values, np.int64)
            args = (src, row0, col0, factor, nodata, has_nodata, weights, out, hist)
            if kernel == "numba":
                mode_kernel(*args)
            else:
                assert numpy_mode(*args)
            outputs.append((out, hist))
        np.testing.assert_array_equal(outputs[0][0], outputs[1][0], err_msg=f"trial {trial}")
        np.testing.assert_array_equal(outputs[0][1], outputs[1][1], err_msg=f"trial {trial}")


def test_numpy_mode_declines_many_values() -> None:
    src = np.arange(100, dtype=np.uint8).reshape(10, 10)
    out = np.zeros((5, 5), np.uint8)
    hist = np.zeros(256, np.int64)
    assert not numpy_mode(src, 0, 0, 2, 0, True, np.ones(256), out, hist)
    assert not hist.any()
