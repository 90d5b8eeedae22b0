from __future__ import annotations

import sys
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
