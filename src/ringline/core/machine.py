"""The call switchboard: every call and device of one app, as a pure state machine.

No I/O, no clock, no randomness: the driver passes each :data:`Input` together with
the current time to :meth:`Switchboard.handle` and gets back a list of
:data:`Action` values to perform, in order:

* :class:`Persist` -- make this durable *before* sending anything of the same batch
  (a call's snapshot or record, a chat group, a user's profile);
* :class:`Emit` -- deliver one observer event to one device;
* :class:`SetTimer` / :class:`CancelTimer` -- arm or disarm a timer; when it fires,
  hand :class:`TimerFired` back with the same key;
* :class:`CloseDevice` -- close that device's session (kicked, sig expired).

:class:`Signal` (WebRTC offer/answer/ICE between two connected members, docs/media.md)
changes no state: it is checked and relayed as one ``on_signal`` :class:`Emit` to the
target's connected device, never persisted and never owed to an offline device.

A request that breaks a rule raises :class:`~ringline.core.errors.LocalCallError`
before any state changes, so a refused request leaves nothing behind.

Who gets what is written down in docs/spec.md §4-§6; what each operation does in each
member state is the table in :mod:`ringline.core.transitions`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, assert_never

from .enums import CallEndReason, CallResultType, CallRole, CallScene, MediaType
from .errors import ErrorCode, LocalCallError
from .protocol import (
    DEFAULT_RING_TIMEOUT,
    MAX_CALLEES,
    MAX_GROUP_ID,
    MAX_MEMBERS,
    MAX_RING_TIMEOUT,
    MAX_USER_DATA_BYTES,
    OWED_EVENTS,
    USER_ID,
)
from .records import CallRecord, MemberRecord, call_result_for, result_type_for
from .transitions import MemberState, Op, Outcome, outcome
from .types import CallParams, RoomId

__all__ = [
    "MAX_CALLEES",
    "MAX_MEMBERS",
    "MAX_NICKNAME_BYTES",
    "MAX_SIGNAL_BYTES",
    "MAX_USER_DATA_BYTES",
    "Accept",
    "Action",
    "AdminEndCall",
    "CallFact",
    "CallPhase",
    "CancelTimer",
    "CloseDevice",
    "DeviceGone",
    "Emit",
    "FinishCall",
    "Hangup",
    "Ignore",
    "Input",
    "InviteUser",
    "Join",
    "Login",
    "Logout",
    "Notify",
    "Persist",
    "PlaceCall",
    "RecoveryDeadline",
    "Reject",
    "RenewSig",
    "SaveCall",
    "SaveProfile",
    "SetDeviceFlag",
    "SetGroupMembers",
    "SetMultiDevice",
    "SetSelfInfo",
    "SetTimer",
    "Signal",
    "SwitchMediaType",
    "Switchboard",
    "TimerFired",
    "check_signal_data",
    "valid_user_id",
]

log = logging.getLogger("ringline.core")

MAX_NICKNAME_BYTES = 500
MAX_AVATAR_BYTES = 2048
MAX_ROOM_STR = 64
#: A signal's ``data`` serialised as compact JSON may not exceed this (docs/media.md).
MAX_SIGNAL_BYTES = 16 * 1024
SIGNAL_TYPES = ("offer", "answer", "candidate", "renegotiate", "bye")


def valid_user_id(user_id: object) -> bool:
    """True for 1-32 characters of ``[A-Za-z0-9_-]``."""
    return isinstance(user_id, str) and USER_ID.fullmatch(user_id) is not None


def check_signal_data(data: object) -> None:
    """Raise :class:`LocalCallError` (-1202) unless ``data`` is a valid signal payload.

    A JSON object of at most :data:`MAX_SIGNAL_BYTES` (compact JSON, UTF-8) whose
    ``type`` is one of offer, answer, candidate, renegotiate, bye; ``offer``/``answer``
    carry ``sdp`` (a string); ``candidate`` carries ``candidate`` (a string, or null for
    the end of candidates) and optionally ``sdpMid`` (string/null) and
    ``sdpMLineIndex`` (integer/null). Other keys are allowed and relayed unchanged.
    """
    if not isinstance(data, dict):
        raise _refuse(ErrorCode.PARAM_INVALID, "signal data must be a JSON object with a 'type'")
    try:
        size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError):
        raise _refuse(ErrorCode.PARAM_INVALID, "signal data must be plain JSON") from None
    if size > MAX_SIGNAL_BYTES:
        raise _refuse(
            ErrorCode.PARAM_INVALID,
            f"signal data is {size} bytes; the limit is {MAX_SIGNAL_BYTES} (trickle ICE candidates "
            "instead of sending them inside the SDP)",
        )
    kind = data.get("type")
    if kind not in SIGNAL_TYPES:
        raise _refuse(
            ErrorCode.PARAM_INVALID,
            f"signal data 'type' must be one of {', '.join(SIGNAL_TYPES)}, got {kind!r}",
        )
    if kind in ("offer", "answer") and not isinstance(data.get("sdp"), str):
        raise _refuse(ErrorCode.PARAM_INVALID, f"a signal of type {kind!r} needs 'sdp' (a string)")
    if kind == "candidate":
        if "candidate" not in data or not (data["candidate"] is None or isinstance(data["candidate"], str)):
            raise _refuse(
                ErrorCode.PARAM_INVALID,
                "a 'candidate' signal needs 'candidate': a string, or null for the end of candidates",
            )
        mid = data.get("sdpMid")
        if mid is not None and not isinstance(mid, str):
            raise _refuse(ErrorCode.PARAM_INVALID, "'sdpMid' must be a string or null")
        index = data.get("sdpMLineIndex")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
            raise _refuse(ErrorCode.PARAM_INVALID, "'sdpMLineIndex' must be a non-negative integer or null")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Login:
    """A device logged in (``resumed``: it came back to its session after a restart)."""

    device_id: str
    user_id: str
    multi_device: bool = False
    sig_expires_at: float = float("inf")
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class Logout:
    device_id: str


@dataclass(frozen=True, slots=True)
class DeviceGone:
    """The device's session is gone for good (no heartbeat past the grace period)."""

    device_id: str


@dataclass(frozen=True, slots=True)
class SetMultiDevice:
    device_id: str
    enable: bool


@dataclass(frozen=True, slots=True)
class RenewSig:
    device_id: str
    sig_expires_at: float


@dataclass(frozen=True, slots=True)
class PlaceCall:
    """``calls(user_ids, media_type, params)``. ``new_call_id``/``new_room_id`` come from
    the driver (ids are the driver's randomness, not the core's)."""

    device_id: str
    user_ids: tuple[str, ...]
    media_type: MediaType
    params: CallParams
    new_call_id: str
    new_room_id: int


@dataclass(frozen=True, slots=True)
class Accept:
    device_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class Reject:
    device_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class Ignore:
    device_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class Hangup:
    device_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class InviteUser:
    device_id: str
    call_id: str
    user_ids: tuple[str, ...]
    params: CallParams


@dataclass(frozen=True, slots=True)
class Join:
    device_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class SwitchMediaType:
    device_id: str
    call_id: str
    media_type: MediaType


@dataclass(frozen=True, slots=True)
class SetDeviceFlag:
    """Camera (``kind="video"``) or microphone (``kind="audio"``) opened/closed."""

    device_id: str
    call_id: str
    kind: str
    on: bool


@dataclass(frozen=True, slots=True)
class Signal:
    """Relay WebRTC signalling ``data`` from this device's user to ``to_user_id``.

    Both must be connected members of ``call_id`` (the sender on this device). ``data``
    is a JSON object checked by :func:`check_signal_data` and relayed unchanged.
    """

    device_id: str
    call_id: str
    to_user_id: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SetSelfInfo:
    """The user's profile, shown with the invitations they send. A change is persisted
    (:class:`SaveProfile`); the same profile again changes and writes nothing."""

    device_id: str
    nickname: str
    avatar: str


@dataclass(frozen=True, slots=True)
class AdminEndCall:
    call_id: str
    by: str


@dataclass(frozen=True, slots=True)
class SetGroupMembers:
    group_id: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecoveryDeadline:
    """After a restart: calls none of whose devices came back end at ``last_known``."""

    last_known: float


Input = (
    Login
    | Logout
    | DeviceGone
    | SetMultiDevice
    | RenewSig
    | PlaceCall
    | Accept
    | Reject
    | Ignore
    | Hangup
    | InviteUser
    | Join
    | SwitchMediaType
    | SetDeviceFlag
    | Signal
    | SetSelfInfo
    | AdminEndCall
    | SetGroupMembers
    | TimerFired
    | RecoveryDeadline
)

# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Emit:
    """Deliver event ``name`` with ``args`` (wire-ready, JSON-able) to ``device_id``.

    ``terminal`` marks the pushes in :data:`~.protocol.OWED_EVENTS` (the terminal events
    and on_call_cancelled): these must reach the device even if it only comes back much
    later.
    """

    device_id: str
    name: str
    args: dict[str, Any]
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class SaveCall:
    """The live call changed: upsert its snapshot (JSON-able dict)."""

    call_id: str
    snapshot: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class FinishCall:
    """The call ended: write its record (unless ephemeral) and drop the live snapshot."""

    record: CallRecord
    user_results: tuple[tuple[str, CallResultType], ...]
    ephemeral: bool


@dataclass(frozen=True, slots=True)
class SetGroup:
    group_id: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SaveProfile:
    """A user's profile (``set_self_info``) changed: upsert it. Both empty = no profile
    any more (the store deletes it)."""

    user_id: str
    nickname: str
    avatar: str
    at: float


@dataclass(frozen=True, slots=True)
class Persist:
    what: SaveCall | FinishCall | SetGroup | SaveProfile


@dataclass(frozen=True, slots=True)
class CallFact:
    """A fact about a call for the server's callbacks (docs/spec.md §7).

    ``kind``: ``"start"`` (data: ``users``), ``"member"`` (data: ``changes``
    ``[{user_id, action}]`` with actions Accept, Reject, NotAnswer, Hangup, Join,
    Offline, Invite, Cancel_Invite, LineBusy, spelled as the vendor's
    ``Call.CallbackAfterMemberChanged`` does; and ``users``), ``"ignore"`` (a ringing
    invitee ignored the call on one device; nothing changed, the invite rings on; data:
    ``user_id`` and ``users``) or ``"end"`` (data: the :class:`CallRecord` under
    ``record``). Every fact also has ``call``: the call as it
    is after the fact (``call_id, caller, media_type, chat_group_id, room_id, scene,
    start_time, accept_time`` (0 = never connected) and ``user_count``, every user ever
    in the call). ``users`` lists the members still in the call with status
    ``Calling`` (connected, or the caller) or ``Waiting`` (ringing). ``seq`` numbers the
    facts of one call from 1, so receivers can keep them in order. Ephemeral calls
    have none.
    """

    call_id: str
    seq: int
    kind: str
    at: float
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Notify:
    """Queue callbacks for ``fact``, durably, in the same batch as the state change."""

    fact: CallFact


@dataclass(frozen=True, slots=True)
class SetTimer:
    key: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CloseDevice:
    """Close the device's session with ``code``/``message`` (after its queued events)."""

    device_id: str
    code: int
    message: str


Action = Emit | Persist | SetTimer | CancelTimer | CloseDevice | Notify


# --------------------------------------------------------------------------- state


class CallPhase(Enum):
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass(slots=True)
class Device:
    device_id: str
    user_id: str
    multi_device: bool
    sig_expires_at: float
    #: its ``sig`` timer is armed (the sig expires at ``sig_expires_at``)
    sig_armed: bool = False
    #: its ``sig_grace`` timer is armed (the sig expired; renew it or be logged out)
    in_grace: bool = False


@dataclass(slots=True)
class Member:
    """One stint of a user in a call.

    ``devices``: the devices that hold this leg and so are owed a terminal event
    (I1): the caller's placing device; every device an invitation rang on; the
    device that connected. ``active`` is the connected device.
    """

    user_id: str
    role: CallRole
    state: MemberState
    invite_time: float
    invited_by: str
    deadline: float = 0.0
    accept_time: float = 0.0
    leave_time: float = 0.0
    end_reason: CallEndReason = CallEndReason.UNKNOWN
    devices: list[str] = field(default_factory=list)
    active: str = ""
    audio: bool = True
    video: bool = False
    #: its ring timer is armed (not in snapshots: a restore arms the timers again)
    ring_armed: bool = False

    def record(self) -> MemberRecord:
        return MemberRecord(
            user_id=self.user_id,
            role=self.role,
            invite_time=self.invite_time,
            accept_time=self.accept_time,
            leave_time=self.leave_time,
            end_reason=self.end_reason,
            invited_by=self.invited_by,
        )

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "role": int(self.role),
            "state": self.state.value,
            "invite_time": self.invite_time,
            "invited_by": self.invited_by,
            "deadline": self.deadline,
            "accept_time": self.accept_time,
            "leave_time": self.leave_time,
            "end_reason": int(self.end_reason),
            "devices": list(self.devices),
            "active": self.active,
            "audio": self.audio,
            "video": self.video,
        }

    @classmethod
    def from_snapshot(cls, d: dict[str, Any]) -> Member:
        return cls(
            user_id=d["user_id"],
            role=CallRole(d["role"]),
            state=MemberState(d["state"]),
            invite_time=d["invite_time"],
            invited_by=d["invited_by"],
            deadline=d["deadline"],
            accept_time=d["accept_time"],
            leave_time=d["leave_time"],
            end_reason=CallEndReason(d["end_reason"]),
            devices=list(d["devices"]),
            active=d["active"],
            audio=d["audio"],
            video=d["video"],
        )


@dataclass(slots=True)
class Call:
    call_id: str
    sdk_app_id: int
    caller: str
    room_id: RoomId
    media_type: MediaType
    initial_media_type: MediaType
    scene: CallScene
    chat_group_id: str
    user_data: str
    ephemeral: bool
    start_time: float
    callees: list[str]
    phase: CallPhase = CallPhase.RINGING
    accept_time: float = 0.0
    members: dict[str, Member] = field(default_factory=dict)
    past: list[Member] = field(default_factory=list)
    ever_invited: set[str] = field(default_factory=set)
    # After a restart: devices that have not come back yet (empty = confirmed).
    unconfirmed: bool = False
    # Facts (callbacks) emitted so far; the next one gets fact_seq + 1.
    fact_seq: int = 0
    # Recorded (params.record, the server's --record-calls, or admin start_recording).
    recording: bool = False

    def active_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.state is not MemberState.ABSENT]

    def state_of(self, user_id: str) -> MemberState:
        m = self.members.get(user_id)
        return m.state if m is not None else MemberState.ABSENT

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "v": 1,
            "call_id": self.call_id,
            "sdk_app_id": self.sdk_app_id,
            "caller": self.caller,
            "room_id": self.room_id.to_wire(),
            "media_type": int(self.media_type),
            "initial_media_type": int(self.initial_media_type),
            "scene": int(self.scene),
            "chat_group_id": self.chat_group_id,
            "user_data": self.user_data,
            "ephemeral": self.ephemeral,
            "start_time": self.start_time,
            "callees": list(self.callees),
            "phase": self.phase.value,
            "accept_time": self.accept_time,
            "members": [m.to_snapshot() for m in self.members.values()],
            "past": [m.to_snapshot() for m in self.past],
            "ever_invited": sorted(self.ever_invited),
            "fact_seq": self.fact_seq,
            "record": self.recording,
        }

    @classmethod
    def from_snapshot(cls, d: dict[str, Any]) -> Call:
        members = [Member.from_snapshot(m) for m in d["members"]]
        return cls(
            call_id=d["call_id"],
            sdk_app_id=d["sdk_app_id"],
            caller=d["caller"],
            room_id=RoomId.from_wire(d["room_id"]),
            media_type=MediaType(d["media_type"]),
            initial_media_type=MediaType(d["initial_media_type"]),
            scene=CallScene(d["scene"]),
            chat_group_id=d["chat_group_id"],
            user_data=d["user_data"],
            ephemeral=d["ephemeral"],
            start_time=d["start_time"],
            callees=list(d["callees"]),
            phase=CallPhase(d["phase"]),
            accept_time=d["accept_time"],
            members={m.user_id: m for m in members},
            past=[Member.from_snapshot(m) for m in d["past"]],
            ever_invited=set(d["ever_invited"]),
            fact_seq=int(d.get("fact_seq", 0)),
            recording=bool(d.get("record", False)),
        )

    def record(self, end_time: float, reason: CallEndReason, ended_by: str) -> CallRecord:
        stints = [*self.past, *self.members.values()]
        stints.sort(key=lambda m: (m.invite_time, m.role != CallRole.CALLER))
        return CallRecord(
            call_id=self.call_id,
            sdk_app_id=self.sdk_app_id,
            caller=self.caller,
            media_type=self.initial_media_type,
            scene=self.scene,
            chat_group_id=self.chat_group_id,
            room_id=self.room_id,
            start_time=self.start_time,
            accept_time=self.accept_time,
            end_time=end_time,
            result=call_result_for(ever_connected=self.accept_time > 0, end_reason=reason),
            end_reason=reason,
            ended_by=ended_by,
            callees=tuple(self.callees),
            members=tuple(m.record() for m in stints),
            user_data=self.user_data,
        )


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8"))


def _refuse(code: ErrorCode, message: str) -> LocalCallError:
    return LocalCallError(code, message)


_REFUSALS: dict[Outcome, ErrorCode] = {
    Outcome.REFUSED: ErrorCode.REQUEST_REFUSED,
    Outcome.REPEATED: ErrorCode.REQUEST_REPEATED,
    Outcome.NOT_FOUND: ErrorCode.CALL_NOT_FOUND,
}


class Switchboard:
    """All calls and devices of one app. Drive it with :meth:`handle`, or with
    :meth:`request` to also get a request's value (a call id, the invited ids).

    ``sig_grace``: seconds a device may stay online after its sig expired (§6.5).
    After :meth:`restore`, hand in :class:`RecoveryDeadline` once the grace period
    for returning devices is over.
    """

    def __init__(self, *, sdk_app_id: int, sig_grace: float = 60.0) -> None:
        self.sdk_app_id = sdk_app_id
        self.sig_grace = sig_grace
        self.calls: dict[str, Call] = {}
        self.devices: dict[str, Device] = {}
        self.user_devices: dict[str, list[str]] = {}
        self.user_call: dict[str, str] = {}  # user -> call in which the user is active
        self.groups: dict[str, frozenset[str]] = {}
        # user -> (nickname, avatar), only for users whose profile is not empty.
        self.profiles: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------------ queries

    def current_call_of(self, device_id: str) -> str | None:
        """The call this device holds a leg in (for state sync), or None."""
        dev = self.devices.get(device_id)
        if dev is None:
            return None
        cid = self.user_call.get(dev.user_id)
        if cid is None:
            return None
        m = self.calls[cid].members.get(dev.user_id)
        return cid if m is not None and device_id in m.devices else None

    def call_state(self, call_id: str, viewer: str) -> dict[str, Any] | None:
        """A JSON-able view of a live call for ``viewer`` (used by state sync)."""
        call = self.calls.get(call_id)
        if call is None:
            return None
        me = call.members.get(viewer)
        return {
            "call_id": call.call_id,
            "caller_id": call.caller,
            "media_type": int(call.media_type),
            "phase": call.phase.value,
            "role": int(me.role) if me else 0,
            "status": (
                {MemberState.CONNECTED: 2, MemberState.RINGING: 1, MemberState.DIALING: 1}.get(me.state, 0)
                if me
                else 0
            ),
            "members": {
                m.user_id: m.state.value for m in call.members.values() if m.state is not MemberState.ABSENT
            },
        }

    def call_info(self, call_id: str) -> dict[str, Any] | None:
        """A JSON-able view of a live call for admins, or None if no call has this id
        (never placed, or ended: its record has it then).

        ``call_id, caller, media_type, scene, chat_group_id, room_id`` (wire form),
        ``start_time``, ``accept_time`` (0 = nobody connected yet), ``phase``
        (``ringing`` / ``connected``), ``callees`` (every callee so far) and ``users``:
        the members still in the call, with ``status`` ``Calling`` (connected, or the
        caller) or ``Waiting`` (ringing), as in the callbacks; ``members``: the same
        members in detail, ``user_id, role`` (ordinal), ``state`` (``dialing`` /
        ``ringing`` / ``connected``), ``invite_time``, ``accept_time`` (0 = not yet).
        """
        call = self.calls.get(call_id)
        if call is None:
            return None
        return {
            "call_id": call.call_id,
            "caller": call.caller,
            "media_type": int(call.media_type),
            "scene": int(call.scene),
            "chat_group_id": call.chat_group_id,
            "room_id": call.room_id.to_wire(),
            "start_time": call.start_time,
            "accept_time": call.accept_time,
            "phase": call.phase.value,
            "callees": list(call.callees),
            "users": self._users(call),
            "members": [
                {
                    "user_id": m.user_id,
                    "role": int(m.role),
                    "state": m.state.value,
                    "invite_time": m.invite_time,
                    "accept_time": m.accept_time,
                }
                for m in call.members.values()
                if m.state is not MemberState.ABSENT
            ],
        }

    def snapshot(self, call_id: str) -> dict[str, Any]:
        return self.calls[call_id].to_snapshot()

    # ------------------------------------------------------------------ restore

    def restore(
        self, snapshots: Iterable[dict[str, Any]], devices: Iterable[Login], now: float
    ) -> list[Action]:
        """Load live calls and logged-in devices after a restart.

        Every restored call is *unconfirmed* until one of its devices logs in again
        with ``Login(resumed=True)``. Returns timers to arm (ring timeouts, sig expiry).
        """
        out: list[Action] = []
        for d in devices:
            self._add_device(d, out)
        for snap in snapshots:
            call = Call.from_snapshot(snap)
            call.unconfirmed = True
            self.calls[call.call_id] = call
            for m in call.active_members():
                self.user_call[m.user_id] = call.call_id
                if m.state is MemberState.RINGING:
                    m.ring_armed = True
                    out.append(SetTimer(("ring", call.call_id, m.user_id), m.deadline))
        return out

    def load_profiles(self, profiles: Mapping[str, tuple[str, str]]) -> None:
        """Seed the profiles (``user_id -> (nickname, avatar)``) saved before a restart.

        Call before the first :meth:`handle`; later ``set_self_info`` requests override
        them. Empty profiles are skipped (an invitation shows empty strings anyway).
        Entries are trusted: they were checked when they were set.
        """
        for user_id, (nickname, avatar) in profiles.items():
            if nickname or avatar:
                self.profiles[user_id] = (nickname, avatar)

    # ------------------------------------------------------------------ dispatch

    def handle(self, inp: Input, now: float) -> list[Action]:
        """Apply one input at time ``now``; return the actions to perform, in order.

        Raises :class:`LocalCallError` (and changes nothing) if the input breaks a rule.
        A request's value (see :meth:`request`) is dropped.
        """
        return self.request(inp, now)[1]

    def request(self, inp: Input, now: float) -> tuple[str | list[str] | None, list[Action]]:
        """Like :meth:`handle`, and also return the request's value with the actions.

        The value is the call id for ``PlaceCall`` (the new call's, or under glare the
        id of the ringing call it answered), the invited user ids that ring for
        ``InviteUser`` (busy invitees are left out, so it may be empty), and None for
        every other input. It belongs to this request alone: nothing of it is kept.
        Raises :class:`LocalCallError` (no value, nothing changed) on a refusal; the
        caller performs the actions exactly as those of :meth:`handle`.
        """
        out: list[Action] = []
        touched: set[str] = set()
        value: str | list[str] | None = None
        match inp:
            case Login():
                self._login(inp, now, out, touched)
            case Logout():
                self._device_leaves(inp.device_id, now, out, touched, gone=False)
            case DeviceGone():
                self._device_leaves(inp.device_id, now, out, touched, gone=True)
            case SetMultiDevice():
                self._set_multi_device(inp, now, out, touched)
            case RenewSig():
                self._renew_sig(inp, now, out)
            case PlaceCall():
                value = self._place_call(inp, now, out, touched)
            case Accept() | Reject() | Ignore() | Hangup():
                self._member_op(inp, now, out, touched)
            case InviteUser():
                value = self._invite_user(inp, now, out, touched)
            case Join():
                self._join(inp, now, out, touched)
            case SwitchMediaType():
                self._switch_media(inp, now, out, touched)
            case SetDeviceFlag():
                self._set_flag(inp, now, out, touched)
            case Signal():
                self._signal(inp, out)
            case SetSelfInfo():
                self._set_self_info(inp, now, out)
            case AdminEndCall():
                call = self.calls.get(inp.call_id)
                if call is None:
                    raise _refuse(
                        ErrorCode.CALL_NOT_FOUND,
                        f"call {inp.call_id} is not live (ended, or never existed); "
                        "look it up with get_record_by_callid instead",
                    )
                self._end_call(call, CallEndReason.END_BY_SERVER, inp.by, now, out)
            case SetGroupMembers():
                self._set_group(inp, out)
            case TimerFired():
                self._timer(inp.key, now, out, touched)
            case RecoveryDeadline():
                for call in list(self.calls.values()):
                    if call.unconfirmed:
                        log.info("call %s: no device came back after restart", call.call_id)
                        self._end_call(call, CallEndReason.END_BY_SERVER, "", min(now, inp.last_known), out)
            case _:
                assert_never(inp)
        for cid in touched:
            call = self.calls.get(cid)
            if call is not None and call.phase is not CallPhase.ENDED:
                out.insert(0, Persist(SaveCall(cid, call.to_snapshot(), now)))
        return value, out

    # ------------------------------------------------------------------ helpers

    def _device(self, device_id: str) -> Device:
        dev = self.devices.get(device_id)
        if dev is None:
            raise _refuse(ErrorCode.INIT_FAIL, "this device is not logged in; call init() first")
        return dev

    def _call_for(self, dev: Device, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise _refuse(
                ErrorCode.CALL_NOT_FOUND,
                f"call {call_id} is not live: it was answered elsewhere, cancelled or "
                "has ended; wait for the next on_call_received",
            )
        return call

    def _check(self, call: Call, dev: Device, op: Op) -> Outcome:
        state = call.state_of(dev.user_id)
        m = call.members.get(dev.user_id)
        # A device acts only on legs it holds (another device of the same user that
        # never rang, e.g. after the invite, must not answer for it).
        if (
            m is not None
            and state is not MemberState.ABSENT
            and op is not Op.JOIN
            and dev.device_id not in m.devices
        ):
            if state is MemberState.RINGING and op in (Op.ACCEPT, Op.REJECT):
                return outcome(state, op)
            if op in (Op.ACCEPT, Op.REJECT, Op.IGNORE):
                raise _refuse(
                    ErrorCode.CALL_NOT_FOUND,
                    f"call {call.call_id} was answered on another device of {dev.user_id}",
                )
            raise _refuse(
                ErrorCode.REQUEST_REFUSED,
                f"user {dev.user_id} is in call {call.call_id} on another device; act on it from that device",
            )
        res = outcome(state, op)
        if res.is_refusal:
            raise _refuse(_REFUSALS[res], self._why(res, state, op, call))
        return res

    @staticmethod
    def _why(res: Outcome, state: MemberState, op: Op, call: Call) -> str:
        if res is Outcome.NOT_FOUND:
            return (
                f"you are not in call {call.call_id} (never invited, or already left); "
                "use join(call_id) if you were invited earlier"
            )
        if res is Outcome.REPEATED:
            return f"{op.value}: already done (you are {state.value} in call {call.call_id})"
        hints = {
            Op.ACCEPT: "only an invitee whose device is ringing can accept",
            Op.REJECT: "only a ringing invitee can reject; use hangup() to leave",
            Op.IGNORE: "only a ringing invitee can ignore",
            Op.INVITE: "accept the call before inviting others",
            Op.SWITCH_MEDIA: "the media type can be switched once your leg has begun",
        }
        hint = hints.get(op, "see the scenario table, docs/spec.md §5")
        return f"{op.value} is not allowed while {state.value}: {hint}"

    def _emit(self, out: list[Action], devices: Iterable[str], name: str, args: dict[str, Any]) -> None:
        terminal = name in OWED_EVENTS
        for d in devices:
            out.append(Emit(d, name, args, terminal))

    @staticmethod
    def _connected_devices(call: Call, exclude: str = "") -> list[str]:
        return [
            m.active
            for m in call.members.values()
            if m.state is MemberState.CONNECTED and m.user_id != exclude and m.active
        ]

    @staticmethod
    def _member_devices(call: Call, exclude: str = "") -> list[str]:
        """Devices of every other member still in the call, ringing or connected."""
        res: list[str] = []
        for m in call.members.values():
            if m.user_id == exclude or m.state is MemberState.ABSENT:
                continue
            if m.state is MemberState.CONNECTED:
                if m.active:
                    res.append(m.active)
            else:
                res.extend(m.devices)
        return res

    def _info(self, call: Call, role: CallRole, **extra: Any) -> dict[str, Any]:
        info: dict[str, Any] = {
            "room_id": call.room_id.to_wire(),
            "role": int(role),
            "user_data": call.user_data,
            "chat_group_id": call.chat_group_id,
        }
        info.update(extra)
        return info

    def _received_args(self, call: Call, m: Member, now: float) -> dict[str, Any]:
        nick, avatar = self.profiles.get(m.invited_by, ("", ""))
        return {
            "call_id": call.call_id,
            "caller_id": call.caller,
            "callee_id_list": [
                u for u, x in call.members.items() if u != call.caller and x.state is not MemberState.ABSENT
            ],
            "media_type": int(call.media_type),
            "info": self._info(
                call,
                CallRole.CALLED,
                ring_time_left=round(max(0.0, m.deadline - now), 3),
                inviter_id=m.invited_by,
                inviter_nickname=nick,
                inviter_avatar=avatar,
            ),
        }

    def _availability(self, out: list[Action], devices: list[str], m: Member, call_id: str) -> None:
        self._emit(
            out,
            devices,
            "on_user_audio_available",
            {"call_id": call_id, "user_id": m.user_id, "is_audio_available": m.audio},
        )
        self._emit(
            out,
            devices,
            "on_user_video_available",
            {"call_id": call_id, "user_id": m.user_id, "is_video_available": m.video},
        )

    # ------------------------------------------------------------------ devices

    def _add_device(self, inp: Login, out: list[Action]) -> Device:
        dev = Device(inp.device_id, inp.user_id, inp.multi_device, inp.sig_expires_at)
        old = self.devices.get(inp.device_id)  # the same device logged in afresh
        if old is not None:
            self._disarm_sig(old, out)
        self.devices[inp.device_id] = dev
        devs = self.user_devices.setdefault(inp.user_id, [])
        if inp.device_id not in devs:
            devs.append(inp.device_id)
        self._arm_sig(dev, out)
        return dev

    def _arm_sig(self, dev: Device, out: list[Action]) -> None:
        """Arm the expiry timer of ``dev``'s sig (none for a sig without expiry); the
        caller has disarmed the timers of the sig it replaces (SetTimer re-arms a key)."""
        if dev.sig_expires_at != float("inf"):
            dev.sig_armed = True
            out.append(SetTimer(("sig", dev.device_id), dev.sig_expires_at))

    @staticmethod
    def _disarm_sig(dev: Device, out: list[Action]) -> None:
        """Cancel the sig timers ``dev`` has armed, and only those."""
        if dev.sig_armed:
            dev.sig_armed = False
            out.append(CancelTimer(("sig", dev.device_id)))
        if dev.in_grace:
            dev.in_grace = False
            out.append(CancelTimer(("sig_grace", dev.device_id)))

    def _login(self, inp: Login, now: float, out: list[Action], touched: set[str]) -> None:
        if not valid_user_id(inp.user_id):
            raise _refuse(ErrorCode.PARAM_INVALID, "user_id must be 1-32 chars of [A-Za-z0-9_-]")
        if inp.resumed and inp.device_id in self.devices:
            # Back after a restart: its calls are confirmed alive.
            for call in self.calls.values():
                if any(inp.device_id in m.devices for m in call.members.values()):
                    call.unconfirmed = False
            return
        old = self.devices.get(inp.device_id)
        if old is not None:
            if old.user_id != inp.user_id:
                # Device keys are per user (the server scopes them): one user can never
                # take over another's device.
                raise _refuse(
                    ErrorCode.PARAM_INVALID,
                    "this device id belongs to another user; scope device ids to their user",
                )
            # The same device logged in afresh: its app lost the session, so a
            # leg it had connected is over (OFFLINE); ringing legs ring again.
            self._drop_connected_legs(inp.device_id, now, out, touched)
        for other in list(self.user_devices.get(inp.user_id, [])):
            if other == inp.device_id:
                continue
            odev = self.devices[other]
            if not (inp.multi_device and odev.multi_device):
                log.info("device %s of %s kicked by a new login", other, inp.user_id)
                self._device_leaves(other, now, out, touched, gone=False)
                out.append(Emit(other, "on_kicked_offline", {}))
                out.append(
                    CloseDevice(
                        other,
                        ErrorCode.KICKED_OFFLINE,
                        "another device logged in as this user; enable multi-device on "
                        "both devices to stay logged in on several",
                    )
                )
        self._add_device(inp, out)
        # Ring on this device too if an invitation is waiting (row 1: offline callee).
        cid = self.user_call.get(inp.user_id)
        if cid is not None:
            call = self.calls[cid]
            m = call.members[inp.user_id]
            if m.state is MemberState.RINGING:
                if inp.device_id not in m.devices:
                    m.devices.append(inp.device_id)
                touched.add(cid)
                self._emit(out, [inp.device_id], "on_call_received", self._received_args(call, m, now))

    def _drop_connected_legs(self, device_id: str, now: float, out: list[Action], touched: set[str]) -> None:
        dev = self.devices[device_id]
        cid = self.user_call.get(dev.user_id)
        if cid is None:
            return
        call = self.calls[cid]
        m = call.members[dev.user_id]
        if device_id not in m.devices:
            return
        if m.state is MemberState.CONNECTED and m.active == device_id:
            self._leave(call, m, CallEndReason.OFFLINE, dev.user_id, now, out, touched)
        elif m.state is MemberState.DIALING:
            self._end_call(call, CallEndReason.OFFLINE, dev.user_id, now, out)

    def _device_leaves(
        self, device_id: str, now: float, out: list[Action], touched: set[str], *, gone: bool
    ) -> None:
        """Logout/kick (``gone=False``: no terminal event owed) or loss (``gone=True``)."""
        dev = self.devices.pop(device_id, None)
        if dev is None:
            return
        devs = self.user_devices.get(dev.user_id, [])
        if device_id in devs:
            devs.remove(device_id)
        if not devs:
            self.user_devices.pop(dev.user_id, None)
        self._disarm_sig(dev, out)
        cid = self.user_call.get(dev.user_id)
        if cid is None:
            return
        call = self.calls[cid]
        m = call.members[dev.user_id]
        if device_id not in m.devices:
            return
        res = outcome(m.state, Op.DEVICE_GONE if gone else Op.DEVICE_LEFT)
        if not gone:
            # Logged out or kicked: exempt from terminal events (I1).
            m.devices.remove(device_id)
            if m.active == device_id and res is not Outcome.LEAVE_HANGUP:
                m.active = ""
        touched.add(cid)
        if res is Outcome.CANCEL_CALL:
            self._end_call(call, CallEndReason.CANCELED, dev.user_id, now, out)
        elif res is Outcome.CANCEL_OFFLINE:
            self._end_call(call, CallEndReason.OFFLINE, dev.user_id, now, out)
        elif res is Outcome.LEAVE_HANGUP:
            if m.active != device_id:
                return
            m.active = ""
            self._leave(call, m, CallEndReason.HANGUP, dev.user_id, now, out, touched)
        elif res is Outcome.LEAVE_OFFLINE:
            if m.active != device_id:
                return
            self._leave(call, m, CallEndReason.OFFLINE, dev.user_id, now, out, touched)
        elif res in (Outcome.DROP_DEVICE, Outcome.NOTHING):
            pass
        else:  # pragma: no cover - the table has no other outcome for these ops
            raise AssertionError(res)

    def _set_multi_device(
        self, inp: SetMultiDevice, now: float, out: list[Action], touched: set[str]
    ) -> None:
        dev = self._device(inp.device_id)
        dev.multi_device = inp.enable
        if inp.enable:
            return
        for other in list(self.user_devices.get(dev.user_id, [])):
            if other != dev.device_id:
                self._device_leaves(other, now, out, touched, gone=False)
                out.append(Emit(other, "on_kicked_offline", {}))
                out.append(
                    CloseDevice(
                        other,
                        ErrorCode.KICKED_OFFLINE,
                        "another device of this user turned multi-device off",
                    )
                )

    def _renew_sig(self, inp: RenewSig, now: float, out: list[Action]) -> None:
        dev = self._device(inp.device_id)
        if inp.sig_expires_at <= now:
            raise _refuse(ErrorCode.SIG_EXPIRED, "the new user sig has expired too; mint a fresh one")
        self._disarm_sig(dev, out)
        dev.sig_expires_at = inp.sig_expires_at
        self._arm_sig(dev, out)

    # ------------------------------------------------------------------ calls

    def _validate_params(self, params: CallParams) -> int:
        timeout = params.timeout or DEFAULT_RING_TIMEOUT
        if not isinstance(timeout, int) or not 1 <= timeout <= MAX_RING_TIMEOUT:
            raise _refuse(
                ErrorCode.PARAM_INVALID,
                f"timeout must be 1..{MAX_RING_TIMEOUT} seconds (0 = default 30), got {timeout!r}",
            )
        if _utf8_len(params.user_data) > MAX_USER_DATA_BYTES:
            raise _refuse(
                ErrorCode.PARAM_INVALID,
                f"user_data is {_utf8_len(params.user_data)} bytes; the limit is "
                f"{MAX_USER_DATA_BYTES}: store large data elsewhere and send a key",
            )
        return timeout

    def _clean_ids(self, user_ids: Iterable[str], me: str) -> list[str]:
        ids: list[str] = []
        for u in user_ids:
            if not valid_user_id(u):
                raise _refuse(
                    ErrorCode.PARAM_INVALID,
                    f"invalid user id {u!r}: use 1-32 chars of [A-Za-z0-9_-]",
                )
            if u != me and u not in ids:
                ids.append(u)
        return ids

    def _place_call(self, inp: PlaceCall, now: float, out: list[Action], touched: set[str]) -> str:
        """Place a new call, or answer the crossing one (glare); return its call id."""
        dev = self._device(inp.device_id)
        me = dev.user_id
        callees = self._clean_ids(inp.user_ids, me)
        if not callees:
            raise _refuse(ErrorCode.PARAM_INVALID, "user_ids is empty (after removing yourself)")
        if len(callees) > MAX_CALLEES:
            raise _refuse(
                ErrorCode.PARAM_INVALID,
                f"{len(callees)} callees; a call has at most {MAX_CALLEES} callees ({MAX_MEMBERS} members)",
            )
        if inp.media_type not in (MediaType.AUDIO, MediaType.VIDEO):
            raise _refuse(ErrorCode.PARAM_INVALID, "media_type must be AUDIO (1) or VIDEO (2)")
        timeout = self._validate_params(inp.params)
        room = inp.params.room_id
        if room is not None and not room.is_empty:
            if room.int_room_id and room.str_room_id:
                raise _refuse(ErrorCode.PARAM_INVALID, "set int_room_id or str_room_id, not both")
            if not 0 <= room.int_room_id <= 4294967294:
                raise _refuse(ErrorCode.PARAM_INVALID, "int_room_id must be 1..4294967294")
            if len(room.str_room_id) > MAX_ROOM_STR:
                raise _refuse(ErrorCode.PARAM_INVALID, f"str_room_id is over {MAX_ROOM_STR} chars")
        else:
            room = RoomId(int_room_id=inp.new_room_id)
        if len(inp.params.chat_group_id) > MAX_GROUP_ID:
            raise _refuse(ErrorCode.PARAM_INVALID, f"chat_group_id is over {MAX_GROUP_ID} chars")
        busy_in = self.user_call.get(me)
        if busy_in is not None:
            glare = self.calls[busy_in]
            gm = glare.members[me]
            if (
                gm.state is MemberState.RINGING
                and glare.caller in callees
                and glare.state_of(glare.caller) is not MemberState.ABSENT
            ):
                # Glare (row 8): the crossing call answers the one ringing here.
                rest = [u for u in callees if u != glare.caller and u not in glare.members]
                if len(glare.active_members()) + len(rest) > MAX_MEMBERS:
                    raise _refuse(
                        ErrorCode.PARAM_INVALID,
                        f"a call has at most {MAX_MEMBERS} members; call {glare.call_id}, "
                        f"which your call answers, has {len(glare.active_members())}",
                    )
                log.info("call %s: glare, %s's call becomes an accept", glare.call_id, me)
                if inp.device_id not in gm.devices:
                    gm.devices.append(inp.device_id)
                touched.add(glare.call_id)  # persist the answered call (§6.8)
                self._accept(glare, gm, inp.device_id, now, out, touched)
                if rest:
                    self._invite(glare, gm, rest, timeout, now, out, touched)
                return glare.call_id
            raise _refuse(
                ErrorCode.REQUEST_REFUSED,
                f"you are already in call {busy_in}; hang up before placing another call",
            )
        if inp.new_call_id in self.calls:
            raise _refuse(ErrorCode.REQUEST_REPEATED, "duplicate call id")
        p = inp.params
        scene = (
            CallScene.GROUP_CALL
            if p.chat_group_id
            else CallScene.MULTI_CALL
            if len(callees) > 1
            else CallScene.SINGLE_CALL
        )
        call = Call(
            call_id=inp.new_call_id,
            sdk_app_id=self.sdk_app_id,
            caller=me,
            room_id=room,
            media_type=inp.media_type,
            initial_media_type=inp.media_type,
            scene=scene,
            chat_group_id=p.chat_group_id,
            user_data=p.user_data,
            ephemeral=p.is_ephemeral_call,
            recording=p.record,
            start_time=now,
            callees=list(callees),
        )
        caller = Member(
            user_id=me,
            role=CallRole.CALLER,
            state=MemberState.DIALING,
            invite_time=now,
            invited_by="",
            devices=[inp.device_id],
            video=inp.media_type is MediaType.VIDEO,
        )
        call.members[me] = caller
        call.ever_invited.add(me)
        self.calls[call.call_id] = call
        self.user_call[me] = call.call_id
        touched.add(call.call_id)
        log.info("call %s: placed by %s to %s", call.call_id, me, callees)
        self._invite(call, caller, callees, timeout, now, out, touched, initial=True)
        return call.call_id

    def _invite(
        self,
        call: Call,
        inviter: Member,
        user_ids: list[str],
        timeout: int,
        now: float,
        out: list[Action],
        touched: set[str],
        *,
        initial: bool = False,
    ) -> list[str]:
        ringing: list[str] = []
        busy: list[str] = []
        for u in user_ids:
            prev = call.members.get(u)
            if prev is not None:
                call.past.append(prev)
            is_busy = u in self.user_call
            m = Member(
                user_id=u,
                role=CallRole.CALLED,
                state=MemberState.RINGING,
                invite_time=now,
                invited_by=inviter.user_id,
                deadline=now + timeout,
                # A busy invitee's devices never ring, so they hear nothing of this
                # call, not even of the other busy invitees (row 7).
                devices=[] if is_busy else list(self.user_devices.get(u, [])),
                video=call.media_type is MediaType.VIDEO,
            )
            call.members[u] = m
            call.ever_invited.add(u)
            if u not in call.callees:
                call.callees.append(u)
            if is_busy:
                busy.append(u)
            else:
                ringing.append(u)
                self.user_call[u] = call.call_id
        if not initial and call.scene is CallScene.SINGLE_CALL and len(call.callees) > 1:
            call.scene = CallScene.MULTI_CALL
        # Tell the members about every invitee (initial invitees learn of each other
        # from their on_call_received instead), with what the caller's screen shows:
        # the invitee's profile, and whether any of its devices is logged in now (an
        # invitee without one rings only when a device logs in before the timeout).
        new = set(user_ids)
        for u in user_ids:
            targets = (
                list(inviter.devices if inviter.state is MemberState.DIALING else [inviter.active])
                if initial
                else self._member_devices_except(call, new)
            )
            nick, avatar = self.profiles.get(u, ("", ""))
            args = {
                "call_id": call.call_id,
                "user_id": u,
                "online": bool(self.user_devices.get(u)),
                "nickname": nick,
                "avatar": avatar,
            }
            self._emit(out, targets, "on_user_inviting", args)
        for u in ringing:
            m = call.members[u]
            self._emit(out, m.devices, "on_call_received", self._received_args(call, m, now))
            m.ring_armed = True
            out.append(SetTimer(("ring", call.call_id, u), m.deadline))
        if initial:
            self._fact(out, call, "start", now, {"users": self._users(call)})
        else:
            self._member_fact(out, call, now, [(u, "Invite") for u in user_ids])
        for u in busy:
            log.info("call %s: %s is busy", call.call_id, u)
            m = call.members[u]
            self._leave(call, m, CallEndReason.LINE_BUSY, u, now, out, touched)
            if call.phase is CallPhase.ENDED:
                break
        return ringing

    def _member_devices_except(self, call: Call, users: set[str]) -> list[str]:
        res: list[str] = []
        for m in call.members.values():
            if m.user_id in users or m.state is MemberState.ABSENT:
                continue
            res.extend([m.active] if m.state is MemberState.CONNECTED else m.devices)
        return res

    def _member_op(
        self, inp: Accept | Reject | Ignore | Hangup, now: float, out: list[Action], touched: set[str]
    ) -> None:
        dev = self._device(inp.device_id)
        call = self._call_for(dev, inp.call_id)
        op = {Accept: Op.ACCEPT, Reject: Op.REJECT, Ignore: Op.IGNORE, Hangup: Op.HANGUP}[type(inp)]
        res = self._check(call, dev, op)
        m = call.members[dev.user_id]
        touched.add(call.call_id)
        if res is Outcome.ACCEPT:
            if inp.device_id not in m.devices:
                m.devices.append(inp.device_id)
            self._accept(call, m, inp.device_id, now, out, touched)
        elif res is Outcome.REJECT:
            self._reject(call, m, inp.device_id, now, out, touched)
        elif res is Outcome.IGNORE:
            log.info("call %s: %s ignores on %s", call.call_id, m.user_id, inp.device_id)
            # Nothing changes for the call (the invite rings on until its timeout), but
            # the v1 callbacks report it (``callee_ignore_call``).
            self._fact(out, call, "ignore", now, {"user_id": m.user_id, "users": self._users(call)})
        elif res is Outcome.CANCEL_CALL:
            self._end_call(call, CallEndReason.CANCELED, m.user_id, now, out)
        elif res is Outcome.LEAVE_HANGUP:
            self._leave(call, m, CallEndReason.HANGUP, m.user_id, now, out, touched)
        else:  # pragma: no cover
            raise AssertionError(res)

    def _connect_caller(self, call: Call, now: float, out: list[Action]) -> None:
        call.phase = CallPhase.CONNECTED
        call.accept_time = now
        log.info("call %s: RINGING -> CONNECTED", call.call_id)
        caller = call.members.get(call.caller)
        if caller is not None and caller.state is MemberState.DIALING:
            caller.state = MemberState.CONNECTED
            caller.accept_time = now
            caller.active = caller.devices[0] if caller.devices else ""
            self._emit(
                out,
                [caller.active] if caller.active else [],
                "on_call_begin",
                {
                    "call_id": call.call_id,
                    "media_type": int(call.media_type),
                    "info": self._info(call, CallRole.CALLER),
                },
            )

    @staticmethod
    def _users(call: Call) -> list[dict[str, str]]:
        return [
            {"user_id": m.user_id, "status": "Waiting" if m.state is MemberState.RINGING else "Calling"}
            for m in call.members.values()
            if m.state is not MemberState.ABSENT
        ]

    def _fact(self, out: list[Action], call: Call, kind: str, now: float, data: dict[str, Any]) -> None:
        if call.ephemeral:
            return
        call.fact_seq += 1
        info = {
            "call_id": call.call_id,
            "caller": call.caller,
            "media_type": int(call.media_type),
            "chat_group_id": call.chat_group_id,
            "room_id": call.room_id.to_wire(),
            "scene": int(call.scene),
            "start_time": call.start_time,
            "accept_time": call.accept_time,
            "user_count": len(call.members),
        }
        out.append(Notify(CallFact(call.call_id, call.fact_seq, kind, now, {"call": info, **data})))

    def _member_fact(self, out: list[Action], call: Call, now: float, changes: list[tuple[str, str]]) -> None:
        self._fact(
            out,
            call,
            "member",
            now,
            {
                "changes": [{"user_id": u, "action": a} for u, a in changes],
                "users": self._users(call),
            },
        )

    _ACTION: ClassVar[dict[CallEndReason, str]] = {
        CallEndReason.REJECT: "Reject",
        CallEndReason.NO_RESPONSE: "NotAnswer",
        CallEndReason.LINE_BUSY: "LineBusy",
        CallEndReason.HANGUP: "Hangup",
        CallEndReason.OFFLINE: "Offline",
        CallEndReason.CANCELED: "Cancel_Invite",
        CallEndReason.END_BY_SERVER: "Hangup",
    }

    @staticmethod
    def _disarm_ring(call: Call, m: Member, out: list[Action]) -> None:
        """Cancel ``m``'s ring timer if it is armed (it rang and has not timed out)."""
        if m.ring_armed:
            m.ring_armed = False
            out.append(CancelTimer(("ring", call.call_id, m.user_id)))

    def _accept(
        self, call: Call, m: Member, device_id: str, now: float, out: list[Action], touched: set[str]
    ) -> None:
        if call.phase is CallPhase.RINGING:
            self._connect_caller(call, now, out)
        self._disarm_ring(call, m, out)
        others = [d for d in m.devices if d != device_id]
        for d in others:
            self._terminal_not_connected(
                out, [d], call, CallEndReason.OTHER_DEVICE_ACCEPTED, m.user_id, m.user_id
            )
        m.devices = [device_id]
        self._begin_leg(call, m, device_id, now, out)
        self._member_fact(out, call, now, [(m.user_id, "Accept")])

    def _begin_leg(self, call: Call, m: Member, device_id: str, now: float, out: list[Action]) -> None:
        """Connect ``m`` on ``device_id``: begin, then joins (I2, I3)."""
        m.state = MemberState.CONNECTED
        m.accept_time = now
        m.active = device_id
        log.info("call %s: %s connected", call.call_id, m.user_id)
        self._emit(
            out,
            [device_id],
            "on_call_begin",
            {
                "call_id": call.call_id,
                "media_type": int(call.media_type),
                "info": self._info(call, m.role),
            },
        )
        for other in call.members.values():
            if other is m or other.state is not MemberState.CONNECTED or not other.active:
                continue
            self._emit(out, [device_id], "on_user_join", {"call_id": call.call_id, "user_id": other.user_id})
            self._availability(out, [device_id], other, call.call_id)
        peers = self._connected_devices(call, exclude=m.user_id)
        self._emit(out, peers, "on_user_join", {"call_id": call.call_id, "user_id": m.user_id})
        self._availability(out, peers, m, call.call_id)

    def _reject(
        self, call: Call, m: Member, device_id: str, now: float, out: list[Action], touched: set[str]
    ) -> None:
        others = [d for d in m.devices if d != device_id]
        for d in others:
            self._terminal_not_connected(
                out, [d], call, CallEndReason.OTHER_DEVICE_REJECT, m.user_id, m.user_id
            )
        m.devices = [device_id] if device_id in m.devices else []
        self._leave(call, m, CallEndReason.REJECT, m.user_id, now, out, touched)

    _PEER_EVENT: ClassVar[dict[CallEndReason, str]] = {
        CallEndReason.REJECT: "on_user_reject",
        CallEndReason.NO_RESPONSE: "on_user_no_response",
        CallEndReason.LINE_BUSY: "on_user_line_busy",
    }

    def _leave(
        self,
        call: Call,
        m: Member,
        reason: CallEndReason,
        ended_by: str,
        now: float,
        out: list[Action],
        touched: set[str],
    ) -> None:
        """``m`` leaves the call; the others hear of it; the end rule may end the call."""
        prev = m.state
        m.state = MemberState.ABSENT
        m.leave_time = now
        m.end_reason = reason
        if self.user_call.get(m.user_id) == call.call_id:
            del self.user_call[m.user_id]
        self._disarm_ring(call, m, out)
        touched.add(call.call_id)
        log.info("call %s: %s %s -> gone (%s)", call.call_id, m.user_id, prev.value, reason.name)
        self._member_fact(out, call, now, [(m.user_id, self._ACTION.get(reason, "Hangup"))])
        if prev is MemberState.CONNECTED:
            self._emit(
                out,
                self._connected_devices(call),
                "on_user_leave",
                {"call_id": call.call_id, "user_id": m.user_id},
            )
        peer_event = self._PEER_EVENT.get(reason)
        if peer_event is not None and prev is MemberState.RINGING:
            self._emit(
                out, self._member_devices(call), peer_event, {"call_id": call.call_id, "user_id": m.user_id}
            )
        # The leaver's own devices get their terminal event now.
        self._terminal_for(out, call, m, prev, reason, ended_by, now)
        if len(call.active_members()) <= 1:
            self._end_call(call, reason, ended_by, now, out)

    def _terminal_for(
        self,
        out: list[Action],
        call: Call,
        m: Member,
        prev: MemberState,
        reason: CallEndReason,
        ended_by: str,
        now: float,
    ) -> None:
        if prev is MemberState.CONNECTED:
            if m.active:
                self._emit(
                    out,
                    [m.active],
                    "on_call_end",
                    {
                        "call_id": call.call_id,
                        "media_type": int(call.media_type),
                        "reason": int(reason),
                        "user_id": ended_by,
                        "total_time": round(max(0.0, now - m.accept_time)),
                        "info": self._info(call, m.role),
                    },
                )
        else:
            self._terminal_not_connected(out, m.devices, call, reason, ended_by, m.user_id)

    def _terminal_not_connected(
        self,
        out: list[Action],
        devices: list[str],
        call: Call,
        reason: CallEndReason,
        ended_by: str,
        recipient: str,
    ) -> None:
        role = call.members[recipient].role if recipient in call.members else CallRole.CALLED
        self._emit(
            out,
            devices,
            "on_call_not_connected",
            {
                "call_id": call.call_id,
                "media_type": int(call.media_type),
                "reason": int(reason),
                "user_id": ended_by,
                "info": self._info(call, role),
            },
        )
        # Legacy companion: the canceller for CANCELED, else the recipient itself (§5).
        self._emit(
            out,
            devices,
            "on_call_cancelled",
            {"call_id": call.call_id, "user_id": ended_by if reason is CallEndReason.CANCELED else recipient},
        )

    def _end_call(
        self, call: Call, reason: CallEndReason, ended_by: str, now: float, out: list[Action]
    ) -> None:
        """End the whole call: record first (Persist), then every remaining member's
        terminal event."""
        if call.phase is CallPhase.ENDED:
            return
        log.info(
            "call %s: %s -> ENDED (%s by %s)", call.call_id, call.phase.name, reason.name, ended_by or "-"
        )
        call.phase = CallPhase.ENDED
        remaining = call.active_members()
        if reason is CallEndReason.CANCELED:
            cancelled = [m.user_id for m in remaining if m.state is MemberState.RINGING]
            if cancelled:
                # UserList after the change: the cancelled invitees are out.
                users = [u for u in self._users(call) if u["user_id"] not in cancelled]
                self._fact(
                    out,
                    call,
                    "member",
                    now,
                    {
                        "changes": [{"user_id": u, "action": "Cancel_Invite"} for u in cancelled],
                        "users": users,
                    },
                )
        for m in remaining:
            prev = m.state
            m.state = MemberState.ABSENT
            m.leave_time = now
            m.end_reason = reason
            if self.user_call.get(m.user_id) == call.call_id:
                del self.user_call[m.user_id]
            self._disarm_ring(call, m, out)
            self._terminal_for(out, call, m, prev, reason, ended_by, now)
        record = call.record(now, reason, ended_by)
        self._fact(out, call, "end", now, {"record": record})
        results = tuple((u, result_type_for(record, u)) for u in record.users())
        # The record goes first: the driver persists before it sends (§6.8).
        out.insert(0, Persist(FinishCall(record, results, call.ephemeral)))
        del self.calls[call.call_id]

    def _invite_user(self, inp: InviteUser, now: float, out: list[Action], touched: set[str]) -> list[str]:
        """Invite users into the call; return those who ring (busy ones are left out)."""
        dev = self._device(inp.device_id)
        call = self._call_for(dev, inp.call_id)
        self._check(call, dev, Op.INVITE)
        m = call.members[dev.user_id]
        timeout = self._validate_params(inp.params)
        ids = [
            u for u in self._clean_ids(inp.user_ids, dev.user_id) if call.state_of(u) is MemberState.ABSENT
        ]
        if not ids:
            raise _refuse(
                ErrorCode.PARAM_INVALID,
                "no one to invite: every user given is yourself or already in the call",
            )
        if len(call.active_members()) + len(ids) > MAX_MEMBERS:
            raise _refuse(
                ErrorCode.PARAM_INVALID,
                f"a call has at most {MAX_MEMBERS} members; {len(call.active_members())} are in it",
            )
        touched.add(call.call_id)
        return self._invite(call, m, ids, timeout, now, out, touched)

    def _join(self, inp: Join, now: float, out: list[Action], touched: set[str]) -> None:
        dev = self._device(inp.device_id)
        call = self._call_for(dev, inp.call_id)
        res = self._check(call, dev, Op.JOIN)
        me = dev.user_id
        if res is Outcome.ACCEPT:  # ringing here: joining answers
            m = call.members[me]
            if inp.device_id not in m.devices:
                m.devices.append(inp.device_id)
            touched.add(call.call_id)
            self._accept(call, m, inp.device_id, now, out, touched)
            return
        busy_in = self.user_call.get(me)
        if busy_in is not None:
            raise _refuse(
                ErrorCode.REQUEST_REFUSED,
                f"you are already in call {busy_in}; hang up before joining another",
            )
        group = self.groups.get(call.chat_group_id, frozenset()) if call.chat_group_id else frozenset()
        if me not in call.ever_invited and me not in group:
            raise _refuse(
                ErrorCode.NO_PERMISSION,
                f"you may not join call {call.call_id}: only users invited to it, or members "
                "of its chat group, can join; ask a member to invite_user() you",
            )
        if len(call.active_members()) >= MAX_MEMBERS:
            raise _refuse(ErrorCode.REQUEST_REFUSED, f"call {call.call_id} is full ({MAX_MEMBERS} members)")
        prev = call.members.get(me)
        if prev is not None:
            call.past.append(prev)
        m = Member(
            user_id=me,
            role=CallRole.CALLED,
            state=MemberState.RINGING,
            invite_time=now,
            invited_by="",
            devices=[inp.device_id],
            video=call.media_type is MediaType.VIDEO,
        )
        call.members[me] = m
        call.ever_invited.add(me)
        if me not in call.callees:
            call.callees.append(me)
        self.user_call[me] = call.call_id
        touched.add(call.call_id)
        if call.phase is CallPhase.RINGING:
            self._connect_caller(call, now, out)
        self._begin_leg(call, m, inp.device_id, now, out)
        self._member_fact(out, call, now, [(me, "Join")])

    def _switch_media(self, inp: SwitchMediaType, now: float, out: list[Action], touched: set[str]) -> None:
        dev = self._device(inp.device_id)
        call = self._call_for(dev, inp.call_id)
        self._check(call, dev, Op.SWITCH_MEDIA)
        if inp.media_type not in (MediaType.AUDIO, MediaType.VIDEO):
            raise _refuse(ErrorCode.PARAM_INVALID, "media_type must be AUDIO (1) or VIDEO (2)")
        if inp.media_type is call.media_type:
            raise _refuse(ErrorCode.REQUEST_REPEATED, f"the call is already {inp.media_type.name}")
        old = call.media_type
        call.media_type = inp.media_type
        touched.add(call.call_id)
        log.info("call %s: media %s -> %s", call.call_id, old.name, inp.media_type.name)
        self._emit(
            out,
            self._connected_devices(call),
            "on_call_media_type_changed",
            {
                "call_id": call.call_id,
                "old_call_media_type": int(old),
                "new_call_media_type": int(inp.media_type),
            },
        )
        for m in call.members.values():
            video = inp.media_type is MediaType.VIDEO
            if m.state is MemberState.ABSENT or m.video == video:
                continue
            m.video = video
            if m.state is MemberState.CONNECTED:
                self._emit(
                    out,
                    self._connected_devices(call, exclude=m.user_id),
                    "on_user_video_available",
                    {"call_id": call.call_id, "user_id": m.user_id, "is_video_available": video},
                )

    def _set_flag(self, inp: SetDeviceFlag, now: float, out: list[Action], touched: set[str]) -> None:
        dev = self._device(inp.device_id)
        call = self._call_for(dev, inp.call_id)
        self._check(call, dev, Op.DEVICE_FLAG)
        if inp.kind not in ("audio", "video"):
            raise _refuse(ErrorCode.PARAM_INVALID, "kind must be 'audio' or 'video'")
        if inp.kind == "video" and inp.on and call.media_type is not MediaType.VIDEO:
            raise _refuse(
                ErrorCode.SCENE_NOT_SUPPORTED,
                "this is an audio call; switch_call_media_type(VIDEO) before opening the camera",
            )
        m = call.members[dev.user_id]
        if (m.video if inp.kind == "video" else m.audio) == inp.on:
            return
        if inp.kind == "video":
            m.video = inp.on
        else:
            m.audio = inp.on
        touched.add(call.call_id)
        if m.state is MemberState.CONNECTED:
            self._emit(
                out,
                self._connected_devices(call, exclude=m.user_id),
                f"on_user_{inp.kind}_available",
                {"call_id": call.call_id, "user_id": m.user_id, f"is_{inp.kind}_available": inp.on},
            )

    def _signal(self, inp: Signal, out: list[Action]) -> None:
        dev = self._device(inp.device_id)
        call = self._call_for(dev, inp.call_id)
        me = call.members.get(dev.user_id)
        if me is None or me.state is MemberState.ABSENT:
            raise _refuse(
                ErrorCode.CALL_NOT_FOUND,
                f"not in call {call.call_id}: you were never in it or have left; "
                "signals flow only between connected members",
            )
        if me.state is not MemberState.CONNECTED:
            raise _refuse(
                ErrorCode.REQUEST_REFUSED,
                f"not connected to call {call.call_id} yet ({me.state.value}); "
                "send signals after on_call_begin",
            )
        if me.active != inp.device_id:
            raise _refuse(
                ErrorCode.REQUEST_REFUSED,
                f"user {dev.user_id} is in call {call.call_id} on another device; signal from that device",
            )
        if not valid_user_id(inp.to_user_id):
            raise _refuse(
                ErrorCode.PARAM_INVALID,
                f"invalid to_user_id {inp.to_user_id!r}: use 1-32 chars of [A-Za-z0-9_-]",
            )
        if inp.to_user_id == dev.user_id:
            raise _refuse(ErrorCode.PARAM_INVALID, "to_user_id is yourself; signal another member")
        check_signal_data(inp.data)
        target = call.members.get(inp.to_user_id)
        if target is None or target.state is not MemberState.CONNECTED or not target.active:
            raise _refuse(
                ErrorCode.REQUEST_REFUSED,
                f"user {inp.to_user_id} is not connected to call {call.call_id}; "
                "signal only users you got on_user_join for (and no on_user_leave since)",
            )
        out.append(
            Emit(
                target.active,
                "on_signal",
                {"call_id": call.call_id, "from_user_id": dev.user_id, "data": inp.data},
            )
        )

    def _set_self_info(self, inp: SetSelfInfo, now: float, out: list[Action]) -> None:
        dev = self._device(inp.device_id)
        if _utf8_len(inp.nickname) > MAX_NICKNAME_BYTES:
            raise _refuse(
                ErrorCode.PARAM_INVALID,
                f"nickname is {_utf8_len(inp.nickname)} bytes; the limit is {MAX_NICKNAME_BYTES}",
            )
        if _utf8_len(inp.avatar) > MAX_AVATAR_BYTES:
            raise _refuse(ErrorCode.PARAM_INVALID, f"avatar URL is over {MAX_AVATAR_BYTES} bytes")
        profile = (inp.nickname, inp.avatar)
        if self.profiles.get(dev.user_id, ("", "")) == profile:
            return  # unchanged: nothing to write
        if profile == ("", ""):
            del self.profiles[dev.user_id]
        else:
            self.profiles[dev.user_id] = profile
        out.append(Persist(SaveProfile(dev.user_id, inp.nickname, inp.avatar, now)))

    def _set_group(self, inp: SetGroupMembers, out: list[Action]) -> None:
        members = tuple(dict.fromkeys(inp.members))
        if not inp.group_id or len(inp.group_id) > MAX_GROUP_ID:
            raise _refuse(ErrorCode.PARAM_INVALID, f"group_id must be 1-{MAX_GROUP_ID} chars")
        for u in members:
            if not valid_user_id(u):
                raise _refuse(ErrorCode.PARAM_INVALID, f"invalid user id {u!r} in group members")
        if members:
            self.groups[inp.group_id] = frozenset(members)
        else:
            self.groups.pop(inp.group_id, None)
        out.append(Persist(SetGroup(inp.group_id, members)))

    # ------------------------------------------------------------------ timers

    def _timer(self, key: tuple[str, ...], now: float, out: list[Action], touched: set[str]) -> None:
        kind = key[0]
        if kind == "ring":
            _, cid, user = key
            call = self.calls.get(cid)
            if call is None:
                return
            m = call.members.get(user)
            if m is None:
                return
            m.ring_armed = False  # this timer, fired
            if outcome(m.state, Op.RING_TIMEOUT) is not Outcome.NO_RESPONSE:
                return
            if m.deadline > now:  # re-armed since; a stale timer
                m.ring_armed = True
                out.append(SetTimer(key, m.deadline))
                return
            self._leave(call, m, CallEndReason.NO_RESPONSE, user, now, out, touched)
        elif kind == "sig":
            dev = self.devices.get(key[1])
            if dev is None or dev.sig_expires_at > now:
                return
            dev.sig_armed = False  # this timer, fired
            out.append(Emit(dev.device_id, "on_user_sig_expired", {}))
            dev.in_grace = True
            out.append(SetTimer(("sig_grace", dev.device_id), now + self.sig_grace))
        elif kind == "sig_grace":
            dev = self.devices.get(key[1])
            if dev is None or dev.sig_expires_at > now:
                return
            dev.in_grace = False  # this timer, fired
            self._device_leaves(dev.device_id, now, out, touched, gone=True)
            out.append(
                CloseDevice(
                    dev.device_id,
                    ErrorCode.SIG_EXPIRED,
                    "your user sig expired and was not renewed in time; mint a new sig and call init() again",
                )
            )
