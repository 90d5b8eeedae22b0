"""Store operations as sans-I/O generators: the statements they need, not how they run.

An operation (:data:`Op`) is a generator that yields the statements it needs
(:class:`Execute`, :class:`ExecuteMany`, :class:`Fetch`) and is sent each one's result
back; it returns its value. It touches no connection, so the same operation runs on
a SQLite connection (:func:`.sqlite.run_sync`) and on a pooled PostgreSQL connection
(:func:`.postgres.run_async`), a few lines each. Compose operations with ``yield from``.

Internal to the store package.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

__all__ = ["Execute", "ExecuteMany", "Fetch", "Op", "Query", "fetch_one", "fetch_value"]

_T = TypeVar("_T")


class Execute(NamedTuple):
    """Run ``sql`` once with ``args``; the operation is sent the number of rows changed."""

    sql: str
    args: tuple[Any, ...] = ()


class ExecuteMany(NamedTuple):
    """Run ``sql`` once per row of ``rows``; the operation is sent None."""

    sql: str
    rows: list[tuple[Any, ...]]


class Fetch(NamedTuple):
    """Run the query ``sql`` with ``args``; the operation is sent its rows (a list of
    sequences, indexed by column position)."""

    sql: str
    args: tuple[Any, ...] = ()


Query = Execute | ExecuteMany | Fetch
#: An operation: yields the statements it needs, is sent their results, returns its value.
Op = Generator[Query, Any, _T]


def fetch_one(sql: str, *args: Any) -> Op[Any]:
    """The first row of the query (None if it has none)."""
    rows = yield Fetch(sql, args)
    return rows[0] if rows else None


def fetch_value(sql: str, *args: Any) -> Op[Any]:
    """The first column of the first row of the query (None if it has no row)."""
    row = yield from fetch_one(sql, *args)
    return None if row is None else row[0]
