"""``CallEngine``: the Python SDK (docs/spec.md §3), one logged-in device per engine.

Typical use::

    async with CallEngine("http://127.0.0.1:8080") as engine:
        engine.add_observer(MyObserver(engine))
        await engine.init(1400000000, "alice", user_sig)
        call_id = await engine.calls(["bob"], MediaType.VIDEO)
        ...  # events arrive on the observers; leaving the block logs out

Engines are plain objects: any number may live in one process (bots, tests). Every
method that talks to the server is a coroutine and raises

* :class:`~ringline.core.errors.LocalCallError` when the call cannot work as made:
  -1201 not initialised, -1202 bad parameter (checked here, no round trip), -1203 no
  current call for ``accept``/``reject``/``hangup``/…;
* :class:`~ringline.core.errors.RemoteCallError` when the server refuses (its code,
  e.g. -1203, -1206, 8010, 700xx) or cannot be reached in time (-1406).

Observer events are delivered one at a time in server order by a task the engine owns;
the current call (``call_id``, ``call_status``, ``call_role``, ``media_type``) is kept
from those events and from the answers (see :mod:`ringline.client._state`). A dropped
connection is re-established and resumed without losing or repeating events, and a
request whose answer was lost with it is sent again and answered once (the server does
not run it twice); see :mod:`ringline.client._session`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import warnings
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self
from urllib.parse import urlsplit, urlunsplit

from ringline.core.enums import CallRole, CallStatus, MediaType
from ringline.core.errors import CallError, ErrorCode, LocalCallError, RemoteCallError
from ringline.core.machine import (
    MAX_CALLEES,
    MAX_NICKNAME_BYTES,
    MAX_USER_DATA_BYTES,
    check_signal_data,
    valid_user_id,
)
from ringline.core.protocol import (
    DEVICE_ID,
    MAX_CALL_ID,
    MAX_DEVICE_ID,
    MAX_RECENT,
    MAX_RING_TIMEOUT,
    MAX_SERVER_URLS,
)
from ringline.core.types import CallParams, CallRecords, RecentCallsFilter, RoomId

from ._codec import (
    Event,
    decode_event,
    filter_to_wire,
    params_to_wire,
    record_from_wire,
)
from ._forms import Form, forms_of
from ._session import LoginParams, Phase, Reconnected, Session, SessionEnd, cancel_and_wait
from ._state import CallState
from .observer import CURRENT_CALL_ID
from .transport import AiohttpTransport, Transport

if TYPE_CHECKING:  # ringline.media needs the media extra (aiortc); imported when asked for
    from ringline.media import MediaOptions, MediaSession

    from ._media_link import EngineMedia

__all__ = ["CallEngine"]

log = logging.getLogger("ringline.client")

_UINT32_MAX = 2**32 - 1
_LOGOUT_TIMEOUT = 2.0


def _bad(message: str) -> NoReturn:
    raise LocalCallError(ErrorCode.PARAM_INVALID, message)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _type(value: object) -> str:
    return type(value).__name__


def _ws_url(server_url: object, name: str = "server_url") -> str:
    """``http://h:p[/base]`` → ``ws://h:p[/base]/v1/ws`` (https → wss; ws/wss kept)."""
    if not isinstance(server_url, str) or not server_url:
        _bad(f"{name} must be a URL like 'http://127.0.0.1:8080', got {server_url!r}")
    parts = urlsplit(server_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        _bad(f"{name} must be a URL like 'http://127.0.0.1:8080', got {server_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/ws"):
        path += "/v1/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _server_urls(server_url: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The base URLs given (one, or a list of 1..MAX_SERVER_URLS) and their WebSocket URLs."""
    if not isinstance(server_url, list | tuple):
        ws = _ws_url(server_url)
        assert isinstance(server_url, str)  # _ws_url refused anything else
        return (server_url,), (ws,)
    if not server_url:
        _bad(
            "server_url is an empty list; give one URL or a list of them, like ['http://a:8080', 'http://b:8080']"
        )
    if len(server_url) > MAX_SERVER_URLS:
        _bad(f"server_url lists {len(server_url)} URLs; at most {MAX_SERVER_URLS} are allowed")
    ws_urls: list[str] = []
    for i, url in enumerate(server_url):
        ws = _ws_url(url, f"server_url[{i}]")
        if ws.lower() in (w.lower() for w in ws_urls):
            first = [w.lower() for w in ws_urls].index(ws.lower())
            _bad(
                f"server_url[{i}] ({url!r}) is the same server as server_url[{first}] "
                f"({server_url[first]!r}); list each server once"
            )
        ws_urls.append(ws)
    return tuple(server_url), tuple(ws_urls)


def _user_ids(op: str, user_ids: object, me: str | None) -> list[str]:
    """Validated callees: self and duplicates removed, 1..MAX_CALLEES left."""
    if isinstance(user_ids, str) or not isinstance(user_ids, list | tuple):
        _bad(f"{op}(): user_ids must be a list of user ids, got {_type(user_ids)}")
    out: list[str] = []
    for uid in user_ids:
        if not valid_user_id(uid):
            _bad(f"{op}(): invalid user id {uid!r}: use 1-32 characters of [A-Za-z0-9_-]")
        if uid != me and uid not in out:
            out.append(uid)
    if not out:
        _bad(f"{op}(): user_ids is empty (after removing yourself and duplicates)")
    if len(out) > MAX_CALLEES:
        _bad(
            f"{op}(): {len(out)} users; at most {MAX_CALLEES} can be invited "
            f"(a call has at most {MAX_CALLEES + 1} members)"
        )
    return out


def _media(op: str, media_type: object) -> MediaType:
    if (
        isinstance(media_type, bool)
        or not isinstance(media_type, int)
        or media_type not in (MediaType.AUDIO, MediaType.VIDEO)
    ):
        _bad(f"{op}(): media_type must be MediaType.AUDIO or MediaType.VIDEO, got {media_type!r}")
    return MediaType(media_type)


def _params(op: str, params: object) -> CallParams | None:
    if params is None:
        return None
    if not isinstance(params, CallParams):
        _bad(f"{op}(): params must be a CallParams or None, got {_type(params)}")
    t = params.timeout
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= MAX_RING_TIMEOUT:
        _bad(f"{op}(): params.timeout must be 0..{MAX_RING_TIMEOUT} seconds (0 = 30), got {t!r}")
    if not isinstance(params.user_data, str):
        _bad(f"{op}(): params.user_data must be a str, got {_type(params.user_data)}")
    if _utf8_len(params.user_data) > MAX_USER_DATA_BYTES:
        _bad(
            f"{op}(): params.user_data is {_utf8_len(params.user_data)} bytes; the limit is "
            f"{MAX_USER_DATA_BYTES}: store large data elsewhere and send a key"
        )
    if not isinstance(params.chat_group_id, str):
        _bad(f"{op}(): params.chat_group_id must be a str, got {_type(params.chat_group_id)}")
    room = params.room_id
    if room is not None:
        if not isinstance(room, RoomId):
            _bad(f"{op}(): params.room_id must be a RoomId or None, got {_type(room)}")
        if room.int_room_id and room.str_room_id:
            _bad(f"{op}(): set params.room_id.int_room_id or str_room_id, not both")
    return params


def _text(op: str, name: str, value: object, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty_ok):
        what = "a string" if empty_ok else "a non-empty string"
        _bad(f"{op}(): {name} must be {what}, got {value!r}")
    return value


def _call_id_arg(op: str, call_id: object) -> str:
    cid = _text(op, "call_id", call_id)
    if len(cid) > MAX_CALL_ID:
        _bad(f"{op}(): call_id is over {MAX_CALL_ID} characters; pass the id from the events")
    return cid


def _decode_signal(args: object, seq: int | None) -> Event | None:
    """``on_signal`` (docs/media.md): a Ringline extension, not an event of docs/spec.md §4."""
    if not isinstance(args, dict):
        return None
    cid, sender, data = args.get("call_id"), args.get("from_user_id"), args.get("data")
    if not isinstance(cid, str) or not cid or not isinstance(sender, str) or not isinstance(data, dict):
        log.warning("dropping a malformed on_signal push: %r", args)
        return None
    kwargs = {"call_id": cid, "from_user_id": sender, "data": data}
    return Event("on_signal", seq, cid, (cid, sender, data), kwargs)


def _decode_recording(args: object, seq: int | None) -> Event | None:
    """``on_recording {call_id, recording}`` (docs/recording.md) → the observers'
    ``on_call_recording_changed(call_id, is_recording)``."""
    if not isinstance(args, dict) or not isinstance(args.get("call_id"), str) or not args["call_id"]:
        log.warning("dropping a malformed on_recording push: %r", args)
        return None
    cid, on = args["call_id"], bool(args.get("recording"))
    return Event("on_call_recording_changed", seq, cid, (cid, on), {"call_id": cid, "is_recording": on})


def _decode_sfu(name: str, args: object, seq: int | None) -> Event | None:
    """``on_sfu`` / ``on_sfu_feed`` (docs/sfu.md): for the media layer only."""
    if not isinstance(args, dict) or not isinstance(args.get("call_id"), str):
        return None
    cid = args["call_id"]
    return Event(name, seq, cid, (cid,), dict(args))


def _media_link(engine: CallEngine, media: object) -> EngineMedia | None:
    """``media=`` of the constructor: None/False = signalling only (docs/media-python.md)."""
    if media is None or media is False:
        return None
    try:
        from ringline.media import MediaOptions

        from ._media_link import EngineMedia
    except ImportError as exc:
        _bad(f"media needs the media extra ({exc}): pip install 'ringline[media]'")
    if media is True:
        media = MediaOptions()
    if not isinstance(media, MediaOptions):
        _bad(f"media must be True, False, None or a MediaOptions, got {_type(media)}")
    return EngineMedia(
        media,
        user_id=lambda: engine.user_id,
        ice_servers=lambda: list(getattr(engine._session, "ice_servers", None) or []),
        send_signal=engine.send_signal,
        sfu_request=engine._sfu_request,
        ice_transport_policy=lambda: str(getattr(engine._session, "ice_transport_policy", None) or "all"),
    )


class _Dispatch:
    """The event queue of one login, drained in order by one task."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | SessionEnd | Reconnected] = asyncio.Queue()
        self.stopped = False


class CallEngine:
    """One device of one user. Create, ``add_observer``, ``await init(...)``.

    ``server_url`` is the server's HTTP base URL (``http://127.0.0.1:8080``); the
    WebSocket URL ``ws://…/v1/ws`` is derived from it (``https`` → ``wss``). For a
    cluster, give a list of them (at most 16, each once): the engine logs in through
    the first that answers and, whenever it has to reconnect (connection lost, close
    1001, 1012 "node leaving", 1013 "try again", a failed attempt), moves on to the
    next one (round robin) and resumes there; :attr:`server_url` is the one in use.

    ``device_id`` names this installation (1-64 characters of ``[A-Za-z0-9_.:-]``);
    keep it across restarts to get the terminal events of calls that ended while the
    device was away. ``None`` lets the server choose one (see :attr:`device_id`).

    ``heartbeat_interval`` overrides the server's ping interval (seconds);
    ``request_timeout`` bounds every request, including the wait for a reconnect.
    ``transport`` replaces the network (:mod:`ringline.client.transport`).
    ``media=True`` (or a :class:`~ringline.media.MediaOptions`) makes this device a
    real audio/video member of its calls (needs the ``media`` extra; see
    docs/media-python.md).

    Use ``async with engine:`` or call :meth:`uninit` when done: it logs out and stops
    the engine's background tasks.
    """

    def __init__(
        self,
        server_url: str | Sequence[str],
        *,
        device_id: str | None = None,
        heartbeat_interval: float | None = None,
        request_timeout: float = 10.0,
        transport: Transport | None = None,
        media: bool | MediaOptions | None = None,
    ) -> None:
        self._server_urls, self._ws_urls = _server_urls(server_url)
        #: Index of the URL in use when no session has it (before init, after the end).
        self._url_at = 0
        if device_id is not None and (
            not isinstance(device_id, str) or DEVICE_ID.fullmatch(device_id) is None
        ):
            _bad(f"device_id must be 1-{MAX_DEVICE_ID} characters of [A-Za-z0-9_.:-], got {device_id!r}")
        for name, value in (
            ("heartbeat_interval", heartbeat_interval),
            ("request_timeout", request_timeout),
        ):
            if value is None and name == "heartbeat_interval":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                _bad(f"{name} must be a positive number of seconds, got {value!r}")
        self._device_id = device_id
        self._heartbeat_interval = heartbeat_interval
        self._request_timeout = float(request_timeout)
        self._transport: Transport = transport if transport is not None else AiohttpTransport()
        self._multi_device = False
        self._user_id: str | None = None
        self._initialized = False
        self._observers: list[tuple[object, dict[str, Form]]] = []
        self._state = CallState()
        self._session: Session | None = None
        self._dispatch: _Dispatch | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._logged_out = asyncio.Event()
        self._logged_out.set()
        self._end_message: str | None = None
        self._media = _media_link(self, media)

    def __repr__(self) -> str:
        state = "initialised" if self._initialized else "not initialised"
        return (
            f"<CallEngine {self._current_ws_url()} user={self._user_id!r} device={self._device_id!r} "
            f"{state} call={self._state.call_id!r} {self._state.status.name}>"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.uninit()

    # ------------------------------------------------------------------ properties

    @property
    def server_url(self) -> str:
        """The server URL in use (as given): while reconnecting, the one tried next;
        when not logged in, the one the next ``init`` tries first."""
        return self._server_urls[self._url_index()]

    @property
    def server_urls(self) -> tuple[str, ...]:
        """Every server URL given, in order (one when a single URL was given)."""
        return self._server_urls

    @property
    def user_id(self) -> str | None:
        """The user of the last successful ``init`` (``None`` before the first)."""
        return self._user_id

    @property
    def device_id(self) -> str | None:
        """This device's id: the one given, or the server's choice after ``init``."""
        return self._device_id

    @property
    def call_id(self) -> str | None:
        """The current call of this device, or ``None`` when idle."""
        return self._state.call_id

    @property
    def call_status(self) -> CallStatus:
        """NONE (idle), WAITING (ringing or dialing) or ACCEPT (connected)."""
        return self._state.status

    @property
    def call_role(self) -> CallRole:
        """CALLER, CALLED, or NONE when idle."""
        return self._state.role

    @property
    def media_type(self) -> MediaType:
        """Media type of the current call (UNKNOWN when idle)."""
        return self._state.media_type

    @property
    def media(self) -> MediaSession | None:
        """The media of the current call (``media=`` given and the call begun), else
        ``None``: read ``media.stats()`` / ``media.local_volume()`` for measures."""
        return self._media.session if self._media is not None else None

    @property
    def is_initialized(self) -> bool:
        """True between a successful ``init`` and ``uninit`` / the end of the session
        (kicked offline, sig expired, logged out by the server)."""
        return self._initialized

    # ------------------------------------------------------------------ lifecycle

    async def init(self, sdk_app_id: int, user_id: str, user_sig: str) -> None:
        """Log this device in. Observers added before get every event from the start.

        Raises RemoteCallError with the server's code if the login is refused (700xx:
        mint a valid sig) or -1406 if the server cannot be reached; LocalCallError
        -1202 for bad arguments, -1204/-1203 if already logged in (``uninit`` first).
        """
        if (
            isinstance(sdk_app_id, bool)
            or not isinstance(sdk_app_id, int)
            or not 1 <= sdk_app_id <= _UINT32_MAX
        ):
            _bad(f"init(): sdk_app_id must be an int in 1..{_UINT32_MAX}, got {sdk_app_id!r}")
        if not valid_user_id(user_id):
            _bad(f"init(): user_id must be 1-32 characters of [A-Za-z0-9_-], got {user_id!r}")
        _text("init", "user_sig", user_sig)
        async with self._lock:
            if self._initialized:
                if user_id == self._user_id:
                    raise LocalCallError(
                        ErrorCode.REQUEST_REPEATED,
                        f"init(): already logged in as {user_id!r}; call uninit() first to log in again",
                    )
                raise LocalCallError(
                    ErrorCode.REQUEST_REFUSED,
                    f"init(): this engine is logged in as {self._user_id!r}; call uninit() "
                    f"before logging in as {user_id!r}, or use another CallEngine",
                )
            disp = _Dispatch()
            if self._media is not None:
                self._media.bind(disp.queue.put_nowait)
            session = Session(
                transport=self._transport,
                urls=self._ws_urls,
                start=self._url_index(),
                login=LoginParams(
                    sdk_app_id,
                    user_id,
                    user_sig,
                    self._device_id,
                    self._multi_device,
                    sfu=self._media is not None,
                ),
                heartbeat_interval=self._heartbeat_interval,
                request_timeout=self._request_timeout,
                on_push=lambda name, args, seq: self._on_push(disp, name, args, seq),
                on_end=lambda end: disp.queue.put_nowait(end),
                on_reconnect=disp.queue.put_nowait if self._media is not None else None,
            )
            await session.open()
            self._device_id = session.device_id
            self._user_id = user_id
            self._state.reset()
            self._session = session
            self._dispatch = disp
            self._initialized = True
            self._end_message = None
            self._logged_out = asyncio.Event()
            self._spawn(self._drain(disp), f"ringline-events-{user_id}/{self._device_id}")

    async def uninit(self) -> None:
        """Log out and stop (idempotent; safe inside an observer).

        Pending requests fail with -1201, no further events are delivered, and every
        background task of the engine is finished when this returns (except the
        observer task when called from inside an observer: it ends right after).
        """
        async with self._lock:
            session, disp = self._session, self._dispatch
            if disp is not None:
                disp.stopped = True
            self._logged_out_now("uninit() was called")
            if session is not None:
                if session.phase is Phase.ONLINE:
                    try:
                        await session.request("logout", timeout=min(self._request_timeout, _LOGOUT_TIMEOUT))
                    except CallError as exc:
                        log.debug("logout: %s", exc)
                await session.aclose()
            if self._media is not None:
                await self._media.close()
            for task in list(self._tasks):
                await cancel_and_wait(task)

    async def wait_closed(self) -> None:
        """Return once this engine is not logged in any more: after ``uninit`` or when
        the session ended (kicked offline, sig expired, logged out by the server).
        Returns at once if it is not initialised."""
        await self._logged_out.wait()

    # ------------------------------------------------------------------ observers

    def add_observer(self, observer: object) -> None:
        """Add an observer (see :class:`~ringline.client.CallObserver`); adding the
        same object twice has no effect. Events are delivered in the order added.

        Each event method is called with the signature its parameters fit: the 2025
        form, or for ``on_call_received``, ``on_call_begin`` and ``on_call_end`` the
        older one (docs/sdk.md "Older observer signatures"). Raises :class:`TypeError`
        naming the method when one fits no form; fix its parameters and add it again.
        """
        if not any(o is observer for o, _ in self._observers):
            self._observers.append((observer, forms_of(observer)))

    def remove_observer(self, observer: object) -> None:
        """Remove an observer; it gets no event after the one being delivered."""
        self._observers = [(o, f) for o, f in self._observers if o is not observer]

    # ------------------------------------------------------------------ calls

    async def calls(
        self,
        user_ids: Sequence[str],
        media_type: MediaType,
        params: CallParams | None = None,
    ) -> str:
        """Call one user or a group (at most 8 callees); return the new call id.

        Yourself and duplicates are removed from ``user_ids``. Progress arrives as
        events: ``on_user_inviting`` per callee, then ``on_call_begin`` when someone
        accepts or ``on_call_not_connected`` when nobody does.
        """
        session = self._require_session("calls")
        ids = _user_ids("calls", user_ids, self._user_id)
        media = _media("calls", media_type)
        p = _params("calls", params)
        args: dict[str, Any] = {"user_ids": ids, "media_type": int(media)}
        if p is not None:
            args["params"] = params_to_wire(p)

        def placed(result: dict[str, Any]) -> None:
            cid = result.get("call_id")
            if isinstance(cid, str) and cid and self._session is session:
                self._state.placed(cid, media)

        result = await session.request("calls", args, on_ok=placed)
        cid = result.get("call_id")
        if not isinstance(cid, str) or not cid:
            raise RemoteCallError(
                ErrorCode.SIGNALING_SEND_FAIL,
                "calls(): the server's answer has no call_id; is it a Ringline server?",
            )
        return cid

    async def call(self, user_id: str, media_type: MediaType, params: CallParams | None = None) -> str:
        """Deprecated: use ``calls([user_id], media_type, params)``."""
        warnings.warn(
            "CallEngine.call() is deprecated; use calls([user_id], media_type, params)",
            DeprecationWarning,
            stacklevel=2,
        )
        if not isinstance(user_id, str):
            _bad(f"call(): user_id must be a user id string, got {_type(user_id)}")
        return await self.calls([user_id], media_type, params)

    async def accept(self) -> None:
        """Answer the call ringing on this device; ``on_call_begin`` follows."""
        session = self._require_session("accept")
        cid = self._require_call("accept", "wait for on_call_received")
        await session.request(
            "accept", {"call_id": cid}, on_ok=self._if_current(session, self._state.accepted, cid)
        )

    async def reject(self) -> None:
        """Decline the call ringing on this device; ``on_call_not_connected`` follows."""
        await self._leave("reject", "wait for on_call_received")

    async def ignore(self) -> None:
        """Stop ringing on this device only; the invitation stays open on the server
        until its timeout (other devices may still answer)."""
        await self._leave("ignore", "wait for on_call_received")

    async def hangup(self) -> None:
        """Leave the current call (cancel it if you placed it and nobody answered)."""
        await self._leave("hangup", "there is nothing to hang up")

    async def invite_user(self, user_ids: Sequence[str], params: CallParams | None = None) -> list[str]:
        """Invite more users to the current call; return the ids actually invited."""
        session = self._require_session("invite_user")
        cid = self._require_call("invite_user", "place or accept a call first")
        ids = _user_ids("invite_user", user_ids, self._user_id)
        p = _params("invite_user", params)
        args: dict[str, Any] = {"call_id": cid, "user_ids": ids}
        if p is not None:
            args["params"] = params_to_wire(p)
        result = await session.request("invite_user", args)
        invited = result.get("user_ids")
        return [str(u) for u in invited] if isinstance(invited, list) else []

    async def join(self, call_id: str) -> None:
        """Join an ongoing call you were invited to (or whose chat group you are in);
        ``on_call_begin`` and ``on_user_join`` per member follow."""
        session = self._require_session("join")
        cid = _call_id_arg("join", call_id)
        await session.request(
            "join", {"call_id": cid}, on_ok=self._if_current(session, self._state.joined, cid)
        )

    async def switch_call_media_type(self, media_type: MediaType) -> None:
        """Switch the whole call to audio or video; ``on_call_media_type_changed``
        follows on every connected member."""
        session = self._require_session("switch_call_media_type")
        cid = self._require_call("switch_call_media_type", "place or accept a call first")
        media = _media("switch_call_media_type", media_type)

        def switched(_: dict[str, Any]) -> None:
            if self._session is session:
                self._state.switched(cid, media)

        await session.request(
            "switch_call_media_type", {"call_id": cid, "media_type": int(media)}, on_ok=switched
        )

    async def open_camera(self) -> None:
        """Publish video; others get ``on_user_video_available(you, True)``."""
        await self._device_op("open_camera")

    async def close_camera(self) -> None:
        """Stop publishing video."""
        await self._device_op("close_camera")

    async def open_microphone(self) -> None:
        """Publish audio; others get ``on_user_audio_available(you, True)``."""
        await self._device_op("open_microphone")

    async def close_microphone(self) -> None:
        """Stop publishing audio."""
        await self._device_op("close_microphone")

    async def send_signal(self, to_user_id: str, data: dict[str, Any]) -> None:
        """Relay WebRTC signalling ``data`` to ``to_user_id`` in the current call.

        ``data`` is a JSON object with ``type`` offer / answer / candidate / renegotiate /
        bye (docs/media.md has the contract: who offers, what each type carries). Both
        users must be connected to the call: send only to users you got ``on_user_join``
        for. The peer receives it as ``on_signal(call_id, your_user_id, data)``. Raises
        LocalCallError -1202 for bad data (checked here), RemoteCallError -1203 if the
        peer is not connected (any more).
        """
        session = self._require_session("send_signal")
        cid = self._require_call("send_signal", "signal once your call has begun")
        if not valid_user_id(to_user_id):
            _bad(f"send_signal(): invalid to_user_id {to_user_id!r}: use 1-32 characters of [A-Za-z0-9_-]")
        if to_user_id == self._user_id:
            _bad("send_signal(): to_user_id is yourself; signal another member of the call")
        try:
            check_signal_data(data)
        except LocalCallError as exc:
            _bad(f"send_signal(): {exc.message}")
        await session.request("signal", {"call_id": cid, "to_user_id": to_user_id, "data": data})

    async def _sfu_request(self, data: dict[str, Any]) -> dict[str, Any]:
        """A media request for the current call's SFU room (the ``sfu`` op, docs/sfu.md)."""
        session = self._require_session("sfu")
        cid = self._require_call("sfu", "once your call has begun")
        return await session.request("sfu", {"call_id": cid, "data": data})

    # ------------------------------------------------------------------ account

    async def set_self_info(self, nickname: str, avatar: str) -> None:
        """Set the nickname (≤ 500 bytes) and avatar URL shown with your invitations."""
        session = self._require_session("set_self_info")
        _text("set_self_info", "nickname", nickname, empty_ok=True)
        _text("set_self_info", "avatar", avatar, empty_ok=True)
        if _utf8_len(nickname) > MAX_NICKNAME_BYTES:
            _bad(
                f"set_self_info(): nickname is {_utf8_len(nickname)} bytes; the limit is {MAX_NICKNAME_BYTES}"
            )
        await session.request("set_self_info", {"nickname": nickname, "avatar": avatar})

    async def enable_multi_device_ability(self, enable: bool) -> None:
        """Let this user be logged in on several devices at once (docs/spec.md §6.4).

        Before ``init`` it only sets how the next login is made; afterwards it is sent
        to the server (and kept for logging in again after a lost session).
        """
        if not isinstance(enable, bool):
            _bad(f"enable_multi_device_ability(): enable must be a bool, got {enable!r}")
        session = self._session if self._initialized else None
        if session is None:
            self._multi_device = enable
            return
        await session.request("enable_multi_device_ability", {"enable": enable})
        self._multi_device = enable
        session.login.multi_device = enable

    async def query_recent_calls(self, filter: RecentCallsFilter | None = None) -> list[CallRecords]:
        """This user's call history, newest first, as kept by the server."""
        session = self._require_session("query_recent_calls")
        flt = RecentCallsFilter() if filter is None else filter
        if not isinstance(flt, RecentCallsFilter):
            _bad(f"query_recent_calls(): filter must be a RecentCallsFilter, got {_type(flt)}")
        if (
            isinstance(flt.limit, bool)
            or not isinstance(flt.limit, int)
            or not (1 <= flt.limit <= MAX_RECENT)
        ):
            _bad(f"query_recent_calls(): filter.limit must be 1..{MAX_RECENT}, got {flt.limit!r}")
        result = await session.request("query_recent_calls", filter_to_wire(flt))
        records = result.get("records")
        if not isinstance(records, list):
            return []
        return [record_from_wire(r) for r in records if isinstance(r, dict)]

    async def delete_record_calls(self, call_ids: Sequence[str]) -> list[str]:
        """Delete entries of this user's history; return the ids actually deleted."""
        session = self._require_session("delete_record_calls")
        if isinstance(call_ids, str) or not isinstance(call_ids, list | tuple) or not call_ids:
            _bad(f"delete_record_calls(): call_ids must be a non-empty list of call ids, got {call_ids!r}")
        ids = [_call_id_arg("delete_record_calls", c) for c in call_ids]
        result = await session.request("delete_record_calls", {"call_ids": ids})
        deleted = result.get("deleted")
        return [str(c) for c in deleted] if isinstance(deleted, list) else []

    async def renew_user_sig(self, user_sig: str) -> None:
        """Replace the user sig (after ``on_user_sig_expired``, or before it expires)
        without dropping the session or its call."""
        session = self._require_session("renew_user_sig")
        _text("renew_user_sig", "user_sig", user_sig)

        def renewed(result: dict[str, Any]) -> None:
            session.login.user_sig = user_sig
            expires = result.get("sig_expires_at")
            if isinstance(expires, int | float):
                session.sig_expires_at = float(expires)

        await session.request("renew_user_sig", {"user_sig": user_sig}, on_ok=renewed)

    # ------------------------------------------------------------------ internals

    def _require_session(self, op: str) -> Session:
        session = self._session
        if not self._initialized or session is None:
            why = f" (the last session ended: {self._end_message})" if self._end_message else ""
            raise LocalCallError(
                ErrorCode.INIT_FAIL,
                f"{op}(): the engine is not initialised{why}; "
                "call await engine.init(sdk_app_id, user_id, user_sig) first",
            )
        return session

    def _require_call(self, op: str, hint: str) -> str:
        cid = self._state.call_id
        if cid is None:
            raise LocalCallError(
                ErrorCode.REQUEST_REFUSED, f"{op}(): this device has no current call; {hint}"
            )
        return cid

    def _if_current(
        self, session: Session, apply: Callable[[str], None], call_id: str
    ) -> Callable[[dict[str, Any]], None]:
        def on_ok(_: dict[str, Any]) -> None:
            if self._session is session:
                apply(call_id)

        return on_ok

    async def _leave(self, op: str, hint: str) -> None:
        session = self._require_session(op)
        cid = self._require_call(op, hint)

        def left(_: dict[str, Any]) -> None:
            if self._session is session:
                self._state.left(cid, op)

        await session.request(op, {"call_id": cid}, on_ok=left)

    async def _device_op(self, op: str) -> None:
        session = self._require_session(op)
        cid = self._require_call(op, "open devices once in a call")
        await session.request(op, {"call_id": cid})
        if self._media is not None:
            self._media.device(op)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _url_index(self) -> int:
        session = self._session
        return session.url_index if session is not None else self._url_at

    def _current_ws_url(self) -> str:
        return self._ws_urls[self._url_index()]

    def _logged_out_now(self, message: str) -> None:
        self._url_at = self._url_index()
        self._initialized = False
        self._session = None
        self._dispatch = None
        self._state.reset()
        self._end_message = message
        self._logged_out.set()

    def _on_push(self, disp: _Dispatch, name: object, args: object, seq: int | None) -> None:
        if name in ("on_sfu", "on_sfu_feed"):
            event = _decode_sfu(name, args, seq) if self._media is not None else None
        elif name == "on_recording":
            event = _decode_recording(args, seq)
        else:
            event = _decode_signal(args, seq) if name == "on_signal" else decode_event(name, args, seq)
        if event is None:
            log.debug("ignoring unknown push %r", name)
            return
        disp.queue.put_nowait(event)

    async def _drain(self, disp: _Dispatch) -> None:
        """The observer task of one login: events in order, one at a time."""
        while not disp.stopped:
            item = await disp.queue.get()
            if disp.stopped:
                return
            if isinstance(item, SessionEnd):
                if self._media is not None:
                    await self._media.close()
                await self._session_over(disp, item)
                return
            if isinstance(item, Reconnected):  # internal: for the media, not the observers
                if self._media is not None:
                    self._media.reconnected(item.resumed)
                continue
            if self._media is not None and not await self._media.on_event(item):
                continue
            if self._state.apply(item):
                await self._notify(disp, item)

    async def _session_over(self, disp: _Dispatch, end: SessionEnd) -> None:
        if end.error is not None:
            ev = decode_event("on_error", {"code": end.error.code, "message": end.message})
            assert ev is not None
            await self._notify(disp, ev)
        if self._dispatch is not disp:
            return
        session = self._session
        disp.stopped = True
        self._logged_out_now(end.message)
        if session is not None:
            await session.aclose()

    async def _notify(self, disp: _Dispatch, ev: Event) -> None:
        token = CURRENT_CALL_ID.set(ev.call_id)
        try:
            for observer, forms in list(self._observers):
                if disp.stopped:
                    return
                method = getattr(observer, ev.name, None)
                if method is None or not callable(method):
                    continue
                form = forms.get(ev.name)
                args = ev.args if form is None else form.build(ev)
                try:
                    result = method(*args)
                    if inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # uninit() is stopping us
                    log.error("observer %s.%s was cancelled", type(observer).__qualname__, ev.name)
                except Exception:
                    # One report per raise, with the method and the traceback; the other
                    # observers and the later events are delivered as usual.
                    log.exception(
                        "observer %s.%s failed in %s%r; the engine goes on with the next observer and event",
                        type(observer).__qualname__,
                        ev.name,
                        ev.name,
                        args,
                    )
        finally:
            CURRENT_CALL_ID.reset(token)
