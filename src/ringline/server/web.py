"""The browser side of the server: the web engine, the call page, and the dev sign-in.

Routes (docs/web.md):

* ``GET /`` -- the call page (``ringline/web/index.html``);
* ``GET /sdk/ringline.js``, ``/sdk/ringline.d.ts`` -- the browser engine and its types
  (plain ES modules: ``ringline.js`` imports ``engine.js``, ``session.js``, ``peer.js``,
  ``events.js``, ``protocol.js`` next to it; all CORS-open so pages served elsewhere can
  import them);
  ``/sdk/tuicallkit.js``, ``/sdk/tuicallkit.d.ts`` -- the web kit (``TUICallKitServer``,
  the ``<tui-call-kit>`` element and its React/Vue wrappers);
* ``GET /app/{file}`` -- the call page's own module and styles (CORS-open too, so
  other sites can embed the page);
* ``GET /app/config.json`` -- what the page needs to sign in: the app id, and whether
  the development sign-in exists;
* ``GET /admin`` -- the admin console (``ringline/web/admin/index.html``, docs/admin.md)
  and ``GET /admin/{file}`` its module and styles. The page holds no data: everything it
  shows it reads from the admin REST API with the admin user sig the operator signs in
  with. Not CORS-open, and not to be framed by other sites;
* ``POST /dev/usersig`` ``{"userId"}`` -> ``{"sdkAppId", "userId", "userSig"}`` -- only
  with ``--dev``. It hands a valid sig to anyone who asks, so it must never be on in
  production: there, your backend mints sigs for users it has authenticated.

Static files are read from the package on every request (they are small, and a
developer editing them sees the change on reload); nothing outside those folders is
ever served.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

from aiohttp import web

from ..core.machine import valid_user_id
from ..core.usersig import gen_user_sig
from .config import AppIdentity, Settings

__all__ = ["DEV_SIG_EXPIRE", "WEB_ROOT", "add_web_routes"]

log = logging.getLogger("ringline.server")

#: Where the page and the engine live inside the package.
WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
#: Validity of a development sig (seconds).
DEV_SIG_EXPIRE = 24 * 3600

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".ts": "application/typescript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
}
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
# The dev sign-in answers pages opened from anywhere (examples/web_minimal.html from file://).
_DEV_HEADERS = {**_HEADERS, "Access-Control-Allow-Origin": "*"}


def _content_type(path: Path) -> str:
    return _TYPES.get(path.suffix, "application/octet-stream")


def _file(folder: Path, name: str) -> Path:
    """``folder/name`` if it is a plain file name of a file in ``folder``, else 404."""
    if not _NAME.fullmatch(name):
        raise web.HTTPNotFound(text=f"no file {name!r}")
    path = folder / name
    if not path.is_file():
        raise web.HTTPNotFound(text=f"no file {name!r}")
    return path


def _serve(path: Path, *, cors: bool = False) -> web.Response:
    headers = dict(_HEADERS)
    if cors:
        headers["Access-Control-Allow-Origin"] = "*"
    headers["Content-Type"] = _content_type(path)
    return web.Response(body=path.read_bytes(), headers=headers)


# The admin console: same-origin only, never framed, no referrer (docs/admin.md).
_ADMIN_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=_DEV_HEADERS)


def add_web_routes(app: web.Application, settings: Settings, identity: AppIdentity) -> None:
    """Add the page, the engine and (with ``settings.dev``) the dev sign-in to ``app``.

    Call once while building the application, before it starts serving.
    """
    sdk_dir = WEB_ROOT / "sdk"
    app_dir = WEB_ROOT / "app"

    async def index(_request: web.Request) -> web.Response:
        return _serve(WEB_ROOT / "index.html")

    async def sdk(request: web.Request) -> web.Response:
        return _serve(_file(sdk_dir, request.match_info["name"]), cors=True)

    async def page_file(request: web.Request) -> web.Response:
        return _serve(_file(app_dir, request.match_info["name"]), cors=True)

    async def config(_request: web.Request) -> web.Response:
        return web.json_response(
            {"sdkAppId": identity.sdk_app_id, "devSignIn": settings.dev},
            headers={**_HEADERS, "Access-Control-Allow-Origin": "*"},
        )

    admin_dir = WEB_ROOT / "admin"

    async def admin_page(_request: web.Request) -> web.Response:
        resp = _serve(admin_dir / "index.html")
        resp.headers.update(_ADMIN_HEADERS)
        return resp

    async def admin_file(request: web.Request) -> web.Response:
        resp = _serve(_file(admin_dir, request.match_info["name"]))
        resp.headers.update(_ADMIN_HEADERS)
        return resp

    app.router.add_get("/", index)
    app.router.add_get("/admin", admin_page)
    app.router.add_get("/admin/", admin_page)
    app.router.add_get("/admin/{name}", admin_file)
    app.router.add_get("/app/config.json", config)
    app.router.add_get("/sdk/{name}", sdk)
    app.router.add_get("/app/{name}", page_file)
    if not settings.dev:
        return

    log.warning(
        "development mode: POST /dev/usersig mints a user sig for any user id; never run --dev in production"
    )

    async def dev_usersig(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "null")
        except ValueError:
            return _json_error(400, 'send a JSON object: {"userId": "alice"}')
        user_id = body.get("userId", body.get("userID")) if isinstance(body, dict) else None
        if not valid_user_id(user_id):
            return _json_error(400, "userId must be 1-32 characters of [A-Za-z0-9_-]")
        assert isinstance(user_id, str)
        sig = gen_user_sig(
            identity.sdk_app_id, identity.secret_key, user_id, DEV_SIG_EXPIRE, now=int(time.time())
        )
        return web.json_response(
            {"sdkAppId": identity.sdk_app_id, "userId": user_id, "userSig": sig, "expire": DEV_SIG_EXPIRE},
            headers=_DEV_HEADERS,
        )

    app.router.add_post("/dev/usersig", dev_usersig)
