"""RGB mask colours to class ids: the compiled lookup against a plain numpy one."""

from __future__ import annotations

import numpy as np
import pytest

from geotiler.tiles.colours import colour_ids_kernel

TABLE = np.array([0x000000, 0x3C1098, 0x8429F6, 0xE2A929, 0xFFFFFF], np.int64)
IDS = np.array([0, 1, 2, 3, 4], np.uint8)


def _rgb(keys: np.ndarray) -> np.ndarray:
    return np.stack([(keys >> shift) & 0xFF for shift in (16, 8, 0)]).astype(np.uint8)


def test_every_known_colour_maps_to_its_id() -> None:
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(TABLE), (37, 53))
    picks[:, 10:30] = 2  # runs of one colour, as masks have
    out = np.empty(picks.shape, np.uint8)
    assert colour_ids_kernel(_rgb(TABLE[picks]), TABLE, IDS, out) == -1
    assert np.array_equal(out, IDS[picks])


@pytest.mark.parametrize("unknown", [0x000001, 0x3C1097, 0xFFFFFE, 0x8429F7])
def test_the_first_unknown_colour_is_found_in_row_major_order(unknown: int) -> None:
    keys = np.full((6, 7), TABLE[1])
    keys[4, 2] = unknown
    keys[5, 0] = unknown  # later in row-major order
    keys[3, 6] = TABLE[3]
    out = np.empty(keys.shape, np.uint8)
    assert colour_ids_kernel(_rgb(keys), TABLE, IDS, out) == 4 * 7 + 2
