"""Answers kept per session: a request sent again after a resume (same ``id``) gets
the answer of its first copy and does not run twice (docs/protocol.md "Requests").

Most tests use a real server process. Those that need a request to be *still running*
when its copy arrives use the real application in this process, with the store held
at one point by a gate (the only way to hold a request mid-way deterministically).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rawclient import Raw
from ringline.core.usersig import gen_user_sig
from ringline.server.app import HUB_KEY, build_app
from ringline.server.config import AppIdentity, Settings
from ringline.server.hub import Hub
from ringline.server.session import ANSWER_BYTES_KEPT, ANSWERS_KEPT, RequestAnswers
from serverproc import SDK_APP_ID, SECRET, ServerProcess, free_port, unique


async def new(server: Any, clients: list[Raw]) -> Raw:
    c = await Raw(server).connect()
    clients.append(c)
    return c


async def user(server: Any, clients: list[Raw], prefix: str) -> tuple[Raw, str]:
    c = await new(server, clients)
    uid = unique(prefix)
    await c.login(uid)
    return c, uid


async def resumed(server: Any, clients: list[Raw], old: Raw) -> Raw:
    """``old``'s session, resumed on a new connection (``old`` must be dropped)."""
    c = await new(server, clients)
    res = await c.ok("resume", v=1, session=old.session, ack=old.last_seq)
    assert res["resumed"] is True and res["answers_kept"] is True
    c.session = old.session
    c.last_seq = old.last_seq
    return c


def frame(c: Raw, op: str, **args: Any) -> tuple[int, str]:
    """A request frame with a fresh id of ``c``'s counter, as text (sent again as is)."""
    rid = next(c.ids)
    return rid, json.dumps({"id": rid, "op": op, **args})


async def barrier(c: Raw) -> None:
    """Everything the server sent ``c`` before now has arrived (frames keep their order)."""
    await c.ok("get_state")


# --------------------------------------------------------------------------- real process


async def test_calls_sent_again_after_a_resume_gets_the_first_answer_and_places_one_call(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, _ = await user(server, clients, "a")
    b, ub = await user(server, clients, "b")
    rid, text = frame(a, "calls", user_ids=[ub], media_type=1)
    await a.send(text)
    first = await a.response(rid)
    assert first["ok"], first
    cid = first["result"]["call_id"]
    await a.drop()  # as if that answer had been lost with the connection
    a2 = await resumed(server, clients, a)
    await a2.send(text)
    assert await a2.response(rid) == first
    # Run once: one call, one invitation (a second run would have been refused with
    # -1203, "already in a call", and not answered with the same call id).
    state = (await a2.ok("get_state"))["call"]
    assert state["call_id"] == cid
    await b.event("on_call_received", call_id=cid)
    await barrier(b)
    assert b.names().count("on_call_received") == 1
    assert a2.responses.get(rid) == []


async def test_calls_whose_connection_dropped_right_after_it_is_answered_after_the_resume(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, _ = await user(server, clients, "a")
    b, ub = await user(server, clients, "b")
    rid, text = frame(a, "calls", user_ids=[ub], media_type=1)
    await a.send(text)
    await a.drop()  # at once: the answer is made while, or after, the socket goes
    a.responses.pop(rid, None)
    a2 = await resumed(server, clients, a)
    await a2.send(text)
    again = await a2.response(rid)
    assert again["ok"], again
    cid = again["result"]["call_id"]
    await b.event("on_call_received", call_id=cid)
    await barrier(a2)
    await barrier(b)
    assert a2.responses.get(rid) == []  # answered once on the new connection
    assert b.names().count("on_call_received") == 1


async def test_hangup_sent_again_after_a_resume_answers_ok_and_ends_the_call_once(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, _ = await user(server, clients, "a")
    b, ub = await user(server, clients, "b")
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await b.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    rid, text = frame(a, "hangup", call_id=cid)
    await a.send(text)
    first = await a.response(rid)
    assert first["ok"], first
    await a.drop()
    a2 = await resumed(server, clients, a)
    await a2.send(text)
    assert await a2.response(rid) == first  # not 8010 "the call is not live"
    await b.event("on_call_end", call_id=cid)
    await barrier(b)
    assert b.names(cid).count("on_call_end") == 1


async def test_an_id_used_again_for_another_request_is_refused_and_runs_nothing(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, _ = await user(server, clients, "a")
    b, ub = await user(server, clients, "b")
    rid, text = frame(a, "enable_multi_device_ability", enable=True)
    await a.send(text)
    assert (await a.response(rid))["ok"]
    await a.send({"id": rid, "op": "calls", "user_ids": [ub], "media_type": 1})
    r = await a.response(rid)
    assert r["ok"] is False and r["code"] == -1202
    assert "unique within a session" in r["message"]
    assert (await a.ok("get_state"))["call"] is None
    await barrier(b)
    assert "on_call_received" not in b.names()
    # The first answer is still the one a copy of the first request gets.
    await a.send(text)
    assert (await a.response(rid))["result"] == {}


async def test_login_and_resume_answers_are_not_kept(server: ServerProcess, clients: list[Raw]) -> None:
    a, ua = await user(server, clients, "a")
    await a.drop()
    a2 = await new(server, clients)
    rid, text = frame(a2, "resume", v=1, session=a.session, ack=a.last_seq)
    await a2.send(text)
    assert (await a2.response(rid))["ok"]
    await a2.send(text)  # a second resume on the same connection resumes again
    assert (await a2.response(rid))["ok"]


# --------------------------------------------------------------------------- in process


class Gate:
    """Wraps a store method: once armed, calls wait until :attr:`open` is set."""

    def __init__(self, fn: Callable[..., Awaitable[Any]]) -> None:
        self.fn = fn
        self.armed = False
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.armed:
            self.entered.set()
            await self.open.wait()
        return await self.fn(*args, **kwargs)


class Local:
    """The real application served from this process (``url`` and ``sig`` as Raw
    needs them); ``hub`` is its hub."""

    def __init__(self, url: str, hub: Hub) -> None:
        self.url = url
        self.hub = hub

    def sig(self, user_id: str, expire: int = 86400) -> str:
        return gen_user_sig(SDK_APP_ID, SECRET, user_id, expire, now=int(time.time()))


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[Local]:
    settings = Settings(
        data_dir=str(tmp_path),
        db=f"sqlite:///{tmp_path / 'r.db'}",
        sdk_app_id=SDK_APP_ID,
        secret_key=SECRET,
        rate_limit_per_s=100_000.0,  # the bounded-memory test sends hundreds at once
    )
    app = await build_app(settings, AppIdentity(SDK_APP_ID, SECRET))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield Local(f"http://127.0.0.1:{port}", app[HUB_KEY])
    finally:
        await runner.cleanup()


async def calls_held_in_store(
    local: Local, clients: list[Raw], monkeypatch: pytest.MonkeyPatch
) -> tuple[Gate, Raw, Raw, tuple[int, str]]:
    """Users a and b; a sends `calls` to b while the store's writes are held by the
    returned gate, so the request runs but its answer waits (durable first). Returns
    the gate, a, b and the request (id, frame text) to send again."""
    gate = Gate(local.hub.store.apply)
    monkeypatch.setattr(local.hub.store, "apply", gate)
    a, _ = await user(local, clients, "a")
    b, ub = await user(local, clients, "b")
    gate.armed = True
    request = frame(a, "calls", user_ids=[ub], media_type=1)
    await a.send(request[1])
    return gate, a, b, request


async def test_a_request_sent_again_while_its_first_copy_runs_is_answered_once(
    local: Local, clients: list[Raw], monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, a, b, (rid, text) = await calls_held_in_store(local, clients, monkeypatch)
    await gate.entered.wait()  # the first copy is running
    await a.send(text)  # a copy on the same connection
    await barrier(a)  # (get_state only reads: answered at once)
    await a.drop()
    a2 = await resumed(local, clients, a)
    await a2.send(text)  # and one after the resume
    await barrier(a2)
    assert not a2.responses.get(rid)  # nothing yet: it is still running
    gate.armed = False
    gate.open.set()
    r = await a2.response(rid)
    assert r["ok"] and set(r["result"]) == {"call_id"}
    await barrier(a2)
    await barrier(b)
    assert a2.responses.get(rid) == []  # once, on the session's current connection
    assert not a.responses.get(rid)  # and not on the old one
    assert b.names().count("on_call_received") == 1  # run once


async def test_an_answer_made_while_disconnected_is_sent_when_the_request_comes_again(
    local: Local, clients: list[Raw], monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, a, b, (rid, text) = await calls_held_in_store(local, clients, monkeypatch)
    await gate.entered.wait()
    await a.drop()
    session = local.hub.sessions[a.session]
    # Nothing signals the server's reader noticing the close; its state is polled.
    # (Were the answer made before that, it would go to the dead connection, and the
    # assertions below would hold all the same.)
    async with asyncio.timeout(5):
        while session.link is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    gate.armed = False
    gate.open.set()
    cid = (await b.event("on_call_received"))["args"]["call_id"]  # answered (pushes follow it)
    a2 = await resumed(local, clients, a)
    await barrier(a2)
    assert not a2.responses.get(rid)  # kept, not pushed onto the new connection
    await a2.send(text)
    r = await a2.response(rid)
    assert r["ok"] and r["result"] == {"call_id": cid}
    await barrier(a2)
    await barrier(b)
    assert a2.responses.get(rid) == []
    assert b.names().count("on_call_received") == 1


async def test_only_the_last_answers_are_kept_and_an_older_request_is_refused_not_run(
    local: Local, clients: list[Raw]
) -> None:
    a, _ = await user(local, clients, "a")
    b, ub = await user(local, clients, "b")
    old_rid, old_text = frame(a, "calls", user_ids=[ub], media_type=1)
    await a.send(old_text)
    cid = (await a.response(old_rid))["result"]["call_id"]
    await a.ok("hangup", call_id=cid)
    sent = [frame(a, "enable_multi_device_ability", enable=i % 2 == 0) for i in range(ANSWERS_KEPT)]
    for _, text in sent:
        await a.send(text)
    for rid, _ in sent:
        await a.response(rid)
    # `calls` is forgotten now: sent again, it is refused rather than run again.
    await a.send(old_text)
    r = await a.response(old_rid)
    assert r["ok"] is False and r["code"] == -1406
    assert "may or may not have taken effect" in r["message"]
    assert (await a.ok("get_state"))["call"] is None
    await barrier(b)
    assert b.names().count("on_call_received") == 1
    # get_state only reads: it is not kept, so the oldest kept answer is still there
    # and is given again; one more request that changes state pushes it out.
    await a.send(sent[0][1])
    assert (await a.response(sent[0][0]))["ok"]
    await a.ok("enable_multi_device_ability", enable=True)
    await a.send(sent[1][1])
    assert (await a.response(sent[1][0]))["ok"]
    await a.send(sent[0][1])
    assert (await a.response(sent[0][0]))["code"] == -1406
    # A new request (a higher id) runs as usual.
    assert (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"] != cid


async def test_a_request_that_only_reads_runs_again_when_sent_again(local: Local, clients: list[Raw]) -> None:
    """get_state and query_recent_calls are not kept (their answers can be large): a
    copy runs again and gets a fresh answer, even with an id below the forgotten ones."""
    a, _ = await user(local, clients, "a")
    b, ub = await user(local, clients, "b")
    state_rid, state_text = frame(a, "get_state")
    await a.send(state_text)
    assert (await a.response(state_rid))["result"]["call"] is None
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    for i in range(ANSWERS_KEPT):  # the floor rises above state_rid
        await a.ok("enable_multi_device_ability", enable=i % 2 == 0)
    await a.send(state_text)
    r = await a.response(state_rid)
    assert r["ok"] and r["result"]["call"]["call_id"] == cid  # run again: the call is there now
    await barrier(b)


# --------------------------------------------------------------------------- the 32 KiB cap


def _text(answer: dict[str, Any]) -> str:
    """The answer as the server sent it (compact JSON, keys in the order received)."""
    return json.dumps(answer, separators=(",", ":"), ensure_ascii=False)


def test_kept_answers_are_capped_at_32_kib_oldest_forgotten_first() -> None:
    """RequestAnswers.keep: fewer than ANSWERS_KEPT answers, but more than
    ANSWER_BYTES_KEPT of them: the oldest go until the rest fit; the floor rises."""
    kept = RequestAnswers()
    size = 3000
    for rid in range(1, 21):
        kept.keep(rid, rid, "x" * size)
    fit = ANSWER_BYTES_KEPT // size  # 10 answers of 3000 chars fit in 32 KiB, 11 do not
    assert list(kept.order) == list(range(21 - fit, 21))
    assert kept.size == fit * size <= ANSWER_BYTES_KEPT
    assert kept.floor == 20 - fit
    # One answer larger than the cap alone is still kept (the newest always is).
    kept.keep(21, 21, "y" * (ANSWER_BYTES_KEPT + 1))
    assert list(kept.order) == [21] and kept.floor == 20


async def test_a_real_server_keeps_at_most_32_kib_of_answers(
    server: ServerProcess, clients: list[Raw]
) -> None:
    """docs/protocol.md "Answers lost with a connection": the last 128 answers, and at
    most 32 KiB of them. Requests with large answers (a refused `calls` names the
    invalid user id it was given) fill 32 KiB long before 128 answers: sent again after
    a resume, the newest that fit in 32 KiB get their kept answer, every older one is
    refused with -1406 and does not run."""
    cap = 32 * 1024  # as documented
    a, _ = await user(server, clients, "a")
    sent: list[tuple[int, str, str]] = []  # (id, frame, answer as sent)
    total = 0
    while total <= 2 * cap:
        rid, text = frame(a, "calls", user_ids=["!" * 2500 + str(len(sent))], media_type=1)
        await a.send(text)
        refused = await a.response(rid)
        assert refused["ok"] is False and refused["code"] == -1202, refused
        sent.append((rid, text, _text(refused)))
        total += len(sent[-1][2])
    assert len(sent) < 128, "answers too small to reach the byte cap before the count cap"
    # The answers the server must still keep: the newest whose sizes add up to 32 KiB.
    fit, size = 0, 0
    for _, _, answer in reversed(sent):
        if size + len(answer) > cap:
            break
        fit, size = fit + 1, size + len(answer)
    assert 1 < fit < len(sent)
    await a.drop()
    a2 = await resumed(server, clients, a)
    for i, (rid, text, answer) in enumerate(sent):
        await a2.send(text)
        got = await a2.response(rid)
        if i >= len(sent) - fit:
            assert _text(got) == answer, (i, got)  # kept: the same answer, not run again
        else:
            assert got["ok"] is False and got["code"] == -1406, (i, got)
            assert "may or may not have taken effect" in got["message"]
