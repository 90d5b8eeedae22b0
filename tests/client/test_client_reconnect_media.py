"""The media layer hears when the connection to the server is back after a drop, and
how (resumed, or logged in again), in order with the events and never as an event."""

from __future__ import annotations

from typing import Any

from client_fakes import SDK_APP_ID, SIG, EngineFactory, FakeServer

from needs import import_or_missing
from ringline.client import CallEngine
from ringline.client._codec import Event
from ringline.testing import RecordingObserver

import_or_missing("aiortc", "the media extra is not installed (pip install -e '.[dev]')")


def join(user: str) -> dict[str, Any]:
    return {"call_id": "c1", "user_id": user}


async def start(
    server: FakeServer, make_engine: EngineFactory
) -> tuple[CallEngine, RecordingObserver, list[object]]:
    """An engine with media whose media layer records what the engine tells it."""
    engine = make_engine(device_id="alice-phone", media=True)
    link = engine._media
    assert link is not None
    seen: list[object] = []
    on_event = link.on_event

    async def record_event(ev: Event) -> bool:
        seen.append(ev.kwargs.get("user_id"))
        return await on_event(ev)

    link.on_event = record_event  # type: ignore[method-assign]
    link.reconnected = lambda resumed: seen.append(("reconnected", resumed))  # type: ignore[method-assign]
    rec = RecordingObserver()
    engine.add_observer(rec)
    await engine.init(SDK_APP_ID, "alice", SIG)
    return engine, rec, seen


async def test_a_resumed_session_tells_the_media_layer_in_order_with_the_events(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, rec, seen = await start(server, make_engine)
    session = server.session("alice")
    await server.push(session, "on_user_join", join("u1"))
    await rec.wait_for("on_user_join", user_id="u1")
    server.connections[0].abort()
    await server.wait(lambda: session.conn is None)
    await server.push(session, "on_user_join", join("u2"))  # replayed after the resume
    await server.next_conn(1)
    await server.push(session, "on_user_join", join("u3"))
    await rec.wait_for("on_user_join", user_id="u3")
    assert seen == ["u1", ("reconnected", True), "u2", "u3"]
    assert rec.names() == ["on_user_join"] * 3  # observers hear of no such event
    assert len(server.logins) == 1


async def test_logging_in_again_tells_the_media_layer_the_session_was_not_resumed(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, rec, seen = await start(server, make_engine)
    first = server.session("alice")
    await server.push(first, "on_user_join", join("u1"))
    await rec.wait_for("on_user_join", user_id="u1")
    server.resume_refusal = (-1414, "session unknown or expired")
    server.connections[0].abort()
    await server.wait(lambda: len(server.logins) == 2)
    second = server.session("alice")
    await server.next_conn(1)
    await server.push(second, "on_user_join", join("u2"))
    await rec.wait_for("on_user_join", user_id="u2")
    assert seen == ["u1", ("reconnected", False), "u2"]
    assert engine.is_initialized
