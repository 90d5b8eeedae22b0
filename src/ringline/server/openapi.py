"""The OpenAPI 3.1 document of the REST API, made from one table of its routes.

:data:`ENDPOINTS` lists every HTTP route the server answers: the admin commands of the
v4 and v1 APIs (``POST /v4/{service}/{command}``, ``POST /v1/{service}/{command}``),
``GET /healthz``, ``GET /openapi.json`` and the WebSocket ``GET /v1/ws``. Each entry holds
the request and response JSON Schemas, the error codes the route may answer, a request
example and its documentation page. :mod:`.rest` refuses to start unless it serves
exactly the admin commands listed here, and :func:`build_document` turns the table into
the document served at ``GET /openapi.json``, so the document cannot drift from the
server. The codes, vocabularies and limits the schemas use are the REST contract's
(:mod:`.rest_contract`), which the server's handlers use too.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from .. import __version__
from ..core.enums import CallEndReason
from ..core.protocol import MAX_CALL_ID, MAX_GROUP_ID, USER_ID
from .rest_contract import (
    AUTH_ERRORS,
    DELIVERY_STATES,
    E_BAD_FIELD,
    E_BAD_JSON,
    E_INTERNAL,
    E_NO_RECORDING,
    E_NOT_FOUND,
    E_V1_BAD_ADDRESS,
    E_V1_NO_CONFIG,
    MAX_DELIVERIES_PER_PAGE,
    MAX_PAGE,
    MAX_PER_PAGE,
    MAX_UNIX_S,
    MEMBER_RESULTS,
    V1_CALL_RESULTS,
    V1_CALLBACK_ACTIONS,
    V4_CALL_RESULTS,
    V4_CALLBACK_COMMANDS,
)
from .web import WEB_ROOT

__all__ = ["ENDPOINTS", "Endpoint", "build_document", "openapi_handler"]

Schema = dict[str, Any]

# --------------------------------------------------------------------------- schemas

_STR: Final[Schema] = {"type": "string"}
_INT: Final[Schema] = {"type": "integer"}
_UNIX_S: Final[Schema] = {"type": "integer", "minimum": 0, "maximum": MAX_UNIX_S}
_USER_ID: Final[Schema] = {
    "type": "string",
    "pattern": f"^{USER_ID.pattern}$",
    "description": "1-32 characters of [A-Za-z0-9_-]",
}
_CALL_ID: Final[Schema] = {"type": "string", "minLength": 1, "maxLength": MAX_CALL_ID}
_GROUP_ID: Final[Schema] = {"type": "string", "minLength": 1, "maxLength": MAX_GROUP_ID}
_HTTP_URL: Final[Schema] = {
    "type": "string",
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#]+[^\\s]*$",
    "maxLength": 2048,
    "description": "an http:// or https:// URL with a host, at most 2048 characters",
}
_EMPTY: Final[Schema] = {"type": "object", "description": "no fields"}


def _obj(props: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    out: Schema = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    out.update(extra)
    return out


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_MEMBER_REF: Final[Schema] = {
    "anyOf": [_USER_ID, _obj({"Member_Account": _USER_ID}, ("Member_Account",))],
    "description": 'a user id, or {"Member_Account": user id}',
}

_EVENT_ID: Final[Schema] = {"type": "string", "minLength": 1, "maxLength": 64}
_DELIVERY_STATE: Final[Schema] = {"enum": list(DELIVERY_STATES)}
_UNIX_F: Final[Schema] = {"type": "number", "minimum": 0, "description": "unix seconds"}
_UNIX_F_OR_NULL: Final[Schema] = {"type": ["number", "null"], "minimum": 0, "description": "unix seconds"}

_COMPONENT_SCHEMAS: Final[dict[str, Schema]] = {
    "Delivery": _obj(
        {
            "EventId": {**_STR, "description": "EventId and webhook-id of the callback (same on retries)"},
            "CallId": _STR,
            "Sequence": {"type": "integer", "minimum": 0},
            "Url": _STR,
            "CallbackCommand": {**_STR, "description": "the v4 command or v1 command of the callback"},
            "State": {**_DELIVERY_STATE, "description": "docs/rest/deliveries.md"},
            "Attempts": {"type": "integer", "minimum": 0},
            "CreateTime": {**_UNIX_F, "description": "when the event happened (unix s)"},
            "NextAttemptTime": {
                **_UNIX_F_OR_NULL,
                "description": "when it is tried next (Pending only, else null)",
            },
            "LastAttemptTime": _UNIX_F_OR_NULL,
            "LastStatus": {"type": ["integer", "null"], "description": "HTTP status of the last attempt"},
            "LastError": {**_STR, "description": "why the last attempt failed; empty if it did not"},
            "FinishTime": _UNIX_F_OR_NULL,
            "Body": {"type": "object", "description": "the JSON body, as sent"},
        },
        (
            "EventId",
            "CallId",
            "Sequence",
            "Url",
            "CallbackCommand",
            "State",
            "Attempts",
            "CreateTime",
            "NextAttemptTime",
            "LastAttemptTime",
            "LastStatus",
            "LastError",
            "FinishTime",
            "Body",
        ),
        description="one callback to one url, as the outbox knows it",
    ),
    "MemberV4": _obj(
        {
            "User_Account": _STR,
            "Role": {"enum": ["Caller", "Callee"]},
            "Result": {"enum": list(MEMBER_RESULTS), "description": "how this stint ended (docs/rest.md)"},
            "InviteTime": _UNIX_S,
            "AcceptTime": {**_UNIX_S, "description": "0 = never connected in this stint"},
            "LeaveTime": _UNIX_S,
            "EndReason": {
                "type": "integer",
                "enum": [int(r) for r in CallEndReason],
                "description": "CallEndReason ordinal (docs/spec.md §2)",
            },
        },
        ("User_Account", "Role", "Result", "InviteTime", "AcceptTime", "LeaveTime", "EndReason"),
        description="one stint of one user in the call; billable seconds = LeaveTime - AcceptTime",
    ),
    "LiveCallInfoV4": _obj(
        {
            "CallId": _STR,
            "CallMediaType": {"enum": ["Audio", "Video"]},
            "ChatGroupId": _STR,
            "RoomId": _STR,
            "RoomIdType": {"type": "integer", "enum": [1, 2], "description": "1 numeric, 2 string"},
            "Caller_Account": _STR,
            "CallType": {"enum": ["SingleCall", "MultiCall"]},
            "CallStatus": {
                "enum": ["Ringing", "Connected"],
                "description": "Connected once someone connected",
            },
            "StartTime": _UNIX_S,
            "AcceptTime": {**_UNIX_S, "description": "first connect; 0 = nobody connected yet"},
        },
        (
            "CallId",
            "CallMediaType",
            "ChatGroupId",
            "RoomId",
            "RoomIdType",
            "Caller_Account",
            "CallType",
            "CallStatus",
            "StartTime",
            "AcceptTime",
        ),
        description="a live call; the vendor's CallInfo fields plus Ringline's",
    ),
    "LiveCallV4": _obj(
        {
            "CallInfo": _ref("LiveCallInfoV4"),
            "UserList": _ref("UserListV4"),
            "MemberList": {
                "type": "array",
                "items": _obj(
                    {
                        "User_Account": _STR,
                        "Role": {"enum": ["Caller", "Callee"]},
                        "State": {
                            "enum": ["Dialing", "Ringing", "Connected"],
                            "description": "Dialing: the caller, before anyone connected",
                        },
                        "InviteTime": _UNIX_S,
                        "AcceptTime": {**_UNIX_S, "description": "0 = not connected (yet)"},
                    },
                    ("User_Account", "Role", "State", "InviteTime", "AcceptTime"),
                ),
                "description": "Ringline's: the members still in the call, caller first, with their state",
            },
        },
        ("CallInfo", "UserList", "MemberList"),
        description="a live call: what get_call_info answers, plus MemberList",
    ),
    "UserListV4": {
        "type": "array",
        "items": _obj(
            {"User_Account": _STR, "Status": {"enum": ["Calling", "Waiting"]}},
            ("User_Account", "Status"),
        ),
        "description": "members still in the call: Calling (connected, or the caller) or Waiting (ringing)",
    },
    "RecordingV4": _obj(
        {
            "RecordingId": {**_STR, "description": "the call id"},
            "CallId": _STR,
            "State": {"enum": ["Pending", "Converting", "Ready", "Failed"]},
            "CreatedTime": {
                **_UNIX_S,
                "description": "when the call's recording ended (its room was destroyed)",
            },
            "Attempts": {"type": "integer", "minimum": 0},
            "Errors": {
                "type": "array",
                "items": _obj(
                    {"Attempt": {"type": "integer"}, "Time": _UNIX_S, "Error": _STR},
                    ("Attempt", "Time", "Error"),
                ),
                "description": "each failed conversion attempt's error",
            },
            "Duration": {"type": "number", "minimum": 0, "description": "seconds (Ready only)"},
            "Size": {"type": "integer", "minimum": 0, "description": "bytes (Ready only)"},
            "MediaType": {"enum": ["Audio", "Video"], "description": "Ready only"},
            "Format": {"enum": ["webm", "ogg"], "description": "WebM (VP8 + Opus) or Ogg Opus; Ready only"},
        },
        ("RecordingId", "CallId", "State", "CreatedTime", "Attempts", "Errors"),
    ),
    "CallRecordV4": _obj(
        {
            "CallId": _STR,
            "Caller_Account": _STR,
            "MediaType": {"enum": ["Audio", "Video"]},
            "CallType": {"enum": ["SingleCall", "MultiCall"]},
            "StartTime": _UNIX_S,
            "AcceptTime": {**_UNIX_S, "description": "first connect; 0 = never connected"},
            "EndTime": _UNIX_S,
            "CallResult": {"enum": list(V4_CALL_RESULTS)},
            "CalleeList_Account": {
                "type": "array",
                "items": _STR,
                "description": "every member of the call, the caller first (the vendor's member list)",
            },
            "RoomId": _STR,
            "RoomIdType": {"type": "integer", "enum": [1, 2], "description": "1 numeric, 2 string"},
            "MemberList": {"type": "array", "items": _ref("MemberV4")},
        },
        (
            "CallId",
            "Caller_Account",
            "MediaType",
            "CallType",
            "StartTime",
            "AcceptTime",
            "EndTime",
            "CallResult",
            "CalleeList_Account",
            "RoomId",
            "RoomIdType",
            "MemberList",
        ),
    ),
    "CallRecordV1": _obj(
        {
            "callId": _STR,
            "sdkAppId": _INT,
            "mediaType": {"enum": ["audio", "video"]},
            "roomId": _STR,
            "startCallTs": _UNIX_S,
            "acceptTs": {**_UNIX_S, "description": "0 = never connected"},
            "endTs": _UNIX_S,
            "caller": _STR,
            "totalUserNumber": {"type": "integer", "minimum": 1},
            "callType": {"enum": ["single", "group"]},
            "callResult": {"enum": list(V1_CALL_RESULTS.values())},
            "callees": {"type": "array", "items": _STR},
        },
        (
            "callId",
            "sdkAppId",
            "mediaType",
            "roomId",
            "startCallTs",
            "acceptTs",
            "endTs",
            "caller",
            "totalUserNumber",
            "callType",
            "callResult",
            "callees",
        ),
    ),
    "V4Config": _obj(
        {
            "Url": {"type": "string", "description": '"" when no callback is configured'},
            "CallbackCommandList": {"type": "array", "items": {"enum": list(V4_CALLBACK_COMMANDS)}},
        },
        ("Url", "CallbackCommandList"),
    ),
}

_FILTER_RESULTS_V4: Final[Schema] = {
    "anyOf": [
        {"enum": list(V4_CALL_RESULTS)},
        {"type": "array", "items": {"enum": list(V4_CALL_RESULTS)}},
    ],
    "description": "one CallResult or a list of them (an empty list = any)",
}
_FILTER_RESULTS_V1: Final[Schema] = {
    "anyOf": [
        {"enum": list(V1_CALL_RESULTS.values())},
        {"type": "array", "items": {"enum": list(V1_CALL_RESULTS.values())}},
    ],
    "description": "one callResult or a list of them (an empty list = any)",
}
_V4_CALLBACK_BODY: Final[Schema] = _obj(
    {
        "Url": _HTTP_URL,
        "CallbackCommandList": {
            "type": "array",
            "minItems": 1,
            "items": {"enum": list(V4_CALLBACK_COMMANDS)},
        },
    },
    ("Url", "CallbackCommandList"),
)
_V1_CALLBACK_BODY: Final[Schema] = _obj(
    {
        "address": _HTTP_URL,
        "actions": {"type": "array", "minItems": 1, "items": {"enum": list(V1_CALLBACK_ACTIONS)}},
    },
    ("address", "actions"),
)
_V1_CONFIG: Final[Schema] = _obj(
    {"address": _STR, "actions": {"type": "array", "items": {"enum": list(V1_CALLBACK_ACTIONS)}}},
    ("address", "actions"),
)

# --------------------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route.

    ``api``: ``v4`` / ``v1`` (admin commands: POST, query-string auth, the API's
    envelope, HTTP 200 for success and failure alike), or ``http`` (plain GET routes).
    For admin commands ``response`` is the schema of the envelope's ``Response`` (v4) or
    ``data`` (v1); ``errors`` are the codes the command answers besides
    :data:`AUTH_ERRORS`, ``E_BAD_JSON`` and ``E_BAD_FIELD`` (which every command may
    answer: a lone surrogate, NaN or a 65-bit integer anywhere in the body). ``doc`` is
    the page under ``docs/``.
    """

    api: str
    method: str
    path: str
    operation_id: str
    summary: str
    doc: str
    response: Schema
    request: Schema | None = None
    errors: tuple[int, ...] = ()
    example: dict[str, Any] | None = None
    description: str = ""
    tags: tuple[str, ...] = field(default=())
    file_types: tuple[str, ...] = ()
    """An admin command that answers a file on success: its content types (errors keep the
    envelope; an unknown file gets it with HTTP 404)."""
    query: tuple[tuple[str, str, Schema], ...] = ()
    """Query parameters of a plain (``http``) route: (name, description, schema)."""
    http_errors: tuple[int, ...] = ()
    """HTTP statuses a plain (``http``) route answers with ``{"error": <what to do>}``."""

    @property
    def command(self) -> str:
        """``service/command`` of an admin command (the path after ``/v4/`` or ``/v1/``)."""
        return self.path.split("/", 2)[2]


def _command(
    api: str,
    command: str,
    summary: str,
    doc: str,
    request: Schema,
    response: Schema,
    errors: tuple[int, ...],
    example: dict[str, Any],
    tag: str,
    description: str = "",
    file_types: tuple[str, ...] = (),
) -> Endpoint:
    """An admin command ``POST /{api}/{command}``."""
    return Endpoint(
        api=api,
        method="post",
        path=f"/{api}/{command}",
        operation_id=f"{api}_" + command.replace("/", "__"),
        summary=summary,
        doc=doc,
        request=request,
        response=response,
        errors=errors,
        example=example,
        description=description,
        tags=(tag,),
        file_types=file_types,
    )


def _v4(*args: Any, **kwargs: Any) -> Endpoint:
    return _command("v4", *args, **kwargs)


def _v1(*args: Any, **kwargs: Any) -> Endpoint:
    return _command("v1", *args, **kwargs)


_CID_EXAMPLE = "9f0c5b1e-2d5b-4c61-8f0e-3f1c2a7b9d10"
_GROUPS = "v4 chat groups"
_RECORDS_V4 = "v4 call records"
_CALLBACK_V4 = "v4 callback configuration"
_RECORDS_V1 = "v1 call records"
_CALLBACK_V1 = "v1 callback configuration"
_DELIVERIES = "v4 callback deliveries"
_RECORDINGS = "v4 recordings"


_SFU_TURN_QUERY = (
    ("service", "turn (the default)", {"enum": ["turn"]}),
    ("key", "the SFU secret (--sfu-secret; Janus's turn_rest_api_key)", _STR),
    ("api", "the same key, as Janus also sends it", _STR),
    ("username", "ignored: the credential is always the user janus's", _STR),
)
_SFU_TURN: Schema = _obj(
    {
        "username": {**_STR, "description": "<expiry unix s>:janus"},
        "password": {**_STR, "description": "base64 HMAC-SHA1 of the username under --turn-secret"},
        "ttl": {"type": "integer", "minimum": 1, "description": "seconds it is valid (--turn-ttl)"},
        "uris": {"type": "array", "items": _STR, "description": "the --turn-url servers"},
    },
    ("username", "password", "ttl", "uris"),
)


def _sfu_turn_endpoint(method: str) -> Endpoint:
    """The TURN REST API route Janus asks (``GET`` with a query, or ``POST``)."""
    return Endpoint(
        api="http",
        method=method,
        path="/sfu/turn-credentials",
        operation_id="sfu_turn_credentials" + ("_post" if method == "post" else ""),
        summary="TURN credentials for Janus (its turn_rest_api)"
        + (", fields as a form body" if method == "post" else ""),
        doc="sfu.md",
        response=_SFU_TURN,
        description=(
            "Janus asks it (service=turn, key or api = the SFU secret) each time it sets up a connection."
            " Refusals are JSON {error}: 404 without --turn-url or --sfu, 401 without a key, 403 with a"
            " wrong key, 400 for a service other than turn or a form body that is not UTF-8, 413 for a form"
            " body over 4 KiB."
        ),
        tags=("server",),
        http_errors=(400, 401, 403, 404, 413),
        query=_SFU_TURN_QUERY,
    )


ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    _v4(
        "call_engine_http_srv/end_call",
        "End a live call for everyone (reason END_BY_SERVER)",
        "rest/end_call.md",
        _obj({"CallId": _CALL_ID}, ("CallId",)),
        _EMPTY,
        (E_BAD_FIELD, E_NOT_FOUND),
        {"CallId": _CID_EXAMPLE},
        "v4 calls",
    ),
    _v4(
        "call_engine_http_srv/get_call_info",
        "A live call's state and members",
        "rest/get_call_info.md",
        _obj({"CallId": _CALL_ID}, ("CallId",)),
        _obj({"CallInfo": _ref("LiveCallInfoV4"), "UserList": _ref("UserListV4")}, ("CallInfo", "UserList")),
        (E_BAD_FIELD, E_NOT_FOUND),
        {"CallId": _CID_EXAMPLE},
        "v4 calls",
    ),
    _v4(
        "call_engine_http_srv/get_live_calls",
        "The live calls, newest first, with their members' states",
        "rest/get_live_calls.md",
        _obj(
            {
                "User_Account": {**_USER_ID, "description": "only the calls this user is a member of"},
                "NumberPerPage": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 100},
                "Page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
            }
        ),
        _obj(
            {
                "TotalNum": {"type": "integer", "minimum": 0},
                "Page": {"type": "integer", "minimum": 1},
                "CallList": {"type": "array", "items": _ref("LiveCallV4")},
            },
            ("TotalNum", "Page", "CallList"),
        ),
        (E_BAD_FIELD,),
        {"NumberPerPage": 20, "Page": 1},
        "v4 calls",
    ),
    _v4(
        "call_engine_http_srv/get_nodes",
        "The servers of this deployment and their state (one, this one, without a cluster)",
        "rest/get_nodes.md",
        _obj({}),
        _obj(
            {
                "Mode": {"type": "string", "enum": ["Single"]},
                "NodeList": {
                    "type": "array",
                    "items": _obj(
                        {
                            "NodeId": {"type": "string"},
                            "Version": {"type": "string"},
                            "Since": {"type": "integer", "minimum": 0},
                            "UptimeSeconds": {"type": "number", "minimum": 0},
                            "Devices": {"type": "integer", "minimum": 0},
                            "Sessions": {"type": "integer", "minimum": 0},
                            "LiveCalls": {"type": "integer", "minimum": 0},
                            "CallbackWorkers": {"type": "integer", "minimum": 0},
                            "Lease": {"type": "string", "enum": ["Single"]},
                        },
                        (
                            "NodeId",
                            "Version",
                            "Since",
                            "UptimeSeconds",
                            "Devices",
                            "Sessions",
                            "LiveCalls",
                            "CallbackWorkers",
                            "Lease",
                        ),
                    ),
                },
            },
            ("Mode", "NodeList"),
        ),
        (),
        {},
        "v4 calls",
    ),
    _v4(
        "call_record_http_srv/get_record_by_callid",
        "The record of one ended call",
        "rest/get_record_by_callid.md",
        _obj({"CallId": _CALL_ID}, ("CallId",)),
        _obj({"CallRecord": _ref("CallRecordV4")}, ("CallRecord",)),
        (E_BAD_FIELD, E_NOT_FOUND),
        {"CallId": _CID_EXAMPLE},
        _RECORDS_V4,
    ),
    _v4(
        "call_record_http_srv/get_record_by_filter",
        "One page of call records, newest first",
        "rest/get_record_by_filter.md",
        _obj(
            {
                "StartTime": {**_UNIX_S, "description": "earliest start time (inclusive); default: none"},
                "EndTime": {**_UNIX_S, "description": "latest start time (inclusive); default: none"},
                "CallResult": _FILTER_RESULTS_V4,
                "CallType": {"enum": ["SingleCall", "MultiCall"]},
                "User_Account": {**_USER_ID, "description": "Ringline's: only calls with this member"},
                "NumberPerPage": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 10},
                "Page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
            }
        ),
        _obj(
            {
                "TotalNum": {"type": "integer", "minimum": 0},
                "Page": {"type": "integer", "minimum": 1},
                "CallRecordList": {"type": "array", "items": _ref("CallRecordV4")},
            },
            ("TotalNum", "Page", "CallRecordList"),
        ),
        (E_BAD_FIELD,),
        {"StartTime": 1700000000, "CallResult": "NormalEnd", "NumberPerPage": 20, "Page": 1},
        _RECORDS_V4,
    ),
    _v4(
        "call_record_http_srv/start_recording",
        "Record a live call from now on (it moves to the SFU if it was peer to peer)",
        "rest/start_recording.md",
        _obj({"CallId": _CALL_ID}, ("CallId",)),
        _obj({"Changed": {"type": "boolean", "description": "false: it was recorded already"}}, ("Changed",)),
        (E_BAD_FIELD, E_NOT_FOUND, E_NO_RECORDING),
        {"CallId": _CID_EXAMPLE},
        _RECORDINGS,
    ),
    _v4(
        "call_record_http_srv/stop_recording",
        "Stop recording a live call (what was recorded is kept and converted at its end)",
        "rest/stop_recording.md",
        _obj({"CallId": _CALL_ID}, ("CallId",)),
        _obj(
            {"Changed": {"type": "boolean", "description": "false: it was not being recorded"}}, ("Changed",)
        ),
        (E_BAD_FIELD, E_NOT_FOUND, E_NO_RECORDING),
        {"CallId": _CID_EXAMPLE},
        _RECORDINGS,
    ),
    _v4(
        "call_record_http_srv/get_recordings",
        "The recordings of ended calls (ready, being converted or failed), newest first",
        "rest/get_recordings.md",
        _obj(
            {
                "CallId": {**_CALL_ID, "description": "only this call's recording"},
                "StartTime": {**_UNIX_S, "description": "made at or after (the call's end, unix s)"},
                "EndTime": {**_UNIX_S, "description": "made at or before (inclusive)"},
            }
        ),
        _obj(
            {
                "TotalNum": {"type": "integer", "minimum": 0},
                "RecordingList": {"type": "array", "items": _ref("RecordingV4")},
            },
            ("TotalNum", "RecordingList"),
        ),
        (E_BAD_FIELD, E_NO_RECORDING),
        {"CallId": _CID_EXAMPLE},
        _RECORDINGS,
    ),
    _v4(
        "call_record_http_srv/download_recording",
        "Download one recording: the file itself (video/webm or audio/ogg), not the envelope",
        "rest/download_recording.md",
        _obj({"RecordingId": _CALL_ID}, ("RecordingId",)),
        _EMPTY,
        (E_BAD_FIELD, E_NOT_FOUND, E_NO_RECORDING),
        {"RecordingId": _CID_EXAMPLE},
        _RECORDINGS,
        description="On success the answer is the recording's bytes with Content-Type video/webm or "
        "audio/ogg and a Content-Disposition naming the file; an unknown or not yet ready recording "
        "gets the envelope with 20001 and HTTP 404.",
        file_types=("audio/ogg", "video/webm"),
    ),
    _v4(
        "call_config/set_callback",
        "Set (overwrite) the v4 callback URL and commands",
        "rest/set_callback.md",
        _V4_CALLBACK_BODY,
        _EMPTY,
        (E_BAD_FIELD,),
        {
            "Url": "https://example.com/ringline-callback",
            "CallbackCommandList": list(V4_CALLBACK_COMMANDS),
        },
        _CALLBACK_V4,
    ),
    _v4(
        "call_config/get_callback",
        "The v4 callback configuration",
        "rest/get_callback.md",
        _EMPTY,
        _ref("V4Config"),
        (),
        {},
        _CALLBACK_V4,
    ),
    _v4(
        "call_config/delete_callback",
        "Delete the v4 callback configuration",
        "rest/delete_callback.md",
        _EMPTY,
        _EMPTY,
        (),
        {},
        _CALLBACK_V4,
    ),
    _v4(
        "group_open_http_svc/create_group",
        "Register a chat group (members may join its calls)",
        "rest/groups.md",
        _obj(
            {"GroupId": _GROUP_ID, "MemberList": {"type": "array", "items": _MEMBER_REF}},
            ("GroupId",),
        ),
        _obj({"GroupId": _STR}, ("GroupId",)),
        (E_BAD_FIELD,),
        {"GroupId": "team-7", "MemberList": [{"Member_Account": "alice"}, {"Member_Account": "bob"}]},
        _GROUPS,
    ),
    _v4(
        "group_open_http_svc/add_group_member",
        "Add members to a chat group",
        "rest/groups.md",
        _obj(
            {"GroupId": _GROUP_ID, "MemberList": {"type": "array", "items": _MEMBER_REF}},
            ("GroupId",),
        ),
        _obj(
            {
                "MemberList": {
                    "type": "array",
                    "items": _obj(
                        {"Member_Account": _STR, "Result": {"const": 1}}, ("Member_Account", "Result")
                    ),
                }
            },
            ("MemberList",),
        ),
        (E_BAD_FIELD,),
        {"GroupId": "team-7", "MemberList": [{"Member_Account": "carol"}]},
        _GROUPS,
    ),
    _v4(
        "group_open_http_svc/delete_group_member",
        "Remove members from a chat group",
        "rest/groups.md",
        _obj(
            {"GroupId": _GROUP_ID, "MemberToDel_Account": {"type": "array", "items": _MEMBER_REF}},
            ("GroupId",),
        ),
        _EMPTY,
        (E_BAD_FIELD, E_NOT_FOUND),
        {"GroupId": "team-7", "MemberToDel_Account": ["carol"]},
        _GROUPS,
    ),
    _v4(
        "group_open_http_svc/destroy_group",
        "Delete a chat group",
        "rest/groups.md",
        _obj({"GroupId": _GROUP_ID}, ("GroupId",)),
        _EMPTY,
        (E_BAD_FIELD,),
        {"GroupId": "team-7"},
        _GROUPS,
    ),
    _v4(
        "group_open_http_svc/get_group_member_info",
        "List the members of a chat group",
        "rest/groups.md",
        _obj({"GroupId": _GROUP_ID}, ("GroupId",)),
        _obj(
            {
                "MemberNum": {"type": "integer", "minimum": 0},
                "MemberList": {"type": "array", "items": _obj({"Member_Account": _STR}, ("Member_Account",))},
            },
            ("MemberNum", "MemberList"),
        ),
        (E_BAD_FIELD,),
        {"GroupId": "team-7"},
        _GROUPS,
    ),
    _v1(
        "callback/set",
        "Create (overwrite) the v1 callback configuration",
        "rest/v1_callback.md",
        _V1_CALLBACK_BODY,
        {"type": "string", "description": "the address"},
        (E_V1_BAD_ADDRESS, E_BAD_FIELD),
        {"address": "http://www.example.com/callback", "actions": ["normal_end", "caller_start_call"]},
        _CALLBACK_V1,
    ),
    _v1(
        "callback/get",
        "The v1 callback configuration",
        "rest/v1_callback.md",
        _EMPTY,
        _V1_CONFIG,
        (E_V1_NO_CONFIG,),
        {},
        _CALLBACK_V1,
    ),
    _v1(
        "callback/update",
        "Replace the existing v1 callback configuration",
        "rest/v1_callback.md",
        _V1_CALLBACK_BODY,
        {"type": "string", "description": "the address"},
        (E_V1_BAD_ADDRESS, E_BAD_FIELD, E_V1_NO_CONFIG),
        {"address": "https://www.example.com/callback2", "actions": ["normal_end"]},
        _CALLBACK_V1,
    ),
    _v1(
        "callback/delete",
        "Delete the v1 callback configuration",
        "rest/v1_callback.md",
        _EMPTY,
        {"const": ""},
        (E_V1_NO_CONFIG,),
        {},
        _CALLBACK_V1,
    ),
    _v1(
        "records/get_record_by_callId",
        "The record of one ended call (v1 field names)",
        "rest/v1_records.md",
        _obj({"callId": _CALL_ID}, ("callId",)),
        _ref("CallRecordV1"),
        (E_BAD_FIELD, E_NOT_FOUND),
        {"callId": _CID_EXAMPLE},
        _RECORDS_V1,
    ),
    _v1(
        "records/get_records_by_filter",
        "One page of call records, newest first (v1 field names)",
        "rest/v1_records.md",
        _obj(
            {
                "startTimestamp": {**_UNIX_S, "description": "earliest start time (inclusive)"},
                "endTimestamp": {**_UNIX_S, "description": "latest start time (inclusive); default: none"},
                "callResult": _FILTER_RESULTS_V1,
                "callType": {"enum": ["single", "group"]},
                "numberPerPage": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 100},
                "page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
            },
            ("startTimestamp",),
        ),
        _obj(
            {
                "totalNum": {"type": "integer", "minimum": 0},
                "page": {"type": "integer", "minimum": 1},
                "callRecordList": {"type": "array", "items": _ref("CallRecordV1")},
            },
            ("totalNum", "page", "callRecordList"),
        ),
        (E_BAD_FIELD,),
        {"startTimestamp": 1700000000, "callResult": "normal_end", "numberPerPage": 20, "page": 1},
        _RECORDS_V1,
    ),
    _v4(
        "call_callback_http_srv/get_deliveries",
        "List callback deliveries (failed, pending, ...) with counts",
        "rest/deliveries.md",
        _obj(
            {
                "State": {
                    "anyOf": [_DELIVERY_STATE, {"type": "array", "items": _DELIVERY_STATE}],
                    "description": "one state or a list; default: every state but Delivered",
                },
                "CallId": _CALL_ID,
                "Url": {"type": "string", "minLength": 1, "maxLength": 2048},
                "NumberPerPage": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_DELIVERIES_PER_PAGE,
                    "default": 20,
                },
                "Page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
            }
        ),
        _obj(
            {
                "TotalNum": {"type": "integer", "minimum": 0},
                "Page": {"type": "integer", "minimum": 1},
                "DeliveryList": {"type": "array", "items": _ref("Delivery")},
                "Counts": _obj(
                    {k: {"type": "integer", "minimum": 0} for k in DELIVERY_STATES},
                    tuple(DELIVERY_STATES),
                    description="deliveries per state in the whole outbox",
                ),
                "GoneUrls": {
                    "type": "array",
                    "items": _obj({"Url": _STR, "GoneTime": _UNIX_F}, ("Url", "GoneTime")),
                    "description": "urls that answered 410 Gone and get nothing until set again",
                },
            },
            ("TotalNum", "Page", "DeliveryList", "Counts", "GoneUrls"),
        ),
        (E_BAD_FIELD,),
        {"State": ["GivenUp", "Gone"], "NumberPerPage": 20, "Page": 1},
        _DELIVERIES,
    ),
    _v4(
        "call_callback_http_srv/redeliver",
        "Send one callback again now (failed, gone, delivered or waiting)",
        "rest/deliveries.md",
        _obj({"EventId": _EVENT_ID}, ("EventId",)),
        _obj({"Delivery": _ref("Delivery")}, ("Delivery",)),
        (E_BAD_FIELD, E_NOT_FOUND),
        {"EventId": "evt_6f1c2a9e0b7d4f1e9a3c5b7d9e1f3a5c"},
        _DELIVERIES,
    ),
    Endpoint(
        api="http",
        method="get",
        path="/healthz",
        operation_id="healthz",
        summary="Liveness and a few gauges",
        doc="rest/healthz.md",
        response=_obj(
            {
                "status": {"const": "ok"},
                "node_id": {**_STR, "description": "this server's name (--node-id; default host name:port)"},
                "version": {**_STR, "description": "the Ringline version it runs"},
                "uptime_s": {"type": "number", "minimum": 0},
                "sessions": {"type": "integer", "minimum": 0},
                "live_calls": {"type": "integer", "minimum": 0},
                "callback_workers": _obj(
                    {
                        "configured": {"type": "integer", "minimum": 0},
                        "on_demand": {
                            "type": "boolean",
                            "description": "started when callbacks are first queued (auto)",
                        },
                        "running": {"type": "integer", "minimum": 0},
                        "restarts": {"type": "integer", "minimum": 0},
                    },
                    ("configured", "on_demand", "running", "restarts"),
                ),
            },
            ("status", "node_id", "version", "uptime_s", "sessions", "live_calls", "callback_workers"),
        ),
        tags=("server",),
    ),
    Endpoint(
        api="http",
        method="get",
        path="/openapi.json",
        operation_id="openapi",
        summary="This OpenAPI 3.1 document",
        doc="rest.md",
        response={"type": "object", "required": ["openapi", "paths"]},
        tags=("server",),
    ),
    *(_sfu_turn_endpoint(method) for method in ("get", "post")),
    Endpoint(
        api="ws",
        method="get",
        path="/v1/ws",
        operation_id="websocket",
        summary="The client WebSocket (protocol v1)",
        doc="protocol.md",
        response={"type": "string"},
        description=(
            "Clients upgrade this GET to a WebSocket and speak the JSON protocol of docs/protocol.md."
            " A GET that is not a WebSocket upgrade gets 400."
        ),
        tags=("server",),
    ),
    Endpoint(
        api="web",
        method="get",
        path="/",
        operation_id="call_page",
        summary="The call page (HTML): sign in, call, answer",
        doc="web.md",
        response=_STR,
        tags=("web",),
    ),
    Endpoint(
        api="web",
        method="get",
        path="/sdk/{name}",
        operation_id="web_sdk",
        summary=(
            "The browser engine: ringline.js (an ES module) and its types, ringline.d.ts;"
            " the web kit: tuicallkit.js, tuicallkit.d.ts"
        ),
        doc="web.md",
        response=_STR,
        description="CORS-open (Access-Control-Allow-Origin: *): pages served elsewhere may import it.",
        tags=("web",),
    ),
    Endpoint(
        api="web",
        method="get",
        path="/admin",
        operation_id="admin_console",
        summary="The admin console (HTML): live calls, records, callback deliveries, nodes",
        doc="admin.md",
        response=_STR,
        description="Holds no data: every figure comes from the admin REST API, signed with the admin sig.",
        tags=("web",),
    ),
    Endpoint(
        api="web",
        method="get",
        path="/admin/",
        operation_id="admin_console_slash",
        summary="The admin console, as /admin",
        doc="admin.md",
        response=_STR,
        tags=("web",),
    ),
    Endpoint(
        api="web",
        method="get",
        path="/admin/{name}",
        operation_id="admin_files",
        summary="The admin console's modules and styles",
        doc="admin.md",
        response=_STR,
        tags=("web",),
    ),
    Endpoint(
        api="web",
        method="get",
        path="/app/{name}",
        operation_id="web_app",
        summary="The call page's modules and styles",
        doc="web.md",
        response=_STR,
        tags=("web",),
    ),
    Endpoint(
        api="http",
        method="get",
        path="/app/config.json",
        operation_id="web_config",
        summary="What the call page needs to sign in: the app id, and whether the dev sign-in is on",
        doc="web.md",
        response=_obj(
            {"sdkAppId": {"type": "integer", "minimum": 0}, "devSignIn": {"type": "boolean"}},
            ("sdkAppId", "devSignIn"),
        ),
        tags=("web",),
    ),
)

#: Content types of the web routes (docs/web.md).
_WEB_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "/": ("text/html",),
    "/sdk/{name}": ("text/javascript", "application/typescript"),
    "/app/{name}": ("text/javascript", "text/css", "text/html", "image/svg+xml"),
    "/admin": ("text/html",),
    "/admin/": ("text/html",),
    "/admin/{name}": ("text/javascript", "text/css", "text/html"),
}

# --------------------------------------------------------------------------- the document

_AUTH_PARAMS: Final[dict[str, Schema]] = {
    "sdkappid": {
        "name": "sdkappid",
        "in": "query",
        "required": True,
        "description": "this server's SDKAppID",
        "schema": {"type": "integer", "minimum": 0, "maximum": 4294967295},
    },
    "identifier": {
        "name": "identifier",
        "in": "query",
        "required": True,
        "description": "the admin identifier (`--admin-identifier`, default `administrator`)",
        "schema": _USER_ID,
    },
    "usersig": {
        "name": "usersig",
        "in": "query",
        "required": True,
        "description": "a UserSig (TLSSigAPIv2) of the admin identifier (`ringline usersig administrator`)",
        "schema": {"type": "string", "minLength": 1},
    },
    "random": {
        "name": "random",
        "in": "query",
        "required": False,
        "description": "a random uint32 (accepted for compatibility, not checked)",
        "schema": {"type": "integer", "minimum": 0, "maximum": 4294967295},
    },
    "contenttype": {
        "name": "contenttype",
        "in": "query",
        "required": False,
        "description": "always `json` (accepted for compatibility, not checked)",
        "schema": {"type": "string", "enum": ["json"]},
    },
}


def _codes(e: Endpoint) -> list[int]:
    # Any command may answer 90005 for a value no field may hold (inbound.py).
    return sorted({*AUTH_ERRORS, E_BAD_JSON, E_BAD_FIELD, *e.errors})


def _envelope_schema(e: Endpoint) -> Schema:
    codes = _codes(e)
    if e.api == "v4":
        ok = _obj(
            {
                "ActionStatus": {"const": "OK"},
                "ErrorCode": {"const": 0},
                "ErrorInfo": _STR,
                "RequestId": _STR,
                "Response": e.response,
            },
            ("ActionStatus", "ErrorCode", "ErrorInfo", "RequestId", "Response"),
        )
        fail = _obj(
            {
                "ActionStatus": {"const": "FAIL"},
                "ErrorCode": {"type": "integer", "enum": codes},
                "ErrorInfo": {"type": "string", "minLength": 1},
                "RequestId": _STR,
            },
            ("ActionStatus", "ErrorCode", "ErrorInfo", "RequestId"),
        )
    else:
        ok = _obj(
            {
                "errorCode": {"const": 0},
                "errorMessage": {"const": "Success"},
                "requestId": _STR,
                "data": e.response,
            },
            ("errorCode", "errorMessage", "requestId", "data"),
        )
        fail = _obj(
            {
                "errorCode": {"type": "integer", "enum": codes},
                "errorMessage": {"type": "string", "minLength": 1},
                "requestId": _STR,
                "data": {"type": "null"},
            },
            ("errorCode", "errorMessage", "requestId", "data"),
        )
    return {"oneOf": [ok, fail]}


def _internal_schema(api: str) -> Schema:
    if api == "v4":
        return _obj(
            {"ActionStatus": {"const": "FAIL"}, "ErrorCode": {"const": E_INTERNAL}, "ErrorInfo": _STR},
            ("ActionStatus", "ErrorCode", "ErrorInfo"),
        )
    return _obj({"errorCode": {"const": E_INTERNAL}, "errorMessage": _STR}, ("errorCode", "errorMessage"))


def _operation(e: Endpoint) -> Schema:
    op: Schema = {
        "operationId": e.operation_id,
        "summary": e.summary,
        "tags": list(e.tags),
        "externalDocs": {"description": "reference page", "url": f"docs/{e.doc}"},
    }
    if e.api in ("v4", "v1"):
        codes = ", ".join(str(c) for c in _codes(e))
        op["description"] = (
            (e.description + "\n\n" if e.description else "")
            + f"Answers HTTP 200 with the {e.api} envelope, for success and failure alike."
            f" Error codes: {codes} (docs/rest.md)."
        )
        op["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in _AUTH_PARAMS]
        body = {"schema": e.request or _EMPTY}
        if e.example is not None:
            body["example"] = e.example
        op["requestBody"] = {"required": True, "content": {"application/json": body}}
        op["responses"] = {
            "200": {
                "description": "the envelope: success, or an error code with a message saying what to do",
                "content": {"application/json": {"schema": _envelope_schema(e)}},
            },
            "500": {
                "description": f"internal error (code {E_INTERNAL}); retry",
                "content": {"application/json": {"schema": _internal_schema(e.api)}},
            },
        }
        if e.file_types:
            envelope = op["responses"]["200"]["content"]["application/json"]
            op["responses"]["200"]["description"] = "the file; or the envelope with an error code"
            for t in e.file_types:
                op["responses"]["200"]["content"][t] = {"schema": {"type": "string", "format": "binary"}}
            op["responses"]["404"] = {
                "description": "no such file (or not ready yet): the envelope with its error code",
                "content": {"application/json": envelope},
            }
    elif e.api == "web":
        # The browser engine and the call page (docs/web.md): files, not JSON.
        if "{name}" in e.path:
            folder = WEB_ROOT / e.path.split("/")[1]
            names = sorted(p.name for p in folder.iterdir() if p.is_file())
            param = {"name": "name", "in": "path", "required": True, "description": "a file"}
            op["parameters"] = [{**param, "schema": {"enum": names}}]
        if e.description:
            op["description"] = e.description
        op["responses"] = {
            "200": {"description": "the file", "content": {t: {"schema": _STR} for t in _WEB_TYPES[e.path]}},
            "404": {"description": "no such file", "content": {"text/plain": {"schema": _STR}}},
        }
    elif e.api == "ws":
        op["description"] = e.description
        op["responses"] = {
            "101": {"description": "switched to the WebSocket protocol"},
            "400": {"description": "not a WebSocket upgrade", "content": {"text/plain": {"schema": _STR}}},
        }
    else:
        if e.description:
            op["description"] = e.description
        op["responses"] = {
            "200": {"description": "OK", "content": {"application/json": {"schema": e.response}}},
        }
        if e.query:
            op["parameters"] = [
                {"name": name, "in": "query", "required": False, "description": text, "schema": schema}
                for name, text, schema in e.query
            ]
        error = _obj({"error": {**_STR, "description": "what is wrong and how to fix it"}}, ("error",))
        for status in e.http_errors:
            op["responses"][str(status)] = {
                "description": "refused",
                "content": {"application/json": {"schema": error}},
            }
    return op


def build_document(version: str = __version__) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route in :data:`ENDPOINTS` (a fresh copy)."""
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        paths.setdefault(e.path, {})[e.method] = _operation(e)
    tags: list[str] = []
    for e in ENDPOINTS:
        for t in e.tags:
            if t not in tags:
                tags.append(t)
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "Ringline REST API",
            "version": version,
            "description": (
                "Admin commands of a Ringline call server: `POST /v4/{service}/{command}` and"
                " `POST /v1/{service}/{command}` with the vendor query-string auth"
                " (`?sdkappid=&identifier=&usersig=&random=&contenttype=json`) and a JSON object as body."
                " Every answer is HTTP 200 with an envelope: v4"
                " `{ActionStatus, ErrorCode, ErrorInfo, RequestId, Response}`, v1"
                " `{errorCode, errorMessage, requestId, data}`; see docs/rest.md for the error codes."
                " A non-POST request to a command gets 405 with the same envelope."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "parameters": _AUTH_PARAMS,
            "schemas": _COMPONENT_SCHEMAS,
        },
    }
    return copy.deepcopy(doc)


@functools.cache
def _document_text() -> str:
    return json.dumps(build_document(), separators=(",", ":"), ensure_ascii=False)


async def openapi_handler(_request: web.Request) -> web.Response:
    """``GET /openapi.json``: the document (built once per process)."""
    return web.Response(text=_document_text(), content_type="application/json")
