"""The types of the store backends the conformance suites run on (fixtures: conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from ringline.server.store import Store

__all__ = ["Backend", "OpenBackend"]


@dataclass(frozen=True)
class Backend:
    """How to build stores of one kind. ``make()`` returns a new, unopened store on the
    same backing storage each time (for ``sqlite-memory``: a new empty database)."""

    name: str
    persistent: bool
    make: Callable[[], Store]


#: ``open_backend(name)``: an async context manager giving the backend ``name``.
OpenBackend = Callable[[str], contextlib.AbstractAsyncContextManager[Backend]]
