"""Which callbacks a call fact causes, and their bodies (docs/spec.md §7). Pure, no I/O.

The core reports what happens to a call as :class:`~ringline.core.machine.CallFact`
values (start, member changes, end). :func:`plan_deliveries` turns one fact into the
:class:`~.webhooks.Delivery` values to queue, given the app's callback configuration
(:class:`CallbackTargets`): at most one v4 callback (``Call.CallbackAfterStartCall``,
``Call.CallbackAfterMemberChanged`` or ``Call.CallbackAfterEndCall``) and any number of
v1 per-user event and status callbacks, each only if its command is subscribed.

The hub queues them in the outbox in the same transaction as the state change, then
wakes the deliverer.

**Sequence.** Fact ``n`` of a call gives its callbacks the ``Sequence`` numbers
``100·n``, ``100·n + 1``, … (the v4 one first, then the v1 ones in the order listed
below). So the callbacks of a call are strictly increasing in the order things
happened, to one url or to two, and a receiver can tell which callbacks came from the
same event. A fact never causes 100 callbacks (a call has at most 9 members).

**v1 events.** Per fact, for each user concerned, in this order:

* start: ``caller_start_call`` (caller), ``callee_receive_call`` (each callee ringing);
* member changes, per change: ``Accept`` → ``callee_accept_call`` +
  ``caller_call_accepted``; ``Reject`` → ``callee_reject_call`` +
  ``caller_call_rejected``; ``NotAnswer`` → ``callee_not_answer_call`` +
  ``caller_call_missed``; ``LineBusy`` → ``callee_ignore_call`` (the busy invitee, as
  the vendor reports an automatic busy reject) + ``caller_call_busy``; ``Cancel_Invite`` →
  ``callee_call_canceled``; ``Invite`` → ``invite_user`` + ``callee_receive_call``
  (the invitee); ``Join`` → ``join_in_group_call``; ``Hangup`` → ``caller_call_end`` or
  ``callee_call_end`` (of who hung up, if connected); ``Offline`` →
  ``caller_call_interrupted`` / ``callee_call_interrupted``. The ``caller_*`` of a
  change goes to the caller only when the caller is not the user who changed.
* ignore (a ringing invitee ignored the call on one device; no v4 callback, nothing
  changed for the call): ``callee_ignore_call``;
* end: ``caller_cancel_call`` if the caller cancelled; ``*_call_end`` for every member
  still connected when the call ended (``*_call_interrupted`` if the server ended it);
  then one *status* callback per user (``not_answer``, ``reject``, ``call_busy``,
  ``cancel``, ``normal_end`` or ``interrupt``: how the call ended for that user).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..core.enums import CallEndReason, CallRole, CallScene, MediaType
from ..core.machine import CallFact
from ..core.records import CallRecord, CallResult, MemberRecord
from .formats import member_result, record_to_v4, unix_s
from .recording import Job
from .webhooks.delivery import Delivery, new_delivery

__all__ = [
    "PLATFORMS",
    "V4_END",
    "V4_MEMBER_CHANGED",
    "V4_RECORDING_FAILED",
    "V4_RECORDING_READY",
    "V4_START",
    "CallbackTargets",
    "Origin",
    "plan_deliveries",
    "plan_recording_callback",
    "recording_to_v4",
    "v1_status",
]

V4_START = "Call.CallbackAfterStartCall"
V4_MEMBER_CHANGED = "Call.CallbackAfterMemberChanged"
V4_END = "Call.CallbackAfterEndCall"
V4_RECORDING_READY = "Call.CallbackAfterRecordingReady"
V4_RECORDING_FAILED = "Call.CallbackAfterRecordingFailed"

#: The ``Sequence`` of a call's recording callback: after every other callback of the call
#: (a call has one recording, so one of these at most).
RECORDING_SEQUENCE = 10**9

#: Sequence numbers of fact n are SEQUENCE_STRIDE * n + i.
SEQUENCE_STRIDE = 100

#: The vendor's ``OptPlatform`` values (a device names its own at login, see
#: docs/protocol.md; ``RESTAPI`` is an admin command, ``Unknown`` the server itself).
PLATFORMS = ("RESTAPI", "Web", "Android", "iOS", "Windows", "Mac", "iPad", "Unknown")


@dataclass(frozen=True, slots=True)
class Origin:
    """Who caused a fact: the ``ClientIP`` and ``OptPlatform`` query parameters of its
    callbacks (v1: ``clientip``, ``optplatform``). ``client_ip`` is "" when no client
    did (a timeout)."""

    client_ip: str = ""
    platform: str = "Unknown"

    def query(self, v4: bool) -> str:
        """The URL-encoded query parameters, in the spelling of v4 or of v1."""
        keys = ("ClientIP", "OptPlatform") if v4 else ("clientip", "optplatform")
        return urlencode(((keys[0], self.client_ip), (keys[1], self.platform)))


@dataclass(frozen=True, slots=True)
class CallbackTargets:
    """Where callbacks go: the v4 url and its commands, the v1 address and its actions.

    Build it with :meth:`from_configs` from the stored configurations (``None`` =
    not configured); an empty url means that kind is off.
    """

    v4_url: str = ""
    v4_commands: frozenset[str] = frozenset()
    v1_url: str = ""
    v1_actions: frozenset[str] = frozenset()

    @classmethod
    def from_configs(cls, v4: Mapping[str, Any] | None, v1: Mapping[str, Any] | None) -> CallbackTargets:
        """From ``{"Url", "CallbackCommandList"}`` and ``{"address", "actions"}``."""
        return cls(
            v4_url=str(v4.get("Url", "")) if v4 else "",
            v4_commands=frozenset(v4.get("CallbackCommandList", ())) if v4 else frozenset(),
            v1_url=str(v1.get("address", "")) if v1 else "",
            v1_actions=frozenset(v1.get("actions", ())) if v1 else frozenset(),
        )

    @property
    def active(self) -> bool:
        """True if any callback could be sent."""
        return bool((self.v4_url and self.v4_commands) or (self.v1_url and self.v1_actions))


def plan_deliveries(
    fact: CallFact, targets: CallbackTargets, *, origin: Origin | None = None
) -> list[Delivery]:
    """The deliveries ``fact`` causes under ``targets``, in ``Sequence`` order.

    ``origin``: who caused the fact (default: the server, no address); its address and
    platform go into each request's query. Queue all of them in the outbox with the
    transaction of the state change that produced ``fact``; each has a fresh event id.
    """
    if not targets.active:
        return []
    out: list[Delivery] = []
    base = fact.seq * SEQUENCE_STRIDE
    who = origin or Origin()
    query = {True: who.query(v4=True), False: who.query(v4=False)}

    def add(url: str, command: str, payload: dict[str, Any]) -> None:
        out.append(
            new_delivery(
                url=url,
                command=command,
                call_id=fact.call_id,
                sequence=base + len(out),
                payload=payload,
                created_at=fact.at,
                query=query[command.startswith("Call.")],
            )
        )

    command = {"start": V4_START, "member": V4_MEMBER_CHANGED, "end": V4_END}.get(fact.kind, "")
    if command and targets.v4_url and command in targets.v4_commands:
        add(targets.v4_url, command, _v4_body(fact, command))
    if targets.v1_url and targets.v1_actions:
        for v1_command, payload in _v1_callbacks(fact):
            if v1_command in targets.v1_actions:
                add(targets.v1_url, v1_command, payload)
    return out


# --------------------------------------------------------------------------- v4


def _v4_users(users: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    return [{"User_Account": u["user_id"], "Status": u["status"]} for u in users]


def _v4_body(fact: CallFact, command: str) -> dict[str, Any]:
    call = fact.data["call"]
    event_time = int(fact.at * 1000)
    if fact.kind == "start":
        room, room_type = _room(call["room_id"])
        return {
            "CallbackCommand": command,
            "CallInfo": {
                "CallId": fact.call_id,
                "CallMediaType": _media(call["media_type"]).title(),
                "ChatGroupId": call["chat_group_id"],
                "RoomId": room,
                "RoomIdType": room_type,
            },
            "UserList": _v4_users(fact.data["users"]),
            "EventTime": event_time,
        }
    if fact.kind == "member":
        return {
            "CallbackCommand": command,
            "CallId": fact.call_id,
            "UserList": _v4_users(fact.data["users"]),
            "ChangedUserList": [
                {"User_Account": c["user_id"], "ActionType": c["action"]} for c in fact.data["changes"]
            ],
            "EventTime": event_time,
        }
    record: CallRecord = fact.data["record"]
    return {"CallbackCommand": command, "CallRecord": record_to_v4(record), "EventTime": event_time}


# --------------------------------------------------------------------------- v1


def _media(media_type: int) -> str:
    return "video" if media_type == MediaType.VIDEO else "audio"


def _room(room_id: Mapping[str, Any]) -> tuple[str, int]:
    if room_id.get("int_room_id"):
        return str(room_id["int_room_id"]), 1
    return str(room_id.get("str_room_id", "")), 2


_CHANGE_EVENTS: dict[str, tuple[str | None, str | None]] = {
    # action: (event of the user who changed (callee), event of the caller)
    "Accept": ("callee_accept_call", "caller_call_accepted"),
    "Reject": ("callee_reject_call", "caller_call_rejected"),
    "NotAnswer": ("callee_not_answer_call", "caller_call_missed"),
    # A busy invitee is rejected automatically: the vendor reports that as the
    # callee ignoring the call.
    "LineBusy": ("callee_ignore_call", "caller_call_busy"),
    "Cancel_Invite": ("callee_call_canceled", None),
}

_STATUS_BY_RESULT: dict[str, str] = {
    # member_result() of a stint -> the v1 status command
    "Accept": "normal_end",
    "Hangup": "normal_end",
    "Reject": "reject",
    "NotAnswer": "not_answer",
    "LineBusy": "call_busy",
    "Cancel": "cancel",
    "Offline": "interrupt",
    "EndByServer": "interrupt",
}

_CALLER_STATUS: dict[CallResult, str] = {
    CallResult.CANCEL: "cancel",
    CallResult.REJECT: "reject",
    CallResult.NOT_ANSWER: "not_answer",
    CallResult.NORMAL_END: "normal_end",
    CallResult.CALL_BUSY: "call_busy",
}


def v1_status(record: CallRecord, user_id: str) -> str:
    """How the call ended for ``user_id``, as a v1 status command (``normal_end`` …).

    The caller gets the call's result (a cancelled call is ``cancel`` and so on;
    offline or ended by the server is ``interrupt``). A callee gets the outcome of
    their last stint: ``normal_end`` if they connected and left normally, ``interrupt``
    if their device went offline or the server ended the call, else why they never
    connected (``reject``, ``not_answer``, ``call_busy``, ``cancel``).
    """
    if user_id == record.caller:
        connected = [m for m in record.members if m.user_id == user_id and m.role is CallRole.CALLER]
        if (
            record.result is CallResult.NORMAL_END
            and connected
            and connected[-1].end_reason is (CallEndReason.OFFLINE)
        ):
            return "interrupt"
        return _CALLER_STATUS.get(record.result, "interrupt")
    stints = [m for m in record.members if m.user_id == user_id]
    if not stints:
        return "interrupt"
    last = stints[-1]
    if any(s.accept_time for s in stints) and not last.accept_time:
        # Connected earlier, then re-invited and not connected again: the call went
        # normally for them.
        return "normal_end"
    return _STATUS_BY_RESULT.get(member_result(record, last), "interrupt")


def _v1_callbacks(fact: CallFact) -> list[tuple[str, dict[str, Any]]]:
    call = fact.data["call"]
    caller: str = call["caller"]
    record: CallRecord | None = fact.data.get("record")
    room, _ = _room(call["room_id"])
    common = {
        "RoomId": room,
        "TotalNum": len(record.users()) if record is not None else int(call["user_count"]),
        "MediaType": _media(call["media_type"]),
        "CallType": "single" if call["scene"] == CallScene.SINGLE_CALL else "group",
        "CallId": fact.call_id,
        "EventTime": int(fact.at),
        "StartCallTs": unix_s(call["start_time"]),
        "AcceptTs": unix_s(call["accept_time"]),
        "EndTs": unix_s(record.end_time) if record is not None else 0,
    }
    if record is not None:
        common["CallType"] = "single" if record.call_type == "SingleCall" else "group"
    out: list[tuple[str, dict[str, Any]]] = []

    def event(user_id: str, command: str, result: str = "") -> None:
        role, _, name = command.partition("_")
        if role not in ("caller", "callee"):
            role, name = ("caller" if user_id == caller else "callee"), command
        body = {"UserId": user_id, **common, "Role": role, "Event": name, "CallResult": result}
        out.append((command, _ordered(body)))

    def role_of(user_id: str) -> str:
        return "caller" if user_id == caller else "callee"

    if fact.kind == "start":
        event(caller, "caller_start_call")
        for u in fact.data["users"]:
            if u["user_id"] != caller and u["status"] == "Waiting":
                event(u["user_id"], "callee_receive_call")
    elif fact.kind == "ignore":
        event(fact.data["user_id"], "callee_ignore_call")
    elif fact.kind == "member":
        for change in fact.data["changes"]:
            user, action = change["user_id"], change["action"]
            if action in _CHANGE_EVENTS:
                own, of_caller = _CHANGE_EVENTS[action]
                if own is not None and user != caller:
                    event(user, own)
                if of_caller is not None and user != caller:
                    event(caller, of_caller)
            elif action == "Invite":
                event(user, "invite_user")
                event(user, "callee_receive_call")
            elif action == "Join":
                event(user, "join_in_group_call")
            elif action == "Hangup":
                event(user, f"{role_of(user)}_call_end")
            elif action == "Offline":
                event(user, f"{role_of(user)}_call_interrupted")
    else:
        assert record is not None
        if record.result is CallResult.CANCEL:
            event(caller, "caller_cancel_call", "cancel")
        for m in _present_at_end(record):
            status = v1_status(record, m.user_id)
            kind = "call_interrupted" if m.end_reason is CallEndReason.END_BY_SERVER else "call_end"
            event(m.user_id, f"{role_of(m.user_id)}_{kind}", status)
        for user in record.users():
            status = v1_status(record, user)
            body = {"UserId": user, **common, "Role": role_of(user), "CallResult": status}
            out.append((status, _ordered(body)))
    return out


def _present_at_end(record: CallRecord) -> list[MemberRecord]:
    """Stints still connected when the call ended (not the one who ended it)."""
    return [
        m
        for m in record.members
        if m.accept_time
        and m.leave_time >= record.end_time
        and member_result(record, m) in ("Accept", "EndByServer")
    ]


_V1_KEYS = (
    "UserId",
    "RoomId",
    "TotalNum",
    "MediaType",
    "CallType",
    "CallId",
    "Role",
    "Event",
    "CallResult",
    "EventTime",
    "StartCallTs",
    "AcceptTs",
    "EndTs",
)


def _ordered(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in _V1_KEYS if k in body}


# --------------------------------------------------------------------------- recordings


def recording_to_v4(job: Job) -> dict[str, Any]:
    """A recording (its conversion job) in the shape of the REST list and the callbacks:
    ``RecordingId`` (the call id), ``CallId``, ``State`` (``Pending``, ``Converting``,
    ``Ready``, ``Failed``), ``CreatedTime`` (unix s, the call's end), ``Attempts``,
    ``Errors`` and, when ready, ``Duration`` (s), ``Size`` (bytes), ``MediaType``
    (``Audio``/``Video``) and ``Format`` (``webm``/``ogg``)."""
    out: dict[str, Any] = {
        "RecordingId": job.call_id,
        "CallId": job.call_id,
        "State": job.state.title(),
        "CreatedTime": int(job.created_at),
        "Attempts": job.attempts,
        "Errors": [
            {"Attempt": e.get("attempt", 0), "Time": int(e.get("at", 0)), "Error": e.get("error", "")}
            for e in job.errors
        ],
    }
    rec = job.recording
    if job.state == "ready" and rec:
        out["Duration"] = rec.get("duration", 0.0)
        out["Size"] = rec.get("size", 0)
        out["MediaType"] = str(rec.get("media", "audio")).title()
        out["Format"] = "webm" if str(rec.get("path", "")).endswith(".webm") else "ogg"
    return out


def plan_recording_callback(job: Job, command: str, targets: CallbackTargets, now: float) -> Delivery | None:
    """The v4 callback of a recording that is ready (:data:`V4_RECORDING_READY`) or that
    failed for good (:data:`V4_RECORDING_FAILED`), or None when ``command`` is not
    subscribed. Queue it in the outbox. (v1 has no counterpart: its callbacks are per-user
    call events.)"""
    if not (targets.v4_url and command in targets.v4_commands):
        return None
    body = {"CallbackCommand": command, "RecordingInfo": recording_to_v4(job), "EventTime": int(now * 1000)}
    return new_delivery(
        url=targets.v4_url,
        command=command,
        call_id=job.call_id,
        sequence=RECORDING_SEQUENCE,
        payload=body,
        created_at=now,
        query=Origin().query(v4=True),
    )
