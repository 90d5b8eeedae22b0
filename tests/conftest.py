from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rawclient import Raw
from serverproc import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server process per test module (tests use unique user ids)."""
    srv = ServerProcess(tmp_path_factory.mktemp("srv")).start()
    try:
        yield srv
    finally:
        code = srv.stop()
        assert code == 0, f"server did not exit cleanly on SIGTERM ({code}): {srv.log()}"


@pytest.fixture
async def clients(server: ServerProcess) -> AsyncIterator[list[Raw]]:
    """Raw protocol clients a test made (see ``rawclient.logged_in``); closed after it."""
    made: list[Raw] = []
    yield made
    for c in made:
        await c.close()


ADMIN_DSN = os.environ.get("RINGLINE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for a server process (``--db``), dropped afterwards;
    skips the test, saying how to start PostgreSQL, when it is absent."""
    import asyncpg  # the dev extra

    name = "ringline_srv_" + uuid.uuid4().hex[:12]
    try:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(
            f"PostgreSQL is absent at {ADMIN_DSN} ({exc}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect 15 main start` or set RINGLINE_TEST_PG_DSN"
        )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
