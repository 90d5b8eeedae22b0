"""The observer interface (docs/spec.md §4): what the engine tells the app.

Subclass :class:`CallObserver` and override the events you care about, or pass any
object that has some of these methods (observers are duck-typed). Each method may be
a plain ``def`` or an ``async def``; the engine calls them one event at a time, in the
order the server sent the events, and awaits an async handler before the next event.
A handler may call the engine (``await engine.accept()`` inside ``on_call_received``
is fine). A handler that raises is logged once, with its name and traceback, on the
``ringline.client`` logger and does not stop the other observers or later events.

Arguments are passed positionally, in the order below, so a handler may name its
parameters as it likes. ``on_call_received``, ``on_call_begin`` and ``on_call_end``
may also be written with the vendor's older signatures, e.g.
``on_call_begin(room_id, media_type, role)``; the engine picks the form from the
method's parameters when the observer is added (docs/sdk.md "Older observer
signatures", :mod:`ringline.client._forms`).

Besides the events of docs/spec.md §4 (:data:`EVENT_NAMES`) there are two Ringline
extensions: :meth:`CallObserver.on_signal` for media engines (docs/media.md) and
:meth:`CallObserver.on_call_recording_changed` (docs/recording.md).
"""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any

from ringline.core.enums import CallEndReason, MediaType
from ringline.core.types import CallObserverExtraInfo, NetworkQualityInfo

__all__ = ["CURRENT_CALL_ID", "EVENT_NAMES", "CallObserver"]

#: The call id of the event being delivered, for observers that want it without an
#: argument (:class:`ringline.testing.RecordingObserver`). ``None`` outside delivery.
CURRENT_CALL_ID: ContextVar[str | None] = ContextVar("ringline_current_call_id", default=None)

#: Every observer method, in the order of docs/spec.md §4.
EVENT_NAMES: tuple[str, ...] = (
    "on_error",
    "on_call_received",
    "on_call_begin",
    "on_call_end",
    "on_call_not_connected",
    "on_call_cancelled",
    "on_call_media_type_changed",
    "on_user_inviting",
    "on_user_reject",
    "on_user_no_response",
    "on_user_line_busy",
    "on_user_join",
    "on_user_leave",
    "on_user_video_available",
    "on_user_audio_available",
    "on_user_voice_volume_changed",
    "on_user_network_quality_changed",
    "on_kicked_offline",
    "on_user_sig_expired",
)


class CallObserver:
    """Base class with a no-op for every event. Override what you need.

    Overrides may be ``async def``; the return type allows both.
    """

    def on_error(self, code: int, message: str) -> Awaitable[None] | None:
        """Something failed on this device, e.g. logging back in after a reconnect."""
        return None

    def on_call_received(
        self,
        call_id: str,
        caller_id: str,
        callee_id_list: list[str],
        media_type: MediaType,
        info: CallObserverExtraInfo,
    ) -> Awaitable[None] | None:
        """An invitation rings on this device: call ``accept()``, ``reject()`` or
        ``ignore()``. ``info.ring_time_left`` says how long it keeps ringing."""
        return None

    def on_call_begin(
        self, call_id: str, media_type: MediaType, info: CallObserverExtraInfo
    ) -> Awaitable[None] | None:
        """This device's leg connected (after accept, join, or the first callee's accept)."""
        return None

    def on_call_end(
        self,
        call_id: str,
        media_type: MediaType,
        reason: CallEndReason,
        user_id: str,
        total_time: float,
        info: CallObserverExtraInfo,
    ) -> Awaitable[None] | None:
        """A leg that had begun ended. ``user_id`` ended it; ``total_time`` is seconds
        since this device's ``on_call_begin``. The terminal event of the call."""
        return None

    def on_call_not_connected(
        self,
        call_id: str,
        media_type: MediaType,
        reason: CallEndReason,
        user_id: str,
        info: CallObserverExtraInfo,
    ) -> Awaitable[None] | None:
        """A leg that never began ended (cancelled, rejected, no answer, busy, answered
        elsewhere). The terminal event of the call."""
        return None

    def on_call_cancelled(self, user_id: str) -> Awaitable[None] | None:
        """Legacy companion of ``on_call_not_connected`` (docs/spec.md §5 for ``user_id``)."""
        return None

    def on_call_media_type_changed(
        self, old_call_media_type: MediaType, new_call_media_type: MediaType
    ) -> Awaitable[None] | None:
        """The whole call switched between audio and video."""
        return None

    def on_user_inviting(self, user_id: str) -> Awaitable[None] | None:
        """``user_id`` is being invited to the current call."""
        return None

    def on_user_reject(self, user_id: str) -> Awaitable[None] | None:
        """``user_id`` rejected the invitation."""
        return None

    def on_user_no_response(self, user_id: str) -> Awaitable[None] | None:
        """``user_id`` did not answer before the ring timeout."""
        return None

    def on_user_line_busy(self, user_id: str) -> Awaitable[None] | None:
        """``user_id`` is in another call."""
        return None

    def on_user_join(self, user_id: str) -> Awaitable[None] | None:
        """``user_id`` connected to the call (you are connected too)."""
        return None

    def on_user_leave(self, user_id: str) -> Awaitable[None] | None:
        """``user_id`` left the call (you are still connected)."""
        return None

    def on_user_video_available(self, user_id: str, is_video_available: bool) -> Awaitable[None] | None:
        """``user_id`` opened or closed the camera."""
        return None

    def on_user_audio_available(self, user_id: str, is_audio_available: bool) -> Awaitable[None] | None:
        """``user_id`` opened or closed the microphone."""
        return None

    def on_user_voice_volume_changed(self, volume_map: dict[str, int]) -> Awaitable[None] | None:
        """Periodic volumes, 0..100, by user id."""
        return None

    def on_user_network_quality_changed(
        self, network_quality_list: list[NetworkQualityInfo]
    ) -> Awaitable[None] | None:
        """Periodic network quality of the members."""
        return None

    def on_kicked_offline(self) -> Awaitable[None] | None:
        """Another login of this user pushed this device out. The engine is logged out
        once the events before the close are delivered; ``init()`` again to come back."""
        return None

    def on_signal(self, call_id: str, from_user_id: str, data: dict[str, Any]) -> Awaitable[None] | None:
        """WebRTC signalling from ``from_user_id`` in call ``call_id`` (docs/media.md):
        ``data["type"]`` is offer, answer, candidate, renegotiate or bye. Answer an offer
        with ``engine.send_signal(from_user_id, {"type": "answer", "sdp": ...})``. Not
        one of docs/spec.md §4's events, so not in :data:`EVENT_NAMES`."""
        return None

    def on_call_recording_changed(self, call_id: str, is_recording: bool) -> Awaitable[None] | None:
        """Call ``call_id`` is being recorded from now on (``is_recording``) or no longer
        (docs/recording.md): show it to the user. Told on every device of every member,
        and again to a member who connects while it is recorded. A Ringline extension,
        not one of docs/spec.md §4's events, so not in :data:`EVENT_NAMES`."""
        return None

    def on_user_sig_expired(self) -> Awaitable[None] | None:
        """The user sig expired: mint a new one and pass it to ``renew_user_sig()``
        within the server's grace period (default 60 s), or the session is closed."""
        return None
