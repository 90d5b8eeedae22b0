"""CallEngine.send_signal and CallObserver.on_signal (docs/media.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from client_fakes import SDK_APP_ID, SIG, EngineFactory, FakeConn, FakeServer, info, received

from ringline.client import CallEngine, CallObserver
from ringline.core.enums import MediaType
from ringline.core.errors import LocalCallError, RemoteCallError
from ringline.testing import RecordingObserver
from serverproc import SDK_APP_ID as REAL_APP_ID
from serverproc import ServerProcess, unique

OFFER = {"type": "offer", "sdp": "v=0\r\n"}


class Signals(CallObserver):
    """Collects on_signal calls; ``wait(n)`` until n arrived."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def on_signal(self, call_id: str, from_user_id: str, data: dict[str, Any]) -> None:
        self.got.append((call_id, from_user_id, data))
        self.changed.set()

    async def wait(self, n: int, timeout: float = 10.0) -> list[tuple[str, str, dict[str, Any]]]:
        async with asyncio.timeout(timeout):
            while len(self.got) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.got


async def in_call(server: FakeServer, make_engine: EngineFactory) -> tuple[CallEngine, Signals, Any]:
    engine = make_engine()
    sig = Signals()
    rec = RecordingObserver()
    engine.add_observer(rec)
    engine.add_observer(sig)
    await engine.init(SDK_APP_ID, "alice", SIG)
    session = server.session("alice")
    await server.push(session, "on_call_received", received("c1"))
    await server.push(session, "on_call_begin", {"call_id": "c1", "media_type": 2, "info": info(2)})
    await rec.wait_for("on_call_begin", call_id="c1")
    return engine, sig, session


async def test_send_signal_sends_the_signal_op_on_the_current_call(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    seen: list[dict[str, Any]] = []

    def handler(conn: FakeConn, frame: dict[str, Any]) -> dict[str, Any]:
        seen.append(frame)
        return {}

    server.handlers["signal"] = handler
    engine, _, _ = await in_call(server, make_engine)
    data = {"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}
    await engine.send_signal("bob", data)
    assert [(f["call_id"], f["to_user_id"], f["data"]) for f in seen] == [("c1", "bob", data)]


async def test_on_signal_pushes_reach_observers_with_call_id_sender_and_data(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, sig, session = await in_call(server, make_engine)
    await server.push(session, "on_signal", {"call_id": "c1", "from_user_id": "bob", "data": OFFER})
    await server.push(session, "on_signal", {"call_id": "c1", "from_user_id": "bob", "data": "not-a-dict"})
    await server.push(
        session, "on_signal", {"call_id": "c1", "from_user_id": "carol", "data": {"type": "bye"}}
    )
    got = await sig.wait(2)
    assert got == [("c1", "bob", OFFER), ("c1", "carol", {"type": "bye"})]  # the malformed one is dropped


@pytest.mark.parametrize(
    ("to", "data", "needle"),
    [
        ("no spaces", OFFER, "to_user_id"),
        ("alice", OFFER, "yourself"),
        ("bob", {"type": "offer"}, "sdp"),
        ("bob", {"type": "wave"}, "'type' must be one of"),
        ("bob", ["offer"], "JSON object"),
        ("bob", {"type": "offer", "sdp": "x" * 20000}, "limit"),
    ],
    ids=["bad-user", "self", "no-sdp", "bad-type", "not-object", "too-big"],
)
async def test_bad_signals_fail_locally_without_a_round_trip(
    server: FakeServer, make_engine: EngineFactory, to: str, data: Any, needle: str
) -> None:
    engine, _, _ = await in_call(server, make_engine)
    with pytest.raises(LocalCallError) as ei:
        await engine.send_signal(to, data)
    assert ei.value.code == -1202 and needle in ei.value.message
    assert server.requests_of("signal") == []


async def test_send_signal_without_a_call_or_login_says_what_to_do(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine = make_engine()
    with pytest.raises(LocalCallError) as ei:
        await engine.send_signal("bob", OFFER)
    assert ei.value.code == -1201 and "init" in ei.value.message
    await engine.init(SDK_APP_ID, "alice", SIG)
    with pytest.raises(LocalCallError) as ei:
        await engine.send_signal("bob", OFFER)
    assert ei.value.code == -1203 and "no current call" in ei.value.message


async def test_engines_on_a_real_server_exchange_signals(tmp_path: Path) -> None:
    srv = start_or_kill(ServerProcess(tmp_path / "srv"))
    try:
        async with CallEngine(srv.url) as a, CallEngine(srv.url) as b:
            ua, ub = unique("a"), unique("b")
            rec_a, rec_b, sig_a, sig_b = RecordingObserver(), RecordingObserver(), Signals(), Signals()
            a.add_observer(rec_a)
            a.add_observer(sig_a)
            b.add_observer(rec_b)
            b.add_observer(sig_b)
            await a.init(REAL_APP_ID, ua, srv.sig(ua))
            await b.init(REAL_APP_ID, ub, srv.sig(ub))
            cid = await a.calls([ub], MediaType.VIDEO)
            await rec_b.wait_for("on_call_received", call_id=cid)
            with pytest.raises(RemoteCallError) as ei:  # b is still ringing
                await a.send_signal(ub, OFFER)
            assert ei.value.code == -1203 and "not connected" in ei.value.message
            await b.accept()
            await rec_a.wait_for("on_user_join", user_id=ub)
            await a.send_signal(ub, OFFER)
            await b.send_signal(ua, {"type": "answer", "sdp": "v=0\r\n"})
            await b.send_signal(ua, {"type": "candidate", "candidate": None})
            assert await sig_b.wait(1) == [(cid, ua, OFFER)]
            assert [d["type"] for _, _, d in await sig_a.wait(2)] == ["answer", "candidate"]
            await b.hangup()
            await rec_a.wait_for("on_call_end", call_id=cid)
    finally:
        assert srv.stop() == 0


def start_or_kill(srv: ServerProcess) -> ServerProcess:
    """Start ``srv``; if it does not come up, kill it (no process is left behind)."""
    try:
        return srv.start()
    except BaseException:
        srv.kill()
        raise
