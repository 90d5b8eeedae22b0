"""The store boundary: what the server persists, behind one ``Store`` protocol.

The core never imports this package. The server turns the core's persistence actions
into :class:`Write` values and hands a batch of them to :meth:`Store.apply`, which must
apply the whole batch in ONE transaction (all or nothing) and return only once it is
durable. The server sends the events that depend on a batch only after ``apply``
returns: that is how records are written before terminal events go out (§6.8).

Implementations: :mod:`.sqlite` (default) and :mod:`.postgres`. Both pass
``tests/server/test_store_conformance.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ...core.enums import CallResultType
from ...core.records import CallRecord

__all__ = [
    "DeleteSession",
    "FinishCall",
    "HideUserCalls",
    "MarkAlive",
    "SaveLiveCall",
    "SaveSession",
    "SessionRow",
    "SetCallbackConfig",
    "SetGroupMembers",
    "Store",
    "UserCallRow",
    "Write",
]


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A logged-in device, kept so a device can resume across a server restart."""

    token: str
    device_id: str
    user_id: str
    multi_device: bool
    sig_expires_at: float
    created_at: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class SaveLiveCall:
    """Upsert the snapshot (opaque JSON text from the core) of a call that is still live."""

    call_id: str
    snapshot: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class FinishCall:
    """Insert the final record, index it for each of its users, delete the live snapshot.

    Idempotent: finishing a call whose record exists already changes nothing.
    ``user_results`` gives, per user of the call, how that user sees it.
    """

    record: CallRecord
    user_results: tuple[tuple[str, CallResultType], ...]


@dataclass(frozen=True, slots=True)
class SaveSession:
    session: SessionRow


@dataclass(frozen=True, slots=True)
class DeleteSession:
    token: str


@dataclass(frozen=True, slots=True)
class SetGroupMembers:
    """Replace the member list of a chat group (empty list deletes the group)."""

    group_id: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HideUserCalls:
    """Hide calls from one user's own history (``delete_record_calls``); records stay."""

    user_id: str
    call_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MarkAlive:
    """The server was alive at ``at``: the 'last known time' used after a crash."""

    at: float


@dataclass(frozen=True, slots=True)
class SetCallbackConfig:
    """Replace the app's callback configuration of one ``kind``; ``None`` deletes it.

    ``kind`` is ``"v4"`` (``{"Url", "CallbackCommandList"}``, set through
    ``v4/call_config/set_callback``) or ``"v1"`` (``{"address", "actions"}``, set through
    ``v1/callback/set``); the two are kept apart. ``config`` must be JSON-serialisable
    and is returned as is by :meth:`Store.get_callback_config`.
    """

    kind: str
    config: dict[str, Any] | None


Write = (
    SaveLiveCall
    | FinishCall
    | SaveSession
    | DeleteSession
    | SetGroupMembers
    | HideUserCalls
    | MarkAlive
    | SetCallbackConfig
)


@dataclass(frozen=True, slots=True)
class UserCallRow:
    record: CallRecord
    result_type: CallResultType


class Store(Protocol):
    """Durable state of one Ringline app. All methods are coroutine-safe.

    Call :meth:`open` once before anything else and :meth:`close` at shutdown.
    """

    async def open(self) -> None:
        """Connect, create or migrate the schema. Raise a clear error if unreachable."""
        ...

    async def close(self) -> None:
        """Flush and release connections. Idempotent."""
        ...

    async def apply(self, writes: Sequence[Write]) -> None:
        """Apply every write in one transaction; return when durable."""
        ...

    async def load_live_calls(self) -> list[tuple[str, str, float]]:
        """``(call_id, snapshot, updated_at)`` of every call saved live and not finished."""
        ...

    async def load_sessions(self) -> list[SessionRow]: ...

    async def load_groups(self) -> dict[str, tuple[str, ...]]: ...

    async def last_alive(self) -> float | None:
        """The latest :class:`MarkAlive` time, or None on a fresh store."""
        ...

    async def get_record(self, call_id: str) -> CallRecord | None: ...

    async def get_callback_config(self, kind: str) -> dict[str, Any] | None:
        """The callback configuration of ``kind`` (``"v4"`` or ``"v1"``), or None if unset.

        Reflects every :class:`SetCallbackConfig` whose ``apply`` has returned.
        """
        ...

    async def query_user_calls(
        self,
        user_id: str,
        *,
        begin: float | None,
        end: float | None,
        result_type: CallResultType,
        limit: int,
    ) -> list[UserCallRow]:
        """The user's own, non-hidden calls, newest first (by start time).

        ``begin``/``end`` bound the start time (inclusive); ``result_type`` UNKNOWN = all.
        """
        ...

    async def query_records(
        self,
        *,
        start_time: float | None,
        end_time: float | None,
        results: Sequence[str] | None,
        call_type: str | None,
        page: int,
        per_page: int,
    ) -> tuple[int, list[CallRecord]]:
        """Exact total count and one page (1-based) of records, newest start time first.

        ``start_time``/``end_time`` bound the start time (inclusive); ``results`` are
        v4 ``CallResult`` strings; ``call_type`` is ``SingleCall`` or ``MultiCall``.
        """
        ...
