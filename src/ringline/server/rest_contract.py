"""The REST API's contract: its error codes, vocabularies and limits.

What a client of the admin API may rely on besides the shapes of the bodies: the error
codes (:data:`ERRORS`, each with its meaning and fix; docs/rest.md shows the same table),
the codes any command may answer before reading its body (:data:`AUTH_ERRORS`), the
vendor vocabularies (callback commands and actions, call and member results, delivery
states) and the numeric limits. :mod:`.rest` answers with them and :mod:`.openapi`
describes them in the document served at ``GET /openapi.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..core.errors import ErrorCode
from ..core.records import CallResult

__all__ = [
    "AUTH_ERRORS",
    "DELIVERY_STATES",
    "ERRORS",
    "E_BAD_FIELD",
    "E_BAD_JSON",
    "E_INTERNAL",
    "E_NOT_ADMIN",
    "E_NOT_FOUND",
    "E_NO_RECORDING",
    "E_UNKNOWN_COMMAND",
    "E_V1_BAD_ADDRESS",
    "E_V1_NO_CONFIG",
    "E_WRONG_APP",
    "E_WRONG_METHOD",
    "MAX_DELIVERIES_PER_PAGE",
    "MAX_PAGE",
    "MAX_PER_PAGE",
    "MAX_UNIX_S",
    "MEMBER_RESULTS",
    "V1_CALLBACK_ACTIONS",
    "V1_CALL_RESULTS",
    "V1_NEVER_SENT",
    "V4_CALLBACK_COMMANDS",
    "V4_CALL_RESULTS",
    "ErrorEntry",
]

# --------------------------------------------------------------------------- error codes

E_INTERNAL: Final = 10002
E_NOT_FOUND: Final = 20001
E_NO_RECORDING: Final = 20010
E_WRONG_METHOD: Final = 60002
E_NOT_ADMIN: Final = 60011
E_UNKNOWN_COMMAND: Final = 60020
E_WRONG_APP: Final = int(ErrorCode.SIG_APP_MISMATCH)  # 70014
E_BAD_JSON: Final = 90001
E_BAD_FIELD: Final = 90005
E_V1_BAD_ADDRESS: Final = 70001
E_V1_NO_CONFIG: Final = 999

#: Codes any admin command may answer before it looks at its body (query-string auth).
AUTH_ERRORS: Final[tuple[int, ...]] = (
    E_NOT_ADMIN,
    int(ErrorCode.SIG_EXPIRED),
    int(ErrorCode.SIG_EMPTY),
    int(ErrorCode.SIG_MALFORMED),
    int(ErrorCode.SIG_BAD_SIGNATURE),
    int(ErrorCode.SIG_IDENTIFIER_MISMATCH),
    E_WRONG_APP,
    int(ErrorCode.SIG_VERSION),
)


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """One error code: where it occurs, what it means and what to do about it."""

    code: int
    apis: str
    meaning: str
    fix: str


ERRORS: Final[tuple[ErrorEntry, ...]] = (
    ErrorEntry(0, "v4, v1", "success", "-"),
    ErrorEntry(
        E_V1_NO_CONFIG,
        "v1",
        "no callback configuration (`v1/callback/get`, `update`, `delete`)",
        "create one with `v1/callback/set`",
    ),
    ErrorEntry(
        E_INTERNAL,
        "v4, v1",
        "internal server error (HTTP 500); the request may not have been carried out",
        "retry; if it persists, read the server log",
    ),
    ErrorEntry(
        E_NOT_FOUND,
        "v4, v1",
        "no such call, group, record or recording (a call has a record once it has ended; a"
        " recording can be downloaded once it is ready, HTTP 404 then)",
        "check the id; live and ephemeral calls have no record",
    ),
    ErrorEntry(
        E_NO_RECORDING,
        "v4",
        "this server records no calls (recording commands on a server without `--sfu`)",
        "run the server with an SFU (`ringline serve --sfu ...`, docs/recording.md)",
    ),
    ErrorEntry(
        E_WRONG_METHOD,
        "v4, v1",
        "not a POST request (HTTP 405, `Allow: POST`)",
        "send the command as POST with a JSON body",
    ),
    ErrorEntry(
        E_NOT_ADMIN,
        "v4, v1",
        "the `identifier` query parameter is missing or not the admin identifier",
        "sign the request as the admin identifier (`--admin-identifier`, default `administrator`)",
    ),
    ErrorEntry(
        E_UNKNOWN_COMMAND,
        "v4, v1",
        "no such command (the message lists the commands of that API)",
        "check the URL against docs/rest.md or /openapi.json",
    ),
    ErrorEntry(
        int(ErrorCode.SIG_EXPIRED),
        "v4, v1",
        "v4 and v1: the admin user sig has expired. v1 `callback/set` and `update` only: also"
        " `address` is not an http:// or https:// URL (the message says which)",
        "mint a new admin sig (`ringline usersig administrator`) / fix the address",
    ),
    ErrorEntry(int(ErrorCode.SIG_EMPTY), "v4, v1", "the `usersig` query parameter is missing", "add it"),
    ErrorEntry(
        int(ErrorCode.SIG_MALFORMED),
        "v4, v1",
        "`usersig` is not a user sig (bad base64, zlib or JSON)",
        "pass the sig exactly as minted, URL-encoded",
    ),
    ErrorEntry(
        int(ErrorCode.SIG_BAD_SIGNATURE),
        "v4, v1",
        "the sig was minted with another secret key or altered",
        "mint it with this app's secret key",
    ),
    ErrorEntry(
        int(ErrorCode.SIG_IDENTIFIER_MISMATCH),
        "v4, v1",
        "the sig was minted for another user than `identifier`",
        "mint it for the admin identifier",
    ),
    ErrorEntry(
        E_WRONG_APP,
        "v4, v1",
        "`sdkappid` is missing, not a number, not this server's app, or not the sig's app",
        "pass this server's SDKAppID and a sig minted for it",
    ),
    ErrorEntry(
        int(ErrorCode.SIG_VERSION), "v4, v1", "the sig is not TLS.ver 2.0", "use a TLSSigAPIv2 generator"
    ),
    ErrorEntry(
        E_BAD_JSON,
        "v4, v1",
        "the body is not JSON, not a JSON object, over 1 MiB, or nested deeper than 32 levels",
        "send one JSON object (`{}` when the command takes no field)",
    ),
    ErrorEntry(
        E_BAD_FIELD,
        "v4, v1",
        "a field is missing, of the wrong type, or out of range, or a value anywhere in the body"
        " cannot be kept (a lone surrogate, NUL, NaN/Infinity, an integer over 64 bits); the"
        " message names the field",
        "fix that field; see the command's page",
    ),
)

# --------------------------------------------------------------------------- vocabularies

#: v4 ``CallbackCommandList`` values.
V4_CALLBACK_COMMANDS: Final[tuple[str, ...]] = (
    "Call.CallbackAfterStartCall",
    "Call.CallbackAfterMemberChanged",
    "Call.CallbackAfterEndCall",
    "Call.CallbackAfterRecordingReady",
    "Call.CallbackAfterRecordingFailed",
)
#: v1 ``actions``: the per-user status commands, then the per-user event commands: every
#: action the vendor lists (docs/spec.md §7), also those Ringline never sends
#: (:data:`V1_NEVER_SENT`).
V1_CALLBACK_ACTIONS: Final[tuple[str, ...]] = (
    "not_answer",
    "reject",
    "call_busy",
    "cancel",
    "normal_end",
    "interrupt",
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
#: v1 actions a configuration may name but Ringline never sends: a call that fails to
#: start is refused to the placing device at once, so it has no call id to report.
V1_NEVER_SENT: Final[frozenset[str]] = frozenset({"caller_call_failed"})
#: v4 ``CallResult`` values.
V4_CALL_RESULTS: Final[tuple[str, ...]] = tuple(r.value for r in CallResult)
#: v1 ``callResult`` value of each v4 ``CallResult`` (``end_by_server`` is Ringline's own).
V1_CALL_RESULTS: Final[dict[str, str]] = {
    CallResult.CANCEL.value: "cancel",
    CallResult.REJECT.value: "reject",
    CallResult.NOT_ANSWER.value: "not_answer",
    CallResult.NORMAL_END.value: "normal_end",
    CallResult.CALL_BUSY.value: "call_busy",
    CallResult.INTERRUPT.value: "interrupt",
    CallResult.OFFLINE.value: "offline",
    CallResult.END_BY_SERVER.value: "end_by_server",
}
#: Per-member ``Result`` values of ``MemberList`` (see :func:`.rest.member_result`).
MEMBER_RESULTS: Final[tuple[str, ...]] = (
    "Accept",
    "Hangup",
    "Reject",
    "NotAnswer",
    "LineBusy",
    "Cancel",
    "Offline",
    "EndByServer",
    "Unknown",
)

MAX_UNIX_S: Final = 4_294_967_295
MAX_PER_PAGE: Final = 100
MAX_PAGE: Final = 2_147_483_647

#: Delivery states of the outbox as the REST API spells them (``DeliveryState`` values).
DELIVERY_STATES: Final[dict[str, str]] = {
    "Pending": "pending",
    "InFlight": "in_flight",
    "Delivered": "delivered",
    "GivenUp": "given_up",
    "Gone": "gone",
}
MAX_DELIVERIES_PER_PAGE: Final = 100
