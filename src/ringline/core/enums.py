"""The enums of the call contract. Ordinals are part of the wire format (docs/spec.md §2)."""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "CallEndReason",
    "CallResultType",
    "CallRole",
    "CallScene",
    "CallStatus",
    "MediaType",
    "NetworkQuality",
]


class MediaType(IntEnum):
    UNKNOWN = 0
    AUDIO = 1
    VIDEO = 2


class CallRole(IntEnum):
    NONE = 0
    CALLER = 1
    CALLED = 2


class CallStatus(IntEnum):
    NONE = 0
    WAITING = 1
    ACCEPT = 2


class CallScene(IntEnum):
    NONE = 0
    GROUP_CALL = 1
    MULTI_CALL = 2
    SINGLE_CALL = 3


class CallEndReason(IntEnum):
    UNKNOWN = 0
    HANGUP = 1
    REJECT = 2
    NO_RESPONSE = 3
    OFFLINE = 4
    LINE_BUSY = 5
    CANCELED = 6
    OTHER_DEVICE_ACCEPTED = 7
    OTHER_DEVICE_REJECT = 8
    END_BY_SERVER = 9


class NetworkQuality(IntEnum):
    UNKNOWN = 0
    EXCELLENT = 1
    GOOD = 2
    POOR = 3
    BAD = 4
    VERY_BAD = 5
    DOWN = 6


class CallResultType(IntEnum):
    UNKNOWN = 0
    MISSED = 1
    INCOMING = 2
    OUTGOING = 3
