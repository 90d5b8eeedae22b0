"""Ringline: self-hostable audio/video calling. Server, protocol and Python SDK.

Start with :class:`CallEngine` and :class:`CallObserver` (see docs/sdk.md).
"""

from .client import CallEngine, CallObserver
from .core import (
    CallEndReason,
    CallError,
    CallObserverExtraInfo,
    CallParams,
    CallRecords,
    CallResultType,
    CallRole,
    CallScene,
    CallStatus,
    ErrorCode,
    LocalCallError,
    MediaType,
    NetworkQuality,
    NetworkQualityInfo,
    OfflinePushInfo,
    RecentCallsFilter,
    RemoteCallError,
    RoomId,
)

__version__ = "0.1.0"
__all__ = [
    "CallEndReason",
    "CallEngine",
    "CallError",
    "CallObserver",
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
    "__version__",
]
