"""Helpers of the browser tests (tests/browser): the namespaced server, Chromium's
flags, a page-driving ``User``, artifacts. Fixtures are in conftest.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from serverproc import ServerProcess

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


def skip_reason() -> str | None:
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
            self.kill()  # nothing may outlive the test (or keep the namespace busy)
            raise RuntimeError(f"server did not start in {timeout}s: {self.log()}")
        return self


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


def artifact(name: str) -> Path:
    """A path under ``test-artifacts/`` (git-ignored) for screenshots and logs."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]
