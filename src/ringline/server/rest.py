"""Admin REST: ``POST /v4/{service}/{command}`` with the vendor's query-string auth.

Every call carries ``?sdkappid=&identifier=&usersig=&random=&contenttype=json``; the
identifier must be the admin identifier and the sig valid for it (CALLS.md §1). Answers
use the v4 envelope ``{ActionStatus, ErrorCode, ErrorInfo, RequestId, Response}``; a
client mistake is never a 5xx.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..core import machine as m
from ..core.errors import LocalCallError
from ..core.usersig import UserSigError, verify_user_sig
from .hub import Hub

__all__ = ["AdminApi"]

log = logging.getLogger("ringline.rest")

# Vendor REST error codes.
E_BAD_SIG = 70001
E_NOT_ADMIN = 60011
E_BAD_JSON = 90001
E_BAD_FIELD = 90005
E_UNKNOWN_COMMAND = 60020
E_NOT_FOUND = 20001
MAX_BODY = 1 << 20

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class _Fail(Exception):
    def __init__(self, code: int, info: str) -> None:
        super().__init__(info)
        self.code = code
        self.info = info


def _envelope(
    request_id: str, response: dict[str, Any] | None = None, code: int = 0, info: str = ""
) -> web.Response:
    body: dict[str, Any] = {
        "ActionStatus": "OK" if code == 0 else "FAIL",
        "ErrorCode": code,
        "ErrorInfo": info,
        "RequestId": request_id,
    }
    if response is not None:
        body["Response"] = response
    return web.json_response(body)


class AdminApi:
    """Routes of the admin REST API. Mount with :meth:`routes`."""

    def __init__(self, hub: Hub, *, sdk_app_id: int, secret_key: str, admin_identifier: str) -> None:
        self.hub = hub
        self.sdk_app_id = sdk_app_id
        self.secret_key = secret_key
        self.admin = admin_identifier
        self.commands: dict[str, Handler] = {
            "call_engine_http_srv/end_call": self.end_call,
            "group_open_http_svc/create_group": self.create_group,
            "group_open_http_svc/add_group_member": self.add_group_member,
            "group_open_http_svc/delete_group_member": self.delete_group_member,
            "group_open_http_svc/destroy_group": self.destroy_group,
            "group_open_http_svc/get_group_member_info": self.get_group_members,
        }

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v4/{service}/{command}", self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        rid = "r_" + secrets.token_hex(8)
        try:
            self._auth(request)
            name = f"{request.match_info['service']}/{request.match_info['command']}"
            handler = self.commands.get(name)
            if handler is None:
                raise _Fail(E_UNKNOWN_COMMAND, f"unknown command v4/{name}; see docs/rest.md")
            raw = await request.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                raise _Fail(E_BAD_JSON, "body over 1 MiB")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise _Fail(E_BAD_JSON, "body is not valid JSON") from None
            if not isinstance(body, dict):
                raise _Fail(E_BAD_JSON, "body must be a JSON object")
            return _envelope(rid, await handler(body))
        except _Fail as f:
            return _envelope(rid, None, f.code, f.info)
        except LocalCallError as e:
            return _envelope(rid, None, e.code, e.message)

    def _auth(self, request: web.Request) -> None:
        q = request.query
        try:
            app_id = int(q.get("sdkappid", ""))
        except ValueError:
            raise _Fail(E_BAD_SIG, "query parameter sdkappid is missing or not a number") from None
        ident = q.get("identifier", "")
        sig = q.get("usersig", "")
        if ident != self.admin:
            raise _Fail(
                E_NOT_ADMIN, f"identifier {ident!r} is not the admin identifier; sign as {self.admin!r}"
            )
        if app_id != self.sdk_app_id:
            raise _Fail(E_BAD_SIG, f"this server serves sdkappid {self.sdk_app_id}, not {app_id}")
        try:
            verify_user_sig(
                sig, sdk_app_id=app_id, user_id=ident, secret_key=self.secret_key, now=time.time()
            )
        except UserSigError as e:
            raise _Fail(e.code, e.message) from None

    # ------------------------------------------------------------------ commands

    @staticmethod
    def _field(body: dict[str, Any], key: str, typ: type) -> Any:
        v = body.get(key)
        if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
            raise _Fail(E_BAD_FIELD, f"field {key} is missing or not a {typ.__name__}")
        return v

    async def end_call(self, body: dict[str, Any]) -> dict[str, Any]:
        cid = self._field(body, "CallId", str)
        try:
            self.hub.submit(m.AdminEndCall(cid, self.admin))
        except LocalCallError as e:
            raise _Fail(E_NOT_FOUND, e.message) from None
        await self.hub.drain()
        return {}

    def _members(self, body: dict[str, Any], key: str) -> list[str]:
        raw = body.get(key, [])
        if not isinstance(raw, list):
            raise _Fail(E_BAD_FIELD, f"{key} must be a list")
        out: list[str] = []
        for x in raw:
            u = x.get("Member_Account") if isinstance(x, dict) else x
            if not isinstance(u, str) or not m.valid_user_id(u):
                raise _Fail(E_BAD_FIELD, f"{key} entry {x!r} is not a valid user id")
            out.append(u)
        return out

    async def _set(self, group: str, members: list[str]) -> None:
        self.hub.submit(m.SetGroupMembers(group, tuple(members)))
        await self.hub.drain()

    async def create_group(self, body: dict[str, Any]) -> dict[str, Any]:
        gid = self._field(body, "GroupId", str)
        await self._set(gid, self._members(body, "MemberList"))
        return {"GroupId": gid}

    async def add_group_member(self, body: dict[str, Any]) -> dict[str, Any]:
        gid = self._field(body, "GroupId", str)
        cur = list(self.hub.sb.groups.get(gid, frozenset()))
        new = self._members(body, "MemberList")
        await self._set(gid, sorted(set(cur) | set(new)))
        return {"MemberList": [{"Member_Account": u, "Result": 1} for u in new]}

    async def delete_group_member(self, body: dict[str, Any]) -> dict[str, Any]:
        gid = self._field(body, "GroupId", str)
        gone = set(self._members(body, "MemberToDel_Account"))
        cur = self.hub.sb.groups.get(gid)
        if cur is None:
            raise _Fail(E_NOT_FOUND, f"group {gid} does not exist")
        await self._set(gid, sorted(cur - gone))
        return {}

    async def destroy_group(self, body: dict[str, Any]) -> dict[str, Any]:
        gid = self._field(body, "GroupId", str)
        await self._set(gid, [])
        return {}

    async def get_group_members(self, body: dict[str, Any]) -> dict[str, Any]:
        gid = self._field(body, "GroupId", str)
        members = sorted(self.hub.sb.groups.get(gid, frozenset()))
        return {"MemberNum": len(members), "MemberList": [{"Member_Account": u} for u in members]}
