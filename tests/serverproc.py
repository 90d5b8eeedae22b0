"""A real ``ringline serve`` process for end-to-end tests."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from ringline.core.usersig import gen_user_sig

SDK_APP_ID = 1400000001
SECRET = "0" * 16 + "ringline-test-secret-key-0123456789abcdef"
_ids = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    """A user id no other test uses (tests share one server per module)."""
    return f"{prefix}{os.getpid() % 10000}x{next(_ids)}"


class ServerProcess:
    """Starts ``ringline serve`` on a free port; :meth:`stop` (SIGTERM) or :meth:`kill`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        db: str = "",
        heartbeat_interval: float = 0.5,
        heartbeat_grace: float = 2.0,
        sig_grace: float = 2.0,
        port: int = 0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.db = db
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable,
            "-m",
            "ringline.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(self.port),
            "--sdk-app-id",
            str(SDK_APP_ID),
            "--secret-key",
            SECRET,
            "--heartbeat-interval",
            str(heartbeat_interval),
            "--heartbeat-grace",
            str(heartbeat_grace),
            "--sig-grace",
            str(sig_grace),
            "--log-level",
            "WARNING",
        ]
        if db:
            self.args += ["--db", db]
        self.args += list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return self
            time.sleep(0.05)  # polling a starting process: there is no event to await
        raise RuntimeError(f"server did not start in {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def sig(self, user_id: str, expire: int = 86400) -> str:
        return gen_user_sig(SDK_APP_ID, SECRET, user_id, expire, now=int(time.time()))


@contextlib.contextmanager
def running(data_dir: Path, **kw: object) -> Iterator[ServerProcess]:
    srv = ServerProcess(data_dir, **kw)  # type: ignore[arg-type]
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()
