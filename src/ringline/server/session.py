"""The server side of one logged-in device: its session, the connection it is attached
to, the pushes it has not acknowledged, and the answers it was given.

A :class:`Session` outlives its WebSocket (the hub keeps it for ``heartbeat_grace``
seconds, docs/protocol.md "Resuming"), so it does not hold the socket: it is attached to
a :class:`Link`, the connection's side it needs, and knows nothing of aiohttp::

    hub ── push / end ──► Session ── put(frame | Close) ──► Link.frames ──► the connection's writer
                            │  buffer: (seq, name, args) until acknowledged (replayed on resume)
                            └  answers: RequestAnswers, by request id (kept for a resent request)

Closing is a typed frame, :class:`Close`, queued after the frames before it, so a
device gets everything it was sent before the close. :meth:`Session.disconnect` closes
the connection at once instead (server shutdown).

The connection (``ws.py``) subclasses :class:`Link`: it writes a text frame at once when
nothing waits before it, else queues it in :attr:`Link.frames` for its writer task, which
sends them in order and closes on a :class:`Close`. While the hub performs a round of
batches it holds a :class:`Cork`: a connection then keeps its text frames until the
round ends and writes them all at once (one ``send()`` for the reply and the pushes a
request caused, instead of one each).
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from . import jsonenc as _json
from .store import base as st

__all__ = [
    "ANSWERS_KEPT",
    "ANSWER_BYTES_KEPT",
    "Close",
    "Cork",
    "Frame",
    "Link",
    "RequestAnswers",
    "Session",
    "device_key",
    "dumps",
]

#: Compact JSON, as every frame (and every stored snapshot) is written.
dumps: Final = _json.dumps

#: Answers remembered per session for requests sent again after a resume (the oldest
#: are forgotten first), and at most this many bytes of them. The answers of requests
#: that change state are small (``{}``, a call id); the large ones, of the requests that
#: only read (``ws.RERUNNABLE_OPS``), are not kept.
ANSWERS_KEPT: Final = 128
ANSWER_BYTES_KEPT: Final = 32 * 1024


def device_key(user_id: str, device_id: str) -> str:
    """The key of a device inside the server: its ``device_id`` scoped to its user, so
    that another user who logs in with the same ``device_id`` is another device (it
    cannot replace, kick, resume or read this one's session or mailbox). ``/`` appears
    in neither a user id nor a device id."""
    return f"{user_id}/{device_id}"


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with WebSocket close ``code`` and ``message`` (its first
    120 characters are sent), after every frame queued before this one. Frames queued
    after it are not sent."""

    code: int
    message: str


#: What a connection's writer is given: a text frame, or the close that ends it.
Frame = str | Close


class Link(ABC):
    """One connection, as a session sees it: the frames waiting for its writer.

    :meth:`put` queues a frame and calls :meth:`queued`, which makes the connection
    send what :meth:`take` returns until it is empty (a subclass may also send a frame
    at once when nothing waits before it). :meth:`close` closes the connection at
    once, without waiting for the queued frames.
    """

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def put(self, frame: Frame) -> None:
        """Send ``frame`` after the others."""
        self.frames.append(frame)
        self.queued()

    @abstractmethod
    def queued(self) -> None:
        """Frames were queued: see that they are sent, in order."""

    def take(self) -> list[Frame]:
        """Every queued frame, oldest first; the queue is empty afterwards."""
        frames = self.frames[:]
        self.frames.clear()
        return frames

    @abstractmethod
    async def close(self, code: int, message: str) -> None:
        """Close the connection now with ``code`` and ``message``; queued frames are
        not sent."""

    @abstractmethod
    def write_held(self) -> None:
        """The :class:`Cork` this link held frames under is gone: write them (a link
        that holds none need not do anything)."""


class Cork:
    """Writes held back while the hub performs a round of batches (``with cork:``;
    rounds may nest): a :class:`Link` that would write a frame at once keeps it instead
    and calls :meth:`hold` with itself; when the outermost round ends, each link held
    is told to write them (:meth:`Link.write_held`), in the order they first held one.

    Nothing runs between a round's start and end but that round (it does not wait), so
    holding changes no order: a link's frames go out in the order they were put, and
    before anything put after the round."""

    __slots__ = ("depth", "held")

    def __init__(self) -> None:
        self.depth = 0
        self.held: list[Link] = []

    def __enter__(self) -> Cork:
        self.depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0 and self.held:
            held, self.held = self.held, []
            for link in held:
                link.write_held()

    def hold(self, link: Link) -> None:
        """``link`` holds frames now (call once, when it holds its first)."""
        self.held.append(link)


class RequestAnswers:
    """The answers one session's requests got, by request ``id`` (``Session.answers``,
    made at its first request that changes state, gone with the session).

    ``running``: requests being processed, with a fingerprint of the frame and the
    connection its latest copy came on (the answer goes there, if that connection is
    still the session's). ``done``: the last :data:`ANSWERS_KEPT` answers (as sent),
    oldest first in ``order``. ``floor``: the highest id forgotten; a request at or
    below it that is not remembered may have run already, so it is refused.
    """

    __slots__ = ("done", "floor", "order", "running", "size")

    def __init__(self) -> None:
        self.running: dict[int, tuple[int, Link]] = {}
        self.done: dict[int, tuple[int, str]] = {}
        self.order: deque[int] = deque()
        self.size = 0
        self.floor: int | None = None

    def keep(self, rid: int, fingerprint: int, text: str) -> None:
        self.done[rid] = (fingerprint, text)
        self.order.append(rid)
        self.size += len(text)
        order = self.order
        while len(order) > ANSWERS_KEPT or (self.size > ANSWER_BYTES_KEPT and len(order) > 1):
            old = order.popleft()
            self.size -= len(self.done.pop(old)[1])
            if self.floor is None or old > self.floor:
                self.floor = old


def _seq_of(push: tuple[int, str, dict[str, Any]]) -> int:
    return push[0]


@dataclass(slots=True, eq=False)
class Session:
    """One logged-in device. :attr:`link` is its current connection, or None between
    connections. ``device_id`` is the device's key, scoped to its user
    (:func:`device_key`); :attr:`client_device_id` is the id its client chose.

    Pushes are numbered by ``seq`` and kept in ``buffer`` until acknowledged
    (:meth:`ack`), so that a resumed connection gets them again (:meth:`replay_after`).
    """

    token: str
    device_id: str
    user_id: str
    multi_device: bool
    sig_expires_at: float
    created_at: float
    last_seen: float
    seq: int = 0
    #: the pushes not acknowledged yet, oldest first, numbered one after the other (a
    #: list: an idle device's empty one costs 56 bytes where a deque's costs 760)
    buffer: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    restored: bool = False
    #: restored with what the previous owner of the calls handed over (cluster
    #: drain): its pushes keep their numbers and its answers are kept
    handed_over: bool = False
    closed: bool = False
    #: answers kept for requests sent again after a resume (made at the session's
    #: first request that changes state)
    answers: RequestAnswers | None = None
    #: the address of its current (or last) connection, and the platform it named at
    #: login or resume: the ``ClientIP`` / ``OptPlatform`` of the callbacks it causes
    client_ip: str = ""
    platform: str = "Unknown"
    #: the device follows a call's SFU room (``"sfu": true`` at login and resume,
    #: docs/sfu.md); None: not known yet (restored, not resumed since)
    sfu: bool | None = None
    _link: Link | None = None

    @property
    def client_device_id(self) -> str:
        """The ``device_id`` the client logged in with (the key without its user)."""
        user, sep, dev = self.device_id.partition("/")
        return dev if sep and user == self.user_id else self.device_id

    @property
    def link(self) -> Link | None:
        """The connection the session is attached to, or None."""
        return self._link

    def row(self) -> st.SessionRow:
        return st.SessionRow(
            token=self.token,
            device_id=self.device_id,
            user_id=self.user_id,
            multi_device=self.multi_device,
            sig_expires_at=self.sig_expires_at,
            created_at=self.created_at,
            last_seen=self.last_seen,
        )

    def keep_answers(self) -> RequestAnswers:
        """The session's :attr:`answers`, made at its first request that changes state."""
        if self.answers is None:
            self.answers = RequestAnswers()
        return self.answers

    # ------------------------------------------------------------------ connection

    def attach(self, link: Link) -> Link | None:
        """Send the session's frames to ``link`` from now on. Returns the connection it
        was attached to before (None if none): the caller closes it if it is another."""
        old, self._link = self._link, link
        return old

    def detach(self, link: Link) -> None:
        """``link`` went away: if it is the session's connection, frames are dropped
        until the next :meth:`attach` (pushes stay in the buffer for a resume)."""
        if self._link is link:
            self._link = None

    def queued(self) -> int:
        """Frames waiting for the connection's writer (0 when none is attached)."""
        return len(self._link.frames) if self._link is not None else 0

    def send(self, text: str) -> None:
        """Queue one frame for the connection's writer (dropped if none is attached)."""
        if self._link is not None:
            self._link.put(text)

    def end(self, code: int, message: str) -> None:
        """Close the connection, if any, with ``code`` once the frames queued before
        are sent (a :class:`Close` frame)."""
        if self._link is not None:
            self._link.put(Close(code, message))

    async def disconnect(self, code: int, message: str) -> None:
        """Close the connection, if any, now (frames still queued are not sent)."""
        if self._link is not None:
            await self._link.close(code, message)

    # ------------------------------------------------------------------ pushes

    def push(self, name: str, args: dict[str, Any]) -> None:
        """Number, keep and send one push."""
        self.seq += 1
        self.buffer.append((self.seq, name, args))
        self.send(dumps({"ev": name, "seq": self.seq, "args": args}))

    def ack(self, upto: int) -> None:
        """The device processed every push up to ``upto``: forget them."""
        buf = self.buffer
        if buf and buf[0][0] <= upto:
            # the buffer's numbers are consecutive: everything up to ``upto`` is a prefix
            del buf[: bisect.bisect_right(buf, upto, key=_seq_of)]

    def replay_after(self, ack: int) -> int:
        """A resume that acknowledged ``ack``: send every push after it again, in
        order; returns how many."""
        if not self.restored or self.handed_over:
            self.ack(ack)
            self.restored = False
        else:
            # The server restarted: this session's numbering continues from the
            # client's own ack; pushes queued since the restart are renumbered.
            renum = [(i, name, args) for i, (_, name, args) in enumerate(self.buffer, start=ack + 1)]
            self.buffer = renum
            self.seq = ack + len(renum)
            self.restored = False
        for seq, name, args in self.buffer:
            self.send(dumps({"ev": name, "seq": seq, "args": args}))
        return len(self.buffer)
