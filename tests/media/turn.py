"""A real TURN server (coturn's ``turnserver``) inside the test's network namespace.

Long-term credentials ``ringline``/``secret`` in realm ``ringline.test`` (or, given
``auth_secret``, coturn's ``use-auth-secret``: credentials derived from that shared
secret, as ``ringline serve --turn-secret`` hands them out); it listens and relays on
127.0.0.1 only (``--allow-loopback-peers`` because every peer of the test is
on 127.0.0.1). ``./scripts/test`` installs coturn (as root, with apt-get).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from needs import missing

USER = "ringline"
PASSWORD = "secret"
REALM = "ringline.test"


def require_turnserver() -> str:
    """The ``turnserver`` binary; skip loudly (fail under CI) when coturn is missing."""
    found = shutil.which("turnserver")
    if found is None:
        reason = (
            "!!! coturn's turnserver is not installed: the TURN relay tests did NOT run "
            "(./scripts/test installs it as root: apt-get install coturn) !!!"
        )
        missing(reason)
    return found


class Turn:
    """A running ``turnserver``: its ``port`` and its log (:meth:`log`)."""

    def __init__(self, port: int, log_path: Path, host: str = "127.0.0.1") -> None:
        self.port = port
        self.log_path = log_path
        self.host = host

    @property
    def url(self) -> str:
        return f"turn:{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def allocations(self, user: str = USER) -> list[str]:
        """Log lines of ALLOCATE requests of ``user`` that succeeded."""
        return [
            line
            for line in self.log().splitlines()
            if f"user <{user}>" in line and "ALLOCATE processed, success" in line
        ]

    def refused(self) -> list[str]:
        """Log lines of requests refused for bad credentials (401 after a username was given)."""
        return [
            line
            for line in self.log().splitlines()
            if "user <" in line and "user <>" not in line and "error 401" in line
        ]

    def channel_binds(self, user: str = USER) -> list[str]:
        """Log lines of CHANNEL_BIND requests of ``user`` that succeeded: a client binds a
        channel to a peer to send it data through its allocation."""
        return [
            line
            for line in self.log().splitlines()
            if f"user <{user}>" in line and "CHANNEL_BIND processed, success" in line
        ]


def _free_port() -> int:
    """A port number for the listener (any: a fresh namespace has every port free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def turn_server(
    prefix: Sequence[str],
    tmp: Path,
    auth_secret: str = "",
    ip: str = "127.0.0.1",
    extra: Sequence[str] = (),
) -> Iterator[Turn]:
    """Start coturn inside the namespace (``prefix`` = ``ip netns exec NAME``); stop it after.
    With ``auth_secret``: ``--use-auth-secret --static-auth-secret=AUTH_SECRET`` instead of
    the static user. It listens and relays on ``ip`` (an address of that namespace);
    ``extra``: more ``turnserver`` options (e.g. ``--denied-peer-ip=…``)."""
    binary = require_turnserver()
    tmp.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = tmp / "turn.log"
    args = [
        *prefix,
        binary,
        "-n",
        f"--listening-ip={ip}",
        f"--relay-ip={ip}",
        f"--listening-port={port}",
        "--min-port=49160",
        "--max-port=49260",
        *(
            ["--use-auth-secret", f"--static-auth-secret={auth_secret}"]
            if auth_secret
            else ["--lt-cred-mech", f"--user={USER}:{PASSWORD}"]
        ),
        f"--realm={REALM}",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--allow-loopback-peers",
        "--fingerprint",
        "--no-software-attribute",
        "--log-file=stdout",
        "--simple-log",
        "--verbose",
        f"--userdb={tmp / 'turndb'}",
        f"--pidfile={tmp / 'turn.pid'}",
        *extra,
    ]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    turn = Turn(port, log_path, ip)
    try:
        deadline = time.monotonic() + 15
        while "UDP listener opened on" not in turn.log():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start (exit {proc.poll()}):\n{turn.log()[-3000:]}")
            time.sleep(0.1)
        yield turn
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
