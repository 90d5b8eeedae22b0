"""A webhook handler as someone porting from TUICallKit would have written it, from the
vendor's callback pages only (``Call.CallbackAfterStartCall``,
``Call.CallbackAfterMemberChanged``, ``Call.CallbackAfterEndCall``, and the legacy
"call status" / "call event" callbacks): their query parameters, field names, types and
enum strings. It imports nothing of Ringline, and knows nothing of Ringline's
additions except that a JSON object may carry more fields than documented.

For each request it checks everything the vendor's pages promise, builds what such a
handler keeps (the members and outcome of each call), answers the vendor's
``{"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0}``, and prints one JSON line
to stdout: ``{"api": "v4"|"v1", "command", "call_id", "query", "problems": [...],
"note": {...}}``. ``problems`` lists every way the request differs from the vendor's
pages (a missing field, a wrong type, a value outside a documented set); an empty list
means this handler took it as it is. It prints ``READY`` once it listens.

    python tests/vendor_webhook_handler.py --port P --app-id 1400000001
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from aiohttp import web

# -- what the vendor's pages document ------------------------------------------------

V4_COMMANDS = ("Call.CallbackAfterStartCall", "Call.CallbackAfterMemberChanged", "Call.CallbackAfterEndCall")
OPT_PLATFORMS = ("RESTAPI", "Web", "Android", "iOS", "Windows", "Mac", "iPad", "Unknown")
MEDIA_V4 = ("Audio", "Video")
STATUS_V4 = ("Calling", "Waiting")
# The member-changed page spells some actions two ways (its sample and its table):
# a handler accepts both.
ACTIONS_V4 = (
    "Answer",
    "Accept",
    "Reject",
    "NotAnswer",
    "Hangup",
    "Join",
    "Offline",
    "Invite",
    "Invited",
    "Cancel_Invite",
)
CALL_TYPES_V4 = ("SingleCall", "MultiCall")
RESULTS_V4 = ("Cancel", "Reject", "NotAnswer", "NormalEnd", "CallBusy", "Interrupt", "Offline")
ROOM_ID_TYPES = (1, 2)

STATUS_V1 = ("not_answer", "reject", "call_busy", "cancel", "normal_end", "interrupt")
EVENTS_V1 = (
    "caller_start_call",
    "caller_call_accepted",
    "caller_call_missed",
    "caller_call_rejected",
    "caller_call_busy",
    "caller_cancel_call",
    "caller_call_failed",
    "caller_call_end",
    "caller_call_interrupted",
    "callee_receive_call",
    "callee_accept_call",
    "callee_not_answer_call",
    "callee_reject_call",
    "callee_ignore_call",
    "callee_call_canceled",
    "callee_call_end",
    "callee_call_interrupted",
    "invite_user",
    "join_in_group_call",
)
MEDIA_V1 = ("audio", "video")
CALL_TYPES_V1 = ("single", "group")
ROLES_V1 = ("caller", "callee")
V1_FIELDS: dict[str, type] = {
    "UserId": str,
    "RoomId": str,
    "TotalNum": int,
    "MediaType": str,
    "CallType": str,
    "CallId": str,
    "Role": str,
    "CallResult": str,
    "EventTime": int,
    "StartCallTs": int,
    "AcceptTs": int,
    "EndTs": int,
}


class Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def field(self, obj: Any, name: str, typ: type, where: str) -> Any:
        if not isinstance(obj, dict) or name not in obj:
            self.problems.append(f"{where}.{name} missing")
            return None
        value = obj[name]
        if (typ is int and isinstance(value, bool)) or not isinstance(value, typ):
            self.problems.append(f"{where}.{name} is {type(value).__name__}, not {typ.__name__}")
            return None
        return value

    def one_of(self, value: Any, allowed: tuple[Any, ...], where: str) -> None:
        if value is not None and value not in allowed:
            self.problems.append(f"{where} {value!r} not in the vendor's {list(allowed)}")


def users_of(c: Checker, body: dict[str, Any], key: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, u in enumerate(c.field(body, key, list, "body") or []):
        who = c.field(u, "User_Account", str, f"{key}[{i}]")
        status = c.field(u, "Status", str, f"{key}[{i}]")
        c.one_of(status, STATUS_V4, f"{key}[{i}].Status")
        if who is not None:
            out[who] = status
    return out


def handle_v4(c: Checker, query: Any, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    command = query.get("CallbackCommand", "")
    c.one_of(command, V4_COMMANDS, "query CallbackCommand")
    c.field(body, "CallbackCommand", str, "body")
    if body.get("CallbackCommand") != command:
        c.problems.append("body CallbackCommand differs from the query's")
    event_time = c.field(body, "EventTime", int, "body")
    if event_time is not None and event_time < 10**12:
        c.problems.append("EventTime is not in milliseconds")
    note: dict[str, Any] = {}
    call_id = ""
    if command == "Call.CallbackAfterStartCall":
        info = c.field(body, "CallInfo", dict, "body") or {}
        call_id = c.field(info, "CallId", str, "CallInfo") or ""
        c.one_of(c.field(info, "CallMediaType", str, "CallInfo"), MEDIA_V4, "CallInfo.CallMediaType")
        c.field(info, "ChatGroupId", str, "CallInfo")
        c.field(info, "RoomId", str, "CallInfo")
        c.one_of(c.field(info, "RoomIdType", int, "CallInfo"), ROOM_ID_TYPES, "CallInfo.RoomIdType")
        note["users"] = users_of(c, body, "UserList")
    elif command == "Call.CallbackAfterMemberChanged":
        call_id = c.field(body, "CallId", str, "body") or ""
        note["users"] = users_of(c, body, "UserList")
        changes = []
        for i, ch in enumerate(c.field(body, "ChangedUserList", list, "body") or []):
            who = c.field(ch, "User_Account", str, f"ChangedUserList[{i}]")
            action = c.field(ch, "ActionType", str, f"ChangedUserList[{i}]")
            c.one_of(action, ACTIONS_V4, f"ChangedUserList[{i}].ActionType")
            changes.append([who, "Accept" if action == "Answer" else action])
        note["changes"] = changes
    elif command == "Call.CallbackAfterEndCall":
        rec = c.field(body, "CallRecord", dict, "body") or {}
        call_id = c.field(rec, "CallId", str, "CallRecord") or ""
        caller = c.field(rec, "Caller_Account", str, "CallRecord")
        c.one_of(c.field(rec, "MediaType", str, "CallRecord"), MEDIA_V4, "CallRecord.MediaType")
        c.one_of(c.field(rec, "CallType", str, "CallRecord"), CALL_TYPES_V4, "CallRecord.CallType")
        start = c.field(rec, "StartTime", int, "CallRecord")
        accept = c.field(rec, "AcceptTime", int, "CallRecord")
        end = c.field(rec, "EndTime", int, "CallRecord")
        result = c.field(rec, "CallResult", str, "CallRecord")
        c.one_of(result, RESULTS_V4, "CallRecord.CallResult")
        members = c.field(rec, "CalleeList_Account", list, "CallRecord") or []
        if not all(isinstance(u, str) for u in members):
            c.problems.append("CallRecord.CalleeList_Account holds a non-string")
        c.field(rec, "RoomId", str, "CallRecord")
        c.one_of(c.field(rec, "RoomIdType", int, "CallRecord"), ROOM_ID_TYPES, "CallRecord.RoomIdType")
        if None not in (start, accept, end) and not (
            start <= end and (accept == 0 or start <= accept <= end)
        ):
            c.problems.append("CallRecord times out of order")
        # The vendor's sample lists the caller in the member list.
        note.update(result=result, caller=caller, members=members)
        note["talk_seconds"] = (end - accept) if accept and end else 0
    return call_id, note


def handle_v1(c: Checker, query: Any, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    command = query.get("command", "")
    c.one_of(command, STATUS_V1 + EVENTS_V1, "query command")
    values = {k: c.field(body, k, t, "body") for k, t in V1_FIELDS.items()}
    c.one_of(values["MediaType"], MEDIA_V1, "MediaType")
    c.one_of(values["CallType"], CALL_TYPES_V1, "CallType")
    c.one_of(values["Role"], ROLES_V1, "Role")
    c.one_of(values["CallResult"], ("", *STATUS_V1), "CallResult")
    if command in STATUS_V1:
        if values["CallResult"] != command:
            c.problems.append(f"status callback {command} has CallResult {values['CallResult']!r}")
    elif command in EVENTS_V1:
        event = c.field(body, "Event", str, "body")
        role, _, rest = command.partition("_")
        if role in ROLES_V1:
            if values["Role"] != role:
                c.problems.append(f"{command} sent to a {values['Role']}")
            if event != rest:
                c.problems.append(f"{command} has Event {event!r}")
        elif event != command:
            c.problems.append(f"{command} has Event {event!r}")
    return values["CallId"] or "", {"user": values["UserId"], "result": values["CallResult"]}


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--app-id", required=True)
    args = p.parse_args()

    async def receive(request: web.Request) -> web.Response:
        c = Checker()
        q = request.query
        v4 = "CallbackCommand" in q
        names = ("SdkAppid", "CallbackCommand", "contenttype", "ClientIP", "OptPlatform")
        if not v4:
            names = ("sdkappid", "command", "contenttype", "clientip", "optplatform")
        for name in names:
            if name not in q:
                c.problems.append(f"query {name} missing")
        if q.get(names[0]) != args.app_id:
            c.problems.append(f"query {names[0]} is not this app")
        if q.get("contenttype") != "json":
            c.problems.append("query contenttype is not json")
        c.one_of(q.get(names[4]), OPT_PLATFORMS, f"query {names[4]}")
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            c.problems.append("body is not a JSON object")
            body = {}
        call_id, note = (handle_v4 if v4 else handle_v1)(c, q, body)
        line = {
            "api": "v4" if v4 else "v1",
            "command": q.get(names[1], ""),
            "call_id": call_id,
            "query": {k: q.get(k) for k in names[3:]},
            "problems": c.problems,
            "note": note,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return web.json_response({"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0})

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, reuse_address=True).start()
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
