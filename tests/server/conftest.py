"""Store backends for the conformance suites of ``tests/server``
(``test_store_conformance.py``, ``test_outbox_conformance.py``).

Fixtures: ``backend`` runs a test against ``sqlite-file`` (a file under ``tmp_path``),
``sqlite-memory`` and ``postgres`` (the server at ``needs.PG_DSN``, i.e.
``RINGLINE_TEST_PG_DSN`` or ``postgresql://postgres@127.0.0.1:5432/postgres``; each test
gets its own schema, dropped afterwards); ``store`` is an open store of that backend;
``open_backend(name)`` builds one backend by name for fixtures with other backend
lists (their types, ``Backend`` and ``OpenBackend``, are in backends.py, for the tests to
import). If PostgreSQL is unreachable the suite tries to start the local cluster once,
and otherwise skips the ``postgres`` param with a message saying how to start it
(under CI it fails: tests/needs.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from backends import Backend, OpenBackend

from needs import PG_DSN, missing
from ringline.server.store import PostgresStore, SqliteStore, Store

PG_START_HINT = (
    "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
    " or point RINGLINE_TEST_PG_DSN at a server"
)

# --------------------------------------------------------------------------- backends


async def _pg_probe(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    await conn.close()


def _pg_reachable(dsn: str) -> str | None:
    """None if PostgreSQL answers at ``dsn``, else why not."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed (pip install 'ringline[postgres]')"
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        try:
            pool.submit(asyncio.run, _pg_probe(dsn)).result()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


def _start_local_cluster() -> None:
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        return
    for version in sorted(os.listdir("/etc/postgresql")):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
            timeout=60,
        )


@pytest.fixture(scope="session")
def pg_unavailable() -> str | None:
    """None when PostgreSQL is usable for the suite, else the reason to skip."""
    reason = _pg_reachable(PG_DSN)
    if reason is not None:
        _start_local_cluster()
        reason = _pg_reachable(PG_DSN)
    if reason is None:
        return None
    message = f"PostgreSQL is absent at {PG_DSN} ({reason}); {PG_START_HINT}"
    print(f"\n*** {message} ***", file=sys.stderr)
    return message


@contextlib.asynccontextmanager
async def _open_backend(name: str, tmp_path: Path, pg_unavailable: str | None) -> AsyncIterator[Backend]:
    """The backend ``name`` (``sqlite-file``, ``sqlite-memory`` or ``postgres``) with
    fresh storage under ``tmp_path`` or in a new PostgreSQL schema (``PostgresStore(schema=…)``
    creates it), dropped on exit.
    Skips the test for ``postgres`` when ``pg_unavailable`` gives a reason."""
    if name == "sqlite-file":
        path = str(tmp_path / "ringline.db")
        yield Backend(name, True, lambda: SqliteStore(path))
    elif name == "sqlite-memory":
        yield Backend(name, False, lambda: SqliteStore(":memory:"))
    else:
        if pg_unavailable is not None:
            missing(pg_unavailable)
        import asyncpg

        schema = f"ringline_test_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(PG_DSN)
        try:
            yield Backend(name, True, lambda: PostgresStore(PG_DSN, schema=schema, min_size=1, max_size=4))
        finally:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()


@pytest.fixture
def open_backend(tmp_path: Path, pg_unavailable: str | None) -> OpenBackend:
    """For fixtures of their own backend lists: ``async with open_backend("postgres") as b``."""
    return functools.partial(_open_backend, tmp_path=tmp_path, pg_unavailable=pg_unavailable)


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgres"])
async def backend(request: pytest.FixtureRequest, open_backend: OpenBackend) -> AsyncIterator[Backend]:
    async with open_backend(request.param) as b:
        yield b


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = backend.make()
    await s.open()
    try:
        yield s
    finally:
        await s.close()
