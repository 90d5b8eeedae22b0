"""Callback delivery in processes of their own: ``ringline serve --callback-workers N``.

A Ringline server runs its calls on one event loop, which uses one core. By default the
same loop also delivers the callbacks; at high rates (thousands per second) the two
compete for that core. With ``--callback-workers N`` the server instead spawns ``N``
worker processes (``python -m ringline.server.worker``). Each opens the same store and
runs a :class:`~.webhooks.Deliverer` on its durable outbox, so delivery gets cores of
its own; the outbox's claims keep each delivery with one worker at a time and per-call
order intact, whatever the number of workers.

How the server and a worker talk:

* **Configuration** goes in the ``RINGLINE_WORKER_CONFIG`` environment variable (JSON of
  :class:`WorkerConfig`), never on the command line, which other users can read.
* **Wake-ups**: the worker's stdin is a pipe from the server. The server writes a byte
  whenever it queues callbacks; the worker then claims at once instead of at its next
  poll (every second).
* **Stopping**: the server closes the pipe. The worker stops claiming, gives requests
  under way 2 s, hands back the rest (they go out again with the same event id) and
  exits. If the server dies, the pipe closes too, so no worker outlives its server.
* **Metrics**: with ``ringline serve --metrics`` a worker writes its attempts (status,
  duration, lag) to its stdout, a pipe to the server, as one JSON line every 0.25 s;
  the server counts them in its own ``/metrics`` as if it had made them.
* **Claim owners**: the server gives each worker process it starts a fresh claim owner
  (:func:`~.webhooks.new_claim_owner`, in the configuration), which the outbox records
  with every claim that worker makes.
* **Crashes**: :class:`WorkerPool` restarts a worker that exits on its own, after 1 s,
  then 2 s, 4 s … up to 30 s. As soon as it sees the process gone, it hands back the
  claims of that worker's owner (``release_owner``) and wakes the others, so what the
  worker held goes out again at once (same event ids), whatever the number of workers;
  the claims of the live workers are not touched. Should that hand-back fail, the
  claims wait for their lease (60 s).

Internal to the server; operators only see the flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import gcpolicy
from .webhooks import Deliverer, RetrySchedule, WebhookCredentials, new_claim_owner

__all__ = ["CONFIG_ENV", "WorkerConfig", "WorkerPool", "make_deliverer", "parse_attempts", "run_worker"]

log = logging.getLogger("ringline.server.worker")

#: The environment variable that carries a worker's :class:`WorkerConfig` (JSON).
CONFIG_ENV = "RINGLINE_WORKER_CONFIG"

#: Requests a deliverer keeps under way at once (per process).
MAX_IN_FLIGHT = 256

#: Seconds a stopping deliverer gives the requests under way before handing them back.
STOP_GRACE = 2.0

#: Restart back-off of a worker that exited on its own: first, cap (seconds).
RESTART_FIRST, RESTART_MAX = 1.0, 30.0

#: A worker that ran this long before exiting is restarted after RESTART_FIRST again.
RESTART_RESET_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What a delivery process needs: the store, how to sign, how to retry."""

    db_url: str
    sdk_app_id: int
    callback_token: str
    webhook_secrets: tuple[str, ...]
    retry_delays: tuple[float, ...]
    give_up_after: float
    index: int = 0
    log_level: str = "INFO"
    claim_owner: str = ""
    """The owner the worker claims as (set by the pool per process start; empty: the
    outbox's own random one)."""
    db_schema: str = ""
    """The PostgreSQL schema of the tables (``--db-schema``; empty: the default)."""
    report_attempts: bool = False
    """Write every attempt (status, seconds, lag) to stdout for the server's metrics
    (``ringline serve --metrics``)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        """Parse :meth:`to_json`'s output; ValueError naming what is wrong."""
        try:
            raw = json.loads(text)
            return cls(
                db_url=str(raw["db_url"]),
                sdk_app_id=int(raw["sdk_app_id"]),
                callback_token=str(raw["callback_token"]),
                webhook_secrets=tuple(str(s) for s in raw["webhook_secrets"]),
                retry_delays=tuple(float(x) for x in raw["retry_delays"]),
                give_up_after=float(raw["give_up_after"]),
                index=int(raw.get("index", 0)),
                log_level=str(raw.get("log_level", "INFO")),
                claim_owner=str(raw.get("claim_owner", "")),
                db_schema=str(raw.get("db_schema", "")),
                report_attempts=bool(raw.get("report_attempts", False)),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(
                f"{CONFIG_ENV} is not a worker configuration ({type(exc).__name__}: {exc}); "
                "callback workers are started by `ringline serve --callback-workers N`, not by hand"
            ) from exc


def make_deliverer(outbox: Any, config: WorkerConfig) -> Deliverer:
    """The deliverer of ``config`` on ``outbox`` (the server's own, or a worker's).
    Call ``start()`` on it next, and ``close()`` when done."""
    delays = config.retry_delays
    schedule = RetrySchedule(delays=delays[:-1], then_every=delays[-1], give_up_after=config.give_up_after)
    creds = WebhookCredentials(config.sdk_app_id, config.callback_token, config.webhook_secrets)
    return Deliverer(outbox, creds, schedule=schedule, max_in_flight=MAX_IN_FLIGHT)


# --------------------------------------------------------------------------- the worker


class _PipeWatch(asyncio.Protocol):
    """Reads the server's pipe: data wakes the deliverer, end of file stops the worker."""

    def __init__(self, on_data: Callable[[], None], closed: asyncio.Event) -> None:
        self._on_data = on_data
        self._closed = closed

    def data_received(self, data: bytes) -> None:
        self._on_data()

    def eof_received(self) -> bool:
        self._closed.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()


#: Seconds a worker collects attempts before writing them to the server (metrics).
REPORT_EVERY = 0.25

#: The longest report line the server reads (bytes); ~40 bytes per attempt.
REPORT_LINE_LIMIT = 1 << 22


class _AttemptReporter:
    """Collects a worker's attempts and writes them to the server as JSON lines
    (``[[status, seconds, lag], ...]``) every :data:`REPORT_EVERY` seconds."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._batch: list[tuple[int | None, float, float | None]] = []
        self._scheduled = False

    def add(self, status: int | None, seconds: float, lag: float | None) -> None:
        self._batch.append((status, round(seconds, 6), None if lag is None else round(lag, 6)))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(REPORT_EVERY, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        try:
            self._out.write(json.dumps(batch, separators=(",", ":")).encode() + b"\n")
            self._out.flush()
        except (OSError, ValueError):
            pass  # the server is gone: nobody reads the metrics any more


def parse_attempts(line: bytes) -> list[tuple[int | None, float, float | None]]:
    """The attempts of one report line of a worker; [] for anything else (a worker's
    stray output must not break the server's metrics)."""
    try:
        raw = json.loads(line)
    except ValueError:
        return []
    out: list[tuple[int | None, float, float | None]] = []
    if not isinstance(raw, list):
        return out
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            continue
        status, seconds, lag = item
        if (
            (status is None or isinstance(status, int))
            and isinstance(seconds, (int, float))
            and (lag is None or isinstance(lag, (int, float)))
        ):
            out.append((status, float(seconds), None if lag is None else float(lag)))
    return out


async def run_worker(config: WorkerConfig, pipe_fd: int = 0) -> None:
    """Deliver callbacks from ``config``'s store until ``pipe_fd`` (the server's pipe)
    closes or SIGTERM arrives; then hand back what is under way and return."""
    from .store import open_store  # the store package pulls in the SQL drivers

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    # Ctrl-C in a terminal reaches the whole process group: the server decides when
    # workers stop (it closes the pipe after its own writes have landed).
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    # The server runs the checkpoints of a SQLite store (copying the WAL back), and its
    # commits hold calls back: when the write lock is taken, a worker waits in short
    # sleeps and leaves the CPU to the server, which tries again at every turn.
    store = open_store(config.db_url, pg_schema=config.db_schema, checkpoints=False, lock_spin=0.0)
    await store.open()
    if config.claim_owner:
        store.outbox.owner = config.claim_owner
    reporter: _AttemptReporter | None = None
    try:
        deliverer = make_deliverer(store.outbox, config)
        if config.report_attempts:
            reporter = _AttemptReporter(sys.stdout.buffer)
            deliverer.on_attempt = reporter.add
        pipe = os.fdopen(pipe_fd, "rb", buffering=0, closefd=False)
        transport, _ = await loop.connect_read_pipe(lambda: _PipeWatch(deliverer.wake, stop), pipe)
        try:
            await deliverer.start()  # claims what is due right away
            gcpolicy.settle()
            log.info(
                "callback worker %d delivering (pid %d, claim owner %s)",
                config.index,
                os.getpid(),
                store.outbox.owner,
            )
            await stop.wait()
        finally:
            transport.close()
            await deliverer.close(grace=STOP_GRACE)
            if reporter is not None:
                reporter.flush()
            s = deliverer.stats
            log.info(
                "callback worker %d stopped: %d delivered, %d failed attempts, %d given up",
                config.index,
                s.delivered,
                s.failed_attempts,
                s.given_up,
            )
    finally:
        await store.close()


def main() -> int:
    """Entry point of ``python -m ringline.server.worker`` (started by the server)."""
    try:
        config = WorkerConfig.from_json(os.environ.get(CONFIG_ENV, ""))
    except ValueError as exc:
        print(f"ringline worker: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[worker {config.index}]: %(message)s",
        stream=sys.stderr,
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(run_worker(config))
    else:
        uvloop.run(run_worker(config))
    return 0


# --------------------------------------------------------------------------- the pool


class WorkerPool:
    """The server's delivery processes: starts ``count`` of them, wakes them when
    callbacks are queued, restarts one that exits on its own, stops them all.

    Each process start gets a fresh claim owner (in its configuration).
    ``release_owner`` hands back the in-flight claims of one owner (the store's
    ``outbox.release_owner``); the pool calls it as soon as a worker's process has
    exited on its own, then wakes the workers, so what the dead worker held goes out
    again at once while the live workers keep theirs.
    """

    def __init__(
        self,
        config: WorkerConfig,
        count: int,
        *,
        release_owner: Callable[[str], Awaitable[int]] | None = None,
        on_attempt: Callable[[int | None, float, float | None], None] | None = None,
        python: str = sys.executable,
    ) -> None:
        if count < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, not {count}")
        if on_attempt is not None:
            config = dataclasses.replace(config, report_attempts=True)
        self._config = config
        self._on_attempt = on_attempt
        self._readers: list[asyncio.Task[None]] = []
        self._starter: asyncio.Task[None] | None = None
        self._on_demand = False
        self._count = count
        self._release_owner = release_owner
        self._python = python
        self._procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._owners: list[str] = [""] * count
        self._supervisors: list[asyncio.Task[None]] = []
        self._closing = asyncio.Event()
        self._wake_scheduled = False
        self.restarts = 0

    @property
    def count(self) -> int:
        """Workers configured."""
        return self._count

    @property
    def running(self) -> int:
        """Workers whose process is running now."""
        return sum(1 for p in self._procs if p is not None and p.returncode is None)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [p.pid for p in self._procs if p is not None and p.returncode is None]

    @property
    def started(self) -> bool:
        """True once the processes were spawned (at :meth:`start`, or on demand)."""
        return bool(self._supervisors)

    async def start(self, *, on_demand: bool = False) -> None:
        """Spawn the workers (returns once each process exists, not when it is ready:
        a worker that starts late still finds everything in the outbox). With
        ``on_demand``, spawn nothing yet: the first :meth:`wake` (callbacks were
        queued) starts them, so a server without callbacks runs no extra process."""
        if on_demand:
            self._on_demand = True
            return
        await self._start_all()

    async def _start_all(self) -> None:
        if self._supervisors or self._closing.is_set():
            return
        for index in range(self._count):
            await self._spawn(index)
            self._supervisors.append(
                asyncio.create_task(self._supervise(index), name=f"ringline-callback-worker-{index}")
            )

    def wake(self) -> None:
        """Tell the workers callbacks were queued (one byte each per loop iteration);
        started on demand, the first wake starts them (they claim everything due)."""
        if self._on_demand and self._starter is None and not self._closing.is_set():
            log.info("callbacks queued: starting %d callback worker process(es)", self._count)
            self._starter = asyncio.create_task(self._start_all(), name="ringline-callback-workers-start")
            return
        if not self._wake_scheduled and not self._closing.is_set():
            self._wake_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_wakes)

    def _send_wakes(self) -> None:
        self._wake_scheduled = False
        for proc in self._procs:
            stdin = proc.stdin if proc is not None and proc.returncode is None else None
            if stdin is None or stdin.is_closing():
                continue
            # A worker busy for a while has wake-ups waiting already: skip, don't pile up.
            if stdin.transport.get_write_buffer_size() < 64:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    stdin.write(b"w")

    async def close(self, timeout: float = 10.0) -> None:
        """Stop every worker: close their pipes, wait up to ``timeout`` s for them to
        hand back their requests and exit, kill those that did not. Idempotent."""
        self._closing.set()
        if self._starter is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._starter  # a start under way finishes, then stops like the rest
        for task in self._supervisors:
            task.cancel()
        for task in self._supervisors:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        procs = [p for p in self._procs if p is not None]
        for proc in procs:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
        if procs:
            _, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=timeout)
            if late:
                log.warning(
                    "%d callback worker(s) did not stop within %.0f s; killing them", len(late), timeout
                )
                for proc in procs:
                    if proc.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
                await asyncio.gather(*(p.wait() for p in procs))
        for reader in self._readers:  # a worker's last report comes before its exit
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 2.0)
        self._procs = [None] * self._count

    async def _spawn(self, index: int) -> None:
        owner = new_claim_owner(f"callback-worker-{index}")
        self._owners[index] = owner
        env = dict(os.environ)
        env[CONFIG_ENV] = dataclasses.replace(self._config, index=index, claim_owner=owner).to_json()
        proc = await asyncio.create_subprocess_exec(
            self._python,
            "-m",
            "ringline.server.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE if self._on_attempt is not None else None,
            env=env,
            limit=REPORT_LINE_LIMIT,
        )
        self._procs[index] = proc
        if proc.stdout is not None:
            self._readers = [r for r in self._readers if not r.done()]
            self._readers.append(
                asyncio.create_task(
                    self._read_reports(proc.stdout), name=f"ringline-callback-worker-{index}-reports"
                )
            )

    async def _read_reports(self, out: asyncio.StreamReader) -> None:
        """Feed a worker's attempt reports to ``on_attempt`` until its stdout closes."""
        assert self._on_attempt is not None
        while True:
            try:
                line = await out.readline()
            except ValueError:  # a line past the reader's limit: not a report
                continue
            if not line:
                return
            for attempt in parse_attempts(line):
                try:
                    self._on_attempt(*attempt)
                except Exception:
                    log.exception("recording a callback worker's attempt failed")

    async def _supervise(self, index: int) -> None:
        backoff = RESTART_FIRST
        while True:
            proc = self._procs[index]
            if proc is not None:
                started = time.monotonic()
                code = await proc.wait()
                if self._closing.is_set():
                    return
                ran = time.monotonic() - started
                if ran >= RESTART_RESET_AFTER:
                    backoff = RESTART_FIRST
                log.error(
                    "callback worker %d (pid %d) exited with code %s after %.0f s; restarting it in %.0f s",
                    index,
                    proc.pid,
                    code,
                    ran,
                    backoff,
                )
                await self._hand_back(index)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._closing.wait()
            if self._closing.is_set():
                return
            backoff = min(backoff * 2, RESTART_MAX)
            try:
                await self._spawn(index)
            except Exception:
                self._procs[index] = None
                log.exception(
                    "callback worker %d could not be started; trying again in %.0f s", index, backoff
                )
            else:
                self.restarts += 1

    async def _hand_back(self, index: int) -> None:
        """Release the claims of worker ``index``'s exited process (its owner claims no
        more: the process is gone) and wake the others to send them now."""
        owner = self._owners[index]
        if self._release_owner is None or not owner:
            return
        try:
            released = await self._release_owner(owner)
        except Exception:
            log.exception(
                "handing back the claims of callback worker %d failed; they wait for their lease", index
            )
            return
        if released:
            log.warning(
                "callbacks: %d were being sent by callback worker %d; sending them again", released, index
            )
        self.wake()


if __name__ == "__main__":
    raise SystemExit(main())
