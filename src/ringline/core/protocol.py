"""The wire protocol's facts, in one place: its version, its limits, its id patterns,
its event sets and the answers that open a session (docs/protocol.md).

The server (``server/ws.py``, ``server/rest.py``), the switchboard, the Python SDK and
the browser engine take them from here. The browser engine's copy,
``web/sdk/protocol.js``, is generated from this module and ``core/enums.py``
(``python -m ringline.server.protocol_js`` rewrites it; a test fails when it is stale).

Pure: values and functions that build dicts, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = [
    "CLOSE_NODE_LEAVING",
    "CLOSE_SHUTTING_DOWN",
    "CLOSE_TRY_AGAIN_LATER",
    "DEFAULT_RING_TIMEOUT",
    "DEVICE_ID",
    "MAX_CALLEES",
    "MAX_CALL_ID",
    "MAX_DEVICE_ID",
    "MAX_FRAME_BYTES",
    "MAX_GROUP_ID",
    "MAX_MEMBERS",
    "MAX_RECENT",
    "MAX_RING_TIMEOUT",
    "MAX_SERVER_URLS",
    "MAX_USER_DATA_BYTES",
    "OWED_EVENTS",
    "PROTOCOL_VERSION",
    "TERMINAL_EVENTS",
    "USER_ID",
    "login_result",
    "resume_result",
]

#: The protocol version (``v`` of ``login`` and ``resume``; ``protocol`` of their answers).
PROTOCOL_VERSION: Final = 1

#: A user id: 1-32 characters of ``[A-Za-z0-9_-]`` (docs/spec.md §1).
USER_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: The longest device id, and a device id: 1-64 characters of ``[A-Za-z0-9_.:-]``.
MAX_DEVICE_ID: Final = 64
DEVICE_ID: Final = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_DEVICE_ID}}}")
#: The longest call id accepted anywhere (WebSocket, REST, both SDKs). The server makes
#: every call id, a UUID (36 characters); a longer one names no call.
MAX_CALL_ID: Final = 128

#: The longest group id: a call's ``params.chat_group_id``, and the groups of the admin
#: REST API (``GroupId``).
MAX_GROUP_ID: Final = 64

#: Members of one call, and so the users one call can invite (the caller is one).
MAX_MEMBERS: Final = 9
MAX_CALLEES: Final = MAX_MEMBERS - 1
#: ``params.user_data``, in UTF-8 bytes.
MAX_USER_DATA_BYTES: Final = 1000
#: ``params.timeout``: the ring timeout in seconds, 1..MAX_RING_TIMEOUT; 0 means the default.
DEFAULT_RING_TIMEOUT: Final = 30
MAX_RING_TIMEOUT: Final = 600
#: ``query_recent_calls``: the largest ``limit``.
MAX_RECENT: Final = 200
#: A frame, in UTF-8 bytes (the server's default ``--max-frame-bytes``).
MAX_FRAME_BYTES: Final = 64 * 1024

#: WebSocket close codes after which a client reconnects and ``resume``s (docs/protocol.md
#: "Closing"); one given a list of server URLs moves to the next one in it.
#: 1001: this server is shutting down (reconnect after the usual back-off).
CLOSE_SHUTTING_DOWN: Final = 1001
#: 1012: this node is leaving the cluster: resume on another node at once (no back-off).
CLOSE_NODE_LEAVING: Final = 1012
#: 1013: no server can take the session yet: try again (the next URL) after the back-off.
CLOSE_TRY_AGAIN_LATER: Final = 1013
#: The most server URLs an SDK engine takes (``CallEngine([url, ...])``).
MAX_SERVER_URLS: Final = 16

#: The terminal events (docs/spec.md §1, invariant I1): after one of these, this device
#: is no longer in the call. What the SDKs watch to leave a call.
TERMINAL_EVENTS: Final = frozenset({"on_call_end", "on_call_not_connected"})
#: The pushes a device is owed even if it comes back much later: the terminal events
#: and ``on_call_cancelled``, the legacy companion that follows ``on_call_not_connected``
#: to the same device. The server keeps them in a gone device's mailbox and never holds
#: them back (``Emit.terminal``); the SDKs see ``on_call_cancelled`` as a plain event.
OWED_EVENTS: Final = TERMINAL_EVENTS | {"on_call_cancelled"}


def login_result(
    *,
    session: str,
    device_id: str,
    user_id: str,
    sig_expires_at: float,
    server_time: float,
    heartbeat_interval: float,
    heartbeat_grace: float,
    ice_servers: Sequence[Mapping[str, Any]],
    ice_transport_policy: str,
) -> dict[str, Any]:
    """The ``result`` of a ``login`` (docs/protocol.md "Opening a session")."""
    return {
        "session": session,
        "device_id": device_id,
        "user_id": user_id,
        **_terms(
            sig_expires_at,
            server_time,
            heartbeat_interval,
            heartbeat_grace,
            ice_servers,
            ice_transport_policy,
        ),
    }


def resume_result(
    *,
    session: str,
    answers_kept: bool,
    device_id: str,
    user_id: str,
    next_seq: int,
    sig_expires_at: float,
    server_time: float,
    heartbeat_interval: float,
    heartbeat_grace: float,
    ice_servers: Sequence[Mapping[str, Any]],
    ice_transport_policy: str,
) -> dict[str, Any]:
    """The ``result`` of a ``resume``: a login's, plus ``resumed``, ``answers_kept``
    (False after a server restart: requests still waiting for their answers must not be
    sent again) and ``next_seq`` (the ``seq`` of the first push replayed or new)."""
    return {
        "session": session,
        "resumed": True,
        "answers_kept": answers_kept,
        "device_id": device_id,
        "user_id": user_id,
        "next_seq": next_seq,
        **_terms(
            sig_expires_at,
            server_time,
            heartbeat_interval,
            heartbeat_grace,
            ice_servers,
            ice_transport_policy,
        ),
    }


def _terms(
    sig_expires_at: float,
    server_time: float,
    heartbeat_interval: float,
    heartbeat_grace: float,
    ice_servers: Sequence[Mapping[str, Any]],
    ice_transport_policy: str,
) -> dict[str, Any]:
    """What both answers tell the client about the session it now holds."""
    return {
        "heartbeat_interval": heartbeat_interval,
        "heartbeat_grace": heartbeat_grace,
        "server_time": server_time,
        "sig_expires_at": sig_expires_at,
        "protocol": PROTOCOL_VERSION,
        "ice_servers": list(ice_servers),
        "ice_transport_policy": ice_transport_policy,
    }
