"""The connection driver: one logged-in session that outlives dropped sockets.

It speaks docs/protocol.md: ``login``/``resume``, request/response correlation by
``id``/``re``, pushes numbered by ``seq``, ``ping`` with the highest ``seq`` seen,
and the close codes. It knows nothing about calls: pushes go to ``on_push`` as they
arrive (the engine queues them for its observers), and the end of the session goes
once to ``on_end``.

::

    open(): connect ─► login ─► ONLINE ◄──────────────────────────────────────┐
                                  │ socket lost, close 1001/1012/1013/…, silence │
                                  ▼  (the next URL, when given several)          │
                           RECONNECTING: wait 0.1 s → 2 s (×2, jitter) ─► connect ─► resume ─ok─┤
                                  ▲   (no wait after 1012)    │ refused (-1414 …)             │
                                  └─ transient / failed: next URL                             │
                                              ▼                                               │
                                   login, same device_id and sig ─ok (new seq space)──────────┘
                                              │ refused (bad sig, …)
       close 1000 / 4001 / 4002 / 4003 ───────┴────────────────────────► ENDED: on_end(...)

Each time it is ONLINE again after a drop, ``on_reconnect`` gets :class:`Reconnected`
saying how (``resumed`` False: logged in again, a new server session), after the pushes
that came before it and before the ones after (the engine queues it with them for its
media layer, which repeats or restarts negotiations then).

Given several server URLs (a cluster behind them), it connects to one at a time:
``open`` tries them in turn, from the one in use, until a login succeeds; every
reconnect moves on to the next one (round robin), and so does every failed attempt
(nothing listens, the upgrade is refused, the connection closes before the answer:
close 1013 says no server can take the session yet). Close 1012 (the node is
leaving) skips the back-off before the first attempt. With one URL every reconnect
goes to it again. The ``resume`` and its ``ack`` are the same whichever URL it goes to.

A push counts as processed once it is handed to ``on_push`` (the engine keeps it in
memory until its observers ran), so ``ack`` and ``resume`` use the highest ``seq``
received; a replayed push at or below it is dropped, so none is delivered twice.

Requests wait for ONLINE while RECONNECTING (bounded by the request timeout). Request
ids come from one counter per :class:`Session`, so they are unique (and increasing)
within a server session across all its connections, as the protocol requires.

A request whose answer was outstanding when the socket dropped is kept. If the
session is resumed (and the server says it still has the session's answers,
``answers_kept``), it is sent again on the new connection with the same ``id``, in
the original order, before anything else: the server answers a request it already
ran with the answer it gave then (it does not run it twice), so the caller gets
exactly one answer; a late duplicate answer is ignored. If the client has to log in
again instead (a new server session: the grace period ran out, or the server
restarted), or the request timeout runs out first, it fails with
``SIGNALING_SEND_FAIL`` (-1406): the caller cannot know whether it took effect; the
events it caused, if any, still arrive.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from ringline.core.errors import CallError, ErrorCode, LocalCallError, RemoteCallError
from ringline.core.protocol import CLOSE_NODE_LEAVING, MAX_FRAME_BYTES, PROTOCOL_VERSION

from .transport import Connection, ConnectionClosed, Transport

__all__ = [
    "PROTOCOL_VERSION",
    "LoginParams",
    "Phase",
    "Reconnected",
    "Session",
    "SessionEnd",
    "cancel_and_wait",
]

log = logging.getLogger("ringline.client")

_DEFAULT_INTERVAL: Final = 5.0
_DEFAULT_GRACE: Final = 15.0
_CLOSE_TIMEOUT: Final = 3.0

#: Close codes after which the session is over for good (protocol.md "Closing").
_FINAL_CLOSES: Final[dict[int, str]] = {
    1000: "the server logged this device out (close 1000); call init() to log in again",
    4001: (
        "kicked offline by another login of this user (close 4001); "
        "call init() again if you want this device back"
    ),
    4002: (
        "the user sig expired and was not renewed in time (close 4002); mint a new sig and call init() again"
    ),
    4003: "the server refused the login (close 4003); see the error before it and init() again",
}
#: Refusals worth retrying on the next connection rather than giving up.
_TRANSIENT: Final = frozenset(
    {
        ErrorCode.RATE_LIMITED,
        ErrorCode.SERVER_SHUTTING_DOWN,
        ErrorCode.SIGNALING_SEND_FAIL,
    }
)


class Phase(Enum):
    CONNECTING = "connecting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    CLOSED = "closed"


#: The ``platform`` this SDK names at login and resume (the server's callbacks report
#: it as ``OptPlatform``): the operating system it runs on, in the vendor's values
#: (which have no Linux: ``Unknown`` there).
PLATFORM = {"win32": "Windows", "darwin": "Mac"}.get(sys.platform, "Unknown")


@dataclass(slots=True)
class LoginParams:
    """What ``login`` sends; kept to log in again when a session cannot be resumed."""

    sdk_app_id: int
    user_id: str
    user_sig: str
    device_id: str | None
    multi_device: bool
    #: the media layer follows a call's SFU room (``on_sfu``, docs/sfu.md)
    sfu: bool = False

    def frame(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "op": "login",
            "v": PROTOCOL_VERSION,
            "sdk_app_id": self.sdk_app_id,
            "user_id": self.user_id,
            "user_sig": self.user_sig,
            "multi_device": self.multi_device,
            "platform": PLATFORM,
        }
        if self.device_id is not None:
            out["device_id"] = self.device_id
        if self.sfu:
            out["sfu"] = True
        return out


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """Why a session ended for good.

    ``code`` is the WebSocket close code (``None`` if a re-login was refused, then
    ``error`` is the refusal); ``message`` says what the app should do.
    """

    code: int | None
    reason: str
    message: str
    error: CallError | None = None


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The session is ONLINE again after a drop: ``resumed``, or logged in again."""

    resumed: bool


@dataclass(slots=True)
class _Pending:
    op: str
    future: asyncio.Future[dict[str, Any]]
    on_ok: Callable[[dict[str, Any]], None] | None
    #: The frame as sent, sent again unchanged (same ``id``) after a resume.
    frame: str


class _TryNext(Exception):
    """A login at one URL failed in a way another server may not: try the next URL."""

    def __init__(self, error: RemoteCallError) -> None:
        super().__init__(str(error))
        self.error = error


PushHandler = Callable[[object, object, int | None], None]
EndHandler = Callable[[SessionEnd], None]
ReconnectHandler = Callable[[Reconnected], None]


def dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _parse(text: str) -> dict[str, Any] | None:
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        log.warning("ignoring a frame that is not JSON: %.80r", text)
        return None
    if not isinstance(msg, dict):
        log.warning("ignoring a frame that is not a JSON object: %.80r", text)
        return None
    return msg


def _refusal(msg: dict[str, Any]) -> RemoteCallError:
    code = msg.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        code = ErrorCode.SIGNALING_SEND_FAIL
    return RemoteCallError(code, str(msg.get("message") or "refused by the server"))


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to finish; never raises the task's own error.

    Does nothing for the current task (a task cannot wait for itself).
    """
    if task is asyncio.current_task():
        return
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed", task.get_name(), exc_info=task.exception())


class Session:
    """One device session. Call :meth:`open`, then :meth:`request`; :meth:`aclose` at
    the end (always, even after ``on_end``: it releases the socket)."""

    def __init__(
        self,
        *,
        transport: Transport,
        urls: Sequence[str],
        login: LoginParams,
        heartbeat_interval: float | None,
        request_timeout: float,
        on_push: PushHandler,
        on_end: EndHandler,
        on_reconnect: ReconnectHandler | None = None,
        backoff: tuple[float, float] = (0.1, 2.0),
        start: int = 0,
    ) -> None:
        if not urls or not 0 <= start < len(urls):
            raise ValueError(f"Session needs one URL or more and an index into them, got {urls!r}, {start}")
        self.login = login
        self.token: str | None = None
        self.heartbeat_interval = heartbeat_interval or _DEFAULT_INTERVAL
        self.heartbeat_grace = _DEFAULT_GRACE
        self.sig_expires_at: float | None = None
        #: The server's STUN/TURN servers (``{urls, username?, credential?}``, entries
        #: without ``urls`` dropped) from the last login or resume that sent them; empty
        #: = host candidates only.
        self.ice_servers: list[dict[str, Any]] = []
        #: ``"all"`` or ``"relay"`` (media only through TURN), from the last login or resume
        #: (``"all"`` when the server does not say).
        self.ice_transport_policy: str = "all"
        self.phase = Phase.CONNECTING
        self.end: SessionEnd | None = None
        self._transport = transport
        self._urls = tuple(urls)
        self._at = start
        self._interval_override = heartbeat_interval
        self._request_timeout = request_timeout
        self._on_push = on_push
        self._on_end = on_end
        self._on_reconnect = on_reconnect
        self._backoff = backoff
        self._conn: Connection | None = None
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._acked = 0
        self._changed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    @property
    def acked(self) -> int:
        """Highest ``seq`` received in the current server session."""
        return self._acked

    @property
    def device_id(self) -> str | None:
        return self.login.device_id

    @property
    def url(self) -> str:
        """The WebSocket URL in use (while reconnecting: the one tried next)."""
        return self._urls[self._at]

    @property
    def url_index(self) -> int:
        """Index of :attr:`url` in the URLs given."""
        return self._at

    def _next_url(self) -> None:
        """Move on to the next URL (round robin); with one URL, stay."""
        self._at = (self._at + 1) % len(self._urls)

    # ------------------------------------------------------------------ public

    async def open(self) -> None:
        """Connect and log in, then keep the session up in a background task.

        With several URLs, each is tried once, from the one in use, until one logs
        in; a server that cannot be reached, closes during the login or refuses it
        for now (-1413, -1406, shutting down) sends the login on to the next one.

        Raises :class:`RemoteCallError`: the server's refusal (its code), or -1406 if
        no server can be reached or answers in time. Nothing is left open then.
        """
        failures: list[str] = []
        for _ in range(len(self._urls)):
            try:
                conn, result, early = await self._login_at(self.url)
            except _TryNext as exc:
                failures.append(f"{self.url}: {exc.error.message}")
                if len(self._urls) == 1:
                    raise exc.error from None
                log.info("%s: login at %s failed (%s); trying the next URL", self._who(), self.url, exc.error)
                self._next_url()
                continue
            self._online(conn, result, resumed=False, early=early)
            break
        else:
            raise RemoteCallError(
                ErrorCode.SIGNALING_SEND_FAIL,
                f"none of the {len(self._urls)} Ringline servers could log in ({'; '.join(failures)}); "
                "check the server URLs and that the servers are running, then try init() again",
            )
        self._runner = asyncio.create_task(
            self._run(), name=f"ringline-session-{self.login.user_id}/{self.device_id}"
        )

    async def _login_at(self, url: str) -> tuple[Connection, dict[str, Any], list[dict[str, Any]]]:
        """Connect to ``url`` and log in. Raises _TryNext when another server may do
        better, RemoteCallError for a refusal that holds everywhere (a bad sig, …)."""
        try:
            async with asyncio.timeout(self._request_timeout):
                conn = await self._transport.connect(url)
        except (OSError, TimeoutError) as exc:
            raise _TryNext(
                RemoteCallError(
                    ErrorCode.SIGNALING_SEND_FAIL,
                    f"cannot reach the Ringline server at {url} ({exc or 'timed out'}); "
                    "check the server URL and that the server is running",
                )
            ) from None
        try:
            result, early = await self._handshake(conn, self.login.frame())
        except ConnectionClosed as exc:
            await self._close_conn(conn)
            raise _TryNext(
                RemoteCallError(
                    ErrorCode.SIGNALING_SEND_FAIL,
                    f"the server closed the connection during login ({exc}); try init() again",
                )
            ) from None
        except TimeoutError:
            await self._close_conn(conn)
            raise _TryNext(
                RemoteCallError(
                    ErrorCode.SIGNALING_SEND_FAIL,
                    f"no answer to login within {self._request_timeout:g} s; "
                    "check the server and try init() again",
                )
            ) from None
        except RemoteCallError as exc:
            await self._close_conn(conn)
            if exc.code in _TRANSIENT and len(self._urls) > 1:
                raise _TryNext(exc) from None
            raise
        except BaseException:
            await self._close_conn(conn)
            raise
        return conn, result, early

    async def request(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        *,
        on_ok: Callable[[dict[str, Any]], None] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send request ``op`` and return its ``result``.

        ``on_ok`` runs with the result as soon as the answer arrives, before any push
        that follows it on the wire is handed on (state updates belong there).

        If the connection drops before the answer arrives, the request is sent again
        after the session is resumed and its answer returned (the server does not run
        it twice).

        Raises :class:`RemoteCallError` with the server's code when refused, -1406 when
        the answer is late or lost for good (the session had to log in again): then
        check the state (``call_status``) or wait for the events before retrying;
        :class:`LocalCallError` -1202 if the frame is too big, -1201 if the session is
        over.
        """
        body = dict(args or {})
        size = len(dumps({"id": 2**53, "op": op, **body}).encode("utf-8"))
        if size > MAX_FRAME_BYTES:
            raise LocalCallError(
                ErrorCode.PARAM_INVALID,
                f"{op}: the request is {size} bytes; frames are limited to "
                f"{MAX_FRAME_BYTES} bytes: send less data",
            )
        limit = self._request_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        rid = 0
        fut: asyncio.Future[dict[str, Any]] | None = None
        try:
            async with asyncio.timeout(limit):
                while True:
                    conn = await self._wait_online(op)
                    rid = next(self._ids)
                    fut = loop.create_future()
                    frame = dumps({"id": rid, "op": op, **body})
                    self._pending[rid] = _Pending(op, fut, on_ok, frame)
                    try:
                        await conn.send(frame)
                    except ConnectionClosed:
                        # Not sent: wait until the reader notices, then try on the next one.
                        self._pending.pop(rid, None)
                        await self._wait_replaced(conn)
                        continue
                    return await fut
        except TimeoutError:
            why = (
                "the connection is still being re-established"
                if self.phase is Phase.RECONNECTING
                else "the server did not answer"
            )
            raise RemoteCallError(
                ErrorCode.SIGNALING_SEND_FAIL,
                f"{op}: no answer within {limit:g} s ({why}); it may or may not have "
                "taken effect: check call_status or wait for the events, then retry",
            ) from None
        finally:
            self._pending.pop(rid, None)
            if fut is not None and fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: no "exception never retrieved" noise

    async def aclose(self) -> None:
        """Stop for good (idempotent): fail waiting requests, stop the background
        task, close the socket. Does not log out; send ``logout`` first for that."""
        if self.phase is not Phase.CLOSED:
            self._set_phase(Phase.CLOSED)
            self._fail_pending(
                lambda op: LocalCallError(
                    ErrorCode.INIT_FAIL,
                    f"{op}: uninit() was called before the server answered",
                )
            )
        if self._runner is not None:
            await cancel_and_wait(self._runner)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._close_conn(conn)

    # ------------------------------------------------------------------ runner

    async def _run(self) -> None:
        try:
            await self._keep_up()
        except Exception as exc:  # a bug here must not leave requests hanging
            log.exception("%s: the session task failed", self._who())
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await self._close_conn(conn)
            self._finish(
                SessionEnd(
                    None,
                    repr(exc),
                    f"the SDK's session task failed ({exc!r}); call init() again",
                    RemoteCallError(ErrorCode.SIGNALING_SEND_FAIL, repr(exc)),
                )
            )

    async def _keep_up(self) -> None:
        while True:
            conn = self._conn
            assert conn is not None
            closed = await self._pump(conn)
            self._conn = None
            message = _FINAL_CLOSES.get(closed.code or 0)
            if message is not None:
                await self._close_conn(conn)
                self._finish(SessionEnd(closed.code, closed.reason, message))
                return
            self._next_url()
            log.warning(
                "%s: connection lost (%s); reconnecting to %s%s",
                self._who(),
                closed,
                self.url,
                f" ({len(self._pending)} requests to send again)" if self._pending else "",
            )
            self._set_phase(Phase.RECONNECTING)
            # Outstanding requests are kept: sent again after a resume (_resend), or
            # failed if the session has to log in again (_lost).
            await self._close_conn(conn)
            end = await self._reconnect(at_once=closed.code == CLOSE_NODE_LEAVING)
            if end is not None:
                self._finish(end)
                return

    async def _pump(self, conn: Connection) -> ConnectionClosed:
        """Read frames until the connection ends; ping meanwhile."""
        heartbeat = asyncio.create_task(self._heartbeat(conn), name="ringline-heartbeat")
        # Silence this long means the socket is dead even if TCP has not noticed.
        silence = max(self.heartbeat_grace, 3 * self.heartbeat_interval)
        try:
            while True:
                try:
                    async with asyncio.timeout(silence):
                        text = await conn.receive()
                except ConnectionClosed as exc:
                    return exc
                except TimeoutError:
                    return ConnectionClosed(None, f"no frame from the server for {silence:g} s")
                msg = _parse(text)
                if msg is not None:
                    self._handle(msg)
        finally:
            await cancel_and_wait(heartbeat)

    async def _heartbeat(self, conn: Connection) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await conn.send(dumps({"op": "ping", "ack": self._acked}))
            except ConnectionClosed:
                return  # the reader sees the close and reconnects

    async def _reconnect(self, *, at_once: bool = False) -> SessionEnd | None:
        """Connect to :attr:`url` and resume (or log in again), after a back-off
        (none before the first attempt if ``at_once``); each failed attempt moves on
        to the next URL."""
        delay, cap = self._backoff
        while True:
            if not at_once:
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, cap)
            at_once = False
            url = self.url
            try:
                async with asyncio.timeout(self._request_timeout):
                    conn = await self._transport.connect(url)
            except (OSError, TimeoutError) as exc:
                log.info("%s: reconnect to %s failed: %s", self._who(), url, exc or "timed out")
                self._next_url()
                continue
            try:
                end = await self._reopen(conn)
            except (OSError, TimeoutError) as exc:  # ConnectionClosed is an OSError
                await self._close_conn(conn)
                log.info("%s: reconnect to %s failed: %s", self._who(), url, exc or "timed out")
                self._next_url()
                continue
            except BaseException:
                await self._close_conn(conn)
                raise
            if end is not None:
                await self._close_conn(conn)
            return end

    async def _reopen(self, conn: Connection) -> SessionEnd | None:
        """Resume on ``conn``, or log in again. ``None`` when ONLINE again."""
        try:
            result, early = await self._handshake(
                conn,
                {
                    "op": "resume",
                    "v": PROTOCOL_VERSION,
                    "session": self.token,
                    "ack": self._acked,
                    "platform": PLATFORM,
                    **({"sfu": True} if self.login.sfu else {}),
                },
            )
        except RemoteCallError as exc:
            if exc.code in _TRANSIENT:
                raise ConnectionClosed(None, f"resume refused for now: {exc}") from None
            log.info(
                "%s: session %s cannot be resumed (%s); logging in again",
                self._who(),
                self.token,
                exc,
            )
        else:
            if result.get("answers_kept") is True:
                await self._resend(conn)
            else:
                self._lost("the server cannot replay its answer (it restarted, or is too old)")
            self._online(conn, result, resumed=True, early=early)
            self._reconnected(resumed=True)
            return None
        self._lost("the session could not be resumed and a new one is opened")
        try:
            result, early = await self._handshake(conn, self.login.frame())
        except RemoteCallError as exc:
            if exc.code in _TRANSIENT:
                raise ConnectionClosed(None, f"login refused for now: {exc}") from None
            log.error("%s: logging in again was refused: %s", self._who(), exc)
            return SessionEnd(
                None,
                exc.message,
                f"the connection dropped and logging in again was refused ({exc}); "
                "fix the cause (often: mint a new user sig) and call init() again",
                exc,
            )
        self._online(conn, result, resumed=False, early=early)
        self._reconnected(resumed=False)
        return None

    async def _resend(self, conn: Connection) -> None:
        """Send the requests still waiting for an answer again, unchanged (same ids),
        oldest first, on the resumed connection. Raises ConnectionClosed if it drops
        (they stay kept for the next attempt)."""
        waiting = [self._pending[rid] for rid in sorted(self._pending)]
        waiting = [p for p in waiting if not p.future.done()]
        if waiting:
            log.info("%s: sending %d unanswered requests again", self._who(), len(waiting))
        for p in waiting:
            await conn.send(p.frame)

    def _lost(self, why: str) -> None:
        """Fail the requests still waiting for an answer: it is lost for good."""
        self._fail_pending(
            lambda op: RemoteCallError(
                ErrorCode.SIGNALING_SEND_FAIL,
                f"{op}: the connection dropped before the server answered and {why}; it "
                "may or may not have taken effect: check call_status or wait for the "
                "events, then retry",
            )
        )

    def _reconnected(self, *, resumed: bool) -> None:
        if self._on_reconnect is not None:
            try:
                self._on_reconnect(Reconnected(resumed))
            except Exception:
                log.exception("%s: on_reconnect failed", self._who())

    async def _handshake(
        self, conn: Connection, frame: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Send ``login``/``resume`` and read up to its answer.

        Returns the result and any frames that came before it (handled by the caller
        once the session numbering is settled). Raises RemoteCallError if refused,
        ConnectionClosed or TimeoutError if the connection fails.
        """
        rid = next(self._ids)
        early: list[dict[str, Any]] = []
        async with asyncio.timeout(self._request_timeout):
            await conn.send(dumps({"id": rid, **frame}))
            while True:
                msg = _parse(await conn.receive())
                if msg is None:
                    continue
                if msg.get("re") == rid:
                    if msg.get("ok") is True:
                        result = msg.get("result")
                        return (result if isinstance(result, dict) else {}), early
                    raise _refusal(msg)
                early.append(msg)

    def _online(
        self,
        conn: Connection,
        result: dict[str, Any],
        *,
        resumed: bool,
        early: list[dict[str, Any]],
    ) -> None:
        token = result.get("session")
        if isinstance(token, str) and token:
            self.token = token
        if resumed:
            next_seq = result.get("next_seq")
            if isinstance(next_seq, int) and next_seq != self._acked + 1:
                log.warning("%s: resumed at seq %s, expected %d", self._who(), next_seq, self._acked + 1)
        else:
            # A new server session numbers its pushes from 1 again.
            self._acked = 0
            device_id = result.get("device_id")
            if isinstance(device_id, str) and device_id:
                self.login.device_id = device_id
        interval = result.get("heartbeat_interval")
        if self._interval_override is None and isinstance(interval, int | float) and interval > 0:
            self.heartbeat_interval = float(interval)
        grace = result.get("heartbeat_grace")
        if isinstance(grace, int | float) and grace > 0:
            self.heartbeat_grace = float(grace)
        expires = result.get("sig_expires_at")
        if isinstance(expires, int | float):
            self.sig_expires_at = float(expires)
        ice = result.get("ice_servers")
        if isinstance(ice, list):
            self.ice_servers = [x for x in ice if isinstance(x, dict) and x.get("urls")]
        policy = result.get("ice_transport_policy")
        # A server older than the field says nothing: all candidates.
        self.ice_transport_policy = "relay" if policy == "relay" else "all"
        log.info(
            "%s: %s (session %s)",
            self._who(),
            "resumed" if resumed else "logged in",
            self.token,
        )
        self._conn = conn
        self._set_phase(Phase.ONLINE)
        for msg in early:
            self._handle(msg)

    # ------------------------------------------------------------------ frames

    def _handle(self, msg: dict[str, Any]) -> None:
        if "re" in msg:
            self._answer(msg)
        elif "ev" in msg:
            seq = msg.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                if seq <= self._acked:
                    log.debug("%s: push %d again, dropped", self._who(), seq)
                    return
                if seq != self._acked + 1:
                    log.warning("%s: pushes jump from %d to %d", self._who(), self._acked, seq)
                self._acked = seq
            else:
                seq = None
            try:
                self._on_push(msg["ev"], msg.get("args"), seq)
            except Exception:
                log.exception("%s: handling push %r failed", self._who(), msg.get("ev"))
        # {"pong": t} and frames of newer protocol versions: nothing to do.

    def _answer(self, msg: dict[str, Any]) -> None:
        rid = msg.get("re")
        pending = self._pending.pop(rid, None) if isinstance(rid, int) else None
        if pending is None:
            if msg.get("ok") is not True:
                log.warning("%s: server error for frame %r: %s", self._who(), rid, _refusal(msg))
            return
        if pending.future.done():
            return
        if msg.get("ok") is True:
            result = msg.get("result")
            result = result if isinstance(result, dict) else {}
            if pending.on_ok is not None:
                try:
                    pending.on_ok(result)
                except Exception:
                    log.exception("%s: applying the answer to %s failed", self._who(), pending.op)
            pending.future.set_result(result)
        else:
            pending.future.set_exception(_refusal(msg))

    # ------------------------------------------------------------------ helpers

    def _who(self) -> str:
        return f"{self.login.user_id}/{self.device_id or '?'}"

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        # Wake every waiter; later waiters wait on a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_online(self, op: str) -> Connection:
        while True:
            if self.phase is Phase.ONLINE and self._conn is not None:
                return self._conn
            if self.phase in (Phase.ENDED, Phase.CLOSED):
                raise self._over(op)
            await self._changed.wait()

    async def _wait_replaced(self, conn: Connection) -> None:
        while self._conn is conn and self.phase is Phase.ONLINE:
            await self._changed.wait()

    def _over(self, op: str) -> LocalCallError:
        if self.end is not None:
            return LocalCallError(ErrorCode.INIT_FAIL, f"{op}: not logged in: {self.end.message}")
        return LocalCallError(ErrorCode.INIT_FAIL, f"{op}: the engine is not initialised; call init() first")

    def _fail_pending(self, error: Callable[[str], CallError]) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(error(p.op))

    def _finish(self, end: SessionEnd) -> None:
        log.info("%s: session over: %s", self._who(), end.message)
        self.end = end
        self._set_phase(Phase.ENDED)
        self._fail_pending(
            lambda op: RemoteCallError(
                ErrorCode.SIGNALING_SEND_FAIL,
                f"{op}: the session ended before the server answered: {end.message}",
            )
        )
        try:
            self._on_end(end)
        except Exception:
            log.exception("%s: on_end failed", self._who())

    async def _close_conn(self, conn: Connection) -> None:
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await conn.close()
        except (OSError, TimeoutError) as exc:
            log.debug("closing the connection: %s", exc)
