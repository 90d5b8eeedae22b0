"""Group calls through an SFU: the server's client of Janus's VideoRoom (docs/sfu.md).

The server is the only one that talks to Janus's HTTP API. It keeps one Janus session per
configured Janus (kept alive with a ``keepalive`` every third of its timeout, made again
when Janus forgot it) with one VideoRoom handle, and through it creates one room per call,
admits each connected member with a token of its own (the room's ``allowed`` list),
revokes and kicks members who leave, and destroys the room when the call ends. Clients get
the room id and their token, never the room secret.

Pure parts: :func:`parse_sfu` (the ``--sfu`` value), :func:`room_id`, :func:`room_secret`,
:func:`new_token`, :func:`request_body`, :func:`plugin_data` (a response, or a
:class:`JanusError` naming Janus's error code). I/O: :class:`JanusClient` (one Janus),
:class:`SfuRooms` (the calls' rooms, driven by the hub).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import itertools
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from ..core.errors import ErrorCode, LocalCallError

__all__ = [
    "JANUS_ERRORS",
    "JanusClient",
    "JanusError",
    "RoomPlan",
    "SfuRooms",
    "SfuTarget",
    "new_token",
    "parse_sfu",
    "plugin_data",
    "request_body",
    "room_id",
    "room_secret",
]

log = logging.getLogger("ringline.server.sfu")

#: Janus's error codes (core API and VideoRoom plugin) by the names its sources give them.
JANUS_ERRORS: dict[int, str] = {
    403: "UNAUTHORIZED",
    405: "UNAUTHORIZED_PLUGIN",
    450: "TRANSPORT_SPECIFIC",
    452: "MISSING_REQUEST",
    453: "UNKNOWN_REQUEST",
    454: "INVALID_JSON",
    455: "INVALID_JSON_OBJECT",
    456: "MISSING_MANDATORY_ELEMENT",
    457: "INVALID_REQUEST_PATH",
    458: "SESSION_NOT_FOUND",
    459: "HANDLE_NOT_FOUND",
    460: "PLUGIN_NOT_FOUND",
    461: "PLUGIN_ATTACH",
    462: "PLUGIN_MESSAGE",
    463: "PLUGIN_DETACH",
    464: "JSEP_UNKNOWN_TYPE",
    465: "JSEP_INVALID_SDP",
    466: "TRICKE_INVALID_STREAM",
    467: "INVALID_ELEMENT_TYPE",
    468: "SESSION_CONFLICT",
    469: "UNEXPECTED_ANSWER",
    470: "TOKEN_NOT_FOUND",
    471: "WEBRTC_STATE",
    472: "NOT_ACCEPTING_SESSIONS",
    490: "UNKNOWN",
    # VideoRoom (JANUS_VIDEOROOM_ERROR_*)
    421: "VIDEOROOM_NO_MESSAGE",
    422: "VIDEOROOM_INVALID_JSON",
    423: "VIDEOROOM_INVALID_REQUEST",
    424: "VIDEOROOM_JOIN_FIRST",
    425: "VIDEOROOM_ALREADY_JOINED",
    426: "VIDEOROOM_NO_SUCH_ROOM",
    427: "VIDEOROOM_ROOM_EXISTS",
    428: "VIDEOROOM_NO_SUCH_FEED",
    429: "VIDEOROOM_MISSING_ELEMENT",
    430: "VIDEOROOM_INVALID_ELEMENT",
    431: "VIDEOROOM_INVALID_SDP_TYPE",
    432: "VIDEOROOM_PUBLISHERS_FULL",
    433: "VIDEOROOM_UNAUTHORIZED",
    434: "VIDEOROOM_ALREADY_PUBLISHED",
    435: "VIDEOROOM_NOT_PUBLISHED",
    436: "VIDEOROOM_ID_EXISTS",
    437: "VIDEOROOM_INVALID_SDP",
    499: "VIDEOROOM_UNKNOWN_ERROR",
}

SESSION_NOT_FOUND = 458
HANDLE_NOT_FOUND = 459
NO_SUCH_ROOM = 426
ROOM_EXISTS = 427
NO_SUCH_FEED = 428

#: Publishers a call's room admits: a call has at most 9 members (docs/media.md).
ROOM_PUBLISHERS = 9


class JanusError(Exception):
    """Janus answered with an error (``code`` and its :data:`JANUS_ERRORS` name), or could
    not be reached (``code`` 0)."""

    def __init__(self, code: int, reason: str, request: str = "") -> None:
        self.code = code
        self.reason = reason
        self.request = request
        self.name = JANUS_ERRORS.get(code, "UNREACHABLE" if code == 0 else "UNKNOWN_CODE")
        what = f"Janus {request}: " if request else "Janus: "
        super().__init__(f"{what}{code} {self.name}: {reason}" if code else f"{what}{reason}")


@dataclass(frozen=True, slots=True)
class SfuTarget:
    """One ``--sfu KIND=URL`` entry: ``kind`` is ``janus``, ``url`` its HTTP API."""

    kind: str
    url: str


def parse_sfu(value: str) -> SfuTarget:
    """``janus=http://127.0.0.1:8088/janus`` → :class:`SfuTarget`; ValueError saying what to fix."""
    kind, sep, url = value.strip().partition("=")
    example = "e.g. --sfu janus=http://127.0.0.1:8088/janus"
    if not sep or kind != "janus":
        raise ValueError(f"--sfu {value!r} must be janus=URL of Janus's HTTP API, {example}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises for a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(f"--sfu {value!r}: {url!r} is not an http(s) URL of Janus's HTTP API, {example}")
    return SfuTarget(kind, url.rstrip("/"))


#: The start of every room id this server makes.
ROOM_PREFIX = "ringline-"


def room_id(call_id: str) -> str:
    """The Janus room of a call (string room ids: the VideoRoom's ``string_ids = true``)."""
    return ROOM_PREFIX + call_id


def room_secret(sfu_secret: str, room: str) -> str:
    """The room's ``secret``: HMAC-SHA256 of the room id under ``--sfu-secret``, so that no
    client can guess it and a restarted server can still edit or destroy the rooms it
    made before."""
    return hmac.new(sfu_secret.encode(), b"room:" + room.encode(), hashlib.sha256).hexdigest()


def new_token() -> str:
    """A member's token for a room's ``allowed`` list (random, 128 bits)."""
    return secrets.token_urlsafe(16)


def _sdp(data: dict[str, Any]) -> str:
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise LocalCallError(ErrorCode.PARAM_INVALID, "'sdp' must be an SDP (a string starting with v=0)")
    return sdp


def _feed(data: dict[str, Any]) -> str:
    feed = data.get("feed")
    if not isinstance(feed, str) or not feed:
        raise LocalCallError(ErrorCode.PARAM_INVALID, "'feed' must be the user id of a member who published")
    return feed


def _relayed(data: dict[str, Any]) -> dict[str, bool]:
    """The kinds a ``configure`` turns on or off: ``audio`` and/or ``video``, booleans."""
    kinds: dict[str, bool] = {k: data[k] for k in ("audio", "video") if k in data}
    if not kinds or not all(isinstance(v, bool) for v in kinds.values()):
        raise LocalCallError(
            ErrorCode.PARAM_INVALID,
            "'configure' needs 'audio' and/or 'video', each true (relay it) or false (stop relaying it)",
        )
    return kinds


def request_body(janus: str, transaction: str, apisecret: str, **fields: Any) -> dict[str, Any]:
    """A Janus API request: ``{"janus": …, "transaction": …, "apisecret": …, …}``."""
    body: dict[str, Any] = {"janus": janus, "transaction": transaction}
    if apisecret:
        body["apisecret"] = apisecret
    body.update(fields)
    return body


def plugin_data(response: object, request: str = "") -> dict[str, Any]:
    """The ``data`` of a synchronous answer (a core ``success`` with ``data``, or a plugin's
    ``plugindata.data``); raise :class:`JanusError` for ``error`` or a plugin ``error_code``."""
    if not isinstance(response, dict):
        raise JanusError(490, f"not a JSON object: {response!r:.200}", request)
    kind = response.get("janus")
    if kind == "error":
        err = response.get("error") or {}
        raise JanusError(int(err.get("code", 490)), str(err.get("reason", "")), request)
    if kind not in ("success", "ack"):
        raise JanusError(490, f"unexpected answer {kind!r}", request)
    pd = response.get("plugindata")
    if isinstance(pd, dict):
        data = pd.get("data")
        if not isinstance(data, dict):
            raise JanusError(490, "plugindata without data", request)
        if "error_code" in data:
            raise JanusError(int(data["error_code"]), str(data.get("error", "")), request)
        return data
    data = response.get("data")
    return data if isinstance(data, dict) else {}


class JanusClient:
    """One Janus: one session and one VideoRoom handle, kept alive. Every method may raise
    :class:`JanusError`. ``keepalive``: seconds between keepalives (below Janus's
    ``session_timeout``, 60 s by default).

    Health: while :attr:`in_use` says rooms live on it (or a request could not reach it),
    ``GET /janus/info`` is probed every ``probe`` seconds (at once when the event long
    poll or a request fails to connect); ``down_after`` failed probes in a row mark it
    down (:attr:`up` False, :attr:`on_down` called, the session forgotten, requests
    refused at once with code 0). A Janus that is down is probed again after ``probe``
    seconds, then twice as long each time up to ``retry_max``; the first answer marks it
    up again (:attr:`on_up`)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        keepalive: float = 20.0,
        timeout: float = 10.0,
        http: aiohttp.ClientSession | None = None,
        probe: float = 2.0,
        down_after: int = 2,
        retry_max: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.secret = secret
        self.keepalive_interval = keepalive
        self.timeout = timeout
        self.probe_interval = probe
        self.down_after = down_after
        self.retry_max = retry_max
        self._http = http
        self._own_http = http is None
        self._ids = itertools.count(1)
        self._session_id: int | None = None
        self._handle_id: int | None = None
        self._lock = asyncio.Lock()
        self._keeper: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        #: transaction → the future of its asynchronous answer (an ``event``)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        #: handle → called with each event Janus sends about it (``webrtcup``, ``hangup``, …)
        self._watchers: dict[int, Callable[[dict[str, Any]], None]] = {}
        #: set while something waits for events (the poller reads them only then)
        self._wanted = asyncio.Event()
        self.on_session_lost: Callable[[], None] | None = None
        """Called when Janus turns out to have forgotten the session (it restarted, or the
        session timed out): every handle on it is gone."""
        self.sessions_made = 0
        """How many Janus sessions this client has created (more than 1: Janus lost one)."""
        self.up = True
        """False while Janus is marked down (failed health probes), until it answers again."""
        self.in_use: Callable[[], bool] = lambda: self._session_id is not None
        """Whether its health is worth probing now (:class:`SfuRooms`: rooms live on it)."""
        self.on_down: Callable[[], None] | None = None
        """Called when Janus is marked down: its session, handles and rooms are lost to us."""
        self.on_up: Callable[[], None] | None = None
        """Called when a Janus marked down answers again (it is back in rotation)."""
        self._health: asyncio.Task[None] | None = None
        self._suspect = asyncio.Event()
        self._closing = False

    @property
    def session_id(self) -> int | None:
        return self._session_id

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            async with self._http.post(
                self.url + path, json=body, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as r:
                got = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.suspect()
            raise JanusError(
                0, f"cannot reach {self.url}: {exc or type(exc).__name__}", body["janus"]
            ) from exc
        if not isinstance(got, dict):
            raise JanusError(490, f"not a JSON object: {got!r:.200}", body["janus"])
        return got

    def _body(self, janus: str, **fields: Any) -> dict[str, Any]:
        return request_body(janus, f"rl{next(self._ids)}", self.secret, **fields)

    async def _connect(self) -> tuple[int, int]:
        if not self.up:
            raise JanusError(0, f"{self.url} is down (probed again until it answers)", "create")
        async with self._lock:
            if self._session_id is not None and self._handle_id is not None:
                return self._session_id, self._handle_id
            made = plugin_data(await self._post("", self._body("create")), "create")
            sid = int(made["id"])
            self.sessions_made += 1
            att = plugin_data(
                await self._post(f"/{sid}", self._body("attach", plugin="janus.plugin.videoroom")), "attach"
            )
            self._session_id, self._handle_id = sid, int(att["id"])
            if self._keeper is None or self._keeper.done():
                self._keeper = asyncio.create_task(self._keep_alive(), name="janus-keepalive")
            if self._poller is None or self._poller.done():
                self._poller = asyncio.create_task(self._poll(), name="janus-events")
            if self._health is None or self._health.done():
                self._health = asyncio.create_task(self._watch(), name="janus-health")
            return self._session_id, self._handle_id

    async def _poll(self) -> None:
        """Read the session's events (HTTP long poll) and hand each answer of an
        asynchronous request to its waiter."""
        while True:
            sid = self._session_id
            if not (self._waiting or self._watchers):
                self._wanted.clear()
                await self._wanted.wait()
                continue
            if sid is None:  # being made again by the next request
                await asyncio.sleep(0.1)
                continue
            assert self._http is not None
            query = f"?maxev=10&apisecret={quote(self.secret, safe='')}" if self.secret else "?maxev=10"
            try:
                async with self._http.get(
                    f"{self.url}/{sid}{query}", timeout=aiohttp.ClientTimeout(total=self.timeout + 35)
                ) as r:
                    status = r.status
                    got = await r.json(content_type=None) if status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("Janus events of %s: %s", self.url, exc or type(exc).__name__)
                self.suspect()
                await asyncio.sleep(1.0)
                continue
            if status == 404:  # what Janus answers a long poll of a session it does not know
                log.warning("Janus %s: session %s is gone", self.url, sid)
                self._forget(sid)
                continue
            if status != 200:
                log.warning("Janus events of %s: HTTP %s", self.url, status)
                await asyncio.sleep(1.0)
                continue
            for ev in got if isinstance(got, list) else [got]:
                if not isinstance(ev, dict):
                    continue
                lost = ev.get("janus") == "error" and (ev.get("error") or {}).get("code") == SESSION_NOT_FOUND
                if lost:
                    self._forget(sid)
                fut = self._waiting.get(str(ev.get("transaction", "")))
                if fut is not None and not fut.done() and ev.get("janus") in ("event", "error"):
                    fut.set_result(ev)
                    continue
                watcher = self._watchers.get(ev.get("sender", 0))
                if watcher is not None:
                    watcher(ev)

    def _forget(self, sid: int) -> None:
        """Janus no longer knows session ``sid``: the next request makes a new one; the
        handles of the old one (and what watched them) are gone with it."""
        if self._session_id == sid:
            self._session_id = self._handle_id = None
            self._watchers.clear()
            if self.on_session_lost is not None:
                self.on_session_lost()

    def watch(self, handle: int, on_event: Callable[[dict[str, Any]], None]) -> None:
        """Call ``on_event`` with every event of ``handle`` that answers no request."""
        self._watchers[handle] = on_event
        self._wanted.set()

    async def attach(self) -> int:
        """A new VideoRoom handle on the session (for one member's media); its id."""
        sid, _ = await self._connect()
        att = plugin_data(
            await self._post(f"/{sid}", self._body("attach", plugin="janus.plugin.videoroom")), "attach"
        )
        return int(att["id"])

    async def detach(self, handle: int) -> None:
        self._watchers.pop(handle, None)
        sid = self._session_id
        if sid is not None:
            with contextlib.suppress(JanusError):
                await self._post(f"/{sid}/{handle}", self._body("detach"))

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None, timeout: float = 20.0
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """An asynchronous VideoRoom request on ``handle`` (``joinandconfigure``,
        ``configure``, ``join`` as subscriber, ``start``); the event's data and its JSEP."""
        what = str(body.get("request", "message"))
        sid, _ = await self._connect()
        req = self._body("message", body=body)
        if jsep is not None:
            req["jsep"] = jsep
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[req["transaction"]] = fut
        self._wanted.set()
        try:
            first = await self._post(f"/{sid}/{handle}", req)
            if first.get("janus") == "ack":
                try:
                    ev = await asyncio.wait_for(fut, timeout)
                except TimeoutError:
                    raise JanusError(490, f"no answer within {timeout:g} s", what) from None
            else:
                ev = first
        finally:
            self._waiting.pop(req["transaction"], None)
        data = plugin_data({**ev, "janus": "success"} if ev.get("janus") == "event" else ev, what)
        got = ev.get("jsep")
        return data, got if isinstance(got, dict) else None

    async def trickle_done(self, handle: int) -> None:
        """Tell Janus that the client's candidates are all in its SDP (aiortc does not trickle)."""
        sid, _ = await self._connect()
        plugin_data(
            await self._post(f"/{sid}/{handle}", self._body("trickle", candidate={"completed": True})),
            "trickle",
        )

    def suspect(self) -> None:
        """Something failed to reach Janus: probe its health now (starting the prober)."""
        self._suspect.set()
        if not self._closing and (self._health is None or self._health.done()):
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to probe with
                self._health = asyncio.get_running_loop().create_task(self._watch(), name="janus-health")

    async def probe(self) -> bool:
        """``GET /janus/info`` within ``probe`` seconds: True when Janus answers at all."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            async with self._http.get(
                self.url + "/info", timeout=aiohttp.ClientTimeout(total=self.probe_interval)
            ) as r:
                await r.read()
                return True
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False

    async def _watch(self) -> None:
        failures = 0
        delay = self.probe_interval
        while not self._closing:  # close() also cancels; this ends a cancel that got lost
            if self.up:
                # Not asyncio.wait_for: on 3.11 it can swallow a cancel that races the wake-up.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.probe_interval):
                        await self._suspect.wait()
                suspect = self._suspect.is_set()
                self._suspect.clear()
                if not (suspect or failures or self.in_use()):
                    continue
                if await self.probe():
                    failures = 0
                    continue
                failures += 1
                if failures < self.down_after:
                    await asyncio.sleep(self.probe_interval / 4)
                    self._suspect.set()
                    continue
                failures, delay = 0, self.probe_interval
                self._mark_down()
            else:
                await asyncio.sleep(delay)
                if await self.probe():
                    self.up = True
                    log.warning("Janus %s answers again: back in rotation", self.url)
                    if self.on_up is not None:
                        self.on_up()
                else:
                    delay = min(delay * 2, self.retry_max)

    def _mark_down(self) -> None:
        """Janus failed its health probes: forget the session and its handles, fail the
        requests waiting for its events, and tell :attr:`on_down`."""
        self.up = False
        log.warning(
            "Janus %s is down (%d health probes failed); probing it again from %g s on",
            self.url,
            self.down_after,
            self.probe_interval,
        )
        self._session_id = self._handle_id = None
        self._watchers.clear()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(JanusError(0, f"{self.url} is down", "message"))
        if self.on_down is not None:
            self.on_down()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_interval)
            sid = self._session_id
            if sid is None or not self.up:
                continue
            try:
                plugin_data(await self._post(f"/{sid}", self._body("keepalive")), "keepalive")
            except JanusError as exc:
                if exc.code in (SESSION_NOT_FOUND, HANDLE_NOT_FOUND):
                    self._forget(sid)  # made again on the next request
                log.warning("%s", exc)

    async def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous VideoRoom request (``create``, ``allowed``, ``kick``, ``destroy``,
        ``exists``, ``list``, ``listparticipants``); its ``data``. A session Janus forgot
        (it restarted, or the keepalives stopped) is made again once."""
        what = str(body.get("request", "message"))
        for attempt in (0, 1):
            sid, hid = await self._connect()
            try:
                return plugin_data(await self._post(f"/{sid}/{hid}", self._body("message", body=body)), what)
            except JanusError as exc:
                if attempt or exc.code not in (SESSION_NOT_FOUND, HANDLE_NOT_FOUND):
                    raise
                self._forget(sid)
        raise AssertionError("unreachable")  # pragma: no cover

    async def create_room(self, room: str, secret: str, tokens: Sequence[str], **extra: Any) -> None:
        await self.request(
            {
                "request": "create",
                "room": room,
                "admin_key": self.secret,
                "secret": secret,
                "is_private": True,
                "allowed": list(tokens),
                "lock_record": True,
                "publishers": ROOM_PUBLISHERS,
                "audiocodec": "opus",
                "videocodec": "vp8",
                "permanent": False,
                **extra,
            }
        )

    async def allowed(self, room: str, secret: str, action: str, tokens: Sequence[str]) -> list[str]:
        """``action`` ``add``/``remove`` (or ``enable``/``disable``); the room's list after it."""
        data = await self.request(
            {"request": "allowed", "room": room, "secret": secret, "action": action, "allowed": list(tokens)}
        )
        return [str(t) for t in data.get("allowed", [])]

    async def kick(self, room: str, secret: str, participant: str) -> bool:
        """Kick a participant; False when it is not in the room."""
        try:
            await self.request({"request": "kick", "room": room, "secret": secret, "id": participant})
        except JanusError as exc:
            if exc.code == NO_SUCH_FEED:
                return False
            raise
        return True

    async def destroy(self, room: str, secret: str) -> bool:
        """Destroy a room; False when there is none."""
        try:
            await self.request({"request": "destroy", "room": room, "secret": secret, "permanent": False})
        except JanusError as exc:
            if exc.code == NO_SUCH_ROOM:
                return False
            raise
        return True

    async def exists(self, room: str) -> bool:
        return bool((await self.request({"request": "exists", "room": room})).get("exists"))

    async def list_rooms(self) -> list[dict[str, Any]]:
        """Public rooms, and private ones too with the ``admin_key``."""
        data = await self.request({"request": "list", "admin_key": self.secret})
        return list(data.get("list", []))

    async def participants(self, room: str) -> list[dict[str, Any]]:
        data = await self.request({"request": "listparticipants", "room": room})
        return list(data.get("participants", []))

    async def close(self) -> None:
        self._closing = True
        for task in (self._keeper, self._poller, self._health):
            # A cancel can be lost inside a library's await (one that turns it into a
            # timeout, say): cancel until the task has ended.
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            if task is not None and not task.cancelled() and task.exception() is not None:
                log.error(
                    "Janus %s: task %s had failed", self.url, task.get_name(), exc_info=task.exception()
                )
        self._keeper = self._poller = self._health = None
        sid = self._session_id
        self._session_id = self._handle_id = None
        if sid is not None:
            with contextlib.suppress(JanusError):
                await self._post(f"/{sid}", self._body("destroy"))
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None


@dataclass(slots=True)
class RoomPlan:
    """What a call needs now, from the switchboard: ``live`` (not ended), ``size`` (members
    ringing or connected) and ``connected`` (user id → the device connected to the call)."""

    live: bool
    size: int
    connected: dict[str, str]
    #: every connected device follows SFU rooms (said so at login or resume)
    capable: bool = True
    #: the call is to be recorded (docs/recording.md): it gets a room whatever its size
    record: bool = False


@dataclass(slots=True)
class _Room:
    client: JanusClient
    room: str
    secret: str
    #: user id → (token, the device it was handed to)
    members: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: user id → its publisher handle (it published)
    publishers: dict[str, int] = field(default_factory=dict)
    #: the publishers whose media reached Janus (``webrtcup``): others may subscribe
    live: set[str] = field(default_factory=set)
    #: (user id, feed user id) → the subscriber handle of that user to that feed
    subscribers: dict[tuple[str, str], int] = field(default_factory=dict)
    #: one member's media requests at a time
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    #: Janus records the room now
    recording: bool = False
    #: the devices told the room's recording state (``on_recording``)
    told: set[str] = field(default_factory=set)

    async def drop_media(self, user: str) -> None:
        """Detach the handles of ``user`` (its publisher, its subscriptions) and the
        others' subscriptions to its feed."""
        self.live.discard(user)
        handles = [h for h in [self.publishers.pop(user, None)] if h is not None]
        for key in [k for k in self.subscribers if user in k]:
            handles.append(self.subscribers.pop(key))
        for h in handles:
            await self.client.detach(h)


class SfuRooms:
    """The rooms of the calls that go through an SFU. The hub calls :meth:`touch` with a
    call id whenever something happened in that call; a task per call then brings Janus in
    line with :class:`RoomPlan` (``plan(call_id)``, None once the call is gone), one step at
    a time and always from the latest plan: a room for a call of at least ``min_members``,
    a token for each connected member (``push(device_id, call_id, info)``), revoked and
    kicked when it is no longer connected, the room destroyed when the call ends.

    Several Janus: new rooms go to each Janus that is up in turn. When one is marked down
    (:class:`JanusClient` health), each of its rooms is made on another one that is up,
    with new tokens (a new ``on_sfu`` tells the members to publish again); a call no Janus
    could take waits for the next one that comes back up. ``may_act`` (a cluster node:
    while it holds the lease) gates every step, so that a node that stepped down leaves
    the rooms to the node that owns the calls now."""

    def __init__(
        self,
        clients: Sequence[JanusClient],
        secret: str,
        *,
        min_members: int,
        plan: Callable[[str], RoomPlan | None],
        push: Callable[[str, str, dict[str, Any] | None], None],
        push_feed: Callable[[str, str, str], None] = lambda _d, _c, _u: None,
        rec_root: Path | None = None,
        on_recording: Callable[[str, bool], set[str]] = lambda _c, _on: set(),
        push_recording: Callable[[str, str, bool], None] = lambda _d, _c, _on: None,
        on_recorded: Callable[[str, Path], None] = lambda _c, _p: None,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        self.clients = list(clients)
        for client in self.clients:
            client.on_session_lost = functools.partial(self._session_lost, client)
            client.on_down = functools.partial(self._janus_down, client)
            client.on_up = functools.partial(self._janus_up, client)
            client.in_use = functools.partial(self._hosts_rooms, client)
        self._may_act = may_act
        self.secret = secret
        self.min_members = min_members
        self._plan = plan
        self._push = push
        self._push_feed = push_feed
        #: recording (docs/recording.md): Janus writes a call's ``.mjr`` files into
        #: ``rec_root/<call id>``; ``on_recording(call_id, on)`` when Janus starts or stops
        #: recording a room (tell every member; the devices told), ``push_recording(device,
        #: call_id, on)`` for a member's device not told yet, ``on_recorded(call_id,
        #: folder)`` once a room that was recorded is destroyed (convert its files)
        self.rec_root = rec_root
        self._on_recording = on_recording
        self._push_recording = push_recording
        self._on_recorded = on_recorded
        #: calls whose room was recorded at some time (their files are converted at the end)
        self.recorded: set[str] = set()
        self.rooms: dict[str, _Room] = {}
        #: calls that went back to the mesh (a device that does not follow rooms joined)
        self.mesh_only: set[str] = set()
        self._dirty: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._next = itertools.count()
        #: live calls that should have a room but no Janus could take it (all down)
        self.homeless: set[str] = set()
        #: calls that got a room: they keep one until they end, even below min_members
        self._roomed: set[str] = set()
        #: restored calls not synced yet: a room of theirs may be on a Janus
        self._restored: set[str] = set()
        self._aux: set[asyncio.Task[None]] = set()
        self.errors = 0
        self._closed = False

    def _hosts_rooms(self, client: JanusClient) -> bool:
        return any(room.client is client for room in self.rooms.values())

    def _janus_down(self, client: JanusClient) -> None:
        """``client``'s Janus is down: make each of its rooms on another Janus that is up
        (new tokens, a new ``on_sfu`` to every member), or as soon as one is."""
        for call_id, room in list(self.rooms.items()):
            if room.client is client:
                del self.rooms[call_id]
                log.warning("call %s: Janus %s is down; moving room %s", call_id, client.url, room.room)
                self.touch(call_id)

    def _janus_up(self, client: JanusClient) -> None:
        """``client``'s Janus answers again: destroy there the rooms of ours that live
        elsewhere now (or whose call ended), then give the calls waiting for a Janus a room."""
        if self._closed or not self._may_act():
            return
        task = asyncio.get_running_loop().create_task(self._revive(client), name="sfu-revive")
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)

    async def _revive(self, client: JanusClient) -> None:
        try:
            rooms = await client.list_rooms()
        except JanusError as exc:
            log.warning("%s", exc)
            rooms = []
        for r in rooms:
            name = str(r.get("room", ""))
            if not name.startswith(ROOM_PREFIX):
                continue
            call_id = name[len(ROOM_PREFIX) :]
            plan = self._plan(call_id)
            room = self.rooms.get(call_id)
            if (room is not None and room.client is not client) or plan is None or not plan.live:
                with contextlib.suppress(JanusError):
                    await client.destroy(name, room_secret(self.secret, name))
                log.info("call %s: stale SFU room %s destroyed on %s", call_id, name, client.url)
        for call_id in list(self.homeless):
            self.homeless.discard(call_id)
            self.touch(call_id)

    def _session_lost(self, client: JanusClient) -> None:
        """``client``'s Janus forgot our session, so the members' handles are gone (and the
        rooms too if Janus restarted): make each room of that Janus again (or take it
        over) with new tokens, which tells every member (``on_sfu``) to publish again."""
        for call_id, room in list(self.rooms.items()):
            if room.client is client:
                del self.rooms[call_id]
                log.warning(
                    "call %s: Janus %s lost our session; making room %s again", call_id, client.url, room.room
                )
                self.touch(call_id)

    def restored(self, call_ids: Sequence[str]) -> None:
        """Live calls restored from the store (a restart, a cluster takeover): their rooms
        are taken over, even those of calls now below ``min_members`` (Janus is asked)."""
        self._restored.update(call_ids)
        for call_id in call_ids:
            self.touch(call_id)

    def touch(self, call_id: str) -> None:
        if self._closed:
            return
        self._dirty.add(call_id)
        if call_id not in self._tasks:
            self._tasks[call_id] = asyncio.get_running_loop().create_task(
                self._run(call_id), name=f"sfu-{call_id}"
            )

    async def _run(self, call_id: str) -> None:
        try:
            while call_id in self._dirty and not self._closed and self._may_act():
                self._dirty.discard(call_id)
                try:
                    await self._sync(call_id)
                except JanusError as exc:
                    self.errors += 1
                    log.warning("call %s: SFU room not in line: %s", call_id, exc)
                    if exc.code == 0 and call_id not in self.rooms:
                        self.homeless.add(call_id)  # tried again when a Janus comes up
                    if exc.code == NO_SUCH_ROOM and self.rooms.pop(call_id, None) is not None:
                        # Janus lost the room (it restarted): make it again, with new
                        # tokens for every connected member.
                        self._dirty.add(call_id)
                except Exception:  # pragma: no cover - a bug must not stop the other calls
                    self.errors += 1
                    log.exception("call %s: SFU room not in line", call_id)
        finally:
            self._tasks.pop(call_id, None)

    async def _sync(self, call_id: str) -> None:
        plan = self._plan(call_id)
        room = self.rooms.get(call_id)
        if plan is None or not plan.live:
            self.mesh_only.discard(call_id)
            self.homeless.discard(call_id)
            self._roomed.discard(call_id)
            self._restored.discard(call_id)
            if room is not None:
                del self.rooms[call_id]
                await room.client.destroy(room.room, room.secret)
                for user in list(room.members):
                    await room.drop_media(user)
                log.info("call %s: SFU room %s destroyed", call_id, room.room)
            self._recorded(call_id)
            return
        announce = False
        if room is None:
            small = plan.size < self.min_members and not plan.record and call_id not in self._roomed
            if small and call_id in self._restored:
                name = room_id(call_id)
                small = not any([await self._has(c, name) for c in self.clients if c.up])
            self._restored.discard(call_id)
            if small or not plan.capable or call_id in self.mesh_only:
                if plan.record and not plan.capable:
                    log.warning(
                        "call %s: not recorded: a device that does not follow SFU rooms is in it", call_id
                    )
                return
            room = await self._create(call_id, plan.record)
            announce = room.recording
        elif not plan.capable:
            # A device that does not follow SFU rooms (the browser engine, for now) is
            # in the call: everyone goes back to the mesh for the rest of it.
            self.mesh_only.add(call_id)
            del self.rooms[call_id]
            for _user, (_token, device) in room.members.items():
                self._push(device, call_id, None)
            await room.client.destroy(room.room, room.secret)
            for user in list(room.members):
                await room.drop_media(user)
            log.info("call %s: a device that does not follow SFU rooms joined: back to the mesh", call_id)
            if room.recording:
                self._on_recording(call_id, False)
            self._recorded(call_id)
            return
        if plan.record != room.recording:
            await room.client.request(
                {
                    "request": "enable_recording",
                    "room": room.room,
                    "secret": room.secret,
                    "record": plan.record,
                }
            )
            room.recording = plan.record
            announce = True
            log.info("call %s: recording %s", call_id, "started" if plan.record else "stopped")
        if room.recording:
            self.recorded.add(call_id)
        if announce:
            room.told = set(self._on_recording(call_id, room.recording))
        for user, (token, _device) in list(room.members.items()):
            if user not in plan.connected:
                del room.members[user]
                await room.client.allowed(room.room, room.secret, "remove", [token])
                await room.client.kick(room.room, room.secret, user)
                await room.drop_media(user)
        for user, device in plan.connected.items():
            had = room.members.get(user)
            if had is not None and had[1] == device:
                continue
            token = had[0] if had is not None else new_token()
            if had is None:
                await room.client.allowed(room.room, room.secret, "add", [token])
            room.members[user] = (token, device)
            self._push(device, call_id, {"room": room.room, "token": token, "id": user})
            if room.recording and device not in room.told:
                room.told.add(device)
                self._push_recording(device, call_id, True)

    def rec_dir(self, call_id: str) -> Path | None:
        """The folder Janus writes the call's ``.mjr`` files into, or None (no recording)."""
        return None if self.rec_root is None else self.rec_root / call_id

    def _recorded(self, call_id: str) -> None:
        """The call's room is gone: hand its recording (if it had one) over."""
        folder = self.rec_dir(call_id)
        if call_id in self.recorded and folder is not None:
            self.recorded.discard(call_id)
            self._on_recorded(call_id, folder)
        elif folder is not None:
            with contextlib.suppress(OSError):
                folder.rmdir()  # never recorded: the empty folder made for its room goes

    async def _create(self, call_id: str, record: bool = False) -> _Room:
        """Make the call's room on the next Janus in turn that is up, or on the following
        ones when that one cannot be reached. A room of that id already there (made by
        this server before it restarted, or by the cluster node that owned the call
        before: the secret is the same) is taken over, its tokens revoked; with several
        Janus up, the one that has it is asked first.
        With a recordings folder every room gets its ``rec_dir`` (so that recording can be
        turned on later), and ``record`` when the call is to be recorded."""
        name = room_id(call_id)
        secret = room_secret(self.secret, name)
        extra: dict[str, Any] = {}
        folder = self.rec_dir(call_id)
        if folder is not None:
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            extra = {"rec_dir": str(folder), "record": record}
        first = next(self._next)
        n = len(self.clients)
        order = [c for c in (self.clients[(first + i) % n] for i in range(n)) if c.up]
        if not order:
            raise JanusError(0, f"no Janus is up (of {n}); the room is made when one answers again", "create")
        if len(order) > 1:
            found = [c for c in order if await self._has(c, name)]
            order = found + [c for c in order if c not in found]
        last: JanusError | None = None
        for client in order:
            try:
                await client.create_room(name, secret, [], **extra)
            except JanusError as exc:
                if exc.code == 0:
                    last = exc
                    continue
                if exc.code != ROOM_EXISTS:
                    raise
                old = await client.allowed(name, secret, "add", [])
                if old:
                    await client.allowed(name, secret, "remove", old)
                log.info("call %s: SFU room %s taken over", call_id, name)
                if folder is not None:  # it may record or not: as planned from now on
                    await client.request(
                        {"request": "enable_recording", "room": name, "secret": secret, "record": record}
                    )
                room = self.rooms[call_id] = _Room(
                    client, name, secret, recording=record and folder is not None
                )
                self.homeless.discard(call_id)
                self._roomed.add(call_id)
                return room
            else:
                log.info("call %s: SFU room %s created on %s", call_id, name, client.url)
            room = self.rooms[call_id] = _Room(client, name, secret, recording=record and folder is not None)
            self.homeless.discard(call_id)
            self._roomed.add(call_id)
            return room
        assert last is not None
        raise last

    @staticmethod
    async def _has(client: JanusClient, name: str) -> bool:
        try:
            return await client.exists(name)
        except JanusError:
            return False

    async def relay(self, call_id: str, user: str, device: str, data: object) -> dict[str, Any]:
        """A member's media request for the call's room (the ``sfu`` op, docs/sfu.md), sent
        to Janus on the member's own handles; the result for the client. Raises
        :class:`LocalCallError` when the request is refused, :class:`JanusError` when Janus
        fails it."""
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise LocalCallError(ErrorCode.PARAM_INVALID, "'data' must be an object with a 'type'")
        room = self.rooms.get(call_id)
        had = room.members.get(user) if room is not None else None
        if room is None or had is None or had[1] != device:
            raise LocalCallError(
                ErrorCode.REQUEST_REFUSED,
                f"call {call_id} has no SFU room for this device (wait for on_sfu)",
            )
        token = had[0]
        kind = data["type"]
        lock = room.locks.setdefault(user, asyncio.Lock())
        async with lock:
            if kind == "publish":
                sdp = _sdp(data)
                handle = room.publishers.get(user)
                if handle is None:
                    handle = await room.client.attach()
                    room.client.watch(handle, self._publisher_event(call_id, room, user, handle))
                    try:
                        body: dict[str, Any] = {"request": "joinandconfigure", "ptype": "publisher"}
                        body |= {"room": room.room, "id": user, "token": token, "audio": True, "video": True}
                        _, answer = await room.client.message(handle, body, {"type": "offer", "sdp": sdp})
                    except JanusError:
                        await room.client.detach(handle)
                        raise
                    room.publishers[user] = handle
                else:
                    _, answer = await room.client.message(
                        handle,
                        {"request": "configure", "audio": True, "video": True},
                        {"type": "offer", "sdp": sdp},
                    )
                await room.client.trickle_done(handle)
                if answer is None:
                    raise JanusError(490, "no SDP answer", "publish")
                return {"sdp": answer.get("sdp", ""), "feeds": sorted(room.live - {user})}
            if kind == "subscribe":
                feed = _feed(data)
                if feed not in room.live or feed == user:
                    raise LocalCallError(ErrorCode.PARAM_INVALID, f"{feed!r} publishes nothing in this call")
                old = room.subscribers.pop((user, feed), None)
                if old is not None:
                    await room.client.detach(old)
                handle = await room.client.attach()
                sub: dict[str, Any] = {"request": "join", "ptype": "subscriber", "room": room.room}
                sub |= {"token": token, "streams": [{"feed": feed}]}
                try:
                    _, offer = await room.client.message(handle, sub)
                except JanusError:
                    await room.client.detach(handle)
                    raise
                if offer is None:
                    await room.client.detach(handle)
                    raise JanusError(490, "no SDP offer", "subscribe")
                room.subscribers[(user, feed)] = handle
                return {"sdp": offer.get("sdp", "")}
            if kind == "start":
                feed = _feed(data)
                handle = room.subscribers.get((user, feed))
                if handle is None:
                    raise LocalCallError(
                        ErrorCode.PARAM_INVALID, f"no subscription to {feed!r}: subscribe first"
                    )
                await room.client.message(handle, {"request": "start"}, {"type": "answer", "sdp": _sdp(data)})
                await room.client.trickle_done(handle)
                return {}
            if kind == "unsubscribe":
                handle = room.subscribers.pop((user, _feed(data)), None)
                if handle is not None:
                    await room.client.detach(handle)
                return {}
            if kind == "configure":
                body = {"request": "configure", **_relayed(data)}
                handle = room.publishers.get(user)
                if handle is None:
                    raise LocalCallError(ErrorCode.PARAM_INVALID, "nothing published yet: publish first")
                await room.client.message(handle, body)
                return {}
        raise LocalCallError(
            ErrorCode.PARAM_INVALID,
            f"unknown type {kind!r}: publish, subscribe, start, unsubscribe or configure",
        )

    def _publisher_event(
        self, call_id: str, room: _Room, user: str, handle: int
    ) -> Callable[[dict[str, Any]], None]:
        def on_event(ev: dict[str, Any]) -> None:
            if room.publishers.get(user) != handle:
                return
            if ev.get("janus") == "webrtcup" and user not in room.live:
                # Its media reaches Janus: tell the others they can subscribe to it.
                room.live.add(user)
                for other, (_t, dev) in room.members.items():
                    if other != user:
                        self._push_feed(dev, call_id, user)
            elif ev.get("janus") == "hangup":
                room.live.discard(user)

        return on_event

    async def reap(self, live: Callable[[str], bool]) -> int:
        """Destroy the rooms of this server's naming (``ringline-…``) whose call is not
        ``live`` (ended while the server was down); how many. Unreachable Janus are skipped."""
        gone = 0
        for client in self.clients:
            try:
                rooms = await client.list_rooms()
            except JanusError as exc:
                log.warning("%s", exc)
                continue
            for r in rooms:
                name = str(r.get("room", ""))
                if name.startswith(ROOM_PREFIX) and not live(name[len(ROOM_PREFIX) :]):
                    with contextlib.suppress(JanusError):
                        gone += await client.destroy(name, room_secret(self.secret, name))
        return gone

    async def close(self) -> None:
        """Stop: wait for the running steps and end the Janus sessions. The rooms of live
        calls stay (a restarted server takes them over); ended calls' rooms are gone."""
        self._closed = True
        for task in [*self._tasks.values(), *self._aux]:
            with contextlib.suppress(Exception):
                await task
        for client in self.clients:
            await client.close()
