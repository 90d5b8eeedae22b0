"""How a ``CallEngine`` drives the media of its calls (``CallEngine(url, media=...)``).

The engine hands every event to :meth:`EngineMedia.on_event` just before its
observers get it, on the task that delivers events; this keeps one
:class:`~ringline.media.session.MediaSession` per call in step with the call::

    on_call_begin(c)                 make and start the session of c
    on_user_join(u)                  connect to u (the lower user id offers)
    on_signal(c, u, data)            hand the message to the connection to u
    on_call_media_type_changed       start/stop video, renegotiate
    on_user_leave(u)                 close the connection to u
    on_sfu(c) / on_sfu_feed(c, u)    media through the call's SFU room instead (docs/sfu.md)
    on_call_end / not_connected(c)   close the session (before observers hear of the end)
    open/close_camera|microphone ok  unmute/mute the local source
    back online after a drop         resend what may be lost / start over (reconnected)

Events the session makes (volume, quality, availability) are queued behind the
server's pushes on the same queue, so observers get them in order, never before
``on_call_begin`` nor after the terminal event of their call (docs/spec.md §4 I2).
Availability from the server (the members' camera/microphone flags) and from the
real tracks goes through one gate: an observer hears of a change only once.

This module belongs to the client, which sits above :mod:`ringline.media`: the media
package knows nothing of the engine, and the engine imports this module only when
``media=`` asks for it (the media extra).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ringline.core.enums import MediaType
from ringline.core.errors import ErrorCode
from ringline.core.protocol import TERMINAL_EVENTS
from ringline.media import MediaOptions, MediaSession

from ._codec import Event, decode_event

__all__ = ["MADE_SEQ", "EngineMedia"]

log = logging.getLogger("ringline.media")

_AVAILABILITY = {"on_user_audio_available": "audio", "on_user_video_available": "video"}
_MADE_HERE = frozenset(
    {"on_user_voice_volume_changed", "on_user_network_quality_changed", "on_error", *_AVAILABILITY}
)
#: ``seq`` of the events made here: server pushes are numbered from 1.
MADE_SEQ = -1


class EngineMedia:
    """The media side of one engine: at most one :class:`MediaSession` at a time.

    ``user_id()``, ``ice_servers()`` and ``ice_transport_policy()`` are read when a call begins;
    ``send_signal(to, data)`` relays a signalling message in the current call.
    Call :meth:`bind` with the queue's ``put`` at each login, :meth:`on_event`
    for every event before delivering it, :meth:`reconnected` when the connection
    to the server is back after a drop (in order with the events), and :meth:`close`
    on logout.
    """

    def __init__(
        self,
        options: MediaOptions,
        *,
        user_id: Callable[[], str | None],
        ice_servers: Callable[[], list[Mapping[str, Any]]],
        send_signal: Callable[[str, dict[str, Any]], Awaitable[None]],
        ice_transport_policy: Callable[[], str] = lambda: "all",
        sfu_request: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.options = options
        self._user_id = user_id
        self._ice_servers = ice_servers
        self._ice_transport_policy = ice_transport_policy
        self._send_signal = send_signal
        self._sfu_request = sfu_request
        #: members connected to the current call (for a return from the SFU to the mesh)
        self._joined: set[str] = set()
        self._put: Callable[[Event], None] | None = None
        self._available: dict[tuple[str, str], bool] = {}
        self._mic = True
        self._camera = True
        #: an ``on_sfu`` that came before its call's media began: (call id, has a room)
        self._early_sfu: tuple[str | None, bool] | None = None
        self.session: MediaSession | None = None

    def bind(self, put: Callable[[Event], None]) -> None:
        """Queue made events with ``put`` (the event queue of the current login)."""
        self._put = put

    # -------------------------------------------------------------- events

    async def on_event(self, ev: Event) -> bool:
        """Follow the call; return whether the observers should get ``ev``."""
        s = self.session
        if ev.seq == MADE_SEQ and (s is None or s.closed or ev.call_id != s.call_id):
            return False  # made before its session closed, handled after
        name = ev.name
        if name == "on_call_begin" and ev.call_id is not None:
            await self._begin(ev.call_id, ev.kwargs["media_type"])
            return True
        if name in ("on_sfu", "on_sfu_feed"):  # for the media only (docs/sfu.md)
            if name == "on_sfu" and (s is None or ev.call_id != s.call_id):
                # The server may push a member's room before its on_call_begin: kept
                # for that call, used once its media begins (_begin).
                self._early_sfu = (ev.call_id, ev.kwargs.get("sfu") is not None)
            elif s is not None and ev.call_id == s.call_id and self._sfu_request is not None:
                if name == "on_sfu" and ev.kwargs.get("sfu") is None:
                    s.leave_sfu(sorted(self._joined))  # the call went back to the mesh
                elif name == "on_sfu":
                    s.use_sfu(self._sfu_request)
                elif isinstance(ev.kwargs.get("user_id"), str):
                    s.sfu_feed(ev.kwargs["user_id"])
            return False
        if s is None or ev.call_id != s.call_id:
            return True
        if name == "on_user_join":
            self._joined.add(ev.kwargs["user_id"])
            s.add_peer(ev.kwargs["user_id"])
        elif name == "on_signal":
            s.on_signal(ev.kwargs["from_user_id"], ev.kwargs["data"])
        elif name == "on_call_media_type_changed":
            await s.set_media_type(ev.kwargs["new_call_media_type"])
        elif name == "on_user_leave":
            user = ev.kwargs["user_id"]
            self._joined.discard(user)
            await s.drop_peer(user)
            self._available.pop((user, "audio"), None)
            self._available.pop((user, "video"), None)
        elif name in TERMINAL_EVENTS:
            await self.close()
        elif name in _AVAILABILITY:
            key = (ev.args[0], _AVAILABILITY[name])
            if self._available.get(key) == ev.args[1]:
                return False
            self._available[key] = ev.args[1]
        return True

    def reconnected(self, resumed: bool) -> None:
        """The session's connection is back: ``resumed``, or logged in again (the
        server could not resume it). The current call's connections recover what the
        drop may have lost (:meth:`MediaSession.reconnected`)."""
        if self.session is not None and not self.session.closed:
            self.session.reconnected(resumed)

    def device(self, op: str) -> None:
        """``open_camera`` / ``close_camera`` / ``open_microphone`` /
        ``close_microphone`` succeeded: mute or unmute the local source."""
        on = op.startswith("open_")
        if op.endswith("_microphone"):
            self._mic = on
        elif op.endswith("_camera"):
            self._camera = on
        if self.session is not None:
            self.session.set_microphone(self._mic)
            self.session.set_camera(self._camera)

    async def close(self) -> None:
        """Close the current call's media, if any (idempotent)."""
        s, self.session = self.session, None
        self._available.clear()
        self._joined.clear()
        if s is not None:
            await s.close()

    # -------------------------------------------------------------- internals

    async def _begin(self, call_id: str, media_type: MediaType) -> None:
        if self.session is not None:
            if self.session.call_id == call_id:
                return
            await self.close()
        user = self._user_id()
        if user is None:
            return
        self._mic = self._camera = True
        try:
            s = MediaSession(
                user_id=user,
                call_id=call_id,
                media_type=media_type,
                options=self.options,
                ice_servers=self._ice_servers(),
                send_signal=self._send_signal,
                emit=self._emit,
                ice_transport_policy=self._ice_transport_policy(),
            )
            await s.start()
        except Exception as exc:
            log.exception("call %s: media could not start", call_id)
            self._queue(
                decode_event(
                    "on_error",
                    {"code": int(ErrorCode.PARAM_INVALID), "message": f"media could not start: {exc}"},
                )
            )
            return
        self.session = s
        early, self._early_sfu = self._early_sfu, None
        if early == (call_id, True) and self._sfu_request is not None:
            s.use_sfu(self._sfu_request)

    def _emit(self, name: str, args: dict[str, Any]) -> None:
        if name not in _MADE_HERE:
            raise ValueError(f"the media session cannot make {name}")
        self._queue(decode_event(name, args, MADE_SEQ))

    def _queue(self, ev: Event | None) -> None:
        if ev is not None and self._put is not None:
            self._put(ev)
