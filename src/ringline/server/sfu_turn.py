"""TURN credentials for Janus: the TURN REST API endpoint Janus's ``turn_rest_api`` asks.

Janus (``nat: { turn_rest_api … }`` in ``janus.jcfg``, docs/sfu.md "Configuring Janus:
TURN") asks an HTTP endpoint for TURN credentials each time it sets up a connection, in
the TURN REST API draft's format. With ``--sfu``/``--sfu-secret`` and
``--turn-url``/``--turn-secret``, the Ringline server is that endpoint:

``GET`` or ``POST /sfu/turn-credentials?service=turn&key=KEY`` (Janus sends the key as
both ``api`` and ``key``; a ``POST`` may carry the fields as a form body) ->
``{"username", "password", "ttl", "uris"}``: a credential of the user ``janus`` for the
``--turn-url`` servers, valid ``--turn-ttl`` seconds from now (the same coturn
``use-auth-secret`` scheme the clients' credentials follow), so Janus's TURN credential
is always fresh. ``KEY`` is the SFU secret (``--sfu-secret``, Janus's ``api_secret``).

Refusals are JSON ``{"error"}`` naming the fix: 404 when the server has no ``--turn-url``
or no ``--sfu`` (no credentials to give), 401 without a key, 403 with a wrong one (also
logged as a warning, without the key), 400 for a ``service`` other than ``turn`` or a
form body that is not UTF-8, 413 for a form body over 4 KiB. Janus
logs such an answer as an invalid response and gathers no relay candidates.
"""

from __future__ import annotations

import hmac
import logging
import time
from urllib.parse import parse_qsl

from aiohttp import web

from .config import Settings, turn_credential

__all__ = ["JANUS_TURN_USER", "TURN_CREDENTIALS_PATH", "add_sfu_turn_route", "janus_turn_credentials"]

log = logging.getLogger("ringline.server.sfu")

#: Where Janus's ``turn_rest_api`` points (under the server's base URL).
TURN_CREDENTIALS_PATH = "/sfu/turn-credentials"
#: Bytes of a POST form body read at most.
MAX_FORM = 4096
#: The TURN user of Janus's credentials (coturn logs it as ``<expiry>:janus``).
JANUS_TURN_USER = "janus"


def janus_turn_credentials(settings: Settings, now: float | None = None) -> dict[str, object]:
    """The TURN REST API answer for Janus: ``{username, password, ttl, uris}``, valid
    ``settings.turn_ttl`` seconds from ``now``. The caller checks first that
    ``settings.turn_urls`` is not empty."""
    ttl = int(settings.turn_ttl)
    expires = (time.time() if now is None else now) + ttl
    username, password = turn_credential(settings.turn_secret, JANUS_TURN_USER, expires)
    return {"username": username, "password": password, "ttl": ttl, "uris": list(settings.turn_urls)}


_SET_KEY = "set turn_rest_api_key in janus.jcfg to the SFU secret (--sfu-secret)"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers={"Cache-Control": "no-store"})


def add_sfu_turn_route(app: web.Application, settings: Settings) -> None:
    """Add ``GET``/``POST`` :data:`TURN_CREDENTIALS_PATH` to ``app`` (always: a server
    without ``--turn-url`` or ``--sfu`` answers 404 saying which flag is missing).

    Call once while building the application, before it starts serving.
    """

    async def credentials(request: web.Request) -> web.Response:
        fields: dict[str, str] = dict(request.query)
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            if (request.content_length or 0) > MAX_FORM:
                return _error(413, f"the form body is over {MAX_FORM} bytes; Janus sends a few dozen")
            raw = await request.content.read(MAX_FORM + 1)
            if len(raw) > MAX_FORM:
                return _error(413, f"the form body is over {MAX_FORM} bytes; Janus sends a few dozen")
            try:
                fields.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                return _error(400, "the form body is not UTF-8 text (application/x-www-form-urlencoded)")
        if not settings.turn_urls:
            return _error(
                404,
                "this server hands out no TURN credentials: start it with --turn-url and "
                "--turn-secret (coturn's use-auth-secret), or remove turn_rest_api from janus.jcfg",
            )
        if not settings.sfu_secret:
            return _error(
                404,
                "TURN credentials for Janus need --sfu and --sfu-secret (the key Janus sends "
                "as turn_rest_api_key)",
            )
        key = fields.get("key") or fields.get("api") or ""
        if not key:
            return _error(401, f"no key: {_SET_KEY}")
        if not hmac.compare_digest(key.encode(), settings.sfu_secret.encode()):
            log.warning(
                "TURN credentials refused to %s: wrong key (turn_rest_api_key in janus.jcfg "
                "must be the SFU secret, --sfu-secret)",
                request.remote,
            )
            return _error(403, f"wrong key: {_SET_KEY}")
        service = fields.get("service", "turn")
        if service != "turn":
            return _error(400, f"service must be turn, got {service!r}")
        return web.json_response(janus_turn_credentials(settings), headers={"Cache-Control": "no-store"})

    app.router.add_get(TURN_CREDENTIALS_PATH, credentials)
    app.router.add_post(TURN_CREDENTIALS_PATH, credentials)
