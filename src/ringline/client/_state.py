"""This device's view of its current call, kept from events and answers. Pure.

The server owns the truth; this is the engine's cache of it, so that ``accept()``
knows which call to accept and ``call_status`` is cheap. Rules, in the order they are
checked (``cur`` = current call id)::

    event / answer                     condition            effect
    ---------------------------------  -------------------  ------------------------------
    on_call_received(c)                c already delivered  not delivered again (dedupe)
                                       idle                 cur=c WAITING CALLED
                                       busy with another    delivered, cur kept (warning)
    calls() -> c                       c == cur (glare)     ACCEPT (our call answered theirs)
                                       otherwise            cur=c WAITING CALLER
    accept() ok                        c == cur             ACCEPT
    join(c) ok                         -                    cur=c ACCEPT (role kept or CALLED)
    on_call_begin(c)                   -                    cur=c ACCEPT, role from info
    on_call_media_type_changed(c)      c == cur             media type = new
    switch_call_media_type(m) ok       c == cur             media type = m
    reject()/ignore()/hangup() ok      c == cur             idle
    on_call_end / on_call_not_conn.(c) c == cur             idle
    anything else                      -                    delivered, no change

Events are applied when they are dispatched (so a handler sees the state its event
implies); answers when they arrive, before any push that follows them on the wire.
Events of a call that is not current are always delivered and never change state.
"""

from __future__ import annotations

import logging

from ringline.core.enums import CallRole, CallStatus, MediaType
from ringline.core.protocol import TERMINAL_EVENTS

from ._codec import Event

__all__ = ["CallState"]

log = logging.getLogger("ringline.client")


class CallState:
    """Current call id, status, role and media type of one engine."""

    def __init__(self) -> None:
        self.call_id: str | None = None
        self.status = CallStatus.NONE
        self.role = CallRole.NONE
        self.media_type = MediaType.UNKNOWN
        # Calls whose on_call_received was delivered and that have not ended yet.
        self._received: set[str] = set()

    def reset(self) -> None:
        """Forget everything (logged out): no events are synthesised."""
        if self.call_id is not None:
            log.info("call %s: %s -> NONE (logged out)", self.call_id, self.status.name)
        self.call_id = None
        self.status = CallStatus.NONE
        self.role = CallRole.NONE
        self.media_type = MediaType.UNKNOWN
        self._received.clear()

    # ------------------------------------------------------------------ events

    def apply(self, ev: Event) -> bool:
        """Apply a push about to be dispatched. Returns whether to deliver it."""
        cid = ev.call_id
        if ev.name == "on_call_received" and cid is not None:
            if cid in self._received or cid == self.call_id:
                log.debug("call %s: on_call_received again, not re-delivered", cid)
                return False
            self._received.add(cid)
            if self.call_id is None:
                self._set(cid, CallStatus.WAITING, CallRole.CALLED, ev.kwargs["media_type"])
            else:
                log.warning(
                    "call %s: invitation while in call %s; keeping %s as the current call",
                    cid,
                    self.call_id,
                    self.call_id,
                )
        elif ev.name == "on_call_begin" and cid is not None:
            if self.call_id not in (None, cid):
                log.warning("call %s began while %s was current", cid, self.call_id)
            role = ev.kwargs["info"].role
            if role is CallRole.NONE:
                role = self.role if cid == self.call_id else CallRole.CALLED
            self._set(cid, CallStatus.ACCEPT, role, ev.kwargs["media_type"])
        elif ev.name == "on_call_media_type_changed":
            if cid is not None and cid == self.call_id:
                new = ev.kwargs["new_call_media_type"]
                log.info("call %s: media %s -> %s", cid, self.media_type.name, new.name)
                self.media_type = new
        elif ev.name in TERMINAL_EVENTS and cid is not None:
            self._received.discard(cid)
            if cid == self.call_id:
                self._idle(ev.name)
        return True

    # ------------------------------------------------------------------ answers

    def placed(self, call_id: str, media_type: MediaType) -> None:
        """``calls()`` succeeded with ``call_id``."""
        if call_id == self.call_id:
            # Glare (docs/spec.md §5 row 8): our call answered the one ringing here.
            self._set(call_id, CallStatus.ACCEPT, self.role, self.media_type)
            return
        if self.call_id is not None:
            log.warning("call %s placed while %s was current", call_id, self.call_id)
        self._set(call_id, CallStatus.WAITING, CallRole.CALLER, media_type)

    def accepted(self, call_id: str) -> None:
        if call_id == self.call_id:
            self._set(call_id, CallStatus.ACCEPT, self.role, self.media_type)

    def joined(self, call_id: str) -> None:
        if call_id == self.call_id:
            self._set(call_id, CallStatus.ACCEPT, self.role, self.media_type)
        else:
            self._set(call_id, CallStatus.ACCEPT, CallRole.CALLED, MediaType.UNKNOWN)

    def left(self, call_id: str, how: str) -> None:
        """``reject``/``ignore``/``hangup`` succeeded: the call is no longer current."""
        if call_id == self.call_id:
            self._idle(how)

    def switched(self, call_id: str, media_type: MediaType) -> None:
        if call_id == self.call_id:
            self.media_type = media_type

    # ------------------------------------------------------------------ internals

    def _set(self, call_id: str, status: CallStatus, role: CallRole, media: MediaType) -> None:
        same = call_id == self.call_id
        if not same or status is not self.status:
            log.info(
                "call %s: %s -> %s (%s)",
                call_id,
                self.status.name if same else "NONE",
                status.name,
                role.name,
            )
        self.call_id = call_id
        self.status = status
        self.role = role
        if media is not MediaType.UNKNOWN or not same:
            self.media_type = media

    def _idle(self, why: str) -> None:
        log.info("call %s: %s -> NONE (%s)", self.call_id, self.status.name, why)
        self.call_id = None
        self.status = CallStatus.NONE
        self.role = CallRole.NONE
        self.media_type = MediaType.UNKNOWN
