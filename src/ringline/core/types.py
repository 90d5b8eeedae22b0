"""Structs of the call contract (docs/spec.md §2), snake_case of the vendor's names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NewType

from .enums import CallResultType, CallRole, CallScene, MediaType, NetworkQuality

__all__ = [
    "CallId",
    "CallObserverExtraInfo",
    "CallParams",
    "CallRecords",
    "DeviceId",
    "NetworkQualityInfo",
    "OfflinePushInfo",
    "RecentCallsFilter",
    "RoomId",
    "UserId",
]

CallId = NewType("CallId", str)
UserId = NewType("UserId", str)
DeviceId = NewType("DeviceId", str)


@dataclass(frozen=True, slots=True)
class RoomId:
    """A media room: exactly one of ``int_room_id`` (> 0) or ``str_room_id`` is set."""

    int_room_id: int = 0
    str_room_id: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"int_room_id": self.int_room_id, "str_room_id": self.str_room_id}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> RoomId:
        return cls(int(d.get("int_room_id", 0) or 0), str(d.get("str_room_id", "") or ""))

    @property
    def is_empty(self) -> bool:
        return self.int_room_id == 0 and self.str_room_id == ""


@dataclass(frozen=True, slots=True)
class OfflinePushInfo:
    """Push content for offline callees. Ringline stores and forwards it; it sends no push."""

    title: str = ""
    desc: str = ""
    extension: str = ""
    ignore_ios_badge: bool = False
    ios_sound: str = ""
    android_sound: str = ""
    is_disable_push: bool = False
    ios_push_type: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "desc": self.desc,
            "extension": self.extension,
            "ignore_ios_badge": self.ignore_ios_badge,
            "ios_sound": self.ios_sound,
            "android_sound": self.android_sound,
            "is_disable_push": self.is_disable_push,
            "ios_push_type": self.ios_push_type,
        }


@dataclass(frozen=True, slots=True)
class CallParams:
    """Options of ``calls`` / ``invite_user``.

    ``timeout`` is the ring timeout per invitee in seconds (0 = server default, 30;
    1..600 allowed); ``user_data`` is at most 1000 bytes of UTF-8. ``record``: Janus
    records the call and the server makes one file of it (docs/recording.md).
    """

    room_id: RoomId | None = None
    timeout: int = 30
    user_data: str = ""
    offline_push_info: OfflinePushInfo | None = None
    chat_group_id: str = ""
    is_ephemeral_call: bool = False
    #: record the call (docs/recording.md): it goes through the server's SFU, which the
    #: server must have (``ringline serve --sfu``), even with two members
    record: bool = False


@dataclass(frozen=True, slots=True)
class CallObserverExtraInfo:
    """Extra info delivered with received/begin/end/not-connected events.

    ``ring_time_left`` (Ringline) is set on ``on_call_received``: seconds until the
    invitation times out, so a device that logs in late shows the true remaining time.
    """

    room_id: RoomId = field(default_factory=RoomId)
    role: CallRole = CallRole.NONE
    user_data: str = ""
    chat_group_id: str = ""
    ring_time_left: float = 0.0


@dataclass(frozen=True, slots=True)
class NetworkQualityInfo:
    user_id: str
    quality: NetworkQuality


@dataclass(frozen=True, slots=True)
class RecentCallsFilter:
    """Filter of ``query_recent_calls``: unix-second bounds and a result type (UNKNOWN = all)."""

    begin: float | None = None
    end: float | None = None
    result_type: CallResultType = CallResultType.UNKNOWN
    limit: int = 50


@dataclass(frozen=True, slots=True)
class CallRecords:
    """One entry of a user's recent calls. ``begin_time`` is unix ms, ``total_time`` seconds."""

    call_id: str
    inviter: str
    invite_list: list[str]
    scene: CallScene
    media_type: MediaType
    group_id: str
    role: CallRole
    result: CallResultType
    begin_time: int
    total_time: int
