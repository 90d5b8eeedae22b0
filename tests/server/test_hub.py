"""The hub's persistence pipeline with a store that fails on purpose."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from needs import import_or_missing
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
        self.locked = 0  # the next applies that find the database locked
        self.broken: set[str] = set()  # calls whose writes always fail, not for their values
        self.lock_nth = 0  # the n-th next apply with a call snapshot finds the database locked

    async def apply(self, writes: Sequence[st.Write]) -> None:
        if self.down:
            self.gate.set()
            raise OSError("store down")
        if self.locked and not all(isinstance(w, st.AliveWrite) for w in writes):
            self.locked -= 1
            raise sqlite3.OperationalError("database is locked")
        for w in writes:
            if isinstance(w, st.LiveCallWrite) and w.call_id in self.broken:
                raise RuntimeError("a bug in the store")
            if isinstance(w, st.ProfileWrite) and w.nickname == "poison":
                raise ValueError("poison profile")
        if self.lock_nth and any(isinstance(w, st.LiveCallWrite) for w in writes):
            self.lock_nth -= 1
            if self.lock_nth == 0:
                raise sqlite3.OperationalError("database is locked")
        for w in writes:
            if isinstance(w, st.FinishedCallWrite) and w.record.call_id in self.poison:
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
    await store.apply([st.ProfileWrite("A", "Alice", "https://a.example/a.png", 1.0)])
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


# --------------------------------------------------------------------------- poison batches
#
# A real SQLite database that refuses some values: triggers, as a constraint an
# operator added would (RAISE(ABORT) is a constraint failure, like a CHECK). The hub
# must refuse exactly the requests whose writes were refused, hold their pushes back,
# keep the rest of the flush, and leave memory as the store has it.

_POISON_TRIGGERS = (
    """CREATE TRIGGER refuse_live BEFORE INSERT ON live_calls WHEN NEW.snapshot LIKE '%poison%'
       BEGIN SELECT RAISE(ABORT, 'poison refused'); END""",
    """CREATE TRIGGER refuse_profile BEFORE INSERT ON profiles WHEN NEW.nickname LIKE '%poison%'
       BEGIN SELECT RAISE(ABORT, 'poison refused'); END""",
    """CREATE TRIGGER refuse_callback BEFORE INSERT ON callback_config WHEN NEW.config LIKE '%poison%'
       BEGIN SELECT RAISE(ABORT, 'poison refused'); END""",
)


def add_triggers(path: str, *statements: str) -> None:
    """Add ``statements`` to the database at ``path`` from a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
async def poison_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    path = str(tmp_path / "ringline.db")
    store = SqliteStore(path)
    await store.open()
    add_triggers(path, *_POISON_TRIGGERS)
    h = Hub(Settings(heartbeat_grace=60), store, sdk_app_id=1)
    await h.start()
    yield h
    await h.close()
    await store.close()


class Answers:
    """What a request got: its value, or the message of its refusal."""

    def __init__(self) -> None:
        self.ok: list[object] = []
        self.refused: list[str] = []

    def kw(self) -> dict[str, Any]:
        return {"respond": self.ok.append, "refused": self.refused.append}


def place(device: str, callee: str, call_id: str, user_data: str = "") -> m.PlaceCall:
    return m.PlaceCall(device, (callee,), MediaType.AUDIO, CallParams(user_data=user_data), call_id, 7)


async def test_a_refused_call_start_is_refused_alone_and_leaves_no_trace(poison_hub: Hub) -> None:
    h = poison_hub
    store = h.store
    a, b, c, d = login(h, "a1", "A"), login(h, "b1", "B"), login(h, "c1", "C"), login(h, "d1", "D")
    await h.drain()
    flushes = h.stats["batches"]
    bad, good, info = Answers(), Answers(), Answers()
    # Three requests in one flush: the first carries a value the database refuses.
    h.submit(place("a1", "B", "c-bad", user_data="poison"), **bad.kw())
    h.submit(place("c1", "D", "c-good"), **good.kw())
    h.submit(m.SetSelfInfo("a1", "Alice", ""), **info.kw())
    await h.drain()
    assert h.stats["batches"] == flushes + 1  # one flush, one merged transaction tried
    # The bad request is refused with the store's reason; nothing of it went out.
    assert bad.ok == [] and len(bad.refused) == 1
    assert "did not take effect" in bad.refused[0] and "poison refused" in bad.refused[0]
    assert names(a) == [] and names(b) == []
    # The others of the flush were answered and are durable.
    assert good.ok == ["c-good"] and good.refused == []
    assert info.ok == [None] and info.refused == []
    assert names(c) == ["on_user_inviting"] and names(d) == ["on_call_received"]
    assert [cid for cid, _, _ in await store.load_live_calls()] == ["c-good"]
    assert await store.load_profiles() == {"A": ("Alice", "")}
    # Memory is as the store has it: no call, no ring timer, and A and B are free.
    assert "c-bad" not in h.sb.calls and h.sb.current_call_of("a1") is None
    assert not any("c-bad" in key for key in h._timers)
    again = Answers()
    h.submit(place("a1", "B", "c-next"), **again.kw())
    await h.drain()
    assert again.ok == ["c-next"] and names(b) == ["on_call_received"]
    assert b.buffer[0][2]["call_id"] == "c-next"
    assert await store.get_record("c-bad") is None


async def test_a_refused_change_of_a_live_call_ends_it_with_its_record(poison_hub: Hub) -> None:
    h = poison_hub
    store = h.store
    assert isinstance(store, SqliteStore)
    a, b = login(h, "a1", "A"), login(h, "b1", "B")
    h.submit(place("a1", "B", "c1"))
    h.submit(m.Accept("b1", "c1"))
    await h.drain()
    a.ack(a.seq)
    b.ack(b.seq)
    # From now on the database refuses every new state of c1.
    add_triggers(
        store.path,
        """CREATE TRIGGER refuse_c1 BEFORE UPDATE ON live_calls WHEN NEW.call_id = 'c1'
           BEGIN SELECT RAISE(ABORT, 'poison refused'); END""",
    )
    flag = Answers()
    h.submit(m.SetDeviceFlag("a1", "c1", "audio", False), **flag.kw())
    await h.drain()
    assert flag.ok == [] and len(flag.refused) == 1
    # The change was not told (no on_user_audio_available); the server ended the call
    # instead, and both members heard it, with its record.
    assert names(b) == ["on_call_end"] and names(a) == ["on_call_end"]
    rec = await store.get_record("c1")
    assert rec is not None and rec.end_reason.name == "END_BY_SERVER"
    assert await store.load_live_calls() == []
    assert "c1" not in h.sb.calls


async def test_a_refused_profile_and_callback_url_are_put_back(poison_hub: Hub) -> None:
    h = poison_hub
    a, b = login(h, "a1", "A"), login(h, "b1", "B")
    h.submit(m.SetSelfInfo("a1", "Alice", ""))
    await h.drain()
    nick = Answers()
    h.submit(m.SetSelfInfo("a1", "poison", ""), **nick.kw())
    url = Answers()
    h.enqueue_write(
        st.CallbackConfigWrite("v4", {"Url": "http://127.0.0.1:9/poison", "CallbackCommandList": []}),
        lambda: url.ok.append(None),
        url.refused.append,
    )
    await h.drain()
    assert nick.ok == [] and len(nick.refused) == 1
    assert url.ok == [] and len(url.refused) == 1
    assert h.sb.profiles == {"A": ("Alice", "")} and h.callback_configs["v4"] is None
    # Invitations show the profile the store has, and calls are recorded as before
    # (with no callback url to poison their batches).
    h.submit(place("a1", "B", "c1"))
    h.submit(m.Hangup("a1", "c1"))
    await h.drain()
    (args,) = [x for _, n, x in b.buffer if n == "on_call_received"]
    assert args["info"]["inviter_nickname"] == "Alice"
    assert await h.store.get_record("c1") is not None
    assert names(a) == ["on_user_inviting", "on_call_not_connected", "on_call_cancelled"]


async def test_a_passing_failure_of_the_store_refuses_nothing(hub: Hub) -> None:
    store = hub.store
    assert isinstance(store, FlakyStore)
    a, b = login(hub, "a1", "A"), login(hub, "b1", "B")
    await hub.drain()
    store.locked = 2  # the database is locked twice, then free again
    call = Answers()
    hub.submit(place("a1", "B", "c1"), **call.kw())
    await hub.drain()
    assert call.ok == ["c1"] and call.refused == []
    assert names(a) == ["on_user_inviting"] and names(b) == ["on_call_received"]
    assert [c for c, _, _ in await store.load_live_calls()] == ["c1"]


async def test_a_batch_that_keeps_failing_is_refused_after_three_tries_and_others_are_kept(hub: Hub) -> None:
    store = hub.store
    assert isinstance(store, FlakyStore)
    for device, user in (("a1", "A"), ("b1", "B"), ("c1", "C")):
        login(hub, device, user)
    d = login(hub, "d1", "D")
    await hub.drain()
    store.broken.add("c-bad")
    bad, good = Answers(), Answers()
    hub.submit(place("a1", "B", "c-bad"), **bad.kw())
    hub.submit(place("c1", "D", "c-good"), **good.kw())
    await hub.drain()
    assert bad.ok == [] and "a bug in the store" in bad.refused[0]
    assert good.ok == ["c-good"] and names(d) == ["on_call_received"]
    assert [c for c, _, _ in await store.load_live_calls()] == ["c-good"]


def test_refuses_values_tells_the_values_from_the_database() -> None:
    asyncpg = import_or_missing("asyncpg", "asyncpg is part of the dev extra: pip install -e '.[dev]'")

    refused: list[BaseException] = [
        sqlite3.IntegrityError("UNIQUE constraint failed"),
        sqlite3.ProgrammingError("Error binding parameter 1"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        OverflowError("Python int too large to convert to SQLite INTEGER"),
        asyncpg.exceptions.DataError("invalid input for query argument $1"),
        asyncpg.exceptions.CheckViolationError("new row violates check constraint"),
        asyncpg.exceptions.RaiseError("refused by a trigger"),
    ]
    passing: list[BaseException] = [
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("disk I/O error"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        OSError("connection refused"),
        RuntimeError("SqliteStore is closed"),
    ]
    assert [st.refuses_values(e) for e in refused] == [True] * len(refused)
    assert [st.refuses_values(e) for e in passing] == [False] * len(passing)


async def test_a_batch_tried_again_after_later_ones_never_puts_an_older_snapshot_back(hub: Hub) -> None:
    store = hub.store
    assert isinstance(store, FlakyStore)
    login(hub, "a1", "A")
    login(hub, "b1", "B")
    hub.submit(place("a1", "B", "c1"))
    hub.submit(m.Accept("b1", "c1"))
    await hub.drain()
    # One flush: two changes of c1, then a profile the store refuses. The merged
    # transaction fails for the profile; written alone, the first change finds the
    # database locked while the second one is kept; the first is then tried again.
    store.lock_nth = 1
    first, second, profile = Answers(), Answers(), Answers()
    hub.submit(m.SetDeviceFlag("a1", "c1", "audio", False), **first.kw())
    hub.submit(m.SetDeviceFlag("a1", "c1", "audio", True), **second.kw())
    hub.submit(m.SetSelfInfo("a1", "poison", ""), **profile.kw())
    await hub.drain()
    assert first.ok == [None] and second.ok == [None] and len(profile.refused) == 1
    ((_, snapshot, _),) = await store.load_live_calls()
    assert json.loads(snapshot) == hub.sb.snapshot("c1")  # the newest state, not the first change's
