"""The hub's persistence pipeline with a store that fails on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from ringline.core import machine as m
from ringline.core.enums import MediaType
from ringline.core.types import CallParams
from ringline.server.config import Settings
from ringline.server.hub import Hub, Session
from ringline.server.store import SqliteStore
from ringline.server.store import base as st


class FlakyStore(SqliteStore):
    """A real in-memory SQLite store that refuses writes while told to."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.down = False
        self.poison: set[str] = set()
        self.gate = asyncio.Event()

    async def apply(self, writes: Sequence[st.Write]) -> None:
        if self.down:
            self.gate.set()
            raise OSError("store down")
        for w in writes:
            if isinstance(w, st.FinishCall) and w.record.call_id in self.poison:
                raise ValueError("poison")
        await super().apply(writes)


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    store = FlakyStore()
    await store.open()
    h = Hub(Settings(heartbeat_grace=60), store, sdk_app_id=1)
    await h.start()
    yield h
    await h.close()
    await store.close()


def login(h: Hub, device: str, user: str) -> Session:
    s = h.new_session(device, user, False, float("inf"))
    h.attach(s)
    h.submit(m.Login(device, user))
    return s


def names(s: Session) -> list[str]:
    return [name for _, name, _ in s.buffer]


async def test_events_wait_while_the_store_is_down_and_flow_when_it_is_back(hub: Hub) -> None:
    store = hub.store
    assert isinstance(store, FlakyStore)
    a, b = login(hub, "a1", "A"), login(hub, "b1", "B")
    await hub.drain()
    store.down = True
    hub.submit(m.PlaceCall("a1", ("B",), MediaType.AUDIO, CallParams(), "c1", 7))
    await store.gate.wait()  # the flusher has tried and failed at least once
    assert names(b) == [] and names(a) == []  # nothing before it is durable
    store.down = False
    await hub.drain()
    assert names(a) == ["on_user_inviting"]
    assert names(b) == ["on_call_received"]
    assert [c for c, _, _ in await store.load_live_calls()] == ["c1"]


async def test_a_write_the_store_keeps_refusing_is_dropped_without_stalling_others(hub: Hub) -> None:
    store = hub.store
    assert isinstance(store, FlakyStore)
    login(hub, "a1", "A")
    b = login(hub, "b1", "B")
    store.poison.add("c1")
    hub.submit(m.PlaceCall("a1", ("B",), MediaType.AUDIO, CallParams(), "c1", 7))
    hub.submit(m.Hangup("a1", "c1"))
    await hub.drain()
    # The events were delivered even though the record could not be written...
    assert names(b)[-2:] == ["on_call_not_connected", "on_call_cancelled"]
    # ...and the next call is recorded as usual.
    hub.submit(m.PlaceCall("a1", ("B",), MediaType.AUDIO, CallParams(), "c2", 8))
    hub.submit(m.Hangup("a1", "c2"))
    await hub.drain()
    assert await store.get_record("c1") is None
    rec = await store.get_record("c2")
    assert rec is not None and rec.result.value == "Cancel"


async def test_a_device_that_never_acknowledges_is_cut_off_and_keeps_only_its_ends() -> None:
    store = FlakyStore()
    await store.open()
    h = Hub(Settings(heartbeat_grace=60, max_unacked=6), store, sdk_app_id=1)
    await h.start()
    try:
        a, b = login(h, "a1", "A"), login(h, "b1", "B")
        h.submit(m.PlaceCall("a1", ("B",), MediaType.AUDIO, CallParams(), "c1", 7))
        h.submit(m.Accept("b1", "c1"))
        await h.drain()
        a.ack(a.seq)  # A acknowledges as it should; B never does
        for i in range(4):
            h.submit(m.SetDeviceFlag("a1", "c1", "audio", i % 2 == 1))
        await h.drain()
        assert b.closed and "b1" not in h.by_device
        # B is gone: A hears it left OFFLINE; B's own end waits in its mailbox.
        assert names(a) == ["on_user_leave", "on_call_end"]
        assert [n for _, n, _ in h.mailbox["b1"]] == ["on_call_end"]
    finally:
        await h.close()
        await store.close()


async def test_set_self_info_is_answered_only_once_the_profile_is_durable(hub: Hub) -> None:
    store = hub.store
    assert isinstance(store, FlakyStore)
    login(hub, "a1", "A")
    await hub.drain()
    store.down = True
    answered: list[object] = []
    hub.submit(m.SetSelfInfo("a1", "Alice", "https://a.example/a.png"), respond=answered.append)
    await store.gate.wait()  # the flusher has tried to write the profile and failed
    assert answered == []
    store.down = False
    await hub.drain()
    assert answered == [None]
    assert await store.load_profiles() == {"A": ("Alice", "https://a.example/a.png")}
    # The same profile again writes nothing: answered at once, without a flush.
    hub.submit(m.SetSelfInfo("a1", "Alice", "https://a.example/a.png"), respond=answered.append)
    assert answered == [None, None]


async def test_start_loads_the_saved_profiles_into_the_switchboard(tmp_path: Path) -> None:
    path = str(tmp_path / "ringline.db")
    store = SqliteStore(path)
    await store.open()
    await store.apply([st.SaveProfile("A", "Alice", "https://a.example/a.png", 1.0)])
    await store.close()
    store = SqliteStore(path)
    await store.open()
    h = Hub(Settings(heartbeat_grace=60), store, sdk_app_id=1)
    await h.start()
    try:
        assert h.sb.profiles == {"A": ("Alice", "https://a.example/a.png")}
        login(h, "a1", "A")
        b = login(h, "b1", "B")
        h.submit(m.PlaceCall("a1", ("B",), MediaType.AUDIO, CallParams(), "c1", 7))
        await h.drain()
        (info,) = [args["info"] for _, name, args in b.buffer if name == "on_call_received"]
        assert (info["inviter_nickname"], info["inviter_avatar"]) == ("Alice", "https://a.example/a.png")
    finally:
        await h.close()
        await store.close()
