"""The ``geotiler`` command line: a thin layer over the library, one module per command."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

# OpenMP threads that spin while waiting stall torch badly whenever the cores are shared (a
# laptop, a CI runner, a busy node): training ran 3-4x slower under load. Passive waiting costs
# nothing when the machine is idle. Set before torch is imported; the user's own value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer
from typer.core import TyperGroup

from geotiler.errors import GeotilerError, RankStoodDown, RunInterrupted


class _Group(TyperGroup):
    """Turns a :class:`GeotilerError` into one line on stderr and exit status 1 (a torchrun rank
    that stood down for another's failure exits 0, silent: that rank reports it).

    Ctrl-C (or SIGTERM) is one line saying what became of the outputs, exit status 130; read and
    file-system failures are one line too (see :mod:`geotiler.cli.failures`).
    """

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and ("--help" in rest or (not rest and command.no_args_is_help)):
            from geotiler.cli.help import polish

            polish(command, name or "", ctx)
        return name, command, rest

    def get_help(self, ctx: Any) -> str:
        from geotiler.cli.help import polish

        polish(self, "", ctx)
        return str(super().get_help(ctx))

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        from geotiler.cli import failures

        try:
            return super().invoke(ctx)
        except RankStoodDown:
            raise typer.Exit(0) from None  # another torchrun rank failed and says why
        except GeotilerError as exc:
            _say("error", failures.one_line(str(exc)))
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            failures.quiet_after_interrupt()
            told = str(exc) if isinstance(exc, RunInterrupted) else None
            # Ctrl-C reaches every torchrun rank (and torchrun stops the others when one
            # fails): rank 0 alone says it (RANK read here without importing torch).
            if os.environ.get("RANK", "0") == "0":
                _say("interrupted", told or failures.interrupted(ctx.invoked_subcommand))
            raise typer.Exit(failures.INTERRUPT_EXIT) from None
        except OSError as exc:  # rasterio's read errors are OSErrors too
            line = failures.describe(exc)
            if line is None:
                raise
            _say("error", line)
            raise typer.Exit(1) from None


def _say(label: str, message: str) -> None:
    from rich.markup import escape

    from geotiler.cli.console import err_console

    colour = "yellow" if label == "interrupted" else "red"
    # Escaped: "pip install 'geotiler[onnx]'" must not lose "[onnx]" as if it were markup.
    err_console.print(
        f"[bold {colour}]{label}:[/] {escape(message)}", highlight=False, soft_wrap=True
    )


app = typer.Typer(
    name="geotiler",
    cls=_Group,
    help="Satellite scenes and land-cover masks to training tiles, models and georeferenced maps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # geotiler --install-completion (bash, zsh, fish, PowerShell)
    rich_markup_mode="rich",
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True
    ),
) -> None:
    """Satellite scenes and land-cover masks to training tiles, models and georeferenced maps."""
    if version:
        from geotiler import __version__

        typer.echo(f"geotiler {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


_NOT_COMMANDS = {"console", "failures", "help", "options"}


def _register() -> None:
    # Every other module of this package defines one command; importing it adds it to ``app``.
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if module.name not in _NOT_COMMANDS and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    # Chips without georeference are supported (pixel grids): rasterio's warnings about their
    # identity transform are noise to a user.
    warnings.filterwarnings("ignore", message=r"(Dataset has no geotransform|The given matrix)")
    from geotiler import interrupts

    interrupts.install()  # SIGTERM cleans up as Ctrl-C does
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="geotiler")
    finally:
        # The process ends here: spare it the final garbage collection over every object the
        # imports created (~0.4 s with numba, dask and rasterio loaded, more with torch).
        import gc

        gc.freeze()


_register()
