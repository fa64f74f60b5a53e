"""Progress reporting between the library and its callers: a factory of ``advance(n)`` callbacks.

A stage that knows its total only after planning takes a :data:`ProgressFactory`: it calls
``factory(label, total, unit)`` and advances the callback it yields. The CLI passes rich progress
bars; the library default shows nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

Advance = Callable[[int], None]
ProgressFactory = Callable[[str, int, str], contextlib.AbstractContextManager[Advance]]


@contextlib.contextmanager
def no_progress(_: str, __: int, ___: str) -> Iterator[Advance]:
    """A progress factory that shows nothing."""
    yield lambda _n: None
