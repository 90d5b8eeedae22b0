"""The wire protocol against a real server process: errors, resume, seq, limits."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import aiohttp
import pytest

from rawclient import Raw
from ringline import __version__
from ringline.core.usersig import gen_user_sig
from serverproc import SDK_APP_ID, ServerProcess, unique


async def new(server: ServerProcess, clients: list[Raw]) -> Raw:
    c = await Raw(server).connect()
    clients.append(c)
    return c


async def pair(server: ServerProcess, clients: list[Raw]) -> tuple[Raw, Raw, str, str]:
    a, b = await new(server, clients), await new(server, clients)
    ua, ub = unique("a"), unique("b")
    await a.login(ua)
    await b.login(ub)
    return a, b, ua, ub


async def connected_call(server: ServerProcess, clients: list[Raw]) -> tuple[Raw, Raw, str, str, str]:
    a, b, ua, ub = await pair(server, clients)
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await b.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    await b.event("on_call_begin", call_id=cid)
    return a, b, ua, ub, cid


async def test_healthz_answers_ok(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "ok" and body["version"] == __version__
    assert body["node_id"].endswith(f":{server.port}")  # --node-id's default: host name:port


@pytest.mark.parametrize(
    ("make_sig", "code"),
    [
        (lambda u: "", 70002),
        (lambda u: "not-a-sig!", 70003),
        (lambda u: gen_user_sig(SDK_APP_ID, "wrong-key", u, 3600, now=1_700_000_000 + 10**8), 70009),
        (lambda u: gen_user_sig(SDK_APP_ID, "k", "someone_else", 3600, now=1_800_000_000), 70013),
        (lambda u: gen_user_sig(SDK_APP_ID + 1, "k", u, 3600, now=1_800_000_000), 70014),
        (lambda u: gen_user_sig(SDK_APP_ID, "k", u, 10, now=1_600_000_000), 70001),
    ],
    ids=["empty", "malformed", "bad-signature", "wrong-user", "wrong-app", "expired"],
)
async def test_login_with_a_bad_sig_gets_its_own_code_and_closes_4003(
    server: ServerProcess, clients: list[Raw], make_sig: Any, code: int
) -> None:
    c = await new(server, clients)
    user = unique("u")
    r = await c.request("login", v=1, sdk_app_id=SDK_APP_ID, user_id=user, user_sig=make_sig(user))
    assert not r["ok"]
    assert r["code"] == code
    assert "sig" in r["message"]
    close_code, _ = await c.wait_closed()
    assert close_code == 4003


async def test_bad_frames_get_clear_errors_and_the_connection_stays_usable(
    server: ServerProcess, clients: list[Raw]
) -> None:
    c = await new(server, clients)
    await c.login(unique("u"))
    await c.send("{not json")
    assert (await c.response(None))["code"] == -1410
    await c.send("[1, 2]")
    assert (await c.response(None))["code"] == -1410
    assert c.ws is not None
    await c.ws.send_bytes(b"\x00\x01")
    assert (await c.response(None))["code"] == -1410
    r = await c.request("no_such_op")
    assert r["code"] == -1411 and "unknown op" in r["message"]
    r = await c.request("calls", user_ids="bob", media_type=1)
    assert r["code"] == -1202 and "user_ids" in r["message"]
    r = await c.request("calls", user_ids=["bob"], media_type=7)
    assert r["code"] == -1202 and "media_type" in r["message"]
    r = await c.request("calls", user_ids=[f"x{i}" for i in range(9)], media_type=1)
    assert r["code"] == -1202 and "at most 8" in r["message"]
    r = await c.request("calls", user_ids=["bob"], media_type=1, params={"user_data": "x" * 1001})
    assert r["code"] == -1202 and "1000" in r["message"]
    # Recording needs the SFU: a server without --sfu says so (docs/recording.md).
    r = await c.request("calls", user_ids=["bob"], media_type=1, params={"record": True})
    assert r["code"] == -1203 and "ringline serve --sfu" in r["message"]
    await c.send(json.dumps({"id": 99, "op": "set_self_info", "nickname": "x" * 70000}))
    assert (await c.response(99))["code"] == -1412  # answered by its id (the first key)
    r = await c.request("set_self_info", nickname="é" * 300, avatar="")
    assert r["code"] == -1202 and "500" in r["message"]
    # Still healthy: a real request works.
    assert await c.ok("get_state") == {"call": None}


async def test_requests_before_login_are_refused(server: ServerProcess, clients: list[Raw]) -> None:
    c = await new(server, clients)
    r = await c.request("calls", user_ids=["x"], media_type=1)
    assert r["code"] == -1416
    r = await c.request("login", v=2, sdk_app_id=SDK_APP_ID, user_id="u", user_sig="x")
    assert r["code"] == -1415


async def test_acting_on_someone_elses_call_is_refused(server: ServerProcess, clients: list[Raw]) -> None:
    a, b, ua, ub, cid = await connected_call(server, clients)
    m = await new(server, clients)
    await m.login(unique("mallory"))
    for op in ("hangup", "accept", "reject", "switch_call_media_type"):
        r = await m.request(op, call_id=cid, media_type=2)
        assert not r["ok"] and r["code"] == 8010, r
    r = await m.request("join", call_id=cid)
    assert r["code"] == -1206 and "invite" in r["message"]
    assert "on_call_end" not in a.names(cid)


async def test_a_flood_is_rate_limited_without_hurting_anyone_else(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, ua, ub, cid = await connected_call(server, clients)
    f = await new(server, clients)
    await f.login(unique("flood"))
    for _ in range(150):  # over the burst of 100, under the 100 refusals that close (4008)
        await f.send({"op": "ping"})
    limited = await f.response(None)
    assert limited["code"] == -1413
    # Others are served normally while the flooder is throttled.
    await a.ok("switch_call_media_type", call_id=cid, media_type=2)
    ev = await b.event("on_call_media_type_changed", call_id=cid)
    assert ev["args"]["new_call_media_type"] == 2


async def test_resume_replays_missed_pushes_in_order_exactly_once(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, ua, ub, cid = await connected_call(server, clients)
    acked = b.last_seq
    await b.drop()
    await a.ok("close_microphone", call_id=cid)
    await a.ok("hangup", call_id=cid)
    await a.event("on_call_end", call_id=cid)
    b2 = await new(server, clients)
    res = await b2.ok("resume", v=1, session=b.session, ack=acked)
    assert res["resumed"] is True and res["next_seq"] == acked + 1
    await b2.event("on_call_end", call_id=cid)
    seqs = [e["seq"] for e in b2.events]
    assert seqs == list(range(acked + 1, acked + 1 + len(seqs)))
    assert [e["ev"] for e in b2.events] == [
        "on_user_audio_available",
        "on_user_leave",
        "on_call_end",
    ]
    end = b2.events[-1]["args"]
    assert end["reason"] == 1 and end["user_id"] == ua


async def test_resume_of_an_unknown_session_says_log_in_again(
    server: ServerProcess, clients: list[Raw]
) -> None:
    c = await new(server, clients)
    r = await c.request("resume", v=1, session="s_nope", ack=0)
    assert r["code"] == -1414 and "log in again" in r["message"]


async def test_device_silent_past_grace_leaves_offline_and_gets_its_end_on_return(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, ua, ub, cid = await connected_call(server, clients)
    await b.drop()  # no resume: the grace period (2 s here) runs out
    await a.event("on_user_leave", call_id=cid, user_id=ub)
    end = (await a.event("on_call_end", call_id=cid))["args"]
    assert end["reason"] == 4 and end["user_id"] == ub  # OFFLINE, by B
    b2 = await new(server, clients)
    r = await b2.request("resume", v=1, session=b.session, ack=b.last_seq)
    assert r["code"] == -1414
    await b2.login(ub)  # same device id: the terminal event is waiting
    mine = (await b2.event("on_call_end", call_id=cid))["args"]
    assert mine["reason"] == 4 and mine["user_id"] == ub


async def test_second_login_without_multi_device_kicks_the_first(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, ua, ub, cid = await connected_call(server, clients)
    b2 = await new(server, clients)
    await b2.login(ub, device_id=ub + "-tablet")
    await b.event("on_kicked_offline")
    code, _ = await b.wait_closed()
    assert code == 4001
    # The kicked device's leg left as a hangup; A's 1v1 call ended.
    end = (await a.event("on_call_end", call_id=cid))["args"]
    assert end["reason"] == 1 and end["user_id"] == ub
    assert "on_call_end" not in b.names(cid)  # kicked: no terminal event owed


async def test_multi_device_rings_every_device_and_the_first_accept_wins(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b1, b2 = [await new(server, clients) for _ in range(3)]
    ua, ub = unique("a"), unique("b")
    await a.login(ua)
    await b1.login(ub, device_id=ub + "-1", multi_device=True)
    await b2.login(ub, device_id=ub + "-2", multi_device=True)
    cid = (await a.ok("calls", user_ids=[ub], media_type=2))["call_id"]
    await b1.event("on_call_received", call_id=cid)
    await b2.event("on_call_received", call_id=cid)
    await b1.ok("accept", call_id=cid)
    nc = (await b2.event("on_call_not_connected", call_id=cid))["args"]
    assert nc["reason"] == 7  # OTHER_DEVICE_ACCEPTED
    r = await b2.request("accept", call_id=cid)
    assert not r["ok"]


async def expire_soon(c: Raw, user: str) -> None:
    """Give ``c``'s session a sig that expires within 1–2 s, once the test's setup is
    done, so that the expiry races none of the setup's events. Sig times are whole
    seconds: on a loaded machine the new sig may be expired by the time it arrives
    (70001); then a fresh one is minted."""
    for _ in range(10):
        r = await c.request("renew_user_sig", user_sig=c.srv.sig(user, 2))
        if r["ok"]:
            return
        assert r["code"] == 70001, r
    raise AssertionError("the server refused ten fresh 2 s sigs in a row")


async def test_sig_expiry_warns_then_renewal_keeps_the_session(
    server: ServerProcess, clients: list[Raw]
) -> None:
    c = await new(server, clients)
    u = unique("s")
    await c.login(u)
    await expire_soon(c, u)
    await c.event("on_user_sig_expired")
    res = await c.ok("renew_user_sig", user_sig=server.sig(u, 3600))
    assert res["sig_expires_at"] > 0
    assert await c.ok("get_state") == {"call": None}


async def test_sig_expiry_without_renewal_closes_with_4002_and_ends_legs_offline(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b = await new(server, clients), await new(server, clients)
    ua, ub = unique("a"), unique("b")
    await a.login(ua)
    await b.login(ub)
    cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await b.ok("accept", call_id=cid)
    await expire_soon(b, ub)
    await b.event("on_user_sig_expired")
    end = (await b.event("on_call_end", call_id=cid))["args"]
    assert end["reason"] == 4
    code, _ = await b.wait_closed()
    assert code == 4002
    assert (await a.event("on_call_end", call_id=cid))["args"]["reason"] == 4


async def test_record_is_in_the_store_before_the_terminal_event_arrives(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, ua, ub, cid = await connected_call(server, clients)
    await a.ok("hangup", call_id=cid)
    await b.event("on_call_end", call_id=cid)
    db = sqlite3.connect(f"file:{server.data_dir / 'ringline.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT result, caller FROM calls WHERE call_id = ?", (cid,)).fetchone()
    finally:
        db.close()
    assert row == ("NormalEnd", ua)


async def test_recent_calls_show_outgoing_incoming_and_missed_and_delete_hides(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, ua, ub, cid = await connected_call(server, clients)
    await a.ok("hangup", call_id=cid)
    await b.event("on_call_end", call_id=cid)
    cid2 = (await a.ok("calls", user_ids=[ub], media_type=1, params={"timeout": 1}))["call_id"]
    await b.event("on_call_not_connected", call_id=cid2, timeout=5)
    recs = (await b.ok("query_recent_calls"))["records"]
    assert [(r["call_id"], r["result"]) for r in recs] == [(cid2, 1), (cid, 2)]
    mine = (await a.ok("query_recent_calls", result_type=3))["records"]
    assert {r["call_id"] for r in mine} == {cid, cid2}
    await b.ok("delete_record_calls", call_ids=[cid])
    recs = (await b.ok("query_recent_calls"))["records"]
    assert [r["call_id"] for r in recs] == [cid2]
    # Deleting from B's history leaves A's (and the server record) alone.
    assert len((await a.ok("query_recent_calls"))["records"]) == 2


async def test_ephemeral_call_leaves_no_record(server: ServerProcess, clients: list[Raw]) -> None:
    a, b, ua, ub = await pair(server, clients)
    cid = (await a.ok("calls", user_ids=[ub], media_type=1, params={"is_ephemeral_call": True}))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await a.ok("hangup", call_id=cid)
    await b.event("on_call_not_connected", call_id=cid)
    assert (await a.ok("query_recent_calls"))["records"] == []
    db = sqlite3.connect(f"file:{server.data_dir / 'ringline.db'}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT count(*) FROM calls WHERE call_id = ?", (cid,)).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM live_calls WHERE call_id = ?", (cid,)).fetchone() == (0,)
    finally:
        db.close()


async def _admin(
    server: ServerProcess, command: str, body: dict[str, Any], *, ident: str = "administrator"
) -> dict[str, Any]:
    q = f"sdkappid={SDK_APP_ID}&identifier={ident}&usersig={server.sig(ident)}&random=1&contenttype=json"
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/v4/{command}?{q}", json=body) as r:
        assert r.status == 200
        return dict(await r.json())


async def test_admin_end_call_ends_it_for_everyone_with_end_by_server(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, ua, ub, cid = await connected_call(server, clients)
    res = await _admin(server, "call_engine_http_srv/end_call", {"CallId": cid})
    assert res["ActionStatus"] == "OK", res
    for c in (a, b):
        assert (await c.event("on_call_end", call_id=cid))["args"]["reason"] == 9
    res = await _admin(server, "call_engine_http_srv/end_call", {"CallId": cid})
    assert res["ActionStatus"] == "FAIL" and res["ErrorCode"] != 0


async def test_admin_api_refuses_non_admins_and_bad_bodies(server: ServerProcess) -> None:
    res = await _admin(server, "call_engine_http_srv/end_call", {"CallId": "x"}, ident="alice")
    assert res["ActionStatus"] == "FAIL" and "admin" in res["ErrorInfo"]
    res = await _admin(server, "call_engine_http_srv/end_call", {"CallId": 5})
    assert res["ActionStatus"] == "FAIL" and "CallId" in res["ErrorInfo"]
    res = await _admin(server, "nope/nothing", {})
    assert res["ActionStatus"] == "FAIL" and "unknown command" in res["ErrorInfo"]


async def test_chat_group_members_may_join_and_strangers_may_not(
    server: ServerProcess, clients: list[Raw]
) -> None:
    a, b, c, d = [await new(server, clients) for _ in range(4)]
    ua, ub, uc, ud = unique("a"), unique("b"), unique("c"), unique("d")
    for cl, u in ((a, ua), (b, ub), (c, uc), (d, ud)):
        await cl.login(u)
    gid = unique("grp")
    res = await _admin(
        server,
        "group_open_http_svc/create_group",
        {"GroupId": gid, "MemberList": [{"Member_Account": u} for u in (ua, ub, uc)]},
    )
    assert res["ActionStatus"] == "OK", res
    cid = (await a.ok("calls", user_ids=[ub], media_type=1, params={"chat_group_id": gid}))["call_id"]
    await b.ok("accept", call_id=cid)
    await c.ok("join", call_id=cid)
    await c.event("on_call_begin", call_id=cid)
    joined = {(await c.event("on_user_join", call_id=cid))["args"]["user_id"] for _ in range(2)}
    assert joined == {ua, ub}
    assert await a.event("on_user_join", call_id=cid, user_id=uc)
    r = await d.request("join", call_id=cid)
    assert r["code"] == -1206


async def test_many_clients_at_once_all_get_their_calls(server: ServerProcess, clients: list[Raw]) -> None:
    pairs = [await pair(server, clients) for _ in range(10)]

    async def one(a: Raw, b: Raw, ub: str) -> None:
        cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        await b.event("on_call_received", call_id=cid)
        await b.ok("accept", call_id=cid)
        await a.event("on_call_begin", call_id=cid)
        await b.ok("hangup", call_id=cid)
        await a.event("on_call_end", call_id=cid)

    await asyncio.gather(*(one(a, b, ub) for a, b, _, ub in pairs))


async def test_an_answer_is_sent_before_the_pushes_its_request_caused(
    server: ServerProcess, clients: list[Raw]
) -> None:
    """docs/protocol.md: "a request's response is always sent **before** the pushes it
    caused". ``Raw.frames`` keeps answers and pushes in one list, in arrival order."""
    a, b, ua, ub = await pair(server, clients)
    c = await new(server, clients)
    uc = unique("c")
    await c.login(uc)

    def answered_first(cl: Raw, answer: dict[str, Any], *pushes: dict[str, Any]) -> None:
        at = cl.index_of(answer)
        for p in pushes:
            assert at < cl.index_of(p), f"push {p['ev']} came before the answer {answer}: {cl.frames}"

    rounds = 5  # every round is a new chance for a push to overtake its answer
    for _ in range(rounds):
        r_calls = await a.request("calls", user_ids=[ub], media_type=1)
        cid = r_calls["result"]["call_id"]
        # calls -> on_user_inviting to the caller
        answered_first(a, r_calls, await a.event("on_user_inviting", call_id=cid, user_id=ub))
        await b.event("on_call_received", call_id=cid)
        # accept -> on_call_begin to the one who accepted
        r_accept = await b.request("accept", call_id=cid)
        assert r_accept["ok"], r_accept
        answered_first(b, r_accept, await b.event("on_call_begin", call_id=cid))
        await a.event("on_call_begin", call_id=cid)
        # invite_user -> on_user_inviting to the inviter
        r_invite = await a.request("invite_user", call_id=cid, user_ids=[uc])
        assert r_invite["ok"], r_invite
        answered_first(a, r_invite, await a.event("on_user_inviting", call_id=cid, user_id=uc))
        await c.event("on_call_received", call_id=cid)
        # reject -> on_call_not_connected to the one who rejected
        r_reject = await c.request("reject", call_id=cid)
        assert r_reject["ok"], r_reject
        answered_first(c, r_reject, await c.event("on_call_not_connected", call_id=cid))
        # hangup -> on_call_end to the one who hung up
        r_hangup = await a.request("hangup", call_id=cid)
        assert r_hangup["ok"], r_hangup
        answered_first(a, r_hangup, await a.event("on_call_end", call_id=cid))
        await b.event("on_call_end", call_id=cid)
