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
import hashlib
import hmac
import itertools
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

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
    ``session_timeout``, 60 s by default)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        keepalive: float = 20.0,
        timeout: float = 10.0,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.secret = secret
        self.keepalive_interval = keepalive
        self.timeout = timeout
        self._http = http
        self._own_http = http is None
        self._ids = itertools.count(1)
        self._session_id: int | None = None
        self._handle_id: int | None = None
        self._lock = asyncio.Lock()
        self._keeper: asyncio.Task[None] | None = None
        self.sessions_made = 0
        """How many Janus sessions this client has created (more than 1: Janus lost one)."""

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
            raise JanusError(
                0, f"cannot reach {self.url}: {exc or type(exc).__name__}", body["janus"]
            ) from exc
        if not isinstance(got, dict):
            raise JanusError(490, f"not a JSON object: {got!r:.200}", body["janus"])
        return got

    def _body(self, janus: str, **fields: Any) -> dict[str, Any]:
        return request_body(janus, f"rl{next(self._ids)}", self.secret, **fields)

    async def _connect(self) -> tuple[int, int]:
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
            return self._session_id, self._handle_id

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_interval)
            sid = self._session_id
            if sid is None:
                continue
            try:
                plugin_data(await self._post(f"/{sid}", self._body("keepalive")), "keepalive")
            except JanusError as exc:
                if exc.code in (SESSION_NOT_FOUND, HANDLE_NOT_FOUND) and self._session_id == sid:
                    self._session_id = self._handle_id = None  # made again on the next request
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
                if self._session_id == sid:
                    self._session_id = self._handle_id = None
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
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
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


@dataclass(slots=True)
class _Room:
    client: JanusClient
    room: str
    secret: str
    #: user id → (token, the device it was handed to)
    members: dict[str, tuple[str, str]] = field(default_factory=dict)


class SfuRooms:
    """The rooms of the calls that go through an SFU. The hub calls :meth:`touch` with a
    call id whenever something happened in that call; a task per call then brings Janus in
    line with :class:`RoomPlan` (``plan(call_id)``, None once the call is gone), one step at
    a time and always from the latest plan: a room for a call of at least ``min_members``,
    a token for each connected member (``push(device_id, call_id, info)``), revoked and
    kicked when it is no longer connected, the room destroyed when the call ends."""

    def __init__(
        self,
        clients: Sequence[JanusClient],
        secret: str,
        *,
        min_members: int,
        plan: Callable[[str], RoomPlan | None],
        push: Callable[[str, str, dict[str, Any]], None],
    ) -> None:
        self.clients = list(clients)
        self.secret = secret
        self.min_members = min_members
        self._plan = plan
        self._push = push
        self.rooms: dict[str, _Room] = {}
        self._dirty: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._next = itertools.count()
        self.errors = 0
        self._closed = False

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
            while call_id in self._dirty and not self._closed:
                self._dirty.discard(call_id)
                try:
                    await self._sync(call_id)
                except JanusError as exc:
                    self.errors += 1
                    log.warning("call %s: SFU room not in line: %s", call_id, exc)
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
            if room is not None:
                del self.rooms[call_id]
                await room.client.destroy(room.room, room.secret)
                log.info("call %s: SFU room %s destroyed", call_id, room.room)
            return
        if room is None:
            if plan.size < self.min_members:
                return
            room = await self._create(call_id)
        for user, (token, _device) in list(room.members.items()):
            if user not in plan.connected:
                del room.members[user]
                await room.client.allowed(room.room, room.secret, "remove", [token])
                await room.client.kick(room.room, room.secret, user)
        for user, device in plan.connected.items():
            had = room.members.get(user)
            if had is not None and had[1] == device:
                continue
            token = had[0] if had is not None else new_token()
            if had is None:
                await room.client.allowed(room.room, room.secret, "add", [token])
            room.members[user] = (token, device)
            self._push(device, call_id, {"room": room.room, "token": token, "id": user})

    async def _create(self, call_id: str) -> _Room:
        """Make the call's room on the next Janus in turn, or on the following ones when
        that one cannot be reached. A room of that id already there (made by this server
        before it restarted: the secret is the same) is taken over, its tokens revoked."""
        name = room_id(call_id)
        secret = room_secret(self.secret, name)
        first = next(self._next)
        last: JanusError | None = None
        for i in range(len(self.clients)):
            client = self.clients[(first + i) % len(self.clients)]
            try:
                await client.create_room(name, secret, [])
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
            else:
                log.info("call %s: SFU room %s created on %s", call_id, name, client.url)
            room = self.rooms[call_id] = _Room(client, name, secret)
            return room
        assert last is not None
        raise last

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
        for task in list(self._tasks.values()):
            with contextlib.suppress(Exception):
                await task
        for client in self.clients:
            await client.close()
