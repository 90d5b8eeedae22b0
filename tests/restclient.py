"""A bare admin REST client for tests that send hand-made bodies (docs/rest.md)."""

from __future__ import annotations

from typing import Any

import aiohttp

from serverproc import SDK_APP_ID, ServerProcess

ADMIN = "administrator"


def admin_query(srv: ServerProcess) -> dict[str, str]:
    """The query string of an admin request signed for ``srv``."""
    return {
        "sdkappid": str(SDK_APP_ID),
        "identifier": ADMIN,
        "usersig": srv.sig(ADMIN),
        "random": "7",
        "contenttype": "json",
    }


async def admin_post(
    srv: ServerProcess, path: str, body: str | bytes, http: aiohttp.ClientSession | None = None
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` (raw JSON text, sent as is) to ``path``; (HTTP status, JSON answer)."""
    data = body.encode() if isinstance(body, str) else body
    own = http is None
    session = aiohttp.ClientSession() if http is None else http
    try:
        async with session.post(
            srv.url + path,
            params=admin_query(srv),
            data=data,
            headers={"Content-Type": "application/json"},
        ) as r:
            assert r.content_type == "application/json", (r.status, await r.text())
            return r.status, dict(await r.json())
    finally:
        if own:
            await session.close()


def fail_of(api: str, answer: dict[str, Any]) -> tuple[int, str]:
    """(error code, message) of a v4 or v1 envelope; (0, "") for success."""
    if api == "v4":
        return int(answer["ErrorCode"]), str(answer["ErrorInfo"])
    return int(answer["errorCode"]), str(answer["errorMessage"] if answer["errorCode"] else "")
