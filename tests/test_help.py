"""`--help`: defaults and registry names shown, no `<bool>` placeholder, paragraphs unwrapped."""

from __future__ import annotations

import re

import pytest

from geotiler.cli import app


def _help(runner, command: str) -> str:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def _row(text: str, option: str) -> str:
    """The option's row of the options table (its help is on one line at 400 columns)."""
    [line] = [line for line in text.splitlines() if re.search(rf"│ {option}\s", line)]
    return line


def test_train_help_shows_defaults_registry_names_and_flowing_paragraphs(runner) -> None:
    from geotiler.train.losses import LOSSES
    from geotiler.train.models import available_presets
    from geotiler.train.optim import OPTIMIZERS

    text = _help(runner, "train")
    assert "<bool>" not in text
    assert "train to a time budget" in _row(text, "--epochs")  # what no --epochs means
    assert "[default: the recipe's, from the model and the batch]" in _row(text, "--lr")
    assert "[default: 0.1]" in _row(text, "--gamma")
    assert "[default: onecycle]" in _row(text, "--lr-schedule")
    assert "[default: --baseline]" in _row(text, "--baseline")
    for name in [*LOSSES, *OPTIMIZERS, *available_presets(), "pixel-gbm"]:
        assert name in text, name
    # The docstring wraps this paragraph at 100 columns; the help flows it to the terminal's width.
    assert "trains to a time budget (--time auto: at most 15 min on a CPU). A per-pixel" in text
    assert "--scheduler" not in text  # the LR schedule is --lr-schedule; --scheduler is Dask's


def test_tile_help_shows_defaults_and_filters_from_the_registry(runner) -> None:
    from geotiler.tiles.balance import BALANCERS
    from geotiler.tiles.filters import FILTERS

    text = _help(runner, "tile")
    assert "<bool>" not in text
    assert "chosen from the scenes" in _row(text, "--size")
    assert "[0]" in _row(text, "--overlap")
    assert "[default: none]" in _row(text, "--balance")
    filters = _row(text, "--filter")
    for name in FILTERS:
        assert name in filters, name
    for name in BALANCERS:
        assert name in _row(text, "--balance"), name
    assert "the last tile row and column are snapped to the bottom and right edges" in text


@pytest.mark.parametrize(
    ("help_text", "names", "expected"),
    [
        ("Loss.", ["ce", "dice"], "Loss. Known loss terms: ce, dice."),
        ("ce or dice.", ["ce", "dice"], "ce or dice."),  # listed already: not twice
    ],
)
def test_registry_names_are_appended_once(help_text: str, names, expected: str) -> None:
    import typer.main

    from geotiler.cli import help as cli_help

    group = typer.main.get_command(app)
    command = group.commands["train"]  # type: ignore[attr-defined]
    [loss] = [p for p in command.params if p.name == "loss"]
    loss.help = help_text
    saved = cli_help.REGISTRIES[("train", "loss")]
    cli_help.REGISTRIES[("train", "loss")] = ("loss terms", lambda: names)
    try:
        with typer.Context(group) as ctx:
            cli_help.polish(command, "train", ctx)
    finally:
        cli_help.REGISTRIES[("train", "loss")] = saved
    assert loss.help.startswith(expected)


@pytest.mark.parametrize(
    "command", ["evaluate", "filter", "predict", "rescale", "tile", "train", "view"]
)
def test_each_example_starts_its_own_line(runner, command: str) -> None:
    """The Examples are a list, one command a line, not flowed into one paragraph."""
    import inspect

    import typer.main

    group = typer.main.get_command(app)
    callback = group.commands[command].callback  # type: ignore[attr-defined]
    examples = re.findall(r"\[bold\](.*?)\[/\]", inspect.getdoc(callback) or "")
    assert len(examples) >= 2, examples
    lines = [line.strip() for line in _help(runner, command).splitlines()]
    assert "Examples:" in lines
    for example in examples:
        assert any(line.startswith(example) for line in lines), example
