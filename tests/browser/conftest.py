"""Browser tests: Debian's Chromium driven by Playwright, with the Ringline server and
the browser inside a network namespace that has only a loopback interface.

Why a namespace: WebRTC gathers candidates on every interface and may ask STUN servers
on the internet; inside ``ip netns`` with only ``lo`` up, no media packet can leave the
host, whatever the code under test does (DEVELOPERS.md). Chromium needs
``--allow-loopback-in-peer-connection`` to use ``lo`` at all.

How: the server runs as ``ip netns exec NS ringline serve ...``; Chromium is started by
Playwright through a two-line wrapper script that execs ``ip netns exec NS
/usr/bin/chromium``. Playwright talks to Chromium over pipes, so the test process
itself stays outside the namespace. Creating a namespace needs root (CI runs as root);
elsewhere these tests skip.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from browserkit import CHROMIUM, CHROMIUM_ARGS, HARNESS, NetnsServer, User, skip_reason

from needs import missing
from serverproc import SDK_APP_ID


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """A fresh network namespace with only ``lo`` up; deleted afterwards."""
    name = "rl-" + secrets.token_hex(4)
    reason = skip_reason()
    if not reason:
        made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if made.returncode != 0:
            reason = f"cannot create a network namespace: {made.stderr.strip()}"
    if reason:
        missing(reason)  # fails under CI, which installs everything (scripts/test)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="module")
def web_server(netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsServer]:
    """One server per test module, in the module's namespace, with ``--dev``."""
    srv = NetnsServer(
        tmp_path_factory.mktemp("websrv"), netns, heartbeat_interval=1.0, heartbeat_grace=10.0
    ).start()
    try:
        yield srv
    finally:
        code = srv.stop()
        assert code == 0, f"server did not exit cleanly on SIGTERM ({code}): {srv.log()}"


@pytest.fixture
async def browser(netns: str, tmp_path: Path) -> AsyncIterator[Any]:
    """Chromium (Playwright) running inside the namespace."""
    from playwright.async_api import async_playwright

    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {netns} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(wrapper), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def users(browser: Any, web_server: NetnsServer) -> AsyncIterator[Any]:
    """``await users(n)``: n signed-in users, each in its own browser context."""
    contexts: list[Any] = []

    async def make(n: int, *, prefix: str = "u", server_url: str | list[str] | None = None) -> list[User]:
        out = []
        tag = secrets.token_hex(2)
        for i in range(n):
            ctx = await browser.new_context(viewport={"width": 960, "height": 640})
            contexts.append(ctx)
            page = await ctx.new_page()
            page.on("pageerror", lambda e: print("page error:", e))
            await page.goto(web_server.url + "/sdk/ringline.js")
            user_id = f"{prefix}{i}{tag}"  # ids sort in creation order: user 0 offers to 1
            await page.add_script_tag(content=HARNESS)
            await page.evaluate(
                "async (a) => { await window.rlSetup(a); }",
                {
                    "sdkAppId": SDK_APP_ID,
                    "userId": user_id,
                    "userSig": web_server.sig(user_id),
                    "serverUrl": server_url,
                },
            )
            out.append(User(page, user_id))
        return out

    try:
        yield make
    finally:
        for ctx in contexts:
            await ctx.close()
