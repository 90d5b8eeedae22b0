"""Helpers for testing apps and bots built on :class:`ringline.client.CallEngine`.

:class:`RecordingObserver` records every event an engine delivers and lets a test
wait for one without sleeping::

    rec = RecordingObserver()
    engine.add_observer(rec)
    call_id = await engine.calls(["bob"], MediaType.AUDIO)
    await rec.wait_for("on_user_inviting", user_id="bob")
    begin = await rec.wait_for("on_call_begin", call_id=call_id)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ringline.client.observer import CURRENT_CALL_ID
from ringline.core.enums import CallEndReason, MediaType
from ringline.core.types import CallObserverExtraInfo, NetworkQualityInfo

__all__ = ["RecordedEvent", "RecordingObserver"]


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One delivered event: observer method ``name`` and its arguments by name.

    ``call_id`` is the call the event belongs to, also for events whose arguments do
    not carry it (``on_user_join``...); ``None`` for device events. ``time`` is the
    wall-clock time (``time.time()``) of delivery.
    """

    name: str
    kwargs: dict[str, Any]
    call_id: str | None
    time: float = field(default_factory=time.time)


class RecordingObserver:
    """An observer that records every event, in delivery order.

    Add it with ``engine.add_observer(rec)``. Use :meth:`wait_for` to wait for an
    event, :meth:`names` / :attr:`events` / :meth:`events_for` to assert on history.
    """

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self._consumed: set[int] = set()
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<RecordingObserver {self.names()}>"

    # ------------------------------------------------------------------ queries

    def names(self) -> list[str]:
        """The names of all events so far, in order."""
        return [e.name for e in self.events]

    def events_for(self, call_id: str) -> list[RecordedEvent]:
        """The events of one call, in order."""
        return [e for e in self.events if e.call_id == call_id]

    def clear(self) -> None:
        """Forget the events recorded so far."""
        self.events.clear()
        self._consumed.clear()

    async def wait_for(self, name: str, *, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Return the arguments of the first not yet consumed ``name`` event whose
        arguments equal ``match`` (``call_id=`` also matches the event's call), and mark
        it consumed, so waiting twice returns two different events.

        Raises :class:`TimeoutError` listing the events seen so far.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for i, ev in enumerate(self.events):
                        if i not in self._consumed and ev.name == name and _matches(ev, match):
                            self._consumed.add(i)
                            return ev.kwargs
                    await self._changed.wait()
        except TimeoutError:
            want = ", ".join([name, *(f"{k}={v!r}" for k, v in match.items())])
            raise TimeoutError(
                f"no {want} event within {timeout:g} s; events so far: {self._summary()}"
            ) from None

    async def wait_until(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` is true, checking it now and after every event.

        Good for state the engine changes with an event (``engine.call_status``).
        Raises :class:`TimeoutError` listing the events seen so far.
        """
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"condition still false after {timeout:g} s; events so far: {self._summary()}"
            ) from None

    # ------------------------------------------------------------------ recording

    def _record(self, name: str, **kwargs: Any) -> None:
        call_id = kwargs.get("call_id")
        if not isinstance(call_id, str):
            call_id = CURRENT_CALL_ID.get()
        self.events.append(RecordedEvent(name, kwargs, call_id))
        # Wake the waiters; later waiters wait on a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    def _summary(self) -> str:
        parts = []
        for ev in self.events:
            args = ", ".join(f"{k}={_short(v)}" for k, v in ev.kwargs.items())
            parts.append(f"{ev.name}({args})")
        return "[" + "; ".join(parts) + "]" if parts else "none"

    # ------------------------------------------------------------------ events

    def on_error(self, code: int, message: str) -> None:
        self._record("on_error", code=code, message=message)

    def on_call_received(
        self,
        call_id: str,
        caller_id: str,
        callee_id_list: list[str],
        media_type: MediaType,
        info: CallObserverExtraInfo,
    ) -> None:
        self._record(
            "on_call_received",
            call_id=call_id,
            caller_id=caller_id,
            callee_id_list=callee_id_list,
            media_type=media_type,
            info=info,
        )

    def on_call_begin(self, call_id: str, media_type: MediaType, info: CallObserverExtraInfo) -> None:
        self._record("on_call_begin", call_id=call_id, media_type=media_type, info=info)

    def on_call_end(
        self,
        call_id: str,
        media_type: MediaType,
        reason: CallEndReason,
        user_id: str,
        total_time: float,
        info: CallObserverExtraInfo,
    ) -> None:
        self._record(
            "on_call_end",
            call_id=call_id,
            media_type=media_type,
            reason=reason,
            user_id=user_id,
            total_time=total_time,
            info=info,
        )

    def on_call_not_connected(
        self,
        call_id: str,
        media_type: MediaType,
        reason: CallEndReason,
        user_id: str,
        info: CallObserverExtraInfo,
    ) -> None:
        self._record(
            "on_call_not_connected",
            call_id=call_id,
            media_type=media_type,
            reason=reason,
            user_id=user_id,
            info=info,
        )

    def on_call_cancelled(self, user_id: str) -> None:
        self._record("on_call_cancelled", user_id=user_id)

    def on_call_media_type_changed(
        self, old_call_media_type: MediaType, new_call_media_type: MediaType
    ) -> None:
        self._record(
            "on_call_media_type_changed",
            old_call_media_type=old_call_media_type,
            new_call_media_type=new_call_media_type,
        )

    def on_user_inviting(self, user_id: str) -> None:
        self._record("on_user_inviting", user_id=user_id)

    def on_user_reject(self, user_id: str) -> None:
        self._record("on_user_reject", user_id=user_id)

    def on_user_no_response(self, user_id: str) -> None:
        self._record("on_user_no_response", user_id=user_id)

    def on_user_line_busy(self, user_id: str) -> None:
        self._record("on_user_line_busy", user_id=user_id)

    def on_user_join(self, user_id: str) -> None:
        self._record("on_user_join", user_id=user_id)

    def on_user_leave(self, user_id: str) -> None:
        self._record("on_user_leave", user_id=user_id)

    def on_user_video_available(self, user_id: str, is_video_available: bool) -> None:
        self._record("on_user_video_available", user_id=user_id, is_video_available=is_video_available)

    def on_user_audio_available(self, user_id: str, is_audio_available: bool) -> None:
        self._record("on_user_audio_available", user_id=user_id, is_audio_available=is_audio_available)

    def on_user_voice_volume_changed(self, volume_map: dict[str, int]) -> None:
        self._record("on_user_voice_volume_changed", volume_map=volume_map)

    def on_user_network_quality_changed(self, network_quality_list: list[NetworkQualityInfo]) -> None:
        self._record("on_user_network_quality_changed", network_quality_list=network_quality_list)

    def on_kicked_offline(self) -> None:
        self._record("on_kicked_offline")

    def on_user_sig_expired(self) -> None:
        self._record("on_user_sig_expired")

    def on_call_recording_changed(self, call_id: str, is_recording: bool) -> None:
        self._record("on_call_recording_changed", call_id=call_id, is_recording=is_recording)


def _matches(ev: RecordedEvent, match: dict[str, Any]) -> bool:
    for key, want in match.items():
        if key in ev.kwargs:
            if ev.kwargs[key] != want:
                return False
        elif key == "call_id":
            if ev.call_id != want:
                return False
        else:
            return False
    return True


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
