"""Durable state of the Ringline server: the :class:`Store` protocol and its backends.

Pick a backend from a SQLAlchemy-style URL with :func:`open_store`, then ``await
store.open()`` before use and ``await store.close()`` at shutdown::

    store = open_store("sqlite:///ringline.db")
    await store.open()

Callbacks live in the store too: queue them with the :class:`DeliveriesWrite` write in
the batch of their event, and drain ``store.outbox`` (a :class:`DurableOutbox`) with a
:class:`~ringline.server.webhooks.Deliverer`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import (
    AliveWrite,
    CallbackConfigWrite,
    DeliveriesWrite,
    DurableOutbox,
    EndpointRevive,
    FinishedCallWrite,
    GroupMembersWrite,
    LiveCallWrite,
    ProfileWrite,
    SessionDelete,
    SessionRow,
    SessionWrite,
    Store,
    UserCallRow,
    UserCallsHide,
    Write,
)
from .postgres import PostgresStore
from .sqlite import LOCK_SPIN, SqliteStore

__all__ = [
    "AliveWrite",
    "CallbackConfigWrite",
    "DeliveriesWrite",
    "DurableOutbox",
    "EndpointRevive",
    "FinishedCallWrite",
    "GroupMembersWrite",
    "LiveCallWrite",
    "PostgresStore",
    "ProfileWrite",
    "SessionDelete",
    "SessionRow",
    "SessionWrite",
    "SqliteStore",
    "Store",
    "UserCallRow",
    "UserCallsHide",
    "Write",
    "open_store",
]

_ACCEPTED = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite:///:memory:,"
    " postgresql://user[:password]@host[:port]/database (also postgres:// and"
    " postgresql+asyncpg://)"
)


def open_store(
    url: str, *, pg_schema: str = "", checkpoints: bool = True, lock_spin: float = LOCK_SPIN
) -> Store:
    """Construct (but do not open) the store that ``url`` names.

    Accepted forms: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
    ``sqlite:///:memory:`` (``sqlite://`` alone is also in-memory), and
    ``postgresql://…``, ``postgres://…`` or ``postgresql+asyncpg://…`` (handed to asyncpg
    as a DSN, query parameters included; its tables live in schema ``pg_schema``, default
    ``ringline``, see :class:`PostgresStore`). ``checkpoints``: False for a SQLite store
    whose WAL another process copies back, ``lock_spin`` a SQLite store's eagerness
    for the write lock (both: see :class:`SqliteStore`). The caller must
    ``await store.open()`` next.
    Raises ValueError for any other URL, or a bad schema name.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"not a store URL: {url!r}; accepted forms: {_ACCEPTED}")
    if scheme == "sqlite":
        return SqliteStore(_sqlite_path(url, rest), checkpoints=checkpoints, lock_spin=lock_spin)
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return PostgresStore(f"postgresql://{rest}", schema=pg_schema)
    raise ValueError(f"unknown store URL scheme {scheme!r} in {url!r}; accepted forms: {_ACCEPTED}")


def _sqlite_path(url: str, rest: str) -> str:
    if rest == "":
        return ":memory:"
    if not rest.startswith("/"):
        raise ValueError(
            f"a SQLite URL has no host: {url!r}; use sqlite:///relative/path.db or"
            " sqlite:////absolute/path.db"
        )
    if urlsplit(url).query:
        raise ValueError(f"SQLite URLs take no query parameters: {url!r}")
    path = rest[1:]
    if path == "":
        raise ValueError(f"missing database path in {url!r}; accepted forms: {_ACCEPTED}")
    return path
