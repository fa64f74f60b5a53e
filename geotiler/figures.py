"""How geotiler's pictures are laid out, decided once for every PNG it writes.

- which bands of a scene make its colour picture (:func:`rgb_band_order`): red, green and blue by
  band name (``B04``/``B03``/``B02``, ``red``, ``R``...), else by the file's colour
  interpretation, else the first three bands in file order, as an RGB orthophoto stores them;
- titles and legends that fit their figure (:func:`fit_title`, :func:`fit_legend`): long titles
  wrap to the width of their panel, a legend takes as many columns as fit;
- the confusion matrix (:func:`confusion_figure`): the row share in every cell, in a colour
  readable against it, full class names wrapped on the axes, the figure sized to hold them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

LABEL_CHARS = 16  # class names wrap to lines of this many characters on the confusion matrix
RGB = ("red", "green", "blue")


def rgb_band_order(
    names: Sequence[str | None], count: int, colour_interp: Sequence[str] = ()
) -> tuple[int, int, int]:
    """The 1-based bands to show as red, green and blue.

    Args:
        names: Band names (descriptions) in file order; empty or None where a band has none.
        count: The number of bands.
        colour_interp: The file's colour interpretation per band (rasterio's
            ``ColorInterp`` names: ``red``, ``green``, ``blue``, ``gray``, ``undefined``...).

    Returns:
        Band numbers: the bands named red, green and blue (Sentinel-2's B04, B03, B02), else
        those the file says are red, green and blue, else bands 1, 2, 3 (one band: grey).

    Examples:
        >>> rgb_band_order(["B02", "B03", "B04", "B08"], 4)
        (3, 2, 1)
        >>> rgb_band_order(["", "", ""], 3)
        (1, 2, 3)
    """
    from geotiler.train.models.first_conv import band_role

    by_name = {band_role(n): i for i, n in reversed(list(enumerate(names, 1))) if n}
    if all(colour in by_name for colour in RGB):
        return by_name["red"], by_name["green"], by_name["blue"]
    by_interp = {str(c).lower(): i for i, c in reversed(list(enumerate(colour_interp, 1)))}
    if all(colour in by_interp for colour in RGB):
        return by_interp["red"], by_interp["green"], by_interp["blue"]
    return min(1, count), min(2, count), min(3, count)


def fit_title(ax: Any, text: str, **options: Any) -> Any:
    """Set ``ax``'s title, wrapped to lines no wider than the axes (measured, not guessed)."""
    title = ax.set_title(text, **options)
    engine = ax.figure.get_layout_engine()
    if engine is not None:  # measure the panel where the layout puts it
        engine.execute(ax.figure)
    renderer = ax.figure.canvas.get_renderer()
    room = ax.get_window_extent(renderer).width
    chars = len(text)
    while title.get_window_extent(renderer).width > room and chars > 4:
        chars = max(4, int(chars * 0.85))
        title.set_text(textwrap.fill(text, chars, break_on_hyphens=False))
    return title


def fit_legend(fig: Any, handles: list[Any], *, max_columns: int, **options: Any) -> Any:
    """A legend below the panels with as many columns (up to ``max_columns``) as fit the width."""
    renderer = fig.canvas.get_renderer()
    legend = None
    for columns in range(max(1, min(max_columns, len(handles))), 0, -1):
        if legend is not None:
            legend.remove()
        legend = fig.legend(handles=handles, loc="outside lower center", ncols=columns, **options)
        if legend.get_window_extent(renderer).width <= fig.bbox.width * 0.98:
            break
    return legend


def wrap_label(name: str, chars: int = LABEL_CHARS) -> str:
    """A class name on lines of about ``chars`` characters; words are never cut."""
    return textwrap.fill(name, chars, break_long_words=False, break_on_hyphens=False) or name


def cell_text(share: float, pixels: int) -> str:
    """What a confusion cell shows: its share of the row, ``0`` where no pixel fell."""
    if pixels == 0:
        return "0"
    return "<1%" if share < 0.01 else f"{100 * share:.0f}%"


def confusion_figure(matrix: np.ndarray, names: Sequence[str]) -> Any:
    """The confusion matrix (truth rows, prediction columns) as a figure, shares in the cells.

    Args:
        matrix: Pixel counts, ``(n, n)``.
        names: The class names, in the matrix's order (shown whole, wrapped).

    Returns:
        The matplotlib figure (the caller saves and closes it).
    """
    from geotiler.quicklook import pyplot

    plt = pyplot()
    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    labels = [wrap_label(name) for name in names]
    widest = max((len(line) for label in labels for line in label.splitlines()), default=1)
    tallest = max((label.count("\n") + 1 for label in labels), default=1)
    n = len(labels)
    cell = 0.55 if n <= 12 else 0.4  # inches
    label_in = 0.085 * widest + 0.15 * tallest  # a 9 pt label's extent, inches
    width = 1.6 + cell * n + label_in
    height = 1.0 + cell * n + label_in * 0.75
    fig, ax = plt.subplots(figsize=(max(width, 4.5), max(height, 3.5)), layout="constrained")
    cmap = plt.get_cmap("Blues")
    image = ax.imshow(share, cmap=cmap, vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(n), labels, fontsize=9)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    size = 8 if n <= 12 else 6
    for i in range(n):
        for j in range(n):
            red, green, blue, _ = cmap(share[i, j])
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(
                j, i, cell_text(share[i, j], int(counts[i, j])), ha="center", va="center",
                fontsize=size, color="white" if dark else "black",
            )  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the truth row")
    fit_title(ax, "confusion matrix (share of each truth row)")
    return fig


__all__ = [
    "cell_text",
    "confusion_figure",
    "fit_legend",
    "fit_title",
    "rgb_band_order",
    "wrap_label",
]
