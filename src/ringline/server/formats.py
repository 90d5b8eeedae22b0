"""The JSON shapes of call records shared by the REST API and the callbacks (docs/spec.md §7).

Pure functions, no I/O: :func:`record_to_v4` (``CallRecord`` of ``get_record_by_callid``
and of ``Call.CallbackAfterEndCall``), :func:`record_to_v1` (v1 field names),
:func:`member_result` (the readable ``Result`` of one stint in ``MemberList``) and
:func:`call_info_to_v4` (a live call, as ``get_call_info`` answers it) and
:func:`live_call_to_v4` (one entry of ``get_live_calls``).
"""

from __future__ import annotations

from typing import Any

from ..core.enums import CallEndReason, CallRole, MediaType
from ..core.records import CallRecord, MemberRecord
from .rest_contract import V1_CALL_RESULTS

__all__ = [
    "call_info_to_v4",
    "live_call_to_v4",
    "member_result",
    "record_room",
    "record_to_v1",
    "record_to_v4",
    "unix_s",
]


def unix_s(t: float) -> int:
    """Unix seconds as an integer (0 stays 0: "never")."""
    return max(0, int(t))


def record_room(record: CallRecord) -> tuple[str, int]:
    if record.room_id.int_room_id:
        return str(record.room_id.int_room_id), 1
    return record.room_id.str_room_id, 2


_NOT_CONNECTED_RESULT: dict[CallEndReason, str] = {
    CallEndReason.REJECT: "Reject",
    CallEndReason.OTHER_DEVICE_REJECT: "Reject",
    CallEndReason.NO_RESPONSE: "NotAnswer",
    CallEndReason.LINE_BUSY: "LineBusy",
    CallEndReason.CANCELED: "Cancel",
    CallEndReason.HANGUP: "Cancel",
    CallEndReason.OFFLINE: "Offline",
    CallEndReason.END_BY_SERVER: "EndByServer",
    CallEndReason.OTHER_DEVICE_ACCEPTED: "Accept",
}


def member_result(record: CallRecord, member: MemberRecord) -> str:
    """How one stint of one member ended, as the readable ``Result`` of ``MemberList``.

    A stint that connected (``accept_time`` > 0):

    * ``EndByServer``: an admin ended the call, or the server closed it after a crash;
    * ``Accept``: the member stayed until the call ended because of someone else
      (``EndReason`` says why: 1 the other side hung up, 4 the other side went offline);
    * ``Offline``: this member's device went silent (or its sig expired) and the leg ended;
    * ``Hangup``: this member hung up (or was pushed out by a login elsewhere).

    A stint that never connected: ``Reject``, ``NotAnswer``, ``LineBusy``, ``Offline``,
    ``EndByServer``, or ``Cancel`` (the caller cancelled, or the call ended while this
    member was still ringing). For the caller of a call nobody answered, it is the
    call's outcome (``Reject`` when the callee rejected, and so on).
    """
    reason = member.end_reason
    if member.accept_time > 0:
        if reason is CallEndReason.END_BY_SERVER:
            return "EndByServer"
        if member.leave_time >= record.end_time and member.user_id != record.ended_by:
            return "Accept"
        return "Offline" if reason is CallEndReason.OFFLINE else "Hangup"
    return _NOT_CONNECTED_RESULT.get(reason, "Unknown")


def record_to_v4(record: CallRecord) -> dict[str, Any]:
    """A record as the v4 ``CallRecord`` JSON, plus Ringline's ``MemberList``.

    ``CalleeList_Account`` is every member of the call, the caller first (as the
    vendor documents it: "member list", its sample includes the caller), then every
    callee ever invited or joined. Times are whole unix seconds (truncated);
    ``AcceptTime`` 0 means never connected.
    ``MemberList`` has one entry per stint (a user who left and came back has two), in
    invite order, caller first; billable seconds of a stint are ``LeaveTime - AcceptTime``.
    """
    room, room_type = record_room(record)
    return {
        "CallId": record.call_id,
        "Caller_Account": record.caller,
        "MediaType": "Video" if record.media_type is MediaType.VIDEO else "Audio",
        "CallType": record.call_type,
        "StartTime": unix_s(record.start_time),
        "AcceptTime": unix_s(record.accept_time),
        "EndTime": unix_s(record.end_time),
        "CallResult": record.result.value,
        # The vendor documents this as the call's member list and its sample lists
        # the caller in it: the caller first, then every callee.
        "CalleeList_Account": [record.caller, *(u for u in record.callees if u != record.caller)],
        "RoomId": room,
        "RoomIdType": room_type,
        "MemberList": [
            {
                "User_Account": x.user_id,
                "Role": "Caller" if x.role is CallRole.CALLER else "Callee",
                "Result": member_result(record, x),
                "InviteTime": unix_s(x.invite_time),
                "AcceptTime": unix_s(x.accept_time),
                "LeaveTime": unix_s(x.leave_time),
                "EndReason": int(x.end_reason),
            }
            for x in record.members
        ],
    }


def record_to_v1(record: CallRecord) -> dict[str, Any]:
    """A record with the v1 field names (``callResult`` from :data:`.rest_contract.V1_CALL_RESULTS`).

    ``callees`` are every callee ever invited or joined, without the caller (as in the
    vendor's v1 sample, which names the caller apart); ``totalUserNumber`` counts every
    user of the call, caller included.
    """
    room, _ = record_room(record)
    return {
        "callId": record.call_id,
        "sdkAppId": record.sdk_app_id,
        "mediaType": "video" if record.media_type is MediaType.VIDEO else "audio",
        "roomId": room,
        "startCallTs": unix_s(record.start_time),
        "acceptTs": unix_s(record.accept_time),
        "endTs": unix_s(record.end_time),
        "caller": record.caller,
        "totalUserNumber": len(record.users()),
        "callType": "single" if record.call_type == "SingleCall" else "group",
        "callResult": V1_CALL_RESULTS[record.result.value],
        "callees": list(record.callees),
    }


def call_info_to_v4(info: dict[str, Any]) -> dict[str, Any]:
    """A live call (:meth:`~ringline.core.machine.Switchboard.call_info`) as the answer
    of ``v4/call_engine_http_srv/get_call_info``.

    The vendor's shape of a call and its members, as in ``Call.CallbackAfterStartCall``:
    ``CallInfo {CallId, CallMediaType, ChatGroupId, RoomId, RoomIdType}`` and ``UserList
    [{User_Account, Status}]`` (``Calling`` or ``Waiting``, the members still in the
    call). Ringline adds to ``CallInfo``: ``Caller_Account``, ``CallType``
    (``SingleCall`` / ``MultiCall``, as in records), ``CallStatus`` (``Ringing`` until
    someone connects, then ``Connected``), ``StartTime`` and ``AcceptTime`` (unix
    seconds, 0 = nobody connected yet).
    """
    room = info["room_id"]
    if room.get("int_room_id"):
        room_id, room_type = str(room["int_room_id"]), 1
    else:
        room_id, room_type = str(room.get("str_room_id", "")), 2
    single = len(info["callees"]) <= 1 and not info["chat_group_id"]
    return {
        "CallInfo": {
            "CallId": info["call_id"],
            "CallMediaType": "Video" if info["media_type"] == MediaType.VIDEO else "Audio",
            "ChatGroupId": info["chat_group_id"],
            "RoomId": room_id,
            "RoomIdType": room_type,
            "Caller_Account": info["caller"],
            "CallType": "SingleCall" if single else "MultiCall",
            "CallStatus": "Connected" if info["phase"] == "connected" else "Ringing",
            "StartTime": unix_s(info["start_time"]),
            "AcceptTime": unix_s(info["accept_time"]),
        },
        "UserList": [{"User_Account": u["user_id"], "Status": u["status"]} for u in info["users"]],
    }


_MEMBER_STATES = {"dialing": "Dialing", "ringing": "Ringing", "connected": "Connected"}


def live_call_to_v4(info: dict[str, Any]) -> dict[str, Any]:
    """A live call as one entry of ``v4/call_engine_http_srv/get_live_calls``: what
    :func:`call_info_to_v4` gives, plus Ringline's ``MemberList`` ``[{User_Account,
    Role, State, InviteTime, AcceptTime}]`` (``State``: ``Dialing`` for a caller nobody
    answered yet, ``Ringing``, ``Connected``; times in unix seconds, 0 = not yet)."""
    return {
        **call_info_to_v4(info),
        "MemberList": [
            {
                "User_Account": x["user_id"],
                "Role": "Caller" if x["role"] == CallRole.CALLER else "Callee",
                "State": _MEMBER_STATES[x["state"]],
                "InviteTime": unix_s(x["invite_time"]),
                "AcceptTime": unix_s(x["accept_time"]),
            }
            for x in info["members"]
        ],
    }
