"""The Python SDK: :class:`CallEngine` (one logged-in device) and :class:`CallObserver`.

See docs/spec.md §3-§4 for the contract and docs/protocol.md for the wire protocol it
speaks. :mod:`ringline.testing` has a recording observer for tests and bots.
"""

from .engine import CallEngine
from .observer import EVENT_NAMES, CallObserver
from .transport import AiohttpTransport, Connection, ConnectionClosed, Transport

__all__ = [
    "EVENT_NAMES",
    "AiohttpTransport",
    "CallEngine",
    "CallObserver",
    "Connection",
    "ConnectionClosed",
    "Transport",
]
