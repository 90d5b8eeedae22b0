"""Durable call records (docs/spec.md §6.8, §7) as the core produces them.

A record is written once, when the call ends, before any terminal event is sent.
Times are unix seconds as floats (the REST layer rounds to whole seconds). A user
may appear more than once in ``members``: each stint (invite → leave) is one entry,
so billable seconds are the sum of ``leave_time - accept_time`` over accepted stints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .enums import CallEndReason, CallResultType, CallRole, CallScene, MediaType
from .types import RoomId

__all__ = [
    "CallRecord",
    "CallResult",
    "MemberRecord",
    "call_result_for",
    "result_type_for",
]


class CallResult(StrEnum):
    """The v4 ``CallResult`` of a whole call."""

    CANCEL = "Cancel"
    REJECT = "Reject"
    NOT_ANSWER = "NotAnswer"
    NORMAL_END = "NormalEnd"
    CALL_BUSY = "CallBusy"
    INTERRUPT = "Interrupt"
    OFFLINE = "Offline"
    END_BY_SERVER = "EndByServer"


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One stint of one user in a call. ``accept_time`` 0 = never connected."""

    user_id: str
    role: CallRole
    invite_time: float
    accept_time: float
    leave_time: float
    end_reason: CallEndReason
    invited_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "role": int(self.role),
            "invite_time": self.invite_time,
            "accept_time": self.accept_time,
            "leave_time": self.leave_time,
            "end_reason": int(self.end_reason),
            "invited_by": self.invited_by,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemberRecord:
        return cls(
            user_id=str(d["user_id"]),
            role=CallRole(int(d["role"])),
            invite_time=float(d["invite_time"]),
            accept_time=float(d["accept_time"]),
            leave_time=float(d["leave_time"]),
            end_reason=CallEndReason(int(d["end_reason"])),
            invited_by=str(d.get("invited_by", "")),
        )

    @property
    def billable_seconds(self) -> float:
        return max(0.0, self.leave_time - self.accept_time) if self.accept_time else 0.0


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_id: str
    sdk_app_id: int
    caller: str
    media_type: MediaType
    scene: CallScene
    chat_group_id: str
    room_id: RoomId
    start_time: float
    accept_time: float
    end_time: float
    result: CallResult
    end_reason: CallEndReason
    ended_by: str
    callees: tuple[str, ...]
    members: tuple[MemberRecord, ...] = field(default_factory=tuple)
    user_data: str = ""

    @property
    def call_type(self) -> str:
        """``SingleCall`` for one callee, ``MultiCall`` otherwise (v4 ``CallType``)."""
        return "SingleCall" if len(self.callees) <= 1 and not self.chat_group_id else "MultiCall"

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "sdk_app_id": self.sdk_app_id,
            "caller": self.caller,
            "media_type": int(self.media_type),
            "scene": int(self.scene),
            "chat_group_id": self.chat_group_id,
            "room_id": self.room_id.to_wire(),
            "start_time": self.start_time,
            "accept_time": self.accept_time,
            "end_time": self.end_time,
            "result": self.result.value,
            "end_reason": int(self.end_reason),
            "ended_by": self.ended_by,
            "callees": list(self.callees),
            "members": [m.to_dict() for m in self.members],
            "user_data": self.user_data,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CallRecord:
        return cls(
            call_id=str(d["call_id"]),
            sdk_app_id=int(d["sdk_app_id"]),
            caller=str(d["caller"]),
            media_type=MediaType(int(d["media_type"])),
            scene=CallScene(int(d["scene"])),
            chat_group_id=str(d.get("chat_group_id", "")),
            room_id=RoomId.from_wire(d.get("room_id", {})),
            start_time=float(d["start_time"]),
            accept_time=float(d["accept_time"]),
            end_time=float(d["end_time"]),
            result=CallResult(d["result"]),
            end_reason=CallEndReason(int(d["end_reason"])),
            ended_by=str(d.get("ended_by", "")),
            callees=tuple(str(x) for x in d.get("callees", [])),
            members=tuple(MemberRecord.from_dict(m) for m in d.get("members", [])),
            user_data=str(d.get("user_data", "")),
        )

    def users(self) -> list[str]:
        """Every user of the call, caller first, each once."""
        seen: dict[str, None] = {self.caller: None}
        for m in self.members:
            seen.setdefault(m.user_id, None)
        for c in self.callees:
            seen.setdefault(c, None)
        return list(seen)


def call_result_for(*, ever_connected: bool, end_reason: CallEndReason) -> CallResult:
    """The v4 ``CallResult`` of a call from whether it connected and why it ended."""
    if end_reason is CallEndReason.END_BY_SERVER:
        return CallResult.END_BY_SERVER
    if ever_connected:
        if end_reason is CallEndReason.OFFLINE:
            return CallResult.OFFLINE
        return CallResult.NORMAL_END
    return {
        CallEndReason.CANCELED: CallResult.CANCEL,
        CallEndReason.REJECT: CallResult.REJECT,
        CallEndReason.OTHER_DEVICE_REJECT: CallResult.REJECT,
        CallEndReason.NO_RESPONSE: CallResult.NOT_ANSWER,
        CallEndReason.LINE_BUSY: CallResult.CALL_BUSY,
        CallEndReason.OFFLINE: CallResult.OFFLINE,
    }.get(end_reason, CallResult.INTERRUPT)


def result_type_for(record: CallRecord, user_id: str) -> CallResultType:
    """How ``user_id`` sees the call in recent calls: OUTGOING, INCOMING or MISSED.

    The caller sees OUTGOING. A callee who connected at least once, or who rejected
    the call themselves, sees INCOMING; any other callee (no answer, busy, cancelled)
    sees MISSED.
    """
    if user_id == record.caller:
        return CallResultType.OUTGOING
    stints = [m for m in record.members if m.user_id == user_id]
    if not stints:
        return CallResultType.UNKNOWN
    if any(m.accept_time or m.end_reason is CallEndReason.REJECT for m in stints):
        return CallResultType.INCOMING
    return CallResultType.MISSED
