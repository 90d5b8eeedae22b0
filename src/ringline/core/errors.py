"""Error codes and the two error families.

Codes follow the vendor's numbering where the vendor has one (-1201..-1205 engine
errors, 70001.. UserSig errors, 8010 stale call), so apps ported from it keep their
error handling. Every error carries a message that says what the caller should do.

* :class:`LocalCallError` -- *you* broke a rule (bad parameter, wrong state). Raised
  by the core and the SDK; the server answers the request with it.
* :class:`RemoteCallError` -- the *server* (or the network) refused or failed.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "CallError",
    "ErrorCode",
    "LocalCallError",
    "RemoteCallError",
]


class ErrorCode(IntEnum):
    # Engine errors (vendor TUICallDefine ERROR_*).
    INIT_FAIL = -1201
    PARAM_INVALID = -1202
    REQUEST_REFUSED = -1203
    REQUEST_REPEATED = -1204
    SCENE_NOT_SUPPORTED = -1205
    NO_PERMISSION = -1206
    SIGNALING_SEND_FAIL = -1406
    # Wire-protocol errors (Ringline).
    MALFORMED_FRAME = -1410
    UNKNOWN_OP = -1411
    FRAME_TOO_LARGE = -1412
    RATE_LIMITED = -1413
    SESSION_UNKNOWN = -1414
    PROTOCOL_VERSION = -1415
    NOT_LOGGED_IN = -1416
    KICKED_OFFLINE = -1417
    SESSION_EXPIRED = -1418
    SERVER_SHUTTING_DOWN = -1419
    # Stale call: accepted elsewhere, cancelled, ended, or never existed (vendor 8010).
    CALL_NOT_FOUND = 8010
    # UserSig verification (vendor IM 700xx family).
    SIG_EXPIRED = 70001
    SIG_EMPTY = 70002
    SIG_MALFORMED = 70003
    SIG_BAD_SIGNATURE = 70009
    SIG_IDENTIFIER_MISMATCH = 70013
    SIG_APP_MISMATCH = 70014
    SIG_VERSION = 70015


class CallError(Exception):
    """Base class: ``code`` is an :class:`ErrorCode` value, ``message`` says what to do."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = int(code)
        self.message = message


class LocalCallError(CallError):
    """The caller broke a rule: fix the call (parameters, state) and try again."""


class RemoteCallError(CallError):
    """The server refused the request or could not be reached."""
