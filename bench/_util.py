"""Helpers shared by the benchmarks in ``bench/``: the server process, a light
WebSocket client speaking protocol v1, statistics, machine info, py-spy summaries,
and the raw WebSocket relay used as a baseline.

The relay runs as its own process: ``python bench/_util.py relay --port P``.
Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads


def log(msg: str) -> None:
    """Progress goes to stderr so that ``--json`` leaves stdout with one object."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- event loop


def loop_kind() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    from importlib.metadata import version

    return f"uvloop {version('uvloop')}"


def run_async(coro: Any) -> Any:
    """Run ``coro`` on uvloop when it is installed, else on the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# ---------------------------------------------------------------- OS bits


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def raise_nofile(want: int) -> tuple[int, int]:
    """Raise the soft fd limit to ``want`` (capped by the hard limit); children
    (the server, the workers) inherit it. Returns the (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_kb(pid: int) -> int:
    """VmRSS of a process, in KiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def write_bytes(pid: int) -> int:
    """Bytes a process has sent towards storage so far (``write_bytes`` of
    /proc/PID/io: counted when it dirties a page of a file, so a WAL's appended pages
    count and socket writes do not); 0 where the kernel does not say."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, summed over cores."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return (user + nice + system + irq + softirq) / tick, steal / tick


def thread_cpu(pid: int) -> tuple[float, float]:
    """(main thread, all other threads) CPU seconds of a process so far."""
    tick = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        t = (int(fields[11]) + int(fields[12])) / tick
        if int(tid) == pid:
            main += t
        else:
            other += t
    return main, other


ProcStat = tuple[int, int, float, str]  # ppid, start time, CPU s (utime + stime), state


def proc_table() -> dict[int, ProcStat]:
    """Every process: (ppid, start time, utime + stime in s, state), from /proc/*/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, ProcStat] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        out[int(name)] = (
            int(fields[1]),
            int(fields[19]),
            (int(fields[11]) + int(fields[12])) / tick,
            fields[0],
        )
    return out


def child_cpu(ppid: int) -> dict[tuple[int, int], float]:
    """CPU seconds so far of each live child process of ``ppid``, keyed by (pid, start
    time) so that a reused pid is a new process."""
    return {(pid, st[1]): st[2] for pid, st in proc_table().items() if st[0] == ppid}


class CpuMeter:
    """CPU use over an interval, in % of one core: the server (its event-loop thread,
    its other threads, i.e. the SQLite worker, and its child processes, i.e. the
    callback workers of ``--callback-workers``), the client processes, and everything
    else on the machine (other people's jobs distort a benchmark).

    Child processes are those alive at each snapshot: one that appears (or restarts)
    meanwhile counts from 0; one that exits before the end is not counted."""

    def __init__(self, server_pid: int, client_pids: Sequence[int]) -> None:
        self.server_pid = server_pid
        self.client_pids = list(client_pids)
        self._start, self._start_children = self._snap()
        self._start_written = write_bytes(server_pid)

    def _snap(self) -> tuple[tuple[float, float, float, float, float, float], dict[tuple[int, int], float]]:
        main, other = thread_cpu(self.server_pid)
        children = child_cpu(self.server_pid)
        clients = 0.0
        for p in self.client_pids:
            with contextlib.suppress(OSError):
                clients += cpu_seconds(p)
        busy, steal = machine_cpu()
        return (time.monotonic(), main, other, clients, busy, steal), children

    def stop(self) -> dict[str, float]:
        end, end_children = self._snap()
        d = [b - a for a, b in zip(self._start, end, strict=True)]
        wall = max(1e-9, d[0])
        workers_s = sum(t - self._start_children.get(k, 0.0) for k, t in end_children.items())
        pct = [round(100.0 * x / wall, 1) for x in (*d[1:], workers_s)]
        main, other, clients, busy, steal, workers = pct
        written = write_bytes(self.server_pid) - self._start_written
        return {
            "server_write_bytes": written,
            "server_cpu_pct": round(main + other + workers, 1),
            "server_loop_thread_cpu_pct": main,
            "server_other_threads_cpu_pct": other,
            "server_workers_cpu_pct": workers,
            "client_cpu_pct": clients,
            "machine_busy_pct": busy,
            "background_cpu_pct": round(max(0.0, busy - main - other - workers - clients), 1),
            "steal_pct": steal,
        }


def wait_quiet(max_wait: float, threshold_pct: float = 15.0, window: float = 3.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine's CPU use stays below
    ``threshold_pct`` (of one core) for ``window`` s. Returns the last reading."""
    start = time.monotonic()
    last_log = 0.0
    while True:
        b0, _ = machine_cpu()
        time.sleep(window)
        b1, _ = machine_cpu()
        pct = 100.0 * (b1 - b0) / window
        now = time.monotonic()
        if pct < threshold_pct or now - start > max_wait:
            return pct
        if now - last_log >= 30.0:
            last_log = now
            left = max_wait - (now - start)
            log(f"other processes use {pct:.0f}% of a core; waiting (up to {left:.0f} s more)")


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
                break
    import aiohttp

    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "loop": loop_kind(),
        "aiohttp": aiohttp.__version__,
        "kernel": platform.release(),
    }


# ---------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of unsorted samples; None if empty."""
    if not samples:
        return None
    s = sorted(samples)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000.0, 2)


# ---------------------------------------------------------------- server process


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s ({last})")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class Proc:
    """A child process that is always stopped: SIGTERM, then SIGKILL after ``grace`` s."""

    def __init__(
        self, argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(cwd or REPO),
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log(f"pid {self.pid} ignored SIGTERM for {grace} s; killing it")
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


class Server(Proc):
    """``ringline serve`` on a data dir and a free port of 127.0.0.1 (``extra_args``:
    more ``serve`` flags, e.g. ``["--callback-token", T]``)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        sdk_app_id: int,
        secret_key: str,
        heartbeat_interval: float = 5.0,
        heartbeat_grace: float = 600.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.data_dir = data_dir
        self.url = f"http://{HOST}:{self.port}"
        self.ws_url = f"ws://{HOST}:{self.port}/v1/ws"
        argv = [
            sys.executable,
            "-m",
            "ringline.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--sdk-app-id",
            str(sdk_app_id),
            "--secret-key",
            secret_key,
            "--heartbeat-interval",
            str(heartbeat_interval),
            "--heartbeat-grace",
            str(heartbeat_grace),
            "--log-level",
            "WARNING",
            *extra_args,
        ]
        super().__init__(argv, data_dir / "server.log")
        try:
            wait_http(self.url + "/healthz", 30.0, self.proc)
        except Exception as e:
            self.stop()
            raise RuntimeError("the server did not start:\n" + self.tail()) from e

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ringline.db"

    def healthz(self) -> dict[str, Any]:
        return dict(get_json(self.url + "/healthz"))


def count_rows(db_path: Path, table: str) -> int:
    """Rows of ``table``, read through a read-only connection (the server keeps
    writing in WAL mode; a reader sees every committed transaction)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
    finally:
        conn.close()


# ---------------------------------------------------------------- py-spy


def find_py_spy() -> str | None:
    cand = Path(sys.executable).parent / "py-spy"
    if cand.exists():
        return str(cand)
    return shutil.which("py-spy")


def start_py_spy(pid: int, duration: float, out: Path, rate: int = 100) -> subprocess.Popen[bytes] | None:
    exe = find_py_spy()
    if exe is None:
        log("py-spy not found (pip install py-spy); no profile")
        return None
    argv = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(duration))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_COMPONENTS: list[tuple[str, str]] = [
    # (substring of the leaf frame, component); first match wins.
    ("aiohttp/_websocket/writer", "WebSocket send: aiohttp frame writer + send() syscall"),
    ("aiohttp/_websocket/reader", "WebSocket receive: aiohttp frame reader"),
    ("aiohttp/web_ws", "WebSocket receive/send: aiohttp WebSocketResponse"),
    ("aiohttp/", "aiohttp other"),
    ("json/encoder", "JSON encode (json.dumps of responses and pushes)"),
    ("json/decoder", "JSON decode (json.loads of requests)"),
    ("json/", "JSON other"),
    ("ringline/core/", "switchboard core (ringline/core)"),
    ("ringline/server/store/", "store: SQLite code (both threads)"),
    ("ringline/server/hub", "hub: batching, delivery, sessions"),
    ("ringline/server/ws", "ws handler: frame dispatch, argument checks, writer task"),
    ("concurrent/futures", "thread pool hand-off (store worker thread)"),
    ("asyncio/runners", "event loop itself (uvloop, native: epoll, callbacks, transports)"),
    ("uvloop/", "event loop itself (uvloop, native: epoll, callbacks, transports)"),
    ("asyncio/", "asyncio plumbing (futures, events, tasks)"),
    ("threading", "threading (locks, conditions)"),
    ("uuid", "ids: uuid4 / secrets"),
    ("secrets", "ids: uuid4 / secrets"),
    ("__create_fn__", "dataclass __init__ (core inputs/actions/records)"),
    ("<string>", "dataclass __init__ (core inputs/actions/records)"),
]


def summarize_collapsed(path: Path, top: int = 15) -> dict[str, Any]:
    """Sample shares from py-spy's raw (collapsed) output, lines
    ``frame;frame;...;leaf COUNT`` with frames ``func (file:line)``: per function
    (self and inclusive), per source line (self), and per component of the stack."""
    self_n: dict[str, int] = {}
    line_n: dict[str, int] = {}
    incl_n: dict[str, int] = {}
    comp_n: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n_s = line.rpartition(" ")
        if not stack or not n_s.isdigit():
            continue
        n = int(n_s)
        total += n
        raw = stack.split(";")
        frames = [_strip_line(f, keep_line=False) for f in raw]
        for f in set(frames):
            incl_n[f] = incl_n.get(f, 0) + n
        self_n[frames[-1]] = self_n.get(frames[-1], 0) + n
        leaf_line = _strip_line(raw[-1], keep_line=True)
        line_n[leaf_line] = line_n.get(leaf_line, 0) + n
        comp = "other"
        for needle, name in _COMPONENTS:
            if needle in raw[-1]:
                comp = name
                break
        if "Thread._bootstrap" in raw[0] and comp not in ("store: SQLite code (both threads)",):
            comp = "store worker thread: waiting/hand-off outside SQLite code"
        comp_n[comp] = comp_n.get(comp, 0) + n

    def share(d: dict[str, int], k: int = top) -> list[dict[str, Any]]:
        rows = sorted(d.items(), key=lambda kv: -kv[1])[:k]
        return [{"function": name, "pct": round(100.0 * v / max(1, total), 1)} for name, v in rows]

    return {
        "samples": total,
        "components": share(comp_n, 30),
        "self": share(self_n),
        "self_lines": share(line_n),
        "inclusive": share(incl_n, 40),
    }


def _strip_line(frame: str, keep_line: bool = False) -> str:
    # "send_str (/x/site-packages/aiohttp/web_ws.py:123)" -> "send_str (aiohttp/web_ws.py)"
    name, sep, rest = frame.partition(" (")
    if not sep:
        return frame
    where = rest.rstrip(")")
    file_part, _, lineno = where.rpartition(":") if ":" in where else (where, "", "")
    for marker in ("site-packages/", "/src/", "python3.11/"):
        if marker in file_part:
            file_part = file_part.split(marker, 1)[1]
            break
    if keep_line and lineno:
        return f"{name} ({file_part}:{lineno})"
    return f"{name} ({file_part})"


# ---------------------------------------------------------------- protocol client


class WsClient:
    """One device on ``/v1/ws``: requests with ids, pushes with seq, one-shot waiters
    per push name. Every frame is timestamped with ``perf_counter`` when read."""

    __slots__ = ("frames_in", "frames_out", "next_id", "pending", "reader", "seq", "user", "waiters", "ws")

    def __init__(self, ws: Any, user: str) -> None:
        self.ws = ws
        self.user = user
        self.next_id = 1
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.waiters: dict[str, asyncio.Future[tuple[float, dict[str, Any]]]] = {}
        self.seq = 0
        self.frames_in = 0
        self.frames_out = 0
        self.reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        import aiohttp

        perf = time.perf_counter
        ws = self.ws
        try:
            async for msg in ws:
                t = perf()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                self.frames_in += 1
                data: str = msg.data
                if data.startswith('{"ev":"'):
                    # Fast path: '{"ev":"NAME","seq":N,...' -- parse fully only what we wait for.
                    j = data.index('"', 7)
                    name = data[7:j]
                    if data.startswith('","seq":', j):
                        k = j + 8
                        seq = int(data[k : data.index(",", k)])
                        w = self.waiters.pop(name, None)
                        args = _loads(data)["args"] if w is not None else None
                    else:
                        d = _loads(data)
                        seq, args = int(d.get("seq", 0)), d.get("args", {})
                        w = self.waiters.pop(name, None)
                    if seq > self.seq:
                        self.seq = seq
                    if w is not None and not w.done():
                        w.set_result((t, args or {}))
                elif data.startswith('{"re":'):
                    d = _loads(data)
                    f = self.pending.pop(d.get("re"), None)
                    if f is not None and not f.done():
                        f.set_result(d)
                # pongs and anything else: ignored
        except (asyncio.CancelledError, ConnectionResetError):
            pass
        finally:
            for f in self.pending.values():
                if not f.done():
                    f.set_exception(ConnectionError(f"{self.user}: connection closed"))
            self.pending.clear()

    def expect(self, name: str) -> asyncio.Future[tuple[float, dict[str, Any]]]:
        f: asyncio.Future[tuple[float, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self.waiters[name] = f
        return f

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        rid = self.next_id
        self.next_id += 1
        f: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = f
        args["id"] = rid
        args["op"] = op
        self.frames_out += 1
        await self.ws.send_str(_dumps(args))
        return await f

    async def ping(self) -> None:
        self.frames_out += 1
        await self.ws.send_str(f'{{"op":"ping","ack":{self.seq}}}')

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader


async def connect_and_login(
    session: Any,
    ws_url: str,
    user: str,
    *,
    sdk_app_id: int,
    secret_key: str,
    device_id: str | None = None,
) -> WsClient:
    """Open a WebSocket, log ``user`` in (sig minted in-process), return the client."""
    from ringline.core.usersig import gen_user_sig

    ws = await session.ws_connect(ws_url, autoping=False, heartbeat=None, compress=0, max_msg_size=1 << 20)
    c = WsClient(ws, user)
    c.start()
    sig = gen_user_sig(sdk_app_id, secret_key, user, 86400, now=int(time.time()))
    r = await c.request(
        "login",
        v=1,
        sdk_app_id=sdk_app_id,
        user_id=user,
        user_sig=sig,
        device_id=device_id or (user + "-bench"),
        multi_device=False,
    )
    if not r.get("ok"):
        await c.close()
        raise RuntimeError(f"login of {user} failed: {r}")
    return c


def client_session() -> Any:
    import aiohttp

    # limit=0: a WebSocket holds its connection for good, the default pool of 100 would block.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))


# ---------------------------------------------------------------- relay baseline server


async def _relay_main(port: int) -> None:
    """A bare WebSocket relay on the same stack as the server (aiohttp + uvloop):
    every text frame is ``json.loads``-ed and forwarded as is to the peer named in its
    ``to`` field. No sessions, no persistence, no acknowledgements."""
    from aiohttp import WSMsgType, web

    peers: dict[str, web.WebSocketResponse] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        name = request.query.get("id", "")
        peers[name] = ws
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    d = json.loads(msg.data)
                    peer = peers.get(d["to"])
                    if peer is not None and not peer.closed:
                        await peer.send_str(msg.data)
        finally:
            if peers.get(name) is ws:
                del peers[name]
        return ws

    async def healthz(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "peers": len(peers)})

    app = web.Application()
    app.router.add_get("/ws", handle)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=4096).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


class RelayServer(Proc):
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.ws_url = f"ws://{HOST}:{self.port}/ws"
        super().__init__(
            [sys.executable, str(Path(__file__).resolve()), "relay", "--port", str(self.port)],
            log_dir / "relay.log",
        )
        try:
            wait_http(f"http://{HOST}:{self.port}/healthz", 20.0, self.proc)
        except Exception as e:
            self.stop()
            raise RuntimeError("the relay did not start:\n" + self.tail()) from e


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "relay" and sys.argv[2] == "--port":
        run_async(_relay_main(int(sys.argv[3])))
    else:
        print("usage: python bench/_util.py relay --port PORT", file=sys.stderr)
        raise SystemExit(2)
