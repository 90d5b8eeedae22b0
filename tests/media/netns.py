"""A throw-away loopback-only network namespace for WebRTC tests.

Everything that sends media runs inside it (``ip netns exec NAME …``), so no packet
can leave the machine: the namespace has only ``lo``. Needs root (CI runs as root);
elsewhere the tests that need it are skipped with the reason (under CI they fail).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from needs import missing

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _skip(reason: str) -> None:
    """Skip here; under CI (root, scripts/test installs iproute2) a missing namespace fails."""
    missing(reason)


@contextlib.contextmanager
def loopback_netns() -> Iterator[list[str]]:
    """Create ``rl-<random>`` with ``lo`` up; yield the ``ip netns exec NAME`` prefix; delete it."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        _skip("needs root and iproute2 to make a loopback-only network namespace")
    name = f"rl-{secrets.token_hex(4)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        _skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run_in(prefix: Sequence[str], args: Sequence[str], timeout: float, cwd: Path = ROOT) -> dict[str, Any]:
    """Run ``python ARGS`` inside the namespace; return the JSON object of its last
    stdout line (the drivers print their findings that way)."""
    inherited = os.environ.get("PYTHONPATH", "")
    proc = subprocess.run(
        [*prefix, sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "tests"), str(HERE), inherited) if p),
        },
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    out, err = proc.stdout[-3000:], proc.stderr[-6000:]
    assert proc.returncode == 0 and lines, (
        f"{args} exited {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
    )
    result: dict[str, Any] = json.loads(lines[-1])
    return result
