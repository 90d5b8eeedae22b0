"""The pure core: enums, structs, errors, user sigs, records and the call switchboard.

Nothing here does I/O or reads a clock; see :mod:`ringline.core.machine`.
"""

from .enums import (
    CallEndReason,
    CallResultType,
    CallRole,
    CallScene,
    CallStatus,
    MediaType,
    NetworkQuality,
)
from .errors import CallError, ErrorCode, LocalCallError, RemoteCallError
from .types import (
    CallObserverExtraInfo,
    CallParams,
    CallRecords,
    NetworkQualityInfo,
    OfflinePushInfo,
    RecentCallsFilter,
    RoomId,
)

__all__ = [
    "CallEndReason",
    "CallError",
    "CallObserverExtraInfo",
    "CallParams",
    "CallRecords",
    "CallResultType",
    "CallRole",
    "CallScene",
    "CallStatus",
    "ErrorCode",
    "LocalCallError",
    "MediaType",
    "NetworkQuality",
    "NetworkQualityInfo",
    "OfflinePushInfo",
    "RecentCallsFilter",
    "RemoteCallError",
    "RoomId",
]
