"""The browser files the server serves, and the development sign-in (docs/web.md)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from rawclient import Raw
from serverproc import SDK_APP_ID, ServerProcess, unique


async def get(url: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, dict(r.headers), await r.read()


async def test_the_call_page_engine_and_types_are_served(server: ServerProcess) -> None:
    status, headers, body = await get(server.url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<html" in body
    status, headers, body = await get(server.url + "/sdk/ringline.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert headers["Access-Control-Allow-Origin"] == "*"  # importable from pages served elsewhere
    assert b'export { CallEngine } from "./engine.js"' in body and b"TUICallEvent" in body
    # The modules the entry point imports are served the same way (docs/web.md "Inside the engine").
    for name in ("engine.js", "session.js", "peer.js", "events.js", "protocol.js"):
        status, headers, body = await get(server.url + "/sdk/" + name)
        assert status == 200 and headers["Content-Type"].startswith("text/javascript"), name
        assert headers["Access-Control-Allow-Origin"] == "*", name
    status, _, body = await get(server.url + "/sdk/engine.js")
    assert b"export class CallEngine" in body
    status, _, body = await get(server.url + "/sdk/events.js")
    assert b"export const TUICallEvent" in body
    status, headers, body = await get(server.url + "/sdk/ringline.d.ts")
    assert status == 200 and headers["Content-Type"].startswith("application/typescript")
    assert b"export declare class CallEngine" in body
    # The web kit, next to the engine (docs/web.md "The web kit").
    status, headers, body = await get(server.url + "/sdk/tuicallkit.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert b"export const TUICallKitServer" in body and b'customElements.define("tui-call-kit"' in body
    status, _, body = await get(server.url + "/sdk/tuicallkit.d.ts")
    assert status == 200 and b"getTUICallEngineInstance(): CallEngine" in body


async def test_page_config_names_the_app_and_says_dev_sign_in_is_off(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/app/config.json") as r:
        assert await r.json() == {"sdkAppId": SDK_APP_ID, "devSignIn": False}


async def test_the_admin_console_is_served_static_and_never_framed(server: ServerProcess) -> None:
    for path in ("/admin", "/admin/"):
        status, headers, body = await get(server.url + path)
        assert status == 200 and headers["Content-Type"].startswith("text/html"), path
        assert b'import { mountAdmin } from "/admin/admin.js"' in body
        assert headers["X-Frame-Options"] == "DENY" and "Access-Control-Allow-Origin" not in headers
    for name, kind in (
        ("admin.js", "text/javascript"),
        ("api.js", "text/javascript"),
        ("admin.css", "text/css"),
    ):
        status, headers, body = await get(server.url + "/admin/" + name)
        assert status == 200 and headers["Content-Type"].startswith(kind), name
        assert headers["X-Frame-Options"] == "DENY" and "Access-Control-Allow-Origin" not in headers
    # The files hold no data of the server: it all comes from the admin REST API, signed.
    _, _, js = await get(server.url + "/admin/api.js")
    assert b"usersig" in js and b"sessionStorage" in js and b"localStorage" not in js
    assert (await get(server.url + "/admin/../server.log"))[0] == 404


@pytest.mark.parametrize(
    "path",
    ["/sdk/nope.js", "/sdk/..%2Fserver%2Fweb.py", "/sdk/.hidden", "/app/..%2F..%2Fcli.py", "/app/x%00.js"],
)
async def test_nothing_outside_the_web_folders_is_served(server: ServerProcess, path: str) -> None:
    status, _, body = await get(server.url + path)
    assert status == 404, body[:200]


async def test_without_dev_there_is_no_sig_endpoint(server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + "/dev/usersig", json={"userId": "x"}) as r,
    ):
        assert r.status in (404, 405)


async def test_dev_sig_endpoint_mints_sigs_that_log_in(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "srv")
    srv.args.append("--dev")
    start_or_kill(srv)
    c = Raw(srv)
    try:
        user = unique("dev")
        async with aiohttp.ClientSession() as http:
            async with http.post(srv.url + "/dev/usersig", json={"userId": user}) as r:
                assert r.status == 200
                got = await r.json()
            assert got["sdkAppId"] == SDK_APP_ID and got["userId"] == user
            for bad in ({"userId": "no spaces"}, {"user": "x"}, [1]):
                async with http.post(srv.url + "/dev/usersig", json=bad) as r:
                    assert r.status == 400 and "userId" in (await r.json())["error"]
            async with http.post(srv.url + "/dev/usersig", data="{not json") as r:
                assert r.status == 400
            async with http.get(srv.url + "/app/config.json") as r:
                assert (await r.json())["devSignIn"] is True
        await c.connect()
        res = await c.ok("login", v=1, sdk_app_id=SDK_APP_ID, user_id=user, user_sig=got["userSig"])
        assert res["user_id"] == user
    finally:
        await c.close()
        assert srv.stop() == 0
    assert "never run --dev in production" in srv.log()


def start_or_kill(srv: ServerProcess) -> ServerProcess:
    """Start ``srv``; if it does not come up, kill it (no process is left behind)."""
    try:
        return srv.start()
    except BaseException:
        srv.kill()
        raise
