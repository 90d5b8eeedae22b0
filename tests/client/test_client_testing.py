"""ringline.testing.RecordingObserver."""

from __future__ import annotations

import asyncio

import pytest

from ringline.client.observer import CURRENT_CALL_ID
from ringline.core.enums import CallEndReason, MediaType
from ringline.core.types import CallObserverExtraInfo
from ringline.testing import RecordedEvent, RecordingObserver


async def test_wait_for_returns_matching_events_once_each() -> None:
    rec = RecordingObserver()
    rec.on_user_join("bob")
    rec.on_user_join("carol")
    rec.on_user_join("bob")
    assert await rec.wait_for("on_user_join", user_id="bob") == {"user_id": "bob"}
    assert await rec.wait_for("on_user_join") == {"user_id": "carol"}
    assert await rec.wait_for("on_user_join", user_id="bob") == {"user_id": "bob"}
    assert rec.names() == ["on_user_join"] * 3


async def test_wait_for_wakes_up_when_the_event_arrives() -> None:
    rec = RecordingObserver()
    waiter = asyncio.create_task(rec.wait_for("on_call_cancelled", user_id="bob"))
    rec.on_call_cancelled("carol")
    rec.on_call_cancelled("bob")
    assert await waiter == {"user_id": "bob"}


async def test_wait_for_timeout_lists_the_events_seen() -> None:
    rec = RecordingObserver()
    rec.on_user_reject("bob")
    with pytest.raises(TimeoutError) as err:
        await rec.wait_for("on_call_begin", timeout=0.01, call_id="c1")
    assert "on_call_begin, call_id='c1'" in str(err.value)
    assert "on_user_reject(user_id='bob')" in str(err.value)


async def test_call_id_comes_from_the_arguments_or_the_dispatch_context() -> None:
    rec = RecordingObserver()
    rec.on_call_not_connected("c1", MediaType.AUDIO, CallEndReason.REJECT, "bob", CallObserverExtraInfo())
    token = CURRENT_CALL_ID.set("c2")
    try:
        rec.on_user_leave("bob")
    finally:
        CURRENT_CALL_ID.reset(token)
    rec.on_kicked_offline()
    assert [e.call_id for e in rec.events] == ["c1", "c2", None]
    assert [e.name for e in rec.events_for("c2")] == ["on_user_leave"]
    assert await rec.wait_for("on_user_leave", call_id="c2") == {"user_id": "bob"}
    assert isinstance(rec.events[0], RecordedEvent) and rec.events[0].time > 0


async def test_wait_until_rechecks_after_each_event() -> None:
    rec = RecordingObserver()
    waiter = asyncio.create_task(rec.wait_until(lambda: len(rec.events) == 2))
    rec.on_user_sig_expired()
    rec.on_user_sig_expired()
    await waiter
    with pytest.raises(TimeoutError, match="still false"):
        await rec.wait_until(lambda: False, timeout=0.01)
    rec.clear()
    assert rec.names() == []


def test_public_names_are_importable() -> None:
    # Their order is checked by ruff (RUF022).
    import ringline.client
    import ringline.client.engine
    import ringline.client.observer
    import ringline.client.transport
    import ringline.testing

    for module in (
        ringline.client,
        ringline.client.engine,
        ringline.client.observer,
        ringline.client.transport,
        ringline.testing,
    ):
        names = module.__all__
        assert len(set(names)) == len(names), module.__name__
        assert all(hasattr(module, n) for n in names), module.__name__
