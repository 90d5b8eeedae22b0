"""Code written for the vendor works against Ringline without a change: a webhook
handler written only from the vendor's callback pages (tests/vendor_webhook_handler.py,
a process of its own that imports nothing of Ringline) takes the v4 and v1 callbacks of
every scenario; the callbacks say which device caused them (``ClientIP`` /
``OptPlatform``); and an admin script using the vendor's documented REST bodies
(tests/vendor_admin_script.py) works against a real server process.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from callbackkit import Admin, LineProcess, Users

from rawclient import Raw
from ringline import CallParams, MediaType
from serverproc import SDK_APP_ID, ServerProcess, free_port, unique

HERE = Path(__file__).parent.parent
HANDLER = str(HERE / "vendor_webhook_handler.py")
ADMIN_SCRIPT = str(HERE / "vendor_admin_script.py")
WAIT = 30.0

# What the vendor's pages do not have, each documented in docs/callbacks.md
# ("Differences from the vendor"): the handler reports them and still answers OK.
BUSY_ACTION = "ChangedUserList[0].ActionType 'LineBusy' not in the vendor's"
SERVER_END = "CallRecord.CallResult 'EndByServer' not in the vendor's"


@dataclass
class VendorHandler(LineProcess):
    """tests/vendor_webhook_handler.py: a line per callback it took, with what it noted."""

    async def start(self) -> VendorHandler:
        await self.spawn(HANDLER, "--app-id", str(SDK_APP_ID))
        return self

    def of(self, cid: str) -> list[dict[str, Any]]:
        return [x for x in self.lines if x["call_id"] == cid]

    async def call_done(self, cid: str) -> list[dict[str, Any]]:
        """The lines of call ``cid`` once its end callback and its v1 status callbacks came."""

        def done() -> bool:
            got = self.of(cid)
            end = [x for x in got if x["command"] == "Call.CallbackAfterEndCall"]
            if not end:
                return False
            members = set(end[0]["note"]["members"])
            status = {
                x["note"]["user"] for x in got if x["api"] == "v1" and x["command"] == x["note"]["result"]
            }
            return status >= members

        await self.wait_until(done, f"the end of call {cid}", WAIT)
        return self.of(cid)


@pytest.fixture
async def handler() -> AsyncIterator[VendorHandler]:
    h = await VendorHandler(free_port()).start()
    yield h
    await h.stop()


def summary(lines: list[dict[str, Any]]) -> tuple[str, list[str], list[list[str]], set[str]]:
    """(CallResult, member list, MemberChanged changes, v1 commands) of one call."""
    (end,) = [x["note"] for x in lines if x["command"] == "Call.CallbackAfterEndCall"]
    changes = [
        c for x in lines if x["command"] == "Call.CallbackAfterMemberChanged" for c in x["note"]["changes"]
    ]
    v1 = {x["command"] for x in lines if x["api"] == "v1"}
    return end["result"], end["members"], changes, v1


async def test_a_handler_written_from_the_vendor_pages_takes_every_scenario(
    srv: ServerProcess, users: Users, session: aiohttp.ClientSession, handler: VendorHandler
) -> None:
    admin = Admin(srv, session)
    await admin.subscribe(handler.url)
    (a, ra, ua), (b, rb, ub), (c, rc, uc), (d, rd, ud) = await users(4)
    results: dict[str, tuple[str, list[str], list[list[str]], set[str]]] = {}

    # 1v1: answered, talked, hung up
    cid = await a.calls([ub], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=cid)
    await b.accept()
    await ra.wait_for("on_call_begin", call_id=cid)
    await a.hangup()
    await rb.wait_for("on_call_end", call_id=cid)
    results["answered"] = summary(await handler.call_done(cid))
    # rejected
    cid = await a.calls([ub], MediaType.VIDEO)
    await rb.wait_for("on_call_received", call_id=cid)
    await b.reject()
    await ra.wait_for("on_call_not_connected", call_id=cid)
    results["rejected"] = summary(await handler.call_done(cid))
    # cancelled by the caller while two ring
    cid = await a.calls([ub, uc], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=cid)
    await rc.wait_for("on_call_received", call_id=cid)
    await a.hangup()
    await rb.wait_for("on_call_not_connected", call_id=cid)
    results["cancelled"] = summary(await handler.call_done(cid))
    # ignored, then nobody answers (the invite rings on after the ignore, until its timeout)
    cid = await a.calls([ub], MediaType.AUDIO, CallParams(timeout=5))
    await rb.wait_for("on_call_received", call_id=cid)
    await b.ignore()
    await ra.wait_for("on_call_not_connected", call_id=cid)
    results["ignored"] = summary(await handler.call_done(cid))
    # busy: b talks with c
    busy = await c.calls([ub], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=busy)
    await b.accept()
    await rc.wait_for("on_call_begin", call_id=busy)
    cid = await a.calls([ub], MediaType.AUDIO)
    await ra.wait_for("on_call_not_connected", call_id=cid)
    results["busy"] = summary(await handler.call_done(cid))
    await c.hangup()
    await rb.wait_for("on_call_end", call_id=busy)
    results["busy-other"] = summary(await handler.call_done(busy))
    # a group call: one accepts, one rejects, an invitee comes, all hang up
    cid = await a.calls([ub, uc], MediaType.VIDEO)
    await rb.wait_for("on_call_received", call_id=cid)
    await rc.wait_for("on_call_received", call_id=cid)
    await b.accept()
    await c.reject()
    await ra.wait_for("on_user_reject", call_id=cid)
    await b.invite_user([ud])
    await rd.wait_for("on_call_received", call_id=cid)
    await d.accept()
    await ra.wait_for("on_user_join", call_id=cid, user_id=ud)
    await a.hangup()
    await rb.wait_for("on_user_leave", call_id=cid, user_id=ua)
    await b.hangup()
    await rd.wait_for("on_call_end", call_id=cid)
    results["group"] = summary(await handler.call_done(cid))
    group_call = cid
    # ended by an admin
    cid = await a.calls([ub], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=cid)
    await b.accept()
    await ra.wait_for("on_call_begin", call_id=cid)
    await admin.v4("call_engine_http_srv/end_call", {"CallId": cid})
    await rb.wait_for("on_call_end", call_id=cid)
    results["admin-end"] = summary(await handler.call_done(cid))
    admin_call = cid

    # The handler took every request; its only findings are the documented differences.
    problems = defaultdict(list)
    for x in handler.lines:
        for p in x["problems"]:
            problems[p.split(" not in")[0] + " not in the vendor's"].append(x["call_id"])
    assert set(problems) <= {BUSY_ACTION, SERVER_END}, dict(problems)
    assert set(problems.get(SERVER_END, [])) == {admin_call}

    assert results["answered"] == (
        "NormalEnd",
        [ua, ub],
        [[ub, "Accept"], [ua, "Hangup"]],
        results["answered"][3],
    )
    assert {
        "caller_start_call",
        "callee_receive_call",
        "callee_accept_call",
        "caller_call_accepted",
    } <= results["answered"][3]
    assert results["rejected"][:3] == ("Reject", [ua, ub], [[ub, "Reject"]])
    assert results["cancelled"][:3] == (
        "Cancel",
        [ua, ub, uc],
        [[ub, "Cancel_Invite"], [uc, "Cancel_Invite"]],
    )
    assert {"caller_cancel_call", "callee_call_canceled", "cancel"} <= results["cancelled"][3]
    assert results["ignored"][:3] == ("NotAnswer", [ua, ub], [[ub, "NotAnswer"]])
    assert {"callee_ignore_call", "callee_not_answer_call", "caller_call_missed"} <= results["ignored"][3]
    assert results["busy"][:3] == ("CallBusy", [ua, ub], [[ub, "LineBusy"]])
    assert {"callee_ignore_call", "caller_call_busy", "call_busy"} <= results["busy"][3]
    assert results["busy-other"][0] == "NormalEnd"
    group = results["group"]
    assert group[0] == "NormalEnd" and group[1] == [ua, ub, uc, ud]
    assert [ud, "Invite"] in group[2] and [uc, "Reject"] in group[2] and [ud, "Accept"] in group[2]
    assert {"invite_user", "callee_reject_call", "caller_call_end", "callee_call_end"} <= group[3]
    assert all(x["note"]["talk_seconds"] >= 0 for x in handler.of(group_call) if "talk_seconds" in x["note"])
    assert results["admin-end"][0] == "EndByServer"


async def login_raw(srv: ServerProcess, clients: list[Raw], platform: str) -> tuple[Raw, str]:
    c = await Raw(srv).connect()
    clients.append(c)
    user = unique("vp")
    await c.ok(
        "login",
        v=1,
        sdk_app_id=SDK_APP_ID,
        user_id=user,
        user_sig=srv.sig(user),
        device_id=user + "-dev",
        platform=platform,
    )
    return c, user


async def test_callbacks_name_the_device_that_caused_them(
    srv: ServerProcess, session: aiohttp.ClientSession, handler: VendorHandler
) -> None:
    admin = Admin(srv, session)
    await admin.subscribe(handler.url)
    clients: list[Raw] = []
    try:
        a, ua = await login_raw(srv, clients, "Android")
        b, ub = await login_raw(srv, clients, "iOS")
        cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        await b.event("on_call_received", call_id=cid)
        await b.ok("accept", call_id=cid)
        await a.event("on_call_begin", call_id=cid)
        await admin.v4("call_engine_http_srv/end_call", {"CallId": cid})
        lines = await handler.call_done(cid)
        by_command = {(x["api"], x["command"]): x["query"] for x in lines}
        assert by_command["v4", "Call.CallbackAfterStartCall"] == {
            "ClientIP": "127.0.0.1",
            "OptPlatform": "Android",
        }
        assert by_command["v1", "caller_start_call"] == {"clientip": "127.0.0.1", "optplatform": "Android"}
        assert by_command["v4", "Call.CallbackAfterMemberChanged"] == {
            "ClientIP": "127.0.0.1",
            "OptPlatform": "iOS",
        }
        assert by_command["v1", "callee_accept_call"] == {"clientip": "127.0.0.1", "optplatform": "iOS"}
        assert by_command["v4", "Call.CallbackAfterEndCall"] == {
            "ClientIP": "127.0.0.1",
            "OptPlatform": "RESTAPI",
        }
        # a ring timeout is the server's own doing: no address
        cid = (await a.ok("calls", user_ids=[ub], media_type=1, params={"timeout": 1}))["call_id"]
        await a.event("on_call_not_connected", call_id=cid)
        lines = await handler.call_done(cid)
        end = [x["query"] for x in lines if x["command"] == "Call.CallbackAfterEndCall"]
        assert end == [{"ClientIP": "", "OptPlatform": "Unknown"}]
        # a platform the vendor does not know is refused at login, with the list
        bad = await Raw(srv).connect()
        clients.append(bad)
        user = unique("vp")
        res = await bad.request(
            "login", v=1, sdk_app_id=SDK_APP_ID, user_id=user, user_sig=srv.sig(user), platform="Amiga"
        )
        assert not res["ok"] and "platform" in res["message"] and "iPad" in res["message"], res
    finally:
        for c in clients:
            await c.close()


async def test_an_admin_script_with_the_vendor_rest_bodies_works(
    srv: ServerProcess, users: Users, session: aiohttp.ClientSession
) -> None:
    (a, ra, ua), (b, rb, ub) = await users(2)
    since = int(time.time()) - 1
    ended = await a.calls([ub], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=ended)
    await b.accept()
    await ra.wait_for("on_call_begin", call_id=ended)
    await a.hangup()
    await rb.wait_for("on_call_end", call_id=ended)
    live = await a.calls([ub], MediaType.VIDEO)
    await rb.wait_for("on_call_received", call_id=live)

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        ADMIN_SCRIPT,
        "--url",
        srv.url,
        "--sdkappid",
        str(SDK_APP_ID),
        "--usersig",
        srv.sig("administrator"),
        "--ended-call",
        ended,
        "--live-call",
        live,
        "--since",
        str(since),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["record"]["Caller_Account"] == ua and report["record"]["CallResult"] == "NormalEnd"
    assert report["record"]["CalleeList_Account"] == [ua, ub]
    assert report["v1_record"]["caller"] == ua and report["v1_record"]["callees"] == [ub]
    assert ended in report["filtered"]
    assert report["live"]["CallInfo"]["CallId"] == live
    assert report["live"]["UserList"] == [
        {"User_Account": ua, "Status": "Calling"},
        {"User_Account": ub, "Status": "Waiting"},
    ]
    await a.hangup()
