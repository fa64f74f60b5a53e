"""Pictures: RGB bands in the right order, titles and labels whole, numbers in confusion cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotiler.figures import confusion_figure, fit_legend, fit_title, rgb_band_order
from tests.conftest import write_geotiff

pytest.importorskip("matplotlib")


@pytest.mark.parametrize(
    ("names", "interp", "expected"),
    [
        (["B02", "B03", "B04", "B08"], (), (3, 2, 1)),  # Sentinel-2, true colour by name
        (["B8", "B4", "B3", "B2"], (), (2, 3, 4)),
        (["", "", ""], ("red", "green", "blue"), (1, 2, 3)),  # an orthophoto's colour interp
        (["Red", "Green", "Blue", "NIR"], (), (1, 2, 3)),
        (["R", "G", "B"], (), (1, 2, 3)),
        (["", "", ""], ("gray", "undefined", "undefined"), (1, 2, 3)),  # unnamed: file order
        ([""], ("gray",), (1, 1, 1)),
    ],
)
def test_rgb_band_order(names, interp, expected) -> None:
    assert rgb_band_order(names, len(names), interp) == expected


def test_an_rgb_orthophoto_and_a_named_s2_scene_are_shown_in_true_colour(tmp_path: Path) -> None:

    from geotiler.evaluate import rgb_preview

    rng = np.random.default_rng(0)
    red, green, blue = (rng.normal(m, 5, (40, 40)) for m in (220, 120, 30))
    ortho = write_geotiff(
        tmp_path / "ortho.tif", np.stack([red, green, blue]).clip(1, 255).astype(np.uint8)
    )
    with rasterio.open(ortho) as dataset:
        assert [c.name for c in dataset.colorinterp] == ["red", "green", "blue"]
    picture = rgb_preview(ortho)
    assert picture[..., 0].mean() > picture[..., 1].mean() > picture[..., 2].mean()

    s2 = write_geotiff(  # B02 B03 B04 B08: blue first, as Sentinel-2 files store them
        tmp_path / "s2.tif", np.stack([blue, green, red, green]).clip(1, 255).astype(np.uint16)
    )
    with rasterio.open(s2, "r+") as dataset:
        for i, name in enumerate(("B02", "B03", "B04", "B08"), 1):
            dataset.set_band_description(i, name)
    picture = rgb_preview(s2)
    assert picture[..., 0].mean() > picture[..., 1].mean() > picture[..., 2].mean()


def _inside(artist, fig) -> bool:
    box = artist.get_window_extent(fig.canvas.get_renderer())
    whole = fig.bbox
    return (
        box.x0 >= whole.x0 - 1
        and box.x1 <= whole.x1 + 1
        and box.y0 >= whole.y0 - 1
        and (box.y1 <= whole.y1 + 1)
    )


def test_long_titles_and_legends_wrap_inside_the_figure() -> None:
    from matplotlib.patches import Patch

    from geotiler.quicklook import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), layout="constrained")
    title = "S2A_MSIL2A_20230615T103031_N0509_R108_T31TDG_20230615T170000 prediction (catalonia)"
    handles = [Patch(color="red", label=f"{i} Watercourses and water bodies {i}") for i in range(9)]
    legend = fit_legend(fig, handles, max_columns=4, fontsize=8)
    texts = [fit_title(ax, title) for ax in axes]
    fig.canvas.draw()
    for ax, text in zip(axes, texts, strict=True):
        shown = text.get_text()
        assert "\n" in shown and "".join(shown.split()) == "".join(title.split())  # all of it
        renderer = fig.canvas.get_renderer()
        assert text.get_window_extent(renderer).width <= ax.get_window_extent(renderer).width + 1
        assert _inside(text, fig)
    assert _inside(legend, fig)
    plt.close(fig)


NAMES = [
    "Herbaceous crops",
    "Woody crops",
    "Forest",
    "Shrubs, meadows and grassland",
    "Bare soil",
    "Urban areas",
    "Watercourses and water bodies",
    "Class with an Extraordinarily-long-single-word",
]


def test_the_confusion_matrix_has_numbers_in_cells_and_whole_labels() -> None:
    from geotiler.quicklook import pyplot

    rng = np.random.default_rng(1)
    matrix = rng.integers(0, 1000, (len(NAMES), len(NAMES))) + np.eye(len(NAMES), dtype=int) * 9000
    matrix[2] = 0  # a class absent from the truth: its row shows zeros
    fig = confusion_figure(matrix, NAMES)
    [ax] = [a for a in fig.axes if a.get_xlabel() == "prediction"]
    assert len(ax.texts) == len(NAMES) ** 2
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert cells[(0, 0)].get_text().endswith("%") and cells[(2, 2)].get_text() == "0"
    assert cells[(0, 0)].get_color() == "white" and cells[(0, 1)].get_color() == "black"
    fig.canvas.draw()
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        assert [" ".join(t.get_text().split()) for t in ticks] == NAMES  # none cut
        for tick in ticks:
            assert _inside(tick, fig), tick.get_text()
    pyplot().close(fig)


def test_save_confusion_writes_the_picture(tmp_path: Path) -> None:
    from geotiler.catalog import ClassInfo, ClassTable
    from geotiler.train.metrics import save_confusion

    table = ClassTable(
        name="t",
        classes=tuple(ClassInfo(id=i, name=n, color="#336699") for i, n in enumerate(NAMES, 1)),
    )
    files = save_confusion(np.eye(len(NAMES) + 1, dtype=int) * 5, table, tmp_path, "cm")
    assert [f.name for f in files] == ["cm.csv", "cm.png"]
