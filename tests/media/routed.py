"""Three throw-away network namespaces for a call across networks that cannot reach each
other: ``a`` and ``b`` (one member each) and ``t`` between them (the TURN server and the
Ringline server), joined by two veth pairs::

    a (10.77.1.2) ── veth ── (10.77.1.1) t (10.77.2.1) ── veth ── (10.77.2.2) b

``t`` does not forward packets, and ``a``/``b`` have a route only to their own link and
to ``t``'s other address: ``a`` has **no route** to ``b`` (nor ``b`` to ``a``), so media
between them can only go through a relay in ``t``. Nothing leaves the machine. Needs root
(CI runs as root); elsewhere the tests that need it are skipped (under CI they fail).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from needs import missing
from serverproc import ServerProcess

#: ``t``'s address on ``a``'s link: both members reach the servers there.
T_ADDR = "10.77.1.1"
A_ADDR = "10.77.1.2"
B_ADDR = "10.77.2.2"


@dataclass(frozen=True)
class Routed:
    """The ``ip netns exec NAME`` prefixes of the three namespaces."""

    a: list[str]
    b: list[str]
    t: list[str]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def routed_namespaces() -> Iterator[Routed]:
    """Create the three namespaces and their links; yield their prefixes; delete them."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing("needs root and iproute2 to make network namespaces joined by veth pairs")
    tag = secrets.token_hex(3)
    names = {k: f"rl{k}-{tag}" for k in "abt"}
    made: list[str] = []
    try:
        for name in names.values():
            r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
            if r.returncode != 0:
                missing(f"cannot create a network namespace here: {r.stderr.strip()}")
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        t = names["t"]
        for side, t_addr, addr in (("a", "10.77.1.1", A_ADDR), ("b", "10.77.2.1", B_ADDR)):
            ns, t_end, end = names[side], f"t{side}{tag}", f"{side}t{tag}"
            _ip("link", "add", t_end, "netns", t, "type", "veth", "peer", "name", end, "netns", ns)
            _ip("-n", t, "addr", "add", f"{t_addr}/24", "dev", t_end)
            _ip("-n", t, "link", "set", t_end, "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", end)
            _ip("-n", ns, "link", "set", end, "up")
        # b reaches t's address on a's link (where the servers listen) through t; a and b
        # get no route to each other, and t does not forward (a new namespace's default).
        _ip("-n", names["b"], "route", "add", f"{T_ADDR}/32", "via", "10.77.2.1")
        yield Routed(*(["ip", "netns", "exec", names[k]] for k in "abt"))
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def server_in(prefix: Sequence[str], data_dir: Path, args: Sequence[str], port: int = 0) -> Iterator[str]:
    """``ringline serve ARGS`` inside the namespace of ``prefix`` (``t``), on ``T_ADDR``
    (and ``port``, else a free one), logging at INFO to ``data_dir/server.log``; yield its
    URL; stop it after."""
    srv = ServerProcess(data_dir, port=port)
    cmd = [*prefix, *srv.args, "--host", T_ADDR, "--log-level", "INFO", *args]
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "Ringline on http" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server did not start: {log_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.1)  # polling a starting process: it has no readiness signal
        yield f"http://{T_ADDR}:{srv.port}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
