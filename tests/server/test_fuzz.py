"""Fuzzing a real server: every WebSocket op and every admin REST command gets arbitrary
JSON (lone surrogates, NUL, huge integers, NaN/Infinity, ``1e400``, deep nesting, values
of the wrong type, unknown keys) while two other users hold a well-behaved call.

What must hold for every example: an answer with a documented error code (or success),
never an internal error, never a 5xx; the fuzzed session still answers ``get_state``
afterwards (the only close allowed is 1000 after a successful ``logout``, or 4003 after a
refused ``login`` on a fresh connection); and at the end the concurrent calls have their
records, intact, on the record REST API, and the server logged no traceback.

The examples are derandomized, so every run tries the same inputs. The clients live on
an event loop of their own (a thread), so hypothesis drives plain functions.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as hst

from rawclient import Raw
from restclient import admin_post, fail_of
from ringline.core.errors import ErrorCode
from ringline.server.openapi import ENDPOINTS, Endpoint
from ringline.server.rest_contract import AUTH_ERRORS, E_BAD_FIELD, E_BAD_JSON
from serverproc import ServerProcess, unique

T = TypeVar("T")

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: a failing example is reported as found, at once (shrinking an
    # example that hangs would wait out every answer's timeout).
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)
WS_EXAMPLES = 200
REST_EXAMPLES = 200
DOCUMENTED_WS_CODES = {int(c) for c in ErrorCode}

# --------------------------------------------------------------------------- JSON text strategies

#: Texts an attacker would try, often: lone surrogates, NUL, emoji, user-id-shaped strings.
_ODD_TEXTS = ["\ud800", "x\udfff", "\udbff\ud800", "a\x00b", "\U0001f600", "", "bob", "c-1", "x" * 70]
texts = hst.sampled_from(_ODD_TEXTS) | hst.text(
    hst.characters(codec=None, exclude_categories=()), max_size=12
)
#: Numbers as raw JSON literals, the ones a JSON encoder would never write included.
_ODD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 25, "-0", "1.5", "2e9"]
atoms = (
    hst.none()
    | hst.booleans()
    | hst.integers(-3, 5)
    | hst.integers(-(2**70), 2**70)
    | hst.sampled_from([2**31, 2**32, 2**63 - 1, 2**63, -(2**63) - 1, 10**20, 1_700_000_000])
    | hst.floats(allow_nan=True, allow_infinity=True)
    | texts
)
json_values = hst.recursive(
    atoms,
    lambda inner: hst.lists(inner, max_size=3) | hst.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
deep_text = hst.integers(20, 3000).map(lambda n: "[" * n + "]" * n) | hst.integers(20, 200).map(
    lambda n: '{"a":' * n + "1" + "}" * n
)
#: Values no field may hold, as JSON text.
hostile_text = (
    hst.sampled_from(["\ud800", "x\udfff", "\udbff\ud800", "ab\udc00", "a\x00b"]).map(json.dumps)
    | hst.sampled_from(_ODD_NUMBERS)
    | hst.sampled_from([2**63, -(2**63) - 1, 10**20, -(10**30)]).map(str)
    | deep_text
    | hst.lists(hst.sampled_from(_ODD_TEXTS), min_size=1, max_size=3).map(json.dumps)
)
#: One JSON value, as text: hostile or arbitrary.
value_text = hostile_text | json_values.map(json.dumps)  # ASCII: surrogates, NUL as escapes; NaN

#: What a field of each name plausibly holds (as JSON text), so that a request gets past
#: the checks of its other fields; a nested dict is a nested object. ``@victim@`` is a
#: logged-in user who gets the calls and signals the fuzzed session sends.
Spec = dict[str, "str | Spec"]
PLAUSIBLE: Spec = {
    # WebSocket
    "call_id": '"c1"',
    "user_ids": '["@victim@"]',
    "media_type": "1",
    "params": {
        "room_id": {"int_room_id": "0", "str_room_id": '"r1"'},
        "timeout": "5",
        "user_data": '"hello"',
        "offline_push_info": {"title": '"t"', "desc": '"d"', "extension": '"e"'},
        "chat_group_id": '""',
        "is_ephemeral_call": "false",
    },
    "to_user_id": '"@victim@"',
    "data": {"type": '"offer"', "sdp": '"v=0"'},
    "nickname": '"nick"',
    "avatar": '"http://a/b.png"',
    "enable": "true",
    "user_sig": '"not-a-sig"',
    "begin": "0",
    "end": "2000000000",
    "result_type": "0",
    "limit": "5",
    "call_ids": '["c1"]',
    "ack": "0",
    "v": "1",
    "sdk_app_id": "1400000001",
    "user_id": '"fz1"',
    "device_id": '"d1"',
    "multi_device": "false",
    "session": '"s_unknown"',
    # REST v4
    "CallId": '"c1"',
    "StartTime": "0",
    "EndTime": "2000000000",
    "CallResult": '"NormalEnd"',
    "CallType": '"SingleCall"',
    "NumberPerPage": "5",
    "Page": "1",
    "Url": '"http://127.0.0.1:9/cb"',
    "CallbackCommandList": '["Call.CallbackAfterEndCall"]',
    "GroupId": '"g1"',
    "MemberList": '["bob"]',
    "MemberToDel_Account": '["bob"]',
    "State": '"Failed"',
    "EventId": '"e1"',
    "RecordingId": '"c1"',
    "User_Account": '"fz1"',
    # REST v1
    "address": '"http://127.0.0.1:9/cb"',
    "actions": '["reject"]',
    "callId": '"c1"',
    "callResult": '"reject"',
    "callType": '"single"',
    "startTimestamp": "0",
    "endTimestamp": "2000000000",
    "numberPerPage": "5",
    "page": "1",
}


def obj_text(members: dict[str, str]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in members.items()) + "}"


def _render(spec: Spec, path: tuple[str, ...] = (), bad: str = "") -> str:
    """``spec`` as an object's text, with the value at ``path`` (maybe a new key) ``bad``."""
    out: dict[str, str] = {}
    for k, v in spec.items():
        if path == (k,):
            out[k] = bad
        elif isinstance(v, dict):
            out[k] = _render(v, path[1:], bad) if path[:1] == (k,) else _render(v)
        else:
            out[k] = v
    if len(path) == 1 and path[0] not in spec:
        out[path[0]] = bad
    return obj_text(out)


def _paths(spec: Spec, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every field of ``spec``, nested ones included, and an unknown key at each level."""
    out = [(*prefix, "zz_unknown")]
    for k, v in spec.items():
        out.append((*prefix, k))
        if isinstance(v, dict):
            out += _paths(v, (*prefix, k))
    return out


def args_of(names: list[str]) -> hst.SearchStrategy[str]:
    """Arguments (an object's text) with the fields ``names``: every one plausible; or all
    plausible but one, which is hostile; or each field arbitrary, unknown keys too."""
    spec: Spec = {n: PLAUSIBLE[n] for n in names}
    poisoned = hst.tuples(hst.sampled_from(_paths(spec)), hostile_text).map(lambda pb: _render(spec, *pb))
    known = hst.fixed_dictionaries({}, optional=dict.fromkeys(names, value_text))  # type: ignore[arg-type]
    extra = hst.dictionaries(texts, value_text, max_size=2)
    arbitrary = hst.builds(lambda k, x: obj_text({**x, **k}), known, extra)
    return hst.just(_render(spec)) | poisoned | poisoned | arbitrary


#: The arguments of every op of docs/protocol.md.
WS_OPS: dict[str, list[str]] = {
    "calls": ["user_ids", "media_type", "params"],
    "accept": ["call_id"],
    "reject": ["call_id"],
    "ignore": ["call_id"],
    "hangup": ["call_id"],
    "join": ["call_id"],
    "invite_user": ["call_id", "user_ids", "params"],
    "switch_call_media_type": ["call_id", "media_type"],
    "open_camera": ["call_id"],
    "close_camera": ["call_id"],
    "open_microphone": ["call_id"],
    "close_microphone": ["call_id"],
    "signal": ["call_id", "to_user_id", "data"],
    "sfu": ["call_id", "data"],
    "set_self_info": ["nickname", "avatar"],
    "enable_multi_device_ability": ["enable"],
    "renew_user_sig": ["user_sig"],
    "query_recent_calls": ["begin", "end", "result_type", "limit"],
    "delete_record_calls": ["call_ids"],
    "get_state": [],
    "logout": [],
    "ping": ["ack"],
    "login": ["v", "sdk_app_id", "user_id", "user_sig", "device_id", "multi_device"],
    "resume": ["v", "session", "ack"],
    "no_such_op": [],
}

ws_requests = hst.sampled_from(sorted(WS_OPS)).flatmap(
    lambda op: hst.tuples(hst.just(op), args_of(WS_OPS[op]))
)

ADMIN_COMMANDS = [e for e in ENDPOINTS if e.api in ("v4", "v1")]


def _body(e: Endpoint) -> hst.SearchStrategy[str | bytes]:
    """A body for ``e``: its fields (see :func:`args_of`), any JSON value, or bytes."""
    names = sorted((e.request or {}).get("properties", {}))
    return args_of(names) | args_of(names) | value_text | hst.binary(max_size=40)


rest_requests = hst.sampled_from(ADMIN_COMMANDS).flatmap(lambda e: hst.tuples(hst.just(e), _body(e)))


def frame_text(rid: int, op: str, args: str, victim: str) -> str:
    """``{"id": rid, "op": op, ...args}`` as text, ``args`` being an object's text."""
    inner = args[1:-1].strip().replace("@victim@", victim)
    return f'{{"id": {rid}, "op": "{op}"' + (", " + inner if inner else "") + "}"


# --------------------------------------------------------------------------- the rig


class LoopThread:
    """An event loop running in a thread of its own; :meth:`run` waits for a coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # a hang guard only

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class Rig:
    """The server, the fuzzed user's session, and two pairs of well-behaved users."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.clients: list[Raw] = []
        self.alice: Raw | None = None
        self.alice_id = unique("fuzz")
        self.users = {name: unique(name) for name in ("carol", "dave", "erin", "frank", "victim")}
        self.raw: dict[str, Raw] = {}
        self.http: aiohttp.ClientSession | None = None
        self.cycler: asyncio.Task[None] | None = None
        self.stop_cycling: asyncio.Event | None = None
        self.cycled: list[str] = []
        self.long_call = ""

    async def start(self) -> None:
        self.http = aiohttp.ClientSession()
        await self.login_alice()
        for name, user in self.users.items():
            c = await Raw(self.srv).connect()
            self.clients.append(c)
            await c.login(user)
            self.raw[name] = c

    async def login_alice(self) -> None:
        c = await Raw(self.srv).connect()
        self.clients.append(c)
        await c.login(self.alice_id)
        self.alice = c

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        if self.http is not None:
            await self.http.close()

    # ------------------------------------------------------------ the well-behaved calls

    async def begin_concurrent_calls(self) -> None:
        """carol↔dave: one call up for the whole fuzz run; erin↔frank: short calls, one
        after another, until :meth:`end_concurrent_calls`."""
        carol, dave = self.raw["carol"], self.raw["dave"]
        cid = (await carol.ok("calls", user_ids=[self.users["dave"]], media_type=2))["call_id"]
        await dave.event("on_call_received", call_id=cid)
        await dave.ok("accept", call_id=cid)
        await carol.event("on_call_begin", call_id=cid)
        self.long_call = cid
        self.cycled = []
        self.stop_cycling = asyncio.Event()
        self.cycler = asyncio.get_running_loop().create_task(self._cycle(self.stop_cycling))

    async def _cycle(self, stop: asyncio.Event) -> None:
        erin, frank = self.raw["erin"], self.raw["frank"]
        while not stop.is_set():
            args = {"user_data": "well-behaved 😀", "room_id": {"int_room_id": 0, "str_room_id": "room-é"}}
            cid = (await erin.ok("calls", user_ids=[self.users["frank"]], media_type=1, params=args))[
                "call_id"
            ]
            got = await frank.event("on_call_received", call_id=cid)
            assert got["args"]["info"]["user_data"] == "well-behaved 😀"
            await frank.ok("accept", call_id=cid)
            await erin.event("on_call_begin", call_id=cid)
            await erin.ok("hangup", call_id=cid)
            await erin.event("on_call_end", call_id=cid)
            await frank.event("on_call_end", call_id=cid)
            self.cycled.append(cid)

    async def end_concurrent_calls(self) -> None:
        """End the calls; every one must have its record, intact."""
        assert self.stop_cycling is not None and self.cycler is not None
        self.stop_cycling.set()
        await self.cycler  # raises what a call cycle met (a lost push, a refused request)
        carol, dave = self.raw["carol"], self.raw["dave"]
        await carol.ok("hangup", call_id=self.long_call)
        await carol.event("on_call_end", call_id=self.long_call)
        await dave.event("on_call_end", call_id=self.long_call)
        await self.check_record(self.long_call, "carol", "dave", "Video")
        for cid in self.cycled:
            await self.check_record(cid, "erin", "frank", "Audio")

    async def check_record(self, cid: str, caller: str, callee: str, media: str) -> None:
        status, answer = await admin_post(
            self.srv, "/v4/call_record_http_srv/get_record_by_callid", json.dumps({"CallId": cid}), self.http
        )
        assert status == 200 and fail_of("v4", answer) == (0, ""), answer
        rec = answer["Response"]["CallRecord"]
        a, b = self.users[caller], self.users[callee]
        assert (rec["CallId"], rec["Caller_Account"], rec["CalleeList_Account"]) == (cid, a, [a, b]), rec
        assert (rec["CallResult"], rec["MediaType"], rec["CallType"]) == ("NormalEnd", media, "SingleCall"), (
            rec
        )
        assert {m["User_Account"]: m["Result"] for m in rec["MemberList"]} == {a: "Hangup", b: "Accept"}, rec

    # ------------------------------------------------------------ the fuzzed session

    async def alive(self) -> None:
        assert self.alice is not None
        r = await self.alice.request("get_state")
        assert r["ok"], r

    async def ws_example(self, op: str, args: str) -> None:
        if op in ("login", "resume"):
            await self._fresh_connection_example(op, args)
        else:
            assert self.alice is not None
            c = self.alice
            rid = next(c.ids)
            await c.send(frame_text(rid, op, args, self.users["victim"]))
            if op == "ping":
                await self.alive()  # a good ping gets a pong (no "re"); a bad one its error first
                if c.responses.get(rid):
                    check_ws_answer(c.responses[rid].pop(0), op)
                return
            answer, closed = await answer_or_close(c, rid)
            assert answer is not None, f"{op}: the connection closed ({closed}) instead of answering"
            check_ws_answer(answer, op)
            if op == "logout" and answer["ok"]:
                code, _ = await c.wait_closed()
                assert code == 1000
                await self.login_alice()
        await self.alive()
        await self.hang_up("victim")

    async def hang_up(self, name: str) -> None:
        """Alive: the fuzzed session and ``name`` answer ``get_state``; and free: a call
        either is in is hung up, so the next example can place one."""
        for c in (self.alice, self.raw[name]):
            assert c is not None
            r = await c.request("get_state")
            assert r["ok"], r
            call = r["result"]["call"]
            if call is not None:
                await c.request("hangup", call_id=call["call_id"])

    async def _fresh_connection_example(self, op: str, args: str) -> None:
        c = await Raw(self.srv, heartbeat=0).connect()
        try:
            rid = next(c.ids)
            await c.send(frame_text(rid, op, args, self.users["victim"]))
            answer, closed = await answer_or_close(c, rid)
            assert answer is not None, f"{op}: the connection closed ({closed}) instead of answering"
            check_ws_answer(answer, op)
            if not answer["ok"] and closed is None and op == "login" and answer["code"] >= 70000:
                assert (await c.wait_closed())[0] == 4003
        finally:
            await c.close()

    async def rest_example(self, e: Endpoint, body: str | bytes) -> None:
        status, answer = await admin_post(self.srv, e.path, body, self.http)
        assert status == 200, (e.path, status, answer)
        code, message = fail_of(e.api, answer)
        documented = {0, *AUTH_ERRORS, E_BAD_JSON, E_BAD_FIELD, *e.errors}
        assert code in documented, (e.path, answer)
        if code:
            assert message and "internal" not in message, answer


async def answer_or_close(c: Raw, rid: int, timeout: float = 15.0) -> tuple[dict[str, Any] | None, Any]:
    """The answer to request ``rid``, or (None, (close code, reason)) if the connection closed first."""
    assert c.closed is not None
    closed = c.closed
    async with c.cond:
        await asyncio.wait_for(c.cond.wait_for(lambda: bool(c.responses.get(rid)) or closed.done()), timeout)
        if c.responses.get(rid):
            return c.responses[rid].pop(0), closed.result() if closed.done() else None
    return None, closed.result()


def check_ws_answer(answer: dict[str, Any], op: str) -> None:
    assert isinstance(answer.get("ok"), bool), answer
    if not answer["ok"]:
        assert answer["code"] in DOCUMENTED_WS_CODES, (op, answer)
        assert answer["message"] and "internal error" not in answer["message"], (op, answer)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rig, LoopThread]]:
    # No rate limit to speak of: the fuzzer sends as fast as the server answers.
    srv = ServerProcess(tmp_path_factory.mktemp("fuzz"), extra_args=["--rate-limit", "1000000"]).start()
    lt = LoopThread()
    r = Rig(srv)
    try:
        lt.run(r.start())
        yield r, lt
        lt.run(r.close())
    finally:
        lt.close()
        code = srv.stop()
    log = Path(srv.log_path).read_text(errors="replace")
    assert code == 0, f"server did not exit cleanly ({code}): {log[-4000:]}"
    assert "Traceback" not in log, log[-8000:]


# --------------------------------------------------------------------------- the tests


def test_every_ws_op_with_arbitrary_values_gets_an_answer_and_the_session_lives(
    rig: tuple[Rig, LoopThread],
) -> None:
    r, lt = rig
    lt.run(r.begin_concurrent_calls())

    @settings(FUZZ, max_examples=WS_EXAMPLES)
    @given(request=ws_requests)
    def one(request: tuple[str, str]) -> None:
        lt.run(r.ws_example(*request))

    one()
    lt.run(r.end_concurrent_calls())


def test_every_rest_command_with_arbitrary_bodies_never_gets_a_5xx(rig: tuple[Rig, LoopThread]) -> None:
    r, lt = rig
    lt.run(r.begin_concurrent_calls())

    @settings(FUZZ, max_examples=REST_EXAMPLES)
    @given(request=rest_requests)
    def one(request: tuple[Endpoint, str | bytes]) -> None:
        lt.run(r.rest_example(*request))

    one()
    lt.run(r.alive())
    lt.run(r.end_concurrent_calls())
