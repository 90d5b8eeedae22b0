"""A write the store refuses, and a push that cannot be sent, against real server
processes (docs/concepts.md "A write the store refuses", docs/protocol.md "Closing").

The store's refusal is real: the database itself refuses a value, through a trigger
added to the server's own tables before it starts (as a constraint an operator added
would), on SQLite and on PostgreSQL. A failing push is made with the server's test
switch ``RINGLINE_TEST_FAIL_SEND`` (nothing real makes sending fail once strings are
checked at the edge).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from needs import PG_DSN, missing
from rawclient import Raw
from ringline.server.config import Settings
from ringline.server.hub import Hub
from ringline.server.store import SqliteStore, open_store
from ringline.server.store.postgres import DEFAULT_SCHEMA
from ringline.server.ws import WsHandler
from serverproc import SDK_APP_ID, ServerProcess, unique

POISON = "poison-4b1d"
#: In a call's user_data: its live state is kept, its record is refused.
RECORD_POISON = "record-poison-7f3e"

_SQLITE_TRIGGER = f"""
    CREATE TRIGGER refuse_poison BEFORE INSERT ON live_calls WHEN NEW.snapshot LIKE '%{POISON}%'
    BEGIN SELECT RAISE(ABORT, 'poison value refused'); END
"""
_SQLITE_CALLBACK_TRIGGER = f"""
    CREATE TRIGGER refuse_poison_url BEFORE INSERT ON callback_config WHEN NEW.config LIKE '%{POISON}%'
    BEGIN SELECT RAISE(ABORT, 'poison value refused'); END
"""
_SQLITE_RECORD_TRIGGER = f"""
    CREATE TRIGGER refuse_poison_record BEFORE INSERT ON calls WHEN NEW.record LIKE '%{RECORD_POISON}%'
    BEGIN SELECT RAISE(ABORT, 'poison value refused'); END
"""
_SQLITE_SESSION_TRIGGER = f"""
    CREATE TRIGGER refuse_poison_device BEFORE INSERT ON sessions WHEN NEW.device_id LIKE '%{POISON}%'
    BEGIN SELECT RAISE(ABORT, 'poison value refused'); END
"""
_PG_FUNCTION = f"""
    CREATE FUNCTION {{schema}}.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF to_jsonb(NEW)::text LIKE '%{POISON}%'
           OR (TG_TABLE_NAME = 'calls' AND to_jsonb(NEW)::text LIKE '%{RECORD_POISON}%') THEN
            RAISE EXCEPTION 'poison value refused' USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$
"""
_PG_TRIGGERS = (
    """CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON {schema}.live_calls
       FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_poison()""",
    """CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON {schema}.callback_config
       FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_poison()""",
    """CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON {schema}.sessions
       FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_poison()""",
    """CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON {schema}.calls
       FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_poison()""",
)


async def v4(srv: ServerProcess, command: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One REST v4 command as the operator; its envelope (HTTP 200)."""
    query = {
        "sdkappid": str(SDK_APP_ID),
        "identifier": "administrator",
        "usersig": srv.sig("administrator"),
        "random": "1",
        "contenttype": "json",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{srv.url}/v4/{command}", params=query, json=body or {}) as r,
    ):
        assert r.status == 200, await r.text()
        return dict(await r.json())


class Db:
    """The server's database, read and changed from the test."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def prepare(self) -> None:
        """Create the server's tables (as the server would) and add the trigger."""
        store = open_store(self.url)
        await store.open()
        await store.close()
        if self.url.startswith("sqlite"):
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                conn.execute(_SQLITE_TRIGGER)
                conn.execute(_SQLITE_CALLBACK_TRIGGER)
                conn.execute(_SQLITE_SESSION_TRIGGER)
                conn.execute(_SQLITE_RECORD_TRIGGER)
                conn.commit()
            finally:
                conn.close()
            return
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            schema = await conn.fetchval(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'live_calls'"
            )
            await conn.execute(_PG_FUNCTION.format(schema=schema))
            for trigger in _PG_TRIGGERS:
                await conn.execute(trigger.format(schema=schema))
        finally:
            await conn.close()

    async def fetch(self, table: str, column: str, key: str, value: str) -> list[Any]:
        if self.url.startswith("sqlite"):
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                return [r[0] for r in conn.execute(f"SELECT {column} FROM {table} WHERE {key} = ?", (value,))]
            finally:
                conn.close()
        import asyncpg

        pg = await asyncpg.connect(self.url, server_settings={"search_path": DEFAULT_SCHEMA})
        try:
            return [r[0] for r in await pg.fetch(f"SELECT {column} FROM {table} WHERE {key} = $1", value)]
        finally:
            await pg.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    """The server's database: a SQLite file in its data folder, or a fresh PostgreSQL
    database next to ``RINGLINE_TEST_PG_DSN`` (dropped afterwards; tests/needs.py's rule
    when PostgreSQL is absent)."""
    if request.param == "sqlite":
        yield Db(f"sqlite:///{tmp_path / 'data' / 'ringline.db'}")
        return
    import asyncpg  # the dev extra

    name = "ringline_poison_" + uuid.uuid4().hex[:12]
    try:
        admin = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        missing(
            f"PostgreSQL is absent at {PG_DSN} ({exc}); "
            "run ./scripts/test (it starts it) or set RINGLINE_TEST_PG_DSN"
        )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield Db(PG_DSN.rsplit("/", 1)[0] + "/" + name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_request_whose_write_the_store_refuses_gets_an_error_and_nothing_else_is_lost(
    tmp_path: Path, db: Db
) -> None:
    (tmp_path / "data").mkdir()
    await db.prepare()
    srv = ServerProcess(tmp_path / "data", db=db.url).start()
    a, b, c, d = Raw(srv), Raw(srv), Raw(srv), Raw(srv)
    others: list[Raw] = []
    try:
        ua, ub, uc, ud = unique("a"), unique("b"), unique("c"), unique("d")
        for client, user in ((a, ua), (b, ub), (c, uc), (d, ud)):
            await client.login(user)
        # Two requests back to back: a call carrying a value the database refuses, and
        # a profile change it takes; another user's call goes on meanwhile.
        bad_id, info_id = next(a.ids), next(a.ids)
        await a.send(
            {
                "id": bad_id,
                "op": "calls",
                "user_ids": [ub],
                "media_type": 1,
                "params": {"user_data": POISON},
            }
        )
        await a.send({"id": info_id, "op": "set_self_info", "nickname": "Alice"})
        other = (await c.ok("calls", user_ids=[ud], media_type=1))["call_id"]
        bad = await a.response(bad_id)
        assert not bad["ok"] and bad["code"] == -1406, bad
        assert "did not take effect" in bad["message"] and "poison value refused" in bad["message"]
        assert (await a.response(info_id))["ok"]
        # The refused call left no trace: A is in no call, and may call again at once.
        assert (await a.ok("get_state"))["call"] is None
        cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        received = await b.event("on_call_received", call_id=cid)
        # B's first push is the new call's invitation: none of the refused one went out.
        assert [e["args"]["call_id"] for e in b.events] == [cid]
        assert received["args"]["info"]["inviter_nickname"] == "Alice"
        # The others' requests were answered and are durable.
        await d.event("on_call_received", call_id=other)
        await d.ok("accept", call_id=other)
        await c.ok("hangup", call_id=other)
        assert [r["call_id"] for r in (await c.ok("query_recent_calls"))["records"]] == [other]
        assert await db.fetch("profiles", "nickname", "user_id", ua) == ["Alice"]
        assert await db.fetch("calls", "result", "caller", ua) == []
        # And the server keeps serving the call that came after.
        await b.ok("accept", call_id=cid)
        await a.event("on_call_begin", call_id=cid)
        await a.ok("hangup", call_id=cid)
        await b.event("on_call_end", call_id=cid)
        assert await db.fetch("calls", "call_id", "caller", ua) == [cid]
        # An operator's change the store refuses is answered with the reason, not OK
        # (nor left waiting), and the configuration before it stays.
        good_url = {"Url": "http://127.0.0.1:9/hooks", "CallbackCommandList": ["Call.CallbackAfterEndCall"]}
        assert (await v4(srv, "call_config/set_callback", good_url))["ErrorCode"] == 0
        res = await v4(srv, "call_config/set_callback", {**good_url, "Url": f"http://127.0.0.1:9/{POISON}"})
        assert res["ErrorCode"] == 10002 and "did not take effect" in res["ErrorInfo"], res
        assert (await v4(srv, "call_config/get_callback"))["Response"]["Url"] == good_url["Url"]
        # A login whose session the store refuses is refused and closed, not half-made;
        # the same user logs in from another device at once.
        e = Raw(srv)
        others.append(e)
        await e.connect()
        r = await e.request(
            "login", v=1, sdk_app_id=SDK_APP_ID, user_id=ub, user_sig=srv.sig(ub), device_id=POISON
        )
        assert not r["ok"] and r["code"] == -1406 and "did not take effect" in r["message"], r
        assert (await e.wait_closed())[0] == 4003
        # It pushed out none of the user's devices: B's session is kept and B rings.
        assert await db.fetch("sessions", "user_id", "user_id", ub) == [ub]
        again = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        await b.event("on_call_received", call_id=again)
        assert "on_kicked_offline" not in b.names()
        assert srv.log().count("the store refused a batch") == 3
    finally:
        for client in (a, b, c, d, *others):
            await client.close()
        srv.kill()


async def test_a_logout_whose_call_record_the_store_refuses_keeps_the_session(tmp_path: Path, db: Db) -> None:
    (tmp_path / "data").mkdir()
    await db.prepare()
    srv = ServerProcess(tmp_path / "data", db=db.url).start()
    a, b = Raw(srv), Raw(srv)
    try:
        ua, ub = unique("a"), unique("b")
        await a.login(ua)
        await b.login(ub)
        params = {"user_data": RECORD_POISON}
        cid = (await a.ok("calls", user_ids=[ub], media_type=1, params=params))["call_id"]
        await b.event("on_call_received", call_id=cid)
        await b.ok("accept", call_id=cid)
        await a.event("on_call_begin", call_id=cid)
        # A logs out: that ends the call, whose record the store refuses.
        r = await a.request("logout")
        assert not r["ok"] and r["code"] == -1406 and "did not take effect" in r["message"], r
        # The call is over in the server, so B hears it; A's session is kept and works.
        await b.event("on_call_end", call_id=cid)
        assert (await a.ok("get_state"))["call"] is None
        again = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        await b.event("on_call_received", call_id=again)
        assert await db.fetch("calls", "call_id", "caller", ua) == []
        await a.ok("logout")
        assert (await a.wait_closed())[0] == 1000
    finally:
        for client in (a, b):
            await client.close()
        srv.kill()


async def test_a_push_that_cannot_be_sent_closes_the_connection_1011_and_resume_replays_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RINGLINE_TEST_FAIL_SEND", '"ev":"on_call_received"')
    srv = ServerProcess(tmp_path).start()
    a, b, b2 = Raw(srv), Raw(srv), Raw(srv)
    try:
        ua, ub = unique("a"), unique("b")
        await a.login(ua)
        await b.login(ub)
        cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        # B's invitation fails to go out: its connection is closed, not left silent.
        code, _ = await b.wait_closed()
        assert code == 1011
        assert b.names() == []
        # B resumes and gets the invitation again, and the call goes on.
        await b2.connect()
        res = await b2.ok("resume", v=1, session=b.session, ack=b.last_seq)
        assert res["resumed"]
        await b2.event("on_call_received", call_id=cid)
        await b2.ok("accept", call_id=cid)
        await a.event("on_call_begin", call_id=cid)
        await b2.event("on_call_begin", call_id=cid)
        log = srv.log()
        assert log.count("sending failed") == 1 and log.count("closing the connection with 1011") == 1
        assert b.session not in log  # the cause only, no session token
    finally:
        for client in (a, b, b2):
            await client.close()
        srv.kill()


class _Wire:
    """What a WebSocket puts on the wire for a text frame: its UTF-8 bytes (which a
    lone surrogate has none of: ``str.encode`` raises, as in aiohttp)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def send_str(self, text: str) -> None:
        self.frames.append(text.encode("utf-8"))


async def test_a_frame_with_a_lone_surrogate_goes_out_as_a_json_escape() -> None:
    handler = WsHandler(
        Hub(Settings(), SqliteStore(":memory:"), sdk_app_id=1), secret_key="k" * 32, sdk_app_id=1
    )
    wire = _Wire()
    text = '{"ev":"on_call_received","seq":1,"args":{"user_data":"x\ud800y","nick":"é"}}'
    await handler._send_frame(wire, text)  # type: ignore[arg-type]
    (frame,) = wire.frames
    assert json.loads(frame) == json.loads(text)  # the device reads the same strings
    await handler._send_frame(wire, '{"ev":"on_x","nick":"é"}')  # type: ignore[arg-type]
    assert wire.frames[1] == '{"ev":"on_x","nick":"é"}'.encode()  # others go out as they are
