"""Fixtures for the client tests: a fake server and engines that are always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from client_fakes import EngineFactory, FakeServer

from ringline.client import CallEngine


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    srv = FakeServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def make_engine(server: FakeServer) -> AsyncIterator[EngineFactory]:
    """``make_engine(**options)``: a CallEngine on the fake server, uninit at teardown."""
    engines: list[CallEngine] = []

    def make(**options: Any) -> CallEngine:
        options.setdefault("request_timeout", 5.0)
        engine = CallEngine(server.url, **options)
        engines.append(engine)
        return engine

    try:
        yield make
    finally:
        for engine in engines:
            await engine.uninit()
            assert not engine._tasks, f"{engine!r} left tasks behind: {engine._tasks}"
