"""A server process that stalls (SIGSTOP/SIGCONT) past the heartbeat grace does not
blame the devices: their sessions and calls survive, a really silent one is still swept."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rawclient import Raw, logged_in
from serverproc import ServerProcess

GRACE = 2.0
STALL = 3 * GRACE


@pytest.fixture
async def stalling(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    srv = ServerProcess(tmp_path, heartbeat_interval=0.5, heartbeat_grace=GRACE).start()
    try:
        yield srv
    finally:
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGCONT)
        assert srv.stop() == 0, srv.log()


async def call(a: Raw, b: Raw, ub: str) -> str:
    cid: str = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await b.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    return cid


async def test_a_server_stalled_past_the_grace_keeps_live_devices_and_calls(
    stalling: ServerProcess, clients: list[Raw]
) -> None:
    a, _ = await logged_in(stalling, clients, "a")
    b, ub = await logged_in(stalling, clients, "b")
    cid = await call(a, b, ub)
    # A device that really goes silent, in a call of its own.
    d, _ = await logged_in(stalling, clients, "d")
    gone, ugone = await logged_in(stalling, clients, "gone")
    cid2 = await call(d, gone, ugone)
    await gone.drop()
    assert stalling.proc is not None
    os.kill(stalling.proc.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(STALL)  # the stall itself: the server is stopped this long
    finally:
        os.kill(stalling.proc.pid, signal.SIGCONT)
    # The silent device is still swept, a grace after the wake-up at the earliest.
    end = (await d.event("on_call_end", call_id=cid2, timeout=20))["args"]
    assert end["reason"] == 4 and end["user_id"] == ugone  # OFFLINE
    # The devices that kept sending pings were never blamed for the server's stall.
    assert not a.closed.done() and not b.closed.done()  # type: ignore[union-attr]
    assert "on_call_end" not in a.names(cid) and "on_call_end" not in b.names(cid)
    await a.ok("close_microphone", call_id=cid)
    await b.event("on_user_audio_available", call_id=cid)
    assert (await b.ok("get_state"))["call"]["call_id"] == cid
