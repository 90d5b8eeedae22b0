"""Fixtures of the callback tests (test_callbacks, test_vendor_port): ``srv``, a server
process that signs callbacks with the tests' token and secret (killed after the test);
``users``, SDK users logged in to it (uninitialised after); ``session``, an HTTP client
without keep-alive (a test restarts the server on the same port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from callbackkit import Users, log_in, server_args

from ringline import CallEngine
from ringline.testing import RecordingObserver
from serverproc import ServerProcess


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "srv", extra_args=server_args()).start()
    yield server
    server.kill()


@pytest.fixture
async def users(srv: ServerProcess) -> AsyncIterator[Users]:
    engines: list[CallEngine] = []

    async def make(n: int) -> list[tuple[CallEngine, RecordingObserver, str]]:
        return await log_in(srv, n, engines)

    yield make
    for e in engines:
        await e.uninit()
