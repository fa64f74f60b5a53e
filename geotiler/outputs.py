"""What a command may write: never an input, never what geotiler did not write, one at a time.

``--overwrite`` replaces an existing output only when it is an output of the same kind that
geotiler wrote (:mod:`geotiler.output_kinds` says how each kind is recognised). Anything else (a
user's file, a folder holding other files, a link) is refused with one line that says what to
do; no command deletes a path it did not create. An output that is, is inside, or holds one of
the command's inputs is refused too. :func:`claim` adds the writer lock and the sweep of dead
writers' leftovers (:mod:`geotiler.locks`); :func:`writes` is the same as a decorator.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from geotiler.errors import GridMismatchError, InputError, OutputExistsError
from geotiler.locks import PARTIAL, remove_path, sweep_inside, sweep_partials
from geotiler.locks import writer_lock as writer_lock
from geotiler.output_kinds import (
    FOLDER_KINDS,
    MARKERS,
    WHAT,
    Kind,
    foreign_entries,
    output_tag,
    read_marker,
    recognise,
    write_marker,
)

__all__ = [
    "MARKERS",
    "Kind",
    "catalog_paths_problem",
    "check_distinct",
    "check_not_input",
    "check_output",
    "claim",
    "clear",
    "output_tag",
    "publish_folder",
    "read_marker",
    "recognise",
    "staging_folder",
    "write_marker",
    "writes",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Inputs = Iterable[PathLike | None]


# -- checks -------------------------------------------------------------------------------------


def check_not_input(target: PathLike, inputs: Inputs) -> None:
    """Refuse an output that is, is inside, or holds one of ``inputs`` (links resolved).

    Raises:
        InputError: naming the input and saying to choose another output.
    """
    out = Path(target)
    real_out = out.resolve()
    for item in inputs:
        if item is None or _remote(item):
            continue
        source = Path(item)
        real = source.resolve()
        if real_out == real or _same_file(out, source):
            raise InputError(
                f"{out}: is the input {source}; the output would replace it: choose another -o"
            )
        if real in real_out.parents:
            raise InputError(
                f"{out}: is inside the input {source}; choose an output outside it with -o"
            )
        if real_out in real.parents:
            raise InputError(
                f"{out}: holds the input {source}; choose an output that does not contain your "
                "inputs with -o"
            )


def check_distinct(targets: Mapping[str, PathLike | None]) -> None:
    """Refuse two outputs of one command that are the same file (one would be lost).

    Raises:
        InputError: naming the path and both options that give it.
    """
    seen: dict[Path, str] = {}
    for option, path in targets.items():
        if path is None:
            continue
        real = Path(path).resolve()
        if real in seen:
            raise InputError(
                f"{path}: given as both {seen[real]} and {option}; one output would be lost: "
                "give each output its own path"
            )
        seen[real] = option


def _remote(item: PathLike) -> bool:
    name = os.fspath(item)
    return "://" in name or name.startswith("/vsi")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    path: PathLike, kind: Kind, *, overwrite: bool = False, inputs: Inputs = ()
) -> Path:
    """Whether ``path`` may be written as a ``kind`` output; returns it as a Path.

    Free when absent (or an empty folder, for folder kinds). An existing output of the same kind
    that geotiler wrote may be replaced with ``overwrite``; anything else never.

    Raises:
        InputError: the output is, is inside or holds an input.
        OutputExistsError: it exists and may not (or, without ``overwrite``, need not) be replaced.
    """
    target = Path(path)
    check_not_input(target, inputs)
    if target.is_symlink():
        raise OutputExistsError(
            f"{target}: is a symbolic link; geotiler does not write through or replace links: "
            "choose another -o"
        )
    if not target.exists():
        return target
    if target.is_dir() and kind in FOLDER_KINDS and not any(target.iterdir()):
        return target
    found = recognise(target)
    if found != kind:
        raise OutputExistsError(_not_ours(target, kind, found))
    if target.is_dir():
        foreign = foreign_entries(target, kind)
        if foreign:
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            shown = ", ".join(foreign[:3]) + more
            raise OutputExistsError(
                f"{target}: {WHAT[kind]} that also holds {shown}, which geotiler did not write; it "
                "is never replaced: move those out, or choose another -o"
            )
    if not overwrite:
        also = f", --resume {target} to go on with it" if kind == "run" else ""
        raise OutputExistsError(
            f"{target}: exists ({WHAT[kind]}); pass --overwrite to replace it{also}, or choose "
            "another -o"
        )
    return target


def _not_ours(target: Path, kind: Kind, found: Kind | None) -> str:
    if found is not None:
        return f"{target}: is {WHAT[found]}, not {WHAT[kind]}; choose another -o"
    if target.is_dir():
        if kind in FOLDER_KINDS:
            return (
                f"{target}: is a folder that holds files geotiler did not write; it is never "
                f"replaced, even with --overwrite: choose a new or empty folder with -o"
            )
        return (
            f"{target}: is a folder; geotiler never replaces a folder with a file: give a file "
            f"path with -o (e.g. {target / ('output' + _suffix(kind))})"
        )
    return (
        f"{target}: exists and geotiler did not write it, so it is never replaced, even with "
        "--overwrite: choose another -o (or move the file away yourself)"
    )


def _suffix(kind: Kind) -> str:
    suffixes = {"geotiff": ".tif", "checkpoint": ".pt", "onnx": ".onnx", "index": ".gpkg"}
    return suffixes.get(kind, "")


# -- claiming an output -------------------------------------------------------------------------


@contextlib.contextmanager
def claim(
    path: PathLike,
    kind: Kind,
    *,
    overwrite: bool = False,
    keep: bool = False,
    inputs: Inputs = (),
) -> Iterator[Path]:
    """Check ``path``, hold its writer lock and sweep dead writers' leftovers for the block.

    ``keep`` accepts an existing output of the same kind without ``overwrite`` (resuming it).
    On failure, this writer's temporary files are removed; a store or run folder the block
    created is removed when it failed on bad input (nothing half-written is left to mislead).
    """
    inputs = [item for item in inputs if item is not None]
    target = check_output(path, kind, overwrite=overwrite or keep, inputs=inputs)
    if not target.exists():
        _make_parent(target)
    with writer_lock(target):
        sweep_partials(target.parent, held=target)
        check_output(target, kind, overwrite=overwrite or keep, inputs=inputs)
        # Under the lock: another writer may have finished this output since the first look,
        # and a failure here must never remove what that writer made.
        existed = target.exists()
        if target.is_dir() and kind in MARKERS:
            sweep_inside(target)
        try:
            yield target
        except BaseException as exc:
            _clean_failure(target, kind, created=not existed, bad_input=_is_bad_input(exc))
            raise


def _make_parent(target: Path) -> None:
    from geotiler.locks import unwritable

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(target.parent, exc) from None


def _is_bad_input(exc: BaseException) -> bool:
    return isinstance(exc, InputError | GridMismatchError)


def _clean_failure(target: Path, kind: Kind, *, created: bool, bad_input: bool) -> None:
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            match = PARTIAL.match(entry.name)
            if match and match["target"] == target.name:
                remove_path(entry)
    if created and bad_input and target.exists() and not _worth_keeping(target, kind):
        log.info("removing %s: it was refused before any of it was usable", target)
        remove_path(target)


def _worth_keeping(target: Path, kind: Kind) -> bool:
    if kind != "store":
        return False
    from geotiler.tiles.store import read_attrs

    # Every tile written, only the decisions failed: `geotiler filter` can still finish it.
    attrs = read_attrs(target)
    return attrs is not None and attrs.progress.done


def clear(path: Path, kind: Kind) -> None:
    """Remove an output that :func:`check_output` accepted for replacing (checked again here)."""
    if not path.exists():
        return
    check_output(path, kind, overwrite=True)
    remove_path(path)


def staging_folder(target: PathLike) -> Path:
    """A new temporary folder beside ``target``, for a folder output built before it is shown."""
    where = Path(target)
    staging = where.with_name(f".{where.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    return staging


def publish_folder(staging: Path, target: Path, kind: Kind, **fields: Any) -> Path:
    """Write ``staging``'s marker, then move it into place (replacing a checked ``target``)."""
    write_marker(staging, kind, **fields)
    aside = None
    if target.exists():
        check_output(target, kind, overwrite=True)
        aside = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
        os.replace(target, aside)
    os.replace(staging, target)
    if aside is not None:
        remove_path(aside)
    return target


P = ParamSpec("P")
R = TypeVar("R")
InputsOf = Callable[[Mapping[str, Any]], Inputs]


def writes(
    output: str, kind: Kind, *, inputs: InputsOf | None = None, keep: bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function that writes its argument ``output`` as a ``kind`` output.

    The call runs inside :func:`claim` of that argument, with the function's ``overwrite``
    argument (when it has one), the inputs ``inputs(arguments)`` names and ``keep``.
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = bound.arguments
            sources = inputs(values) if inputs is not None else ()
            overwrite = bool(values.get("overwrite", False))
            with claim(values[output], kind, overwrite=overwrite, keep=keep, inputs=sources):
                return function(*args, **kwargs)

        return wrapper

    return decorate


# -- where a catalog may send outputs -----------------------------------------------------------

PAIRED_OUTPUTS = {frozenset({"evaluate", "report"})}
"""Stages that share one output on purpose (the demo's report.md sits in the evaluate report)."""


def catalog_paths_problem(
    work_dir: str, stage_outputs: Mapping[str, str], *, allow_outside: bool
) -> str | None:
    """What is wrong with a catalog's ``work_dir`` pattern and ``outputs`` names (None if fine).

    Outputs stay inside the catalog's folder (relative, no ``..``) unless ``allow_outside``;
    each stage writes its own output, never another stage's or a folder around it.
    """
    try:
        sample = work_dir.format(dataset="x")
    except (IndexError, KeyError, ValueError, AttributeError):
        return (
            f"work_dir: {work_dir!r} is not a valid pattern: use {{dataset}} as its only "
            "placeholder (e.g. work/{dataset})"
        )
    problem = _escapes("work_dir", sample, allow_outside)
    if problem:
        return problem
    names: dict[str, tuple[str, ...]] = {}
    for stage, value in stage_outputs.items():
        parts = Path(value).parts if value.strip() else ()
        if not parts or value.strip() in (".", "./"):
            return (
                f"outputs.{stage}: {value!r} would be the work folder itself; give the stage "
                "its own file or folder name"
            )
        problem = _escapes(f"outputs.{stage}", value, allow_outside)
        if problem:
            return problem
        names[stage] = parts
    for stage, parts in names.items():
        for other, other_parts in names.items():
            if other == stage or frozenset({stage, other}) in PAIRED_OUTPUTS:
                continue
            if other_parts[: len(parts)] == parts:
                where = "is" if parts == other_parts else "holds"
                return (
                    f"outputs.{stage}: {stage_outputs[stage]!r} {where} the {other} output "
                    f"{stage_outputs[other]!r}; give each stage its own name"
                )
    return None


def _escapes(key: str, value: str, allow_outside: bool) -> str | None:
    path = Path(os.path.expanduser(value))
    if allow_outside:
        return None
    if path.is_absolute():
        return (
            f"{key}: {value!r} is outside the catalog's folder; use a relative path, or set "
            "absolute_outputs: true in the catalog to allow outputs anywhere"
        )
    if ".." in path.parts:
        return (
            f"{key}: {value!r} climbs out of the catalog's folder; use a path inside it, or set "
            "absolute_outputs: true in the catalog to allow outputs anywhere"
        )
    return None
