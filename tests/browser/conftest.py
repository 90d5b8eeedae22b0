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

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from serverproc import SDK_APP_ID, ServerProcess

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HARNESS = (Path(__file__).parent / "harness.js").read_text()
CHROMIUM_ARGS = [
    "--allow-loopback-in-peer-connection",  # lo is the only interface in the namespace
    "--use-fake-device-for-media-stream",  # a test pattern and a beep instead of devices
    "--use-fake-ui-for-media-stream",  # grant camera/microphone without a prompt
    "--autoplay-policy=no-user-gesture-required",  # remote audio plays (and is measured)
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
]


def _skip_reason() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "browser tests need root on Linux to create a network namespace"
    if not shutil.which("ip"):
        return "browser tests need iproute2 (ip netns)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (./scripts/test installs Debian's chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """A fresh network namespace with only ``lo`` up; deleted afterwards."""
    reason = _skip_reason()
    if reason:
        if os.environ.get("CI"):  # CI installs everything (scripts/test): never skip there
            pytest.fail(reason)
        pytest.skip(reason)
    name = "rl-" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


class NetnsServer(ServerProcess):
    """``ringline serve --dev`` inside the namespace ``ns``."""

    def __init__(self, data_dir: Path, ns: str, **kw: Any) -> None:
        super().__init__(data_dir, **kw)
        self.ns = ns
        self.args = ["ip", "netns", "exec", ns, *self.args, "--dev"]

    def start(self, timeout: float = 20.0) -> NetnsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        # The server is only reachable inside the namespace: wait for it from there.
        probe = (
            "import sys, time, urllib.request\n"
            "end = time.monotonic() + float(sys.argv[2])\n"
            "while time.monotonic() < end:\n"
            "    try:\n"
            "        urllib.request.urlopen(sys.argv[1], timeout=1).read(); sys.exit(0)\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n"
            "sys.exit(1)\n"
        )
        r = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                sys.executable,
                "-c",
                probe,
                self.url + "/healthz",
                str(timeout),
            ],
            timeout=timeout + 10,
        )
        if r.returncode != 0:
            raise RuntimeError(f"server did not start in {timeout}s: {self.log()}")
        return self


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


class User:
    """One browser context (its own storage, devices and tab) driving one engine."""

    def __init__(self, page: Any, user_id: str) -> None:
        self.page = page
        self.user_id = user_id

    async def js(self, expr: str, arg: Any = None) -> Any:
        """Evaluate ``expr`` (a function of ``(rl, arg)``) in the page."""
        return await self.page.evaluate(
            f"async (arg) => {{ const rl = window.rl; return await ({expr})(rl, arg); }}", arg
        )

    async def wait(self, predicate: str, arg: Any = None, timeout: float = 15.0) -> Any:
        """Wait until ``predicate`` (a function of ``(rl, arg)``) is truthy; return its value."""
        handle = await self.page.wait_for_function(
            f"(arg) => {{ const rl = window.rl; return rl && ({predicate})(rl, arg); }}",
            arg=arg,
            timeout=timeout * 1000,
            polling=100,
        )
        return await handle.json_value()

    async def event(self, name: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        """The first recorded event ``name`` whose payload has ``match``'s values."""
        found: dict[str, Any] = await self.wait(
            "(rl, a) => rl.events.find((e) => e.name === a.name && "
            "Object.entries(a.match).every(([k, v]) => JSON.stringify(e.p[k]) === JSON.stringify(v)))",
            {"name": name, "match": match},
            timeout,
        )
        return found

    async def names(self) -> list[str]:
        names: list[str] = await self.js("(rl) => rl.events.map((e) => e.name)")
        return names

    async def call(self, method: str, *args: Any) -> Any:
        """``await engine[method](...args)`` in the page; a rejection comes back as
        ``{"error": {code, message}}``."""
        return await self.js(
            "async (rl, a) => { try { return {ok: (await rl.engine[a.m](...a.args)) ?? null}; }"
            " catch (e) { return {error: {code: e.code, message: e.message}}; } }",
            {"m": method, "args": list(args)},
        )

    async def ok(self, method: str, *args: Any) -> Any:
        r = await self.call(method, *args)
        assert "error" not in r, f"{self.user_id}.{method}{args}: {r['error']}"
        return r["ok"]


@pytest.fixture
async def users(browser: Any, web_server: NetnsServer) -> AsyncIterator[Any]:
    """``await users(n)``: n signed-in users, each in its own browser context."""
    contexts: list[Any] = []

    async def make(n: int, *, prefix: str = "u") -> list[User]:
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
                {"sdkAppId": SDK_APP_ID, "userId": user_id, "userSig": web_server.sig(user_id)},
            )
            out.append(User(page, user_id))
        return out

    try:
        yield make
    finally:
        for ctx in contexts:
            await ctx.close()


def artifact(name: str) -> Path:
    """A path under ``test-artifacts/`` (git-ignored) for screenshots and logs."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]
