"""Wire ↔ Python for the client: pushes to observer calls, params and records.

Pure functions, no I/O. Decoding is lenient in the way the protocol asks (protocol.md
"Versioning"): unknown pushes and unknown fields are ignored, an unknown enum ordinal
becomes that enum's ``UNKNOWN``/``NONE`` member (logged), a missing argument gets its
type's empty value. A push that cannot be read at all is dropped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, TypeVar

from ringline.core.enums import (
    CallEndReason,
    CallResultType,
    CallRole,
    CallScene,
    MediaType,
    NetworkQuality,
)
from ringline.core.types import (
    CallObserverExtraInfo,
    CallParams,
    CallRecords,
    NetworkQualityInfo,
    RecentCallsFilter,
    RoomId,
)

__all__ = [
    "EVENT_ARGS",
    "Event",
    "decode_event",
    "filter_to_wire",
    "params_to_wire",
    "record_from_wire",
]

log = logging.getLogger("ringline.client")

_E = TypeVar("_E", bound=IntEnum)


@dataclass(frozen=True, slots=True)
class Event:
    """One push, ready for the observers: ``args`` in the order of docs/spec.md §4.

    ``call_id`` is the call the push belongs to (``None`` for device events); observers
    do not get it as an argument unless the event has it in its signature.
    """

    name: str
    seq: int | None
    call_id: str | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def _enum(kind: type[_E]) -> Callable[[object], _E]:
    def convert(value: object) -> _E:
        try:
            return kind(int(value))  # type: ignore[call-overload]
        except (TypeError, ValueError):
            log.warning("unknown %s value %r from the server; using 0", kind.__name__, value)
            return kind(0)

    return convert


def _str(value: object) -> str:
    return "" if value is None else str(value)


def _int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


def _float(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


def _bool(value: object) -> bool:
    return bool(value)


def _str_list(value: object) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


def _room_id(value: object) -> RoomId:
    if isinstance(value, Mapping):
        try:
            return RoomId.from_wire(dict(value))
        except (TypeError, ValueError):
            log.warning("unreadable room_id %r from the server", value)
    return RoomId()


_media = _enum(MediaType)
_reason = _enum(CallEndReason)
_role = _enum(CallRole)
_quality = _enum(NetworkQuality)
_scene = _enum(CallScene)
_result_type = _enum(CallResultType)

#: How each field of CallObserverExtraInfo is read from the wire ``info`` dict.
_INFO_FIELDS: dict[str, Callable[[object], Any]] = {
    "room_id": _room_id,
    "role": _role,
    "user_data": _str,
    "chat_group_id": _str,
    "ring_time_left": _float,
}
# Keep the table honest if the struct grows a field: unknown fields would be dropped.
assert set(_INFO_FIELDS) == {f.name for f in fields(CallObserverExtraInfo)}


def _info(value: object) -> CallObserverExtraInfo:
    if not isinstance(value, Mapping):
        return CallObserverExtraInfo()
    kwargs = {name: conv(value[name]) for name, conv in _INFO_FIELDS.items() if name in value}
    return CallObserverExtraInfo(**kwargs)


def _volume_map(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): _int(v) for k, v in value.items()}


def _quality_list(value: object) -> list[NetworkQualityInfo]:
    if not isinstance(value, list | tuple):
        return []
    out = []
    for item in value:
        if isinstance(item, Mapping):
            out.append(NetworkQualityInfo(_str(item.get("user_id")), _quality(item.get("quality", 0))))
    return out


_Arg = tuple[str, Callable[[object], Any]]
_USER: tuple[_Arg, ...] = (("user_id", _str),)

#: Observer arguments of every push, in call order (docs/spec.md §4, protocol.md "Pushes").
EVENT_ARGS: dict[str, tuple[_Arg, ...]] = {
    "on_error": (("code", _int), ("message", _str)),
    "on_call_received": (
        ("call_id", _str),
        ("caller_id", _str),
        ("callee_id_list", _str_list),
        ("media_type", _media),
        ("info", _info),
    ),
    "on_call_begin": (("call_id", _str), ("media_type", _media), ("info", _info)),
    "on_call_end": (
        ("call_id", _str),
        ("media_type", _media),
        ("reason", _reason),
        ("user_id", _str),
        ("total_time", _float),
        ("info", _info),
    ),
    "on_call_not_connected": (
        ("call_id", _str),
        ("media_type", _media),
        ("reason", _reason),
        ("user_id", _str),
        ("info", _info),
    ),
    "on_call_cancelled": _USER,
    "on_call_media_type_changed": (
        ("old_call_media_type", _media),
        ("new_call_media_type", _media),
    ),
    "on_user_inviting": _USER,
    "on_user_reject": _USER,
    "on_user_no_response": _USER,
    "on_user_line_busy": _USER,
    "on_user_join": _USER,
    "on_user_leave": _USER,
    "on_user_video_available": (("user_id", _str), ("is_video_available", _bool)),
    "on_user_audio_available": (("user_id", _str), ("is_audio_available", _bool)),
    "on_user_voice_volume_changed": (("volume_map", _volume_map),),
    "on_user_network_quality_changed": (("network_quality_list", _quality_list),),
    "on_kicked_offline": (),
    "on_user_sig_expired": (),
}


def decode_event(name: object, args: object, seq: int | None = None) -> Event | None:
    """Turn a push into an :class:`Event`, or ``None`` if the name is unknown.

    Unknown names are expected from newer servers and must be ignored by the caller.
    """
    if not isinstance(name, str) or name not in EVENT_ARGS:
        return None
    raw: Mapping[str, Any] = args if isinstance(args, Mapping) else {}
    values: list[Any] = []
    kwargs: dict[str, Any] = {}
    for arg, conv in EVENT_ARGS[name]:
        value = conv(raw.get(arg))
        values.append(value)
        kwargs[arg] = value
    call_id = raw.get("call_id")
    return Event(
        name=name,
        seq=seq,
        call_id=call_id if isinstance(call_id, str) and call_id else None,
        args=tuple(values),
        kwargs=kwargs,
    )


# --------------------------------------------------------------------------- requests


def params_to_wire(params: CallParams) -> dict[str, Any]:
    """``params`` of ``calls`` / ``invite_user`` (protocol.md "Requests")."""
    out: dict[str, Any] = {
        "timeout": params.timeout,
        "user_data": params.user_data,
        "chat_group_id": params.chat_group_id,
        "is_ephemeral_call": params.is_ephemeral_call,
    }
    if params.record:
        out["record"] = True
    if params.room_id is not None and not params.room_id.is_empty:
        out["room_id"] = params.room_id.to_wire()
    if params.offline_push_info is not None:
        out["offline_push_info"] = params.offline_push_info.to_wire()
    return out


def filter_to_wire(flt: RecentCallsFilter) -> dict[str, Any]:
    """Arguments of ``query_recent_calls``; unset bounds are left out."""
    out: dict[str, Any] = {"result_type": int(flt.result_type), "limit": flt.limit}
    if flt.begin is not None:
        out["begin"] = flt.begin
    if flt.end is not None:
        out["end"] = flt.end
    return out


def record_from_wire(d: Mapping[str, Any]) -> CallRecords:
    """One entry of ``query_recent_calls`` (field names of :class:`CallRecords`)."""
    return CallRecords(
        call_id=_str(d.get("call_id")),
        inviter=_str(d.get("inviter")),
        invite_list=_str_list(d.get("invite_list")),
        scene=_scene(d.get("scene", 0)),
        media_type=_media(d.get("media_type", 0)),
        group_id=_str(d.get("group_id")),
        role=_role(d.get("role", 0)),
        result=_result_type(d.get("result", 0)),
        begin_time=_int(d.get("begin_time")),
        total_time=_int(d.get("total_time")),
    )
