"""A real ``ringline serve`` process for end-to-end tests."""

from __future__ import annotations

import atexit
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


#: Sockets holding the ports :func:`free_port` handed out (closed at exit).
_reserved: list[socket.socket] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 that stays free for whatever this test process starts.

    The port is held, for as long as this process lives, by a socket bound with
    ``SO_REUSEADDR`` that never listens: the kernel gives it to no other ``bind`` of
    port 0 (in this process or in another test run on the machine), connecting to it
    is refused until a server listens there, and a server that binds with
    ``SO_REUSEADDR`` (aiohttp's default: ``ringline serve``, the test receivers) can
    still take it, again after a restart. So "pick a port, start a server on it later"
    cannot race with anyone else picking the same port."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    _reserved.append(s)
    return int(s.getsockname()[1])


@atexit.register
def _release_ports() -> None:
    for s in _reserved:
        s.close()


def listening_pid_owns(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on TCP ``port`` (any address).
    Linux ``/proc``; True where it cannot be told (no ``/proc``, or no listener seen)."""
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as f:
                for row in (line.split() for line in f.readlines()[1:]):
                    if len(row) > 9 and row[3] == "0A" and row[1].rsplit(":", 1)[-1] == f"{port:04X}":
                        inodes.add(row[9])
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return True
    if not inodes:
        return True
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").removesuffix("]") in inodes:
                return True
    return False


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
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.db = db
        self._auto_port = not port
        self._started = False
        #: The address the server listens on (``--host``); the port is reserved on
        #: 127.0.0.1 by :func:`free_port`, which keeps it free on a test's own address too.
        self.host = host
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
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
        if host != "127.0.0.1":
            self.args += ["--host", host]
        if db:
            self.args += ["--db", db]
        self.args += list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        """Start the server and wait until it answers ``/healthz`` (``timeout`` only
        guards against a hang). Should another process take a port :func:`free_port`
        picked before the server bound it (a run without port reservations), the first
        start moves to a fresh port; a restart keeps its port (clients reconnect there)."""
        for _ in range(5):
            if self._launch(timeout):
                self._started = True
                return self
            if self._started or not self._auto_port:
                raise RuntimeError(f"port {self.port} is taken by another process: {self.log()}")
            self.port = free_port()
            self.url = f"http://{self.host}:{self.port}"
            self.args[self.args.index("--port") + 1] = str(self.port)
        raise RuntimeError(f"no free port for the server after 5 tries: {self.log()}")

    def _launch(self, timeout: float) -> bool:
        """True once this process answers; False if its port was taken (it is stopped)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)

        def port_taken() -> bool:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace").lower()
            return "address already in use" in text or "errno 98" in text

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_taken():
                self.kill()
                return False
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                # Answered by this process, not by another server that took the port.
                if r.status == 200 and listening_pid_owns(self.proc.pid, self.port):
                    return True
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
