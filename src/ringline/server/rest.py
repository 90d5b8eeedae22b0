"""Admin REST: ``POST /v4/{service}/{command}`` and ``POST /v1/{service}/{command}``.

Every call carries the vendor's query-string auth ``?sdkappid=&identifier=&usersig=
&random=&contenttype=json``; the identifier must be the admin identifier and the sig
valid for it (docs/spec.md §1). v4 answers use the envelope ``{ActionStatus, ErrorCode,
ErrorInfo, RequestId, Response}``, v1 answers ``{errorCode, errorMessage, requestId,
data}``; both with HTTP 200 for success and failure alike. A client mistake is never a
5xx: a wrong method gets 405 with the envelope, anything else an error code and a
message that says what to do (the codes are in :data:`.rest_contract.ERRORS` and
docs/rest.md).

The commands served are exactly the admin commands of :data:`.openapi.ENDPOINTS`
(checked when :class:`AdminApi` is built), and ``GET /openapi.json`` describes them.

Records and live calls are answered in the vendor JSON shapes of :mod:`.formats`
(which the callbacks use too); :func:`delivery_to_v4` is the shape of one outbox entry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..core import machine as m
from ..core.errors import LocalCallError
from ..core.protocol import MAX_CALL_ID, MAX_GROUP_ID
from ..core.records import CallRecord
from ..core.usersig import UserSigError, verify_user_sig
from .callbacks import Origin, recording_to_v4
from .formats import call_info_to_v4, live_call_to_v4, record_to_v1, record_to_v4
from .hub import Hub
from .inbound import InputError, parse_json, peer_address
from .openapi import ENDPOINTS, openapi_handler
from .recording import RecordingJobs
from .rest_contract import (
    DELIVERY_STATES,
    E_BAD_FIELD,
    E_BAD_JSON,
    E_INTERNAL,
    E_NO_RECORDING,
    E_NOT_ADMIN,
    E_NOT_FOUND,
    E_UNKNOWN_COMMAND,
    E_V1_BAD_ADDRESS,
    E_V1_NO_CONFIG,
    E_WRONG_APP,
    E_WRONG_METHOD,
    MAX_DELIVERIES_PER_PAGE,
    MAX_PAGE,
    MAX_PER_PAGE,
    MAX_UNIX_S,
    V1_CALL_RESULTS,
    V1_CALLBACK_ACTIONS,
    V4_CALL_RESULTS,
    V4_CALLBACK_COMMANDS,
)
from .store.base import CallbackConfigWrite, Write
from .webhooks.delivery import DeliveryState, OutboxEntry

__all__ = ["MAX_BODY", "AdminApi", "delivery_to_v4"]

log = logging.getLogger("ringline.rest")

#: Largest request body accepted, in bytes.
MAX_BODY = 1 << 20
_MAX_URL = 2048

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

#: The address of the admin client of the command being served (the ``ClientIP`` of
#: the callbacks an admin command causes).
_CLIENT_IP: ContextVar[str] = ContextVar("ringline_rest_client_ip", default="")


class _Fail(Exception):
    """A refused request: ``code`` and ``info`` go into the envelope."""

    def __init__(self, code: int, info: str, status: int = 200) -> None:
        super().__init__(info)
        self.code = code
        self.info = info
        self.status = status


# --------------------------------------------------------------------------- records

# record_to_v4, record_to_v1 and member_result live in .formats (shared with the callbacks).


_STATE_NAMES = {v: k for k, v in DELIVERY_STATES.items()}  # "in_flight" -> "InFlight"


def delivery_to_v4(entry: OutboxEntry) -> dict[str, Any]:
    """One outbox entry as the ``Delivery`` JSON of ``call_callback_http_srv``."""
    d = entry.delivery
    state = _STATE_NAMES[entry.state.value]
    try:
        body: Any = json.loads(d.body)
    except ValueError:  # pragma: no cover - bodies are always JSON objects
        body = {}
    return {
        "EventId": d.event_id,
        "CallId": d.call_id,
        "Sequence": d.sequence,
        "Url": d.url,
        "CallbackCommand": d.command,
        "State": state,
        "Attempts": d.attempts,
        "CreateTime": d.created_at,
        "NextAttemptTime": entry.next_at if entry.state is DeliveryState.PENDING else None,
        "LastAttemptTime": entry.last_attempt_at,
        "LastStatus": entry.last_status,
        "LastError": entry.last_error,
        "FinishTime": entry.finished_at,
        "Body": body if isinstance(body, dict) else {},
    }


# --------------------------------------------------------------------------- field checks


def _number(body: dict[str, Any], key: str) -> int | None:
    """An optional integer field (JSON integers, or numbers with no fraction)."""
    if key not in body:
        return None
    v = body[key]
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise _Fail(E_BAD_FIELD, f"field {key} must be an integer, not {_kind(v)}")
    return v


def _int(body: dict[str, Any], key: str, lo: int, hi: int, what: str) -> int | None:
    v = _number(body, key)
    if v is not None and not lo <= v <= hi:
        raise _Fail(E_BAD_FIELD, f"field {key} must be {what} ({lo}..{hi}), not {v}")
    return v


def _short(v: object) -> str:
    """``repr(v)``, cut to fit in an error message."""
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(v: object) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(v), "a list" if isinstance(v, list) else "an object" if isinstance(v, dict) else "that"
    )


def _text(body: dict[str, Any], key: str, max_len: int) -> str:
    v = body.get(key)
    if not isinstance(v, str):
        missing = key not in body
        raise _Fail(
            E_BAD_FIELD,
            f"field {key} is missing" if missing else f"field {key} must be a string, not {_kind(v)}",
        )
    if not 1 <= len(v) <= max_len:
        raise _Fail(E_BAD_FIELD, f"field {key} must be 1-{max_len} characters (got {len(v)})")
    return v


def _choices(body: dict[str, Any], key: str, allowed: Sequence[str], *, required: bool) -> list[str]:
    """A list of strings from ``allowed`` (de-duplicated, in order)."""
    v = body.get(key)
    if not isinstance(v, list):
        what = "is missing" if key not in body else f"must be a list of strings, not {_kind(v)}"
        raise _Fail(E_BAD_FIELD, f"field {key} {what}; allowed entries: {', '.join(allowed)}")
    bad = [_short(x) for x in v if not isinstance(x, str) or x not in allowed]
    if bad:
        raise _Fail(
            E_BAD_FIELD,
            f"field {key} has unknown entries {', '.join(bad[:5])}; allowed: {', '.join(allowed)}",
        )
    if required and not v:
        raise _Fail(E_BAD_FIELD, f"field {key} is empty; give at least one of: {', '.join(allowed)}")
    return list(dict.fromkeys(v))


def _one_or_many(body: dict[str, Any], key: str, allowed: Sequence[str]) -> list[str] | None:
    """An optional filter: one string or a list of strings from ``allowed``."""
    if key not in body:
        return None
    v = body[key]
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _Fail(E_BAD_FIELD, f"field {key} must be a string or a list of strings, not {_kind(v)}")
    bad = [_short(x) for x in v if x not in allowed]
    if bad:
        raise _Fail(
            E_BAD_FIELD, f"field {key} has unknown values {', '.join(bad[:5])}; allowed: {', '.join(allowed)}"
        )
    return list(v)


def _enum(body: dict[str, Any], key: str, allowed: Sequence[str]) -> str | None:
    if key not in body:
        return None
    v = body[key]
    if not isinstance(v, str) or v not in allowed:
        raise _Fail(E_BAD_FIELD, f"field {key} must be one of {', '.join(allowed)}, not {_short(v)}")
    return v


def _url(v: object) -> str | None:
    """``v`` if it is an http(s) URL with a host, else None."""
    if not isinstance(v, str) or not 1 <= len(v) <= _MAX_URL:
        return None
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in v):
        return None
    try:
        parts = urlsplit(v)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return v


def _end_bound(end: int | None) -> float | None:
    """The inclusive store bound for "start time, in whole seconds, <= end"."""
    return None if end is None else math.nextafter(end + 1.0, -math.inf)


# --------------------------------------------------------------------------- the API


class AdminApi:
    """Routes of the admin REST API (v4 and v1) and ``/openapi.json``; mount :meth:`routes`."""

    def __init__(self, hub: Hub, *, sdk_app_id: int, secret_key: str, admin_identifier: str) -> None:
        self.hub = hub
        self.sdk_app_id = sdk_app_id
        self.secret_key = secret_key
        self.admin = admin_identifier
        #: this server's status (what ``/healthz`` says); set by the app
        self.node_status: Callable[[], dict[str, Any]] | None = None
        #: see :attr:`.ws.WsHandler.peer_token`
        self.peer_token = ""
        #: a cluster node's list of the nodes (``get_nodes``), or None on a single node
        self.cluster_nodes: Callable[[], Awaitable[dict[str, Any]]] | None = None
        self.v4: dict[str, Handler] = {
            "call_engine_http_srv/end_call": self.end_call,
            "call_engine_http_srv/get_nodes": self.get_nodes,
            "call_engine_http_srv/get_call_info": self.get_call_info,
            "call_engine_http_srv/get_live_calls": self.get_live_calls,
            "call_record_http_srv/get_record_by_callid": self.get_record_by_callid,
            "call_record_http_srv/get_record_by_filter": self.get_record_by_filter,
            "call_record_http_srv/start_recording": self.start_recording,
            "call_record_http_srv/stop_recording": self.stop_recording,
            "call_record_http_srv/get_recordings": self.get_recordings,
            "call_record_http_srv/download_recording": self.download_recording,
            "call_config/set_callback": self.set_callback,
            "call_config/get_callback": self.get_callback,
            "call_config/delete_callback": self.delete_callback,
            "group_open_http_svc/create_group": self.create_group,
            "group_open_http_svc/add_group_member": self.add_group_member,
            "group_open_http_svc/delete_group_member": self.delete_group_member,
            "group_open_http_svc/destroy_group": self.destroy_group,
            "group_open_http_svc/get_group_member_info": self.get_group_members,
            "call_callback_http_srv/get_deliveries": self.get_deliveries,
            "call_callback_http_srv/redeliver": self.redeliver,
        }
        self.v1: dict[str, Handler] = {
            "callback/set": self.v1_callback_set,
            "callback/get": self.v1_callback_get,
            "callback/update": self.v1_callback_update,
            "callback/delete": self.v1_callback_delete,
            "records/get_record_by_callId": self.v1_get_record,
            "records/get_records_by_filter": self.v1_get_records,
        }
        served = {("v4", c) for c in self.v4} | {("v1", c) for c in self.v1}
        listed = {(e.api, e.command) for e in ENDPOINTS if e.api in ("v4", "v1")}
        if served != listed:
            raise RuntimeError(
                f"the REST commands and openapi.ENDPOINTS differ: served only {sorted(served - listed)},"
                f" listed only {sorted(listed - served)}"
            )

    def routes(self) -> list[web.RouteDef]:
        """The admin commands (POST), a JSON 405 for other methods, a JSON answer for
        unknown paths under ``/v4/`` and ``/v1/``, and ``GET /openapi.json``."""
        return [
            web.post("/v4/{service}/{command}", self.handle_v4),
            web.route("*", "/v4/{service}/{command}", self.wrong_method),
            web.route("*", "/v4/{tail:.*}", self.unknown_path),
            web.post("/v1/{service}/{command}", self.handle_v1),
            web.route("*", "/v1/{service}/{command}", self.wrong_method),
            web.route("*", "/v1/{tail:.*}", self.unknown_path),
            web.get("/openapi.json", openapi_handler),
        ]

    # ------------------------------------------------------------------ plumbing

    async def handle_v4(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "v4", self.v4)

    async def handle_v1(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "v1", self.v1)

    async def wrong_method(self, request: web.Request) -> web.Response:
        api = _api_of(request)
        fail = _Fail(
            E_WRONG_METHOD,
            f"{request.method} is not allowed: send admin commands as POST with a JSON object body"
            " (see docs/rest.md or /openapi.json)",
            status=405,
        )
        resp = _answer(api, _request_id(api), fail=fail)
        resp.headers["Allow"] = "POST"
        return resp

    async def unknown_path(self, request: web.Request) -> web.Response:
        api = _api_of(request)
        table = self.v4 if api == "v4" else self.v1
        fail = _Fail(
            E_UNKNOWN_COMMAND,
            f"unknown command {request.path}: commands are POST /{api}/{{service}}/{{command}}, one of"
            f" {', '.join(sorted(table))}; see docs/rest.md",
        )
        return _answer(api, _request_id(api), fail=fail)

    async def _serve(self, request: web.Request, api: str, table: dict[str, Handler]) -> web.StreamResponse:
        t0 = time.perf_counter()
        rid = _request_id(api)
        name = f"{request.match_info['service']}/{request.match_info['command']}"
        fail: _Fail | None = None
        try:
            self._auth(request)
            handler = table.get(name)
            if handler is None:
                raise _Fail(
                    E_UNKNOWN_COMMAND,
                    f"unknown command {api}/{name}; the {api} commands are {', '.join(sorted(table))};"
                    " see docs/rest.md",
                )
            body = await _read_body(request)
            _CLIENT_IP.set(peer_address(request, self.peer_token))
            got = await handler(body)
            # A download answers with the file itself (download_recording).
            resp = got if isinstance(got, web.StreamResponse) else _answer(api, rid, data=got)
        except _Fail as f:
            fail = f
        except LocalCallError as e:
            fail = _Fail(e.code, e.message)
        except Exception:
            log.exception("admin command %s failed", request.path, extra={"command": name})
            fail = _Fail(
                E_INTERNAL, "internal error; the command may not have been carried out: retry", status=500
            )
        if fail is not None:
            resp = _answer(api, rid, fail=fail)
            log.info(
                "admin request refused: %s",
                fail.info,
                extra={
                    "command": f"{api}/{name}",
                    "code": fail.code,
                    "status": fail.status,
                    "remote": request.remote or "",
                },
            )
        metrics = self.hub.metrics
        if metrics is not None:
            metrics.rest_seconds.labels(f"{api}/{name}", str(resp.status)).observe(time.perf_counter() - t0)
        return resp

    def _auth(self, request: web.Request) -> None:
        q = request.query
        raw_app = q.get("sdkappid", "")
        try:
            app_id = int(raw_app)
        except ValueError:
            raise _Fail(
                E_WRONG_APP,
                f"query parameter sdkappid is missing or not a number ({raw_app[:40]!r}); pass this"
                " server's SDKAppID",
            ) from None
        ident = q.get("identifier", "")
        if ident != self.admin:
            what = "is missing" if not ident else f"{ident[:40]!r} is not the admin identifier"
            raise _Fail(E_NOT_ADMIN, f"query parameter identifier {what}; sign as {self.admin!r}")
        if app_id != self.sdk_app_id:
            raise _Fail(E_WRONG_APP, f"this server serves sdkappid {self.sdk_app_id}, not {app_id}")
        try:
            verify_user_sig(
                q.get("usersig", ""),
                sdk_app_id=app_id,
                user_id=ident,
                secret_key=self.secret_key,
                now=time.time(),
                via="rest",
            )
        except UserSigError as e:
            raise _Fail(e.code, e.message) from None

    # ------------------------------------------------------------------ v4: recordings

    def _jobs(self) -> RecordingJobs:
        if self.hub.recordings is None:
            raise _Fail(
                E_NO_RECORDING,
                "this server records no calls: recording needs an SFU (ringline serve --sfu, see"
                " docs/recording.md)",
            )
        return self.hub.recordings

    async def _set_recording(self, body: dict[str, Any], on: bool) -> dict[str, Any]:
        cid = _text(body, "CallId", MAX_CALL_ID)
        self._jobs()
        await self.hub.drain()
        try:
            changed = self.hub.set_recording(cid, on)
        except LocalCallError as e:
            raise _Fail(E_NOT_FOUND, e.message) from None
        await self.hub.drain()
        return {"Changed": changed}

    async def start_recording(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._set_recording(body, True)

    async def stop_recording(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._set_recording(body, False)

    async def get_recordings(self, body: dict[str, Any]) -> dict[str, Any]:
        jobs = self._jobs()
        cid = _text(body, "CallId", MAX_CALL_ID) if "CallId" in body else None
        start = _int(body, "StartTime", 0, MAX_UNIX_S, "unix seconds")
        end = _int(body, "EndTime", 0, MAX_UNIX_S, "unix seconds")
        if start is not None and end is not None and start > end:
            raise _Fail(E_BAD_FIELD, f"StartTime {start} is after EndTime {end}")
        found = [
            j
            for j in await asyncio.to_thread(jobs.jobs)
            if (cid is None or j.call_id == cid)
            and (start is None or j.created_at >= start)
            and (end is None or j.created_at < end + 1)
        ]
        found.sort(key=lambda j: (-j.created_at, j.call_id))
        return {"TotalNum": len(found), "RecordingList": [recording_to_v4(j) for j in found]}

    async def download_recording(self, body: dict[str, Any]) -> web.StreamResponse:
        jobs = self._jobs()
        rid = _text(body, "RecordingId", MAX_CALL_ID)
        try:
            job = await asyncio.to_thread(jobs.get, rid)
        except ValueError:
            job = None
        if job is None:
            raise _Fail(E_NOT_FOUND, f"no recording {_short(rid)}: list them with get_recordings", status=404)
        path = jobs.recording_path(job)
        if path is None:
            raise _Fail(
                E_NOT_FOUND,
                f"recording {rid} is {job.state}, not ready: nothing to download (see its State and"
                " Errors in get_recordings)",
                status=404,
            )
        kind = "video/webm" if path.suffix == ".webm" else "audio/ogg"
        return web.FileResponse(
            path,
            headers={"Content-Type": kind, "Content-Disposition": f'attachment; filename="{path.name}"'},
        )

    async def _write(self, write: Write) -> None:
        """Persist ``write`` in order with everything else; return once it is durable.
        Raises :class:`_Fail` (``E_INTERNAL``, with the cause) if the store refuses it."""
        done = asyncio.get_running_loop().create_future()

        def respond() -> None:
            if not done.done():
                done.set_result(None)

        def refused(message: str) -> None:
            if not done.done():
                done.set_exception(_Fail(E_INTERNAL, message))

        self.hub.enqueue_write(write, respond, refused)
        await done

    # ------------------------------------------------------------------ v4: calls and records

    async def end_call(self, body: dict[str, Any]) -> dict[str, Any]:
        cid = _text(body, "CallId", MAX_CALL_ID)
        try:
            self.hub.submit(m.AdminEndCall(cid, self.admin), origin=Origin(_CLIENT_IP.get(), "RESTAPI"))
        except LocalCallError as e:
            raise _Fail(E_NOT_FOUND, e.message) from None
        await self.hub.drain()
        return {}

    async def get_call_info(self, body: dict[str, Any]) -> dict[str, Any]:
        cid = _text(body, "CallId", MAX_CALL_ID)
        # Answer with what is durable: the batches queued so far are written first.
        await self.hub.drain()
        info = self.hub.sb.call_info(cid)
        if info is None:
            raise _Fail(
                E_NOT_FOUND,
                f"no live call {cid!r}: it ended (its record: get_record_by_callid) or never"
                " existed; check the call id",
            )
        return call_info_to_v4(info)

    async def get_live_calls(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user_filter(body)
        per_page = _int(body, "NumberPerPage", 1, MAX_PER_PAGE, "a page size") or MAX_PER_PAGE
        page = _int(body, "Page", 1, MAX_PAGE, "a page number") or 1
        # Answer with what is durable: the batches queued so far are written first.
        await self.hub.drain()
        sb = self.hub.sb
        infos = [info for cid in list(sb.calls) if (info := sb.call_info(cid)) is not None]
        if user is not None:
            infos = [i for i in infos if any(x["user_id"] == user for x in i["members"])]
        # Newest first, as records are listed; ties by call id, descending.
        infos.sort(key=lambda i: (i["start_time"], i["call_id"]), reverse=True)
        first = (page - 1) * per_page
        return {
            "TotalNum": len(infos),
            "Page": page,
            "CallList": [live_call_to_v4(i) for i in infos[first : first + per_page]],
        }

    async def get_nodes(self, body: dict[str, Any]) -> dict[str, Any]:
        """The servers of this deployment: on a single node this one (``Mode``
        ``Single``); in a cluster every node that holds a lease (``Mode`` ``Cluster``)."""
        if self.cluster_nodes is not None:
            return await self.cluster_nodes()
        status = self.node_status() if self.node_status is not None else {}
        workers = status.get("callback_workers") or {}
        node = {
            "NodeId": str(status.get("node_id", "")),
            "Version": str(status.get("version", "")),
            "Since": int(time.time() - float(status.get("uptime_s", 0.0))),
            "UptimeSeconds": float(status.get("uptime_s", 0.0)),
            "Devices": len(self.hub.sb.devices),
            "Sessions": len(self.hub.sessions),
            "LiveCalls": len(self.hub.sb.calls),
            "CallbackWorkers": int(workers.get("running", 0)),
            "Lease": "Single",
        }
        return {"Mode": "Single", "NodeList": [node]}

    async def _record(self, cid: str) -> CallRecord:
        record = await self.hub.store.get_record(cid)
        if record is None:
            raise _Fail(
                E_NOT_FOUND,
                f"no record of call {cid!r}: a call has a record once it has ended (live and"
                " ephemeral calls have none); check the call id",
            )
        return record

    async def get_record_by_callid(self, body: dict[str, Any]) -> dict[str, Any]:
        record = await self._record(_text(body, "CallId", MAX_CALL_ID))
        return {"CallRecord": record_to_v4(record)}

    async def _query(
        self,
        body: dict[str, Any],
        *,
        start_key: str,
        end_key: str,
        per_page_key: str,
        page_key: str,
        default_per_page: int,
        results: list[str] | None,
        call_type: str | None,
        start_required: bool = False,
        user_id: str | None = None,
    ) -> tuple[int, int, list[CallRecord]]:
        if start_required and start_key not in body:
            raise _Fail(E_BAD_FIELD, f"field {start_key} is missing: give the earliest start time (unix s)")
        start = _int(body, start_key, 0, MAX_UNIX_S, "unix seconds")
        end = _int(body, end_key, 0, MAX_UNIX_S, "unix seconds")
        if start is not None and end is not None and start > end:
            raise _Fail(E_BAD_FIELD, f"{start_key} {start} is after {end_key} {end}")
        per_page = _int(body, per_page_key, 1, MAX_PER_PAGE, "a page size")
        page = _int(body, page_key, 1, MAX_PAGE, "a page number")
        page = 1 if page is None else page
        total, records = await self.hub.store.query_records(
            start_time=None if start is None else float(start),
            end_time=_end_bound(end),
            results=results,
            call_type=call_type,
            page=page,
            per_page=default_per_page if per_page is None else per_page,
            user_id=user_id,
        )
        return total, page, records

    async def get_record_by_filter(self, body: dict[str, Any]) -> dict[str, Any]:
        total, page, records = await self._query(
            body,
            start_key="StartTime",
            end_key="EndTime",
            per_page_key="NumberPerPage",
            page_key="Page",
            default_per_page=10,
            results=_one_or_many(body, "CallResult", V4_CALL_RESULTS),
            call_type=_enum(body, "CallType", ("SingleCall", "MultiCall")),
            user_id=self._user_filter(body),
        )
        return {"TotalNum": total, "Page": page, "CallRecordList": [record_to_v4(r) for r in records]}

    @staticmethod
    def _user_filter(body: dict[str, Any]) -> str | None:
        """The optional ``User_Account`` filter (Ringline's): a user id."""
        if "User_Account" not in body:
            return None
        user = body["User_Account"]
        if not m.valid_user_id(user):
            raise _Fail(
                E_BAD_FIELD,
                "field User_Account must be a user id (1-32 characters of [A-Za-z0-9_-]),"
                f" not {_short(user)}",
            )
        return str(user)

    # ------------------------------------------------------------------ v4: callback configuration

    async def set_callback(self, body: dict[str, Any]) -> dict[str, Any]:
        url = _url(body.get("Url"))
        if url is None:
            raise _Fail(
                E_BAD_FIELD,
                f"field Url must be an http:// or https:// URL with a host, at most {_MAX_URL} characters",
            )
        commands = _choices(body, "CallbackCommandList", V4_CALLBACK_COMMANDS, required=True)
        await self._write(CallbackConfigWrite("v4", {"Url": url, "CallbackCommandList": commands}))
        return {}

    async def get_callback(self, body: dict[str, Any]) -> dict[str, Any]:
        config = await self.hub.store.get_callback_config("v4")
        if config is None:
            return {"Url": "", "CallbackCommandList": []}
        return {"Url": config["Url"], "CallbackCommandList": list(config["CallbackCommandList"])}

    async def delete_callback(self, body: dict[str, Any]) -> dict[str, Any]:
        await self._write(CallbackConfigWrite("v4", None))
        return {}

    # ------------------------------------------------------------------ v4: callback deliveries

    async def get_deliveries(self, body: dict[str, Any]) -> dict[str, Any]:
        states = _one_or_many(body, "State", tuple(DELIVERY_STATES))
        if states is None:
            states = [k for k in DELIVERY_STATES if k != "Delivered"]
        call_id = _text(body, "CallId", MAX_CALL_ID) if "CallId" in body else None
        url = _text(body, "Url", _MAX_URL) if "Url" in body else None
        per_page = _int(body, "NumberPerPage", 1, MAX_DELIVERIES_PER_PAGE, "a page size")
        page = _int(body, "Page", 1, MAX_PAGE, "a page number") or 1
        outbox = self.hub.store.outbox
        total, entries = await outbox.list_deliveries(
            [DeliveryState(DELIVERY_STATES[x]) for x in dict.fromkeys(states)],
            call_id=call_id,
            url=url,
            page=page,
            per_page=per_page or 20,
        )
        counts = await outbox.counts()
        gone = await outbox.gone_endpoints()
        return {
            "TotalNum": total,
            "Page": page,
            "DeliveryList": [delivery_to_v4(e) for e in entries],
            "Counts": {k: counts.get(DeliveryState(v), 0) for k, v in DELIVERY_STATES.items()},
            "GoneUrls": [{"Url": u, "GoneTime": at} for u, at in sorted(gone.items())],
        }

    async def redeliver(self, body: dict[str, Any]) -> dict[str, Any]:
        event_id = _text(body, "EventId", 64)
        try:
            entry = await self.hub.store.outbox.redeliver(event_id, time.time())
        except KeyError:
            raise _Fail(
                E_NOT_FOUND,
                f"no callback delivery {event_id!r}: list them with call_callback_http_srv/get_deliveries"
                " (delivered ones are purged after the retention time)",
            ) from None
        except ValueError as e:
            raise _Fail(E_BAD_FIELD, f"cannot redeliver {event_id}: {e}") from None
        if self.hub.on_callbacks_queued is not None:
            self.hub.on_callbacks_queued()
        return {"Delivery": delivery_to_v4(entry)}

    # ------------------------------------------------------------------ v4: chat groups

    def _group_id(self, body: dict[str, Any]) -> str:
        return _text(body, "GroupId", MAX_GROUP_ID)

    def _members(self, body: dict[str, Any], key: str) -> list[str]:
        raw = body.get(key, [])
        if not isinstance(raw, list):
            raise _Fail(E_BAD_FIELD, f"field {key} must be a list of user ids or {{Member_Account}} objects")
        out: list[str] = []
        for x in raw:
            u = x.get("Member_Account") if isinstance(x, dict) else x
            if not isinstance(u, str) or not m.valid_user_id(u):
                raise _Fail(
                    E_BAD_FIELD,
                    f"{key} entry {_short(x)} is not a valid user id (1-32 characters of [A-Za-z0-9_-])",
                )
            out.append(u)
        return out

    async def _set(self, group: str, members: list[str]) -> None:
        self.hub.submit(m.SetGroupMembers(group, tuple(members)))
        await self.hub.drain()

    async def create_group(self, body: dict[str, Any]) -> dict[str, Any]:
        gid = self._group_id(body)
        await self._set(gid, self._members(body, "MemberList"))
        return {"GroupId": gid}

    async def add_group_member(self, body: dict[str, Any]) -> dict[str, Any]:
        gid = self._group_id(body)
        cur = list(self.hub.sb.groups.get(gid, frozenset()))
        new = self._members(body, "MemberList")
        await self._set(gid, sorted(set(cur) | set(new)))
        return {"MemberList": [{"Member_Account": u, "Result": 1} for u in new]}

    async def delete_group_member(self, body: dict[str, Any]) -> dict[str, Any]:
        gid = self._group_id(body)
        gone = set(self._members(body, "MemberToDel_Account"))
        cur = self.hub.sb.groups.get(gid)
        if cur is None:
            raise _Fail(E_NOT_FOUND, f"group {gid} does not exist; create it with create_group")
        await self._set(gid, sorted(cur - gone))
        return {}

    async def destroy_group(self, body: dict[str, Any]) -> dict[str, Any]:
        gid = self._group_id(body)
        await self._set(gid, [])
        return {}

    async def get_group_members(self, body: dict[str, Any]) -> dict[str, Any]:
        gid = self._group_id(body)
        members = sorted(self.hub.sb.groups.get(gid, frozenset()))
        return {"MemberNum": len(members), "MemberList": [{"Member_Account": u} for u in members]}

    # ------------------------------------------------------------------ v1

    def _v1_config(self, body: dict[str, Any]) -> dict[str, Any]:
        address = _url(body.get("address"))
        if address is None:
            raise _Fail(
                E_V1_BAD_ADDRESS,
                f"address must start with http:// or https:// and name a host (at most {_MAX_URL}"
                " characters)",
            )
        actions = _choices(body, "actions", V1_CALLBACK_ACTIONS, required=True)
        return {"address": address, "actions": actions}

    async def _v1_existing(self) -> dict[str, Any]:
        config = await self.hub.store.get_callback_config("v1")
        if config is None:
            raise _Fail(E_V1_NO_CONFIG, "no v1 callback configuration; create one with v1/callback/set")
        return config

    async def v1_callback_set(self, body: dict[str, Any]) -> str:
        config = self._v1_config(body)
        await self._write(CallbackConfigWrite("v1", config))
        return str(config["address"])

    async def v1_callback_update(self, body: dict[str, Any]) -> str:
        config = self._v1_config(body)
        await self._v1_existing()
        await self._write(CallbackConfigWrite("v1", config))
        return str(config["address"])

    async def v1_callback_get(self, body: dict[str, Any]) -> dict[str, Any]:
        config = await self._v1_existing()
        return {"actions": list(config["actions"]), "address": config["address"]}

    async def v1_callback_delete(self, body: dict[str, Any]) -> str:
        await self._v1_existing()
        await self._write(CallbackConfigWrite("v1", None))
        return ""

    async def v1_get_record(self, body: dict[str, Any]) -> dict[str, Any]:
        return record_to_v1(await self._record(_text(body, "callId", MAX_CALL_ID)))

    async def v1_get_records(self, body: dict[str, Any]) -> dict[str, Any]:
        v1_results = _one_or_many(body, "callResult", tuple(V1_CALL_RESULTS.values()))
        to_v4 = {v1: v4 for v4, v1 in V1_CALL_RESULTS.items()}
        v1_type = _enum(body, "callType", ("single", "group"))
        call_type = None if v1_type is None else {"single": "SingleCall", "group": "MultiCall"}[v1_type]
        total, page, records = await self._query(
            body,
            start_key="startTimestamp",
            end_key="endTimestamp",
            per_page_key="numberPerPage",
            page_key="page",
            default_per_page=100,
            results=None if v1_results is None else [to_v4[r] for r in v1_results],
            call_type=call_type,
            start_required=True,
        )
        return {"totalNum": total, "page": page, "callRecordList": [record_to_v1(r) for r in records]}


# --------------------------------------------------------------------------- helpers


def _request_id(api: str) -> str:
    """A new request id: ``r_`` + 16 hex digits (v4), 32 hex digits (v1, as the vendor's)."""
    return "r_" + secrets.token_hex(8) if api == "v4" else secrets.token_hex(16)


def _api_of(request: web.Request) -> str:
    return "v1" if request.path.startswith("/v1/") else "v4"


async def _read_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``)."""
    too_big = _Fail(E_BAD_JSON, f"body over {MAX_BODY} bytes (1 MiB); send a smaller JSON object")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_BODY:
            raise too_big
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = parse_json(raw, what="body")  # every value checked: text, numbers, nesting
    except InputError as e:
        if e.structural:
            raise _Fail(E_BAD_JSON, e.message()) from None
        raise _Fail(E_BAD_FIELD, e.message(quote="")) from None
    if not isinstance(body, dict):
        raise _Fail(E_BAD_JSON, f"body must be a JSON object, not {_kind(body)}; e.g. {{}}")
    return body


def _answer(api: str, rid: str, *, data: Any = None, fail: _Fail | None = None) -> web.Response:
    """The envelope of ``api``: success with ``data``, or ``fail``."""
    if api == "v4":
        body: dict[str, Any] = {
            "ActionStatus": "OK" if fail is None else "FAIL",
            "ErrorCode": 0 if fail is None else fail.code,
            "ErrorInfo": "" if fail is None else fail.info,
            "RequestId": rid,
        }
        if fail is None:
            body["Response"] = data
    else:
        body = {
            "errorCode": 0 if fail is None else fail.code,
            "errorMessage": "Success" if fail is None else fail.info,
            "requestId": rid,
            "data": data if fail is None else None,
        }
    return web.json_response(body, status=200 if fail is None else fail.status)
