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

from geotiler.errors import GeotilerError


class _Group(TyperGroup):
    """Turns a :class:`GeotilerError` into one line on stderr and exit status 1."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        try:
            return super().invoke(ctx)
        except GeotilerError as exc:
            from geotiler.cli.console import err_console

            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="geotiler",
    cls=_Group,
    help="Satellite scenes and land-cover masks to training tiles, models and georeferenced maps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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


_NOT_COMMANDS = {"console", "options"}


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
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="geotiler")
    finally:
        # The process ends here: spare it the final garbage collection over every object the
        # imports created (~0.4 s with numba, dask and rasterio loaded, more with torch).
        import gc

        gc.freeze()


_register()
