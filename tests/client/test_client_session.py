"""Session upkeep: heartbeats, reconnect + resume, re-login, and final closes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from client_fakes import SDK_APP_ID, SIG, EngineFactory, FakeServer, received

from ringline.client import CallEngine
from ringline.core.errors import LocalCallError, RemoteCallError
from ringline.testing import RecordingObserver
from serverproc import free_port


async def start(
    server: FakeServer, make_engine: EngineFactory, **options: Any
) -> tuple[CallEngine, RecordingObserver]:
    options.setdefault("device_id", "alice-phone")
    engine = make_engine(**options)
    rec = RecordingObserver()
    engine.add_observer(rec)
    await engine.init(SDK_APP_ID, "alice", SIG)
    return engine, rec


def joins(n: int) -> list[dict[str, Any]]:
    return [{"call_id": "c1", "user_id": f"u{i}"} for i in range(1, n + 1)]


async def test_pings_acknowledge_the_highest_seq_received(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    server.heartbeat_interval = 0.01  # the server's interval is used by default
    engine, rec = await start(server, make_engine)
    session = server.session("alice")
    await server.wait(lambda: 0 in server.pings)
    for args in joins(3):
        await server.push(session, "on_user_join", args)
    await rec.wait_for("on_user_join", user_id="u3")
    await server.wait(lambda: 3 in server.pings)
    pings = [f for f in server.connections[0].frames if f.get("op") == "ping"]
    assert all(set(p) == {"op", "ack"} for p in pings)
    assert server.pings == sorted(server.pings)


async def test_heartbeat_interval_option_overrides_the_server(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    server.heartbeat_interval = 3600.0
    await start(server, make_engine, heartbeat_interval=0.01)
    await server.wait(lambda: len(server.pings) >= 2)


async def test_silent_server_is_detected_and_the_session_resumed(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    server.heartbeat_interval = 0.02
    server.heartbeat_grace = 0.1  # silence for this long means the socket is dead
    engine, rec = await start(server, make_engine)
    session = server.session("alice")
    server.mute = True  # no more pongs: the socket looks alive but nothing comes back
    await server.wait(lambda: session.conn is None)  # the client gave up on it
    server.mute = False
    await server.next_conn(1)
    assert server.resumes[0]["session"] == session.token
    await server.push(session, "on_user_join", joins(1)[0])
    await rec.wait_for("on_user_join", user_id="u1")


async def test_dropped_connection_is_resumed_and_missed_pushes_replayed_once(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, rec = await start(server, make_engine)
    session = server.session("alice")
    for args in joins(2):
        await server.push(session, "on_user_join", args)
    await rec.wait_for("on_user_join", user_id="u2")

    server.connections[0].abort()
    await server.wait(lambda: session.conn is None)
    for args in joins(4)[2:]:
        await server.push(session, "on_user_join", args)  # kept for the replay

    await server.next_conn(1)
    assert server.resumes[0]["op"] == "resume"
    assert server.resumes[0]["session"] == session.token
    assert server.resumes[0]["ack"] == 2
    assert server.resumes[0]["v"] == 1
    await server.push(session, "on_user_join", joins(5)[4])
    await rec.wait_for("on_user_join", user_id="u5")
    assert [e.kwargs["user_id"] for e in rec.events] == ["u1", "u2", "u3", "u4", "u5"]
    assert engine.is_initialized
    assert len(server.logins) == 1
    # Requests flow on the new connection.
    server.handlers["set_self_info"] = lambda conn, frame: {}
    await engine.set_self_info("A", "")
    assert server.connections[1].ops() == ["resume", "set_self_info"]


async def test_pushes_replayed_twice_are_delivered_once(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    server.replay_overlap = 2  # replays pushes the client already acknowledged
    engine, rec = await start(server, make_engine)
    session = server.session("alice")
    for args in joins(2):
        await server.push(session, "on_user_join", args)
    await rec.wait_for("on_user_join", user_id="u2")
    await server.connections[0].close(1001, "server shutting down")
    await server.wait(lambda: session.conn is None)
    await server.push(session, "on_user_join", joins(3)[2])
    await rec.wait_for("on_user_join", user_id="u3")
    assert [e.kwargs["user_id"] for e in rec.events] == ["u1", "u2", "u3"]


async def test_unknown_session_on_resume_logs_in_again_with_the_same_device(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, rec = await start(server, make_engine, device_id=None)
    first = server.session("alice")
    await server.push(first, "on_user_join", joins(1)[0])
    await rec.wait_for("on_user_join")
    server.resume_refusal = (-1414, "session unknown or expired")
    server.connections[0].abort()
    await server.wait(lambda: len(server.logins) == 2)
    assert server.logins[1]["device_id"] == engine.device_id == first.device_id
    assert server.logins[1]["user_sig"] == SIG
    second = server.session("alice")
    assert second is not first
    # The new session numbers its pushes from 1 again; they are not mistaken for replays.
    await server.next_conn(1)
    await server.push(second, "on_call_received", received("c2"))
    await rec.wait_for("on_call_received", call_id="c2")
    assert engine.call_id == "c2"
    assert engine.is_initialized


async def test_refused_re_login_reports_on_error_and_logs_out(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, rec = await start(server, make_engine)
    server.resume_refusal = (-1414, "session unknown")
    server.login_refusal = (70001, "user sig expired")
    server.connections[0].abort()
    err = await rec.wait_for("on_error", code=70001)
    assert "init()" in err["message"]
    await engine.wait_closed()
    assert not engine.is_initialized
    with pytest.raises(LocalCallError) as exc:
        await engine.hangup()
    assert exc.value.code == -1201
    assert "refused" in exc.value.message


async def test_renewed_sig_is_used_to_log_in_again(server: FakeServer, make_engine: EngineFactory) -> None:
    server.handlers["renew_user_sig"] = lambda conn, frame: {"sig_expires_at": 2e9}
    engine, rec = await start(server, make_engine)
    await engine.renew_user_sig("sig-2")
    server.resume_refusal = (-1414, "session unknown")
    server.connections[0].abort()
    await server.wait(lambda: len(server.logins) == 2)
    assert server.logins[1]["user_sig"] == "sig-2"


@pytest.mark.parametrize(
    ("code", "event", "hint"),
    [
        (4001, "on_kicked_offline", "kicked offline"),
        (4002, "on_user_sig_expired", "sig expired"),
        (1000, None, "logged this device out"),
    ],
)
async def test_final_close_delivers_the_last_events_then_logs_out_without_reconnecting(
    server: FakeServer, make_engine: EngineFactory, code: int, event: str | None, hint: str
) -> None:
    engine, rec = await start(server, make_engine)
    session = server.session("alice")
    await server.push(session, "on_call_received", received("c1"))
    if event is not None:
        await server.push(session, event)
    await server.connections[0].close(code, "bye")
    await engine.wait_closed()
    assert rec.names() == ["on_call_received"] + ([event] if event else [])
    assert not engine.is_initialized
    assert engine.call_id is None
    assert len(server.connections) == 1 and server.resumes == []
    with pytest.raises(LocalCallError) as err:
        await engine.calls(["bob"], 1)  # type: ignore[arg-type]
    assert err.value.code == -1201
    assert hint in err.value.message
    # The app may log in again.
    await engine.init(SDK_APP_ID, "alice", SIG)
    assert engine.is_initialized


async def test_answer_lost_with_the_connection_is_asked_again_after_the_resume(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, _ = await start(server, make_engine)
    first = asyncio.create_task(engine.set_self_info("x", ""))
    second = asyncio.create_task(engine.set_self_info("y", ""))
    sent = [await server.connections[0].next_request(), await server.connections[0].next_request()]
    server.connections[0].abort()
    conn = await server.next_conn(1)
    again = [await conn.next_request(), await conn.next_request()]
    # The same frames (same ids), oldest first, right after the resume.
    assert again == sent
    assert conn.ops() == ["resume", "set_self_info", "set_self_info"]
    await conn.respond(again[1])
    await conn.respond(again[0])
    await conn.respond(again[0])  # a late duplicate answer is ignored
    await first
    await second
    assert len(server.logins) == 1
    server.handlers["set_self_info"] = lambda conn, frame: {}
    await engine.set_self_info("z", "")  # and the session goes on
    assert server.connections[1].frames[-1]["id"] > sent[1]["id"]


async def test_answer_lost_with_the_connection_fails_when_the_session_is_logged_in_again(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, _ = await start(server, make_engine)
    waiting = asyncio.create_task(engine.set_self_info("x", ""))
    await server.connections[0].next_request()
    server.resume_refusal = (-1414, "session unknown or expired")
    server.connections[0].abort()
    with pytest.raises(RemoteCallError) as err:
        await waiting
    assert err.value.code == -1406
    assert "may or may not" in err.value.message
    assert "could not be resumed" in err.value.message
    conn = await server.next_conn(1)
    assert conn.ops() == ["resume", "login"]  # not sent again to the new session


@pytest.mark.parametrize("kept", [False, None])
async def test_answer_lost_with_the_connection_fails_when_the_server_kept_no_answers(
    server: FakeServer, make_engine: EngineFactory, kept: bool | None
) -> None:
    server.answers_kept = kept  # restarted (False) or older than answer replay (None)
    engine, _ = await start(server, make_engine)
    waiting = asyncio.create_task(engine.set_self_info("x", ""))
    await server.connections[0].next_request()
    server.connections[0].abort()
    with pytest.raises(RemoteCallError) as err:
        await waiting
    assert err.value.code == -1406
    assert "may or may not" in err.value.message
    conn = await server.next_conn(1)
    server.handlers["set_self_info"] = lambda conn, frame: {}
    await engine.set_self_info("y", "")
    assert conn.ops() == ["resume", "set_self_info"]  # only the new request


async def test_answer_lost_with_the_connection_is_bounded_by_the_request_timeout(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, _ = await start(server, make_engine, request_timeout=0.5)
    waiting = asyncio.create_task(engine.set_self_info("x", ""))
    await server.connections[0].next_request()
    server.resume_gate = asyncio.Event()  # the resume hangs past the timeout
    server.connections[0].abort()
    with pytest.raises(RemoteCallError) as err:
        await waiting
    assert err.value.code == -1406
    assert "may or may not" in err.value.message
    server.resume_gate.set()


async def test_request_made_while_reconnecting_waits_for_the_resume(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    server.handlers["set_self_info"] = lambda conn, frame: {}
    engine, _ = await start(server, make_engine)
    server.resume_gate = asyncio.Event()
    server.connections[0].abort()
    await server.wait(lambda: len(server.resumes) == 1)
    # Scheduled before the gate opens, so it runs while the engine is still reconnecting.
    waiting = asyncio.create_task(engine.set_self_info("x", ""))
    server.resume_gate.set()
    await waiting
    assert server.connections[1].ops() == ["resume", "set_self_info"]


async def test_request_made_while_reconnecting_is_bounded_by_the_timeout(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, _ = await start(server, make_engine, request_timeout=0.3)
    server.resume_gate = asyncio.Event()  # never set: the resume hangs
    server.connections[0].abort()
    await server.wait(lambda: len(server.resumes) == 1)
    with pytest.raises(RemoteCallError) as err:
        await engine.set_self_info("x", "")
    assert err.value.code == -1406
    assert "re-established" in err.value.message
    server.resume_gate.set()


async def test_engines_in_one_process_are_independent(server: FakeServer, make_engine: EngineFactory) -> None:
    engines = [make_engine(device_id=f"d{i}") for i in range(3)]
    recs = [RecordingObserver() for _ in engines]
    for i, (engine, rec) in enumerate(zip(engines, recs, strict=True)):
        engine.add_observer(rec)
        await engine.init(SDK_APP_ID, f"user{i}", SIG)
    for i in range(3):
        await server.push(server.session(f"user{i}"), "on_call_received", received(f"c{i}"))
    for i, (engine, rec) in enumerate(zip(engines, recs, strict=True)):
        await rec.wait_for("on_call_received", call_id=f"c{i}")
        assert rec.names() == ["on_call_received"]
        assert engine.call_id == f"c{i}"
    await engines[0].uninit()
    assert engines[1].is_initialized and engines[2].is_initialized


async def test_uninit_while_reconnecting_stops_everything(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, _ = await start(server, make_engine)
    server.resume_gate = asyncio.Event()
    server.connections[0].abort()
    await server.wait(lambda: len(server.resumes) == 1)
    await engine.uninit()
    assert not engine._tasks
    assert not engine.is_initialized
    server.resume_gate.set()
    await server.wait(lambda: all(c.closed for c in server.connections))


# ----------------------------------------------------------------- several server URLs
# One fake server reached through several URLs (nodes /n0, /n1, …; FakeConn.node).


def nodes(server: FakeServer, n: int) -> list[str]:
    return [f"{server.url}/n{i}" for i in range(n)]


async def start_on(
    server: FakeServer, urls: list[str] | str, **options: Any
) -> tuple[CallEngine, RecordingObserver]:
    engine = CallEngine(urls, device_id="alice-phone", request_timeout=5.0, **options)
    rec = RecordingObserver()
    engine.add_observer(rec)
    await engine.init(SDK_APP_ID, "alice", SIG)
    return engine, rec


@pytest.mark.parametrize("code", [1012, 1013])
async def test_with_one_url_close_1012_and_1013_resume_on_it_like_1001(
    server: FakeServer, make_engine: EngineFactory, code: int
) -> None:
    engine, rec = await start(server, make_engine)
    session = server.session("alice")
    await server.push(session, "on_user_join", joins(1)[0])
    await rec.wait_for("on_user_join", user_id="u1")
    await server.connections[0].close(code, "node leaving")
    await server.wait(lambda: session.conn is None)
    await server.push(session, "on_user_join", joins(2)[1])
    await server.next_conn(1)
    assert server.resumes[0]["session"] == session.token and server.resumes[0]["ack"] == 1
    await rec.wait_for("on_user_join", user_id="u2")
    assert [e.kwargs["user_id"] for e in rec.events] == ["u1", "u2"]
    assert engine.server_url == server.url and len(server.logins) == 1


async def test_close_1012_resumes_on_the_next_url_at_once(server: FakeServer) -> None:
    urls = nodes(server, 3)
    engine, rec = await start_on(server, urls)
    try:
        assert engine.server_url == urls[0] and server.connections[0].node == "n0"
        session = server.session("alice")
        await server.push(session, "on_user_join", joins(1)[0])
        await rec.wait_for("on_user_join", user_id="u1")
        # An hour of back-off: only a reconnect without any resumes within the wait.
        assert engine._session is not None
        engine._session._backoff = (3600.0, 3600.0)
        await server.connections[0].close(1012, "node leaving")
        await server.wait(lambda: session.conn is None)
        await server.push(session, "on_user_join", joins(2)[1])  # kept for the replay
        conn = await server.next_conn(1)
        assert conn.node == "n1" and conn.ops() == ["resume"]
        assert server.resumes[0]["session"] == session.token and server.resumes[0]["ack"] == 1
        await rec.wait_for("on_user_join", user_id="u2")
        assert engine.server_url == urls[1]
        assert [e.kwargs["user_id"] for e in rec.events] == ["u1", "u2"]
        assert len(server.logins) == 1
    finally:
        await engine.uninit()


async def test_reconnects_go_round_the_urls_and_skip_those_that_fail(server: FakeServer) -> None:
    urls = nodes(server, 3)
    engine, rec = await start_on(server, urls)
    try:
        session = server.session("alice")
        server.closing_nodes["n2"] = 1013  # no server there can take the session yet
        server.connections[0].abort()
        c1 = await server.next_conn(1)
        assert c1.node == "n1"
        c1.abort()  # → n2 says 1013 → n0
        conn = await server.next_conn(3)
        assert [c.node for c in server.connections] == ["n0", "n1", "n2", "n0"]
        assert conn.ops() == ["resume"] and engine.server_url == urls[0]
        await server.push(session, "on_user_join", joins(1)[0])
        await rec.wait_for("on_user_join", user_id="u1")
        assert len(server.logins) == 1 and len(server.resumes) == 2
    finally:
        await engine.uninit()


async def test_init_logs_in_through_the_first_url_that_can(server: FakeServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens
    server.closing_nodes["n0"] = 1013
    urls = [dead, *nodes(server, 2)]
    engine, _ = await start_on(server, urls)
    try:
        assert engine.server_url == urls[2]
        assert [c.node for c in server.connections] == ["n0", "n1"]
        assert server.connections[1].ops() == ["login"]
    finally:
        await engine.uninit()
    # The next init starts with the URL last in use.
    server.closing_nodes.clear()
    await engine.init(SDK_APP_ID, "alice", SIG)
    try:
        assert server.connections[-1].node == "n1" and engine.server_url == urls[2]
    finally:
        await engine.uninit()


async def test_init_stops_at_a_refusal_and_names_every_url_when_none_answers(server: FakeServer) -> None:
    server.login_refusal = (70001, "sig expired")
    engine = CallEngine(nodes(server, 2), request_timeout=5.0)
    with pytest.raises(RemoteCallError) as err:
        await engine.init(SDK_APP_ID, "alice", SIG)
    assert err.value.code == 70001 and len(server.logins) == 1  # the same everywhere
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    engine = CallEngine(dead, request_timeout=5.0)
    with pytest.raises(RemoteCallError) as err:
        await engine.init(SDK_APP_ID, "alice", SIG)
    assert err.value.code == -1406
    assert "none of the 2 Ringline servers" in err.value.message
    assert all(u.replace("http", "ws") in err.value.message for u in dead)
    assert not engine.is_initialized and engine.server_url == dead[0]
