"""Cluster benchmark: one node on PostgreSQL against two nodes on PostgreSQL + NATS,
with the SQLite single node as reference, and a failover under load. See
docs/benchmarks.md and docs/cluster.md.

    .venv/bin/python bench/cluster.py [--pairs N] [--duration S] [--rate R] [--quick] [--json]

Everything runs on 127.0.0.1: real ``ringline serve`` processes, a fresh PostgreSQL
database per setup (next to ``RINGLINE_BENCH_PG_DSN``, by default
``postgresql://postgres@127.0.0.1:5432/postgres``, dropped at the end), the bench's own
``nats-server`` with its monitoring port (``-m``), and the client worker processes of
``bench/calls.py`` speaking protocol v1 over raw WebSockets. For each setup:

1. max rate  -- the caller/callee pairs loop complete 1v1 calls flat out (calls/s);
                server CPU (every server process together, from /proc) per call,
                PostgreSQL transactions per call (``xact_commit`` of the bench
                database in ``pg_stat_database``), NATS messages per call (``/varz``).
2. fixed load -- the same pairs paced at ``--rate`` calls/s: p50/p99 invite→ring.
3. records   -- rows of table ``calls`` must equal the calls completed.

In the cluster every caller connects to one node and its callee to the other, so
every call crosses the nodes (half the clients reach the owner through the edge).

4. failover  -- two fresh nodes, the pairs paced at ``--failover-rate``; after a few
                seconds the owner is killed with SIGKILL. Every client that loses its
                connection logs in again on a node that answers. ``failover_s``: from
                the kill until every pair has completed a call again;
                ``failover_attempts_failed``: call attempts that did not complete
                (in flight at the kill, or tried while no node owned the calls: the
                client sees an error and may try again); ``failover_calls_lost``:
                calls the server acknowledged (the caller got the call id) that are
                afterwards neither recorded nor live in PostgreSQL -- must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as u
import calls as cb

PG_DSN = os.environ.get(
    "RINGLINE_BENCH_PG_DSN",
    os.environ.get("RINGLINE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
)


# ============================================================== worker side


async def _connect_spread(
    session: Any, urls: list[str], users: list[str], cfg: dict[str, Any]
) -> dict[str, u.WsClient]:
    """Logs ``users`` in, the k-th on ``urls[k % len(urls)]``."""
    sem = asyncio.Semaphore(cb.CONNECT_CONCURRENCY)

    async def one(k: int, user: str) -> u.WsClient:
        async with sem:
            return await _login(session, urls, k, user, cfg, deadline=time.time() + 60)

    got = await asyncio.gather(*(one(k, x) for k, x in enumerate(users)))
    return {c.user: c for c in got}


async def _login(
    session: Any, urls: list[str], start: int, user: str, cfg: dict[str, Any], deadline: float
) -> u.WsClient:
    """Logs ``user`` in on the first node that lets it, starting at ``urls[start]``, round
    robin (a node answers 1013 while no node owns the calls); ``deadline``: wall clock."""
    k = start
    while True:
        try:
            return await u.connect_and_login(
                session, urls[k % len(urls)], user, sdk_app_id=cfg["app"], secret_key=cfg["key"]
            )
        except Exception:
            if time.time() > deadline:
                raise
            k += 1
            await asyncio.sleep(0.05)


async def _failover_pair(
    session: Any,
    pair: list[u.WsClient],
    idx: int,
    cfg: dict[str, Any],
    deadline: float,
    interval: float,
    rng: random.Random,
    attempts: list[tuple[float, float, bool, str | None]],
) -> None:
    """Paced calls of one pair until ``deadline`` (wall clock); a client whose connection
    is gone logs in again first. Every attempt: (start, end, completed, the call id the
    server acknowledged or None)."""
    st = cb._Stats()
    st.placed = []
    next_at = time.time() + rng.uniform(0, interval)
    while next_at < deadline:
        now = time.time()
        if next_at > now:
            await asyncio.sleep(next_at - now)
        next_at = max(next_at + interval, time.time())
        t0 = time.time()
        for side in (0, 1):
            c = pair[side]
            if c.ws.closed or c.reader is None or c.reader.done():
                await c.close()
                pair[side] = await _login(session, cfg["ws_urls"], idx + side + 1, c.user, cfg, deadline + 30)
        before, placed = st.completed, len(st.placed)
        # a push awaited on a connection that closes never comes: stop waiting at the close
        call = asyncio.ensure_future(cb._one_call(pair[0], pair[1], st, deadline + 30))
        readers = [c.reader for c in pair if c.reader is not None]
        await asyncio.wait([call, *readers], return_when=asyncio.FIRST_COMPLETED)
        if not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            for c in pair:
                c.waiters.clear()
        acked = st.placed[placed:]
        attempts.append((t0, time.time(), st.completed > before, acked[-1] if acked else None))


async def _worker_main(cfg: dict[str, Any], conn: Any) -> None:
    session = u.client_session()
    stop = asyncio.Event()
    rng = random.Random(cfg["seed"])
    try:
        names = [(f"{cfg['prefix']}c{i}", f"{cfg['prefix']}e{i}") for i in cfg["pairs"]]
        flat = [x for p in names for x in p]
        by_user = await _connect_spread(session, cfg["ws_urls"], flat, cfg)
        pairs = [[by_user[a], by_user[b]] for a, b in names]
        clients = list(by_user.values())
        pinger = asyncio.create_task(cb._pinger(clients, cb.PING_INTERVAL, stop))
        conn.send(("ready", {"clients": len(clients)}))
        while True:
            cmd, arg = await cb._recv(conn)
            if cmd == "quit":
                break
            if cmd == "run":
                st = cb._Stats()
                start = time.perf_counter()
                deadline = start + arg["duration"]
                await asyncio.gather(
                    *(cb._pair_loop(a, b, st, deadline, arg.get("interval"), rng) for a, b in pairs)
                )
                conn.send(
                    (
                        "result",
                        {
                            "completed": st.completed,
                            "in_window": st.in_window,
                            "failed": st.failed,
                            "late": st.late,
                            "errors": st.errors,
                            "duration": arg["duration"],
                            "elapsed": time.perf_counter() - start,
                            "cpu_s": 0.0,
                            "frames_in": 0,
                            "frames_out": 0,
                            "invite_ring": st.invite_ring.tolist(),
                            "accept_begin": st.accept_begin.tolist(),
                            "hangup_end": st.hangup_end.tolist(),
                            "cycle": st.cycle.tolist(),
                        },
                    )
                )
            elif cmd == "failover":
                per_pair: list[list[tuple[float, float, bool]]] = [[] for _ in pairs]
                await asyncio.gather(
                    *(
                        _failover_pair(
                            session, p, 2 * k, cfg, arg["until"], arg["interval"], rng, per_pair[k]
                        )
                        for k, p in enumerate(pairs)
                    )
                )
                conn.send(("result", {"pairs": per_pair}))
        stop.set()
        pinger.cancel()
        await asyncio.gather(*(c.close() for p in pairs for c in p), return_exceptions=True)
    except Exception as e:  # report instead of dying silently
        import traceback

        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        stop.set()
        await session.close()


def worker(cfg: dict[str, Any], conn: Any) -> None:
    u.run_async(_worker_main(cfg, conn))


# ============================================================== parent side


def _pg(sql: str, dsn: str = PG_DSN) -> list[Any]:
    import asyncpg

    async def go() -> list[Any]:
        c = await asyncpg.connect(dsn, timeout=10)
        try:
            return list(await c.fetch(sql))
        finally:
            await c.close()

    return u.run_async(go())


def _db_dsn(name: str) -> str:
    return PG_DSN.rsplit("/", 1)[0] + "/" + name


def _xact(db: str) -> int:
    rows = _pg(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'")
    return int(rows[0]["xact_commit"])


class Nats:
    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise SystemExit("nats-server is not installed (apt-get install nats-server)")
        self.port, self.mport = u.free_port(), u.free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = u.Proc(
            [binary, "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.mport)], tmp / "nats.log"
        )
        u.wait_http(f"http://127.0.0.1:{self.mport}/varz", 20.0, self.proc.proc)

    def msgs(self) -> int:
        v = u.get_json(f"http://127.0.0.1:{self.mport}/varz")
        return int(v["in_msgs"]) + int(v["out_msgs"])


class Setup:
    """One configuration under test: its server processes and what to count."""

    def __init__(
        self,
        name: str,
        tmp: Path,
        app: int,
        key: str,
        *,
        pg: bool,
        nodes: int,
        lease: float,
        nats: Nats | None,
    ) -> None:
        self.name = name
        self.db = f"ringline_bench_{name}_{secrets.token_hex(4)}" if pg else ""
        self.nats = nats
        self.servers: list[u.Server] = []
        if pg:
            _pg(f'CREATE DATABASE "{self.db}"')
        # with few pairs calling flat out, one caller sends more than the default 100
        # frames/s; the bench measures the server, not that limit
        extra: list[str] = ["--rate-limit", "1000"]
        if pg:
            extra += ["--db", _db_dsn(self.db)]
        try:
            for i in range(nodes):
                args = list(extra)
                if nats is not None:
                    args += ["--cluster", nats.url, "--node-id", f"{name}{i}", "--cluster-lease", str(lease)]
                self.servers.append(
                    u.Server(tmp / f"{name}{i}", sdk_app_id=app, secret_key=key, extra_args=args)
                )
            if nats is not None:
                self.wait_owner(30.0)
        except BaseException:
            self.stop()
            raise

    @property
    def ws_urls(self) -> list[str]:
        return [s.ws_url for s in self.servers]

    def owner(self) -> int | None:
        for i, s in enumerate(self.servers):
            if not s.alive():
                continue
            with contextlib.suppress(OSError, KeyError, ValueError):
                if s.healthz()["cluster"]["role"] == "owner":
                    return i
        return None

    def wait_owner(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            i = self.owner()
            if i is not None:
                return i
            time.sleep(0.1)  # polling processes: there is no event to await
        raise RuntimeError("no node took the lease:\n" + "\n".join(s.tail() for s in self.servers))

    def cpu_s(self) -> float:
        """CPU seconds of every server process and its children (callback workers)."""
        total = 0.0
        for s in self.servers:
            if s.alive():
                with contextlib.suppress(OSError):
                    total += u.cpu_seconds(s.pid) + sum(u.child_cpu(s.pid).values())
        return total

    def pg_cpu(self) -> dict[int, float]:
        """CPU seconds of each PostgreSQL backend connected to the bench database (by pid)."""
        out: dict[int, float] = {}
        if self.db:
            for row in _pg(f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.db}'"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    out[int(row["pid"])] = u.cpu_seconds(int(row["pid"]))
        return out

    def counters(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu_s(),
            "pg": self.pg_cpu(),
            "xact": float(_xact(self.db)) if self.db else 0.0,
            "nats": float(self.nats.msgs()) if self.nats is not None else 0.0,
        }

    def records(self) -> int:
        if self.db:
            return int(_pg("SELECT count(*) AS n FROM ringline.calls", _db_dsn(self.db))[0]["n"])
        return u.count_rows(self.servers[0].db_path, "calls")

    def known_calls(self, call_ids: list[str]) -> set[str]:
        """Those of ``call_ids`` that PostgreSQL has, recorded or still live."""
        if not call_ids:
            return set()
        quoted = ",".join("'" + c.replace("'", "''") + "'" for c in call_ids)
        rows = _pg(
            f"SELECT call_id FROM ringline.calls WHERE call_id IN ({quoted})"
            f" UNION SELECT call_id FROM ringline.live_calls WHERE call_id IN ({quoted})",
            _db_dsn(self.db),
        )
        return {r["call_id"] for r in rows}

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        self.servers = []
        if self.db:
            with contextlib.suppress(Exception):
                _pg(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


def _pool(setup: Setup, args: argparse.Namespace, app: int, key: str, prefix: str) -> cb.Pool:
    n_workers = max(1, min(args.workers, args.pairs))
    cfgs = [
        {
            "ws_urls": setup.ws_urls,
            "app": app,
            "key": key,
            "prefix": prefix,
            "pairs": list(range(w, args.pairs, n_workers)),
            "seed": w,
        }
        for w in range(n_workers)
    ]
    pool = cb.Pool(worker, cfgs)
    pool.gather("ready", 120)
    return pool


def _phase(pool: cb.Pool, setup: Setup, arg: dict[str, Any]) -> dict[str, Any]:
    c0 = setup.counters()
    pool.send("run", arg)
    res = cb._merge(pool.gather("result", arg["duration"] + cb.CALL_TIMEOUT + 60))
    c1 = setup.counters()
    n = max(1, res["completed"])
    res["calls_per_s"] = res["in_window"] / res["duration"]
    res["cpu_ms_per_call"] = round(1000.0 * (c1["cpu"] - c0["cpu"]) / n, 3)
    # a backend that ended meanwhile is left out, one that began counts from 0
    pg_s = sum(t - c0["pg"].get(pid, 0.0) for pid, t in c1["pg"].items())
    res["pg_cpu_ms_per_call"] = round(1000.0 * pg_s / n, 3) if setup.db else None
    res["xact_per_call"] = round((c1["xact"] - c0["xact"]) / n, 2) if setup.db else None
    res["nats_msgs_per_call"] = round((c1["nats"] - c0["nats"]) / n, 3) if setup.nats else None
    return res


def _measure(name: str, setup: Setup, args: argparse.Namespace, app: int, key: str) -> dict[str, Any]:
    pool = _pool(setup, args, app, key, name)
    try:
        u.log(f"[{name}] {args.pairs} pairs on {len(setup.servers)} node(s); warm-up {args.warmup} s")
        warm = _phase(pool, setup, {"duration": args.warmup})
        u.log(f"[{name}] max rate for {args.duration} s")
        full = _phase(pool, setup, {"duration": args.duration})
        u.log(f"[{name}]   {full['calls_per_s']:.1f} calls/s, {full['cpu_ms_per_call']} server CPU ms/call")
        u.log(f"[{name}] paced at {args.rate:.0f} calls/s for {args.duration} s")
        fixed = _phase(pool, setup, {"duration": args.duration, "interval": args.pairs / args.rate})
        u.log(f"[{name}]   p99 invite->ring {cb._lat(fixed, 'invite_ring', 99)} ms")
    finally:
        pool.close()
    completed = sum(x["completed"] for x in (warm, full, fixed))
    failed = sum(x["failed"] for x in (warm, full, fixed))
    records = setup.records()
    return {
        "calls_per_s": round(full["calls_per_s"], 1),
        "cpu_ms_per_call": full["cpu_ms_per_call"],
        "pg_cpu_ms_per_call": full["pg_cpu_ms_per_call"],
        "xact_per_call": full["xact_per_call"],
        "fixed_xact_per_call": fixed["xact_per_call"],
        "fixed_cpu_ms_per_call": fixed["cpu_ms_per_call"],
        "fixed_nats_msgs_per_call": fixed["nats_msgs_per_call"],
        "nats_msgs_per_call": full["nats_msgs_per_call"],
        "fixed_rate": args.rate,
        "fixed_calls_per_s": round(fixed["calls_per_s"], 1),
        "fixed_invite_to_ring_p50_ms": cb._lat(fixed, "invite_ring", 50),
        "fixed_invite_to_ring_p99_ms": cb._lat(fixed, "invite_ring", 99),
        "completed": completed,
        "failed": failed,
        "errors": cb._sum_counts(*(x["errors"] for x in (warm, full, fixed))),
        "records": records,
        "records_ok": records == completed and failed == 0,
    }


def _failover(args: argparse.Namespace, tmp: Path, app: int, key: str, nats: Nats) -> dict[str, Any]:
    setup = Setup("fo", tmp, app, key, pg=True, nodes=2, lease=args.lease, nats=nats)
    pool: cb.Pool | None = None
    try:
        pool = _pool(setup, args, app, key, "f")
        owner = setup.wait_owner(10)
        before, after = args.failover_before, args.failover_after
        start = time.time()
        kill_at = start + before
        pool.send("failover", {"until": kill_at + after, "interval": args.pairs / args.failover_rate})
        u.log(
            f"[failover] {args.failover_rate:.0f} calls/s over 2 nodes; SIGKILL to the owner"
            f" (node {owner}) after {before} s, then {after} s more"
        )
        time.sleep(max(0.0, kill_at - time.time()))
        killed_at = time.time()
        setup.servers[owner].proc.send_signal(signal.SIGKILL)
        new_owner = setup.wait_owner(args.lease * 4 + 20)
        took_over = time.time() - killed_at
        u.log(f"[failover]   node {new_owner} owns the calls {took_over:.2f} s after the kill")
        per_pair = [p for r in pool.gather("result", before + after + 120) for p in r["pairs"]]
        pool.close()
        pool = None
        recovered: list[float] = []
        failed = completed = 0
        acked_failed: list[str] = []
        for attempts in per_pair:
            completed += sum(1 for a in attempts if a[2])
            failed += sum(1 for a in attempts if not a[2])
            acked_failed += [a[3] for a in attempts if not a[2] and a[3]]
            again = [end for (t0, end, ok, _cid) in attempts if ok and end > killed_at]
            # a pair that was never hit (every call after the kill completed) still counts:
            # its first completed call after the kill is its "served again"
            recovered.append((min(again) - killed_at) if again else float("inf"))
        served = [r for r in recovered if r != float("inf")]
        records = setup.records()
        lost = len(acked_failed) - len(setup.known_calls(acked_failed))
        return {
            "failover_rate": args.failover_rate,
            "failover_takeover_s": round(took_over, 2),
            "failover_s": round(max(recovered), 2) if served and len(served) == len(recovered) else None,
            "failover_pairs_never_served": len(recovered) - len(served),
            "failover_calls_completed": completed,
            "failover_attempts_failed": failed,
            "failover_attempts_acknowledged_failed": len(acked_failed),
            "failover_calls_lost": lost,
            "failover_records": records,
            # every completed call is recorded; failed attempts may or may not be (each one
            # the new owner restored ends with a record, too)
            "failover_records_ok": completed <= records <= completed + failed,
        }
    finally:
        if pool is not None:
            pool.close()
        setup.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    app = 1400000000 + secrets.randbelow(99_999_999)
    key = secrets.token_hex(32)
    u.raise_nofile(4 * args.pairs + 1024)
    tmp = Path(tempfile.mkdtemp(prefix="ringline-bench-cluster-"))
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": u.machine_info(),
        "config": {
            "pairs": args.pairs,
            "client_workers": args.workers,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "fixed_rate": args.rate,
            "failover_rate": args.failover_rate,
            "quick": args.quick,
        },
        "lease_s": args.lease,
    }
    nats: Nats | None = None
    try:
        results: dict[str, dict[str, Any]] = {}
        for name, pg, nodes in (("sqlite", False, 1), ("single_pg", True, 1), ("cluster2", True, 2)):
            if name == "cluster2":
                nats = Nats(tmp)
            setup = Setup(
                name,
                tmp,
                app,
                key,
                pg=pg,
                nodes=nodes,
                lease=args.lease,
                nats=nats if name == "cluster2" else None,
            )
            try:
                results[name] = _measure(name, setup, args, app, key)
            finally:
                setup.stop()
        for name, r in results.items():
            for k, v in r.items():
                out[f"{name}_{k}"] = v
        out["cluster_cpu_ms_per_call"] = results["cluster2"]["cpu_ms_per_call"]
        assert nats is not None
        out.update(_failover(args, tmp, app, key, nats))
        out["records_ok"] = bool(
            all(r["records_ok"] for r in results.values()) and out["failover_records_ok"]
        )
    finally:
        if nats is not None:
            nats.proc.stop()
        if args.keep:
            u.log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def table(r: dict[str, Any]) -> str:
    rows = [
        (f"complete calls/s (max rate, {r['config']['pairs']} pairs in a loop)", "calls_per_s"),
        (f"p50 invite→ring at {r['config']['fixed_rate']:.0f} calls/s, ms", "fixed_invite_to_ring_p50_ms"),
        (f"p99 invite→ring at {r['config']['fixed_rate']:.0f} calls/s, ms", "fixed_invite_to_ring_p99_ms"),
        ("server CPU ms per call (all nodes)", "cpu_ms_per_call"),
        ("PostgreSQL backends' CPU ms per call", "pg_cpu_ms_per_call"),
        ("PostgreSQL transactions per call", "xact_per_call"),
        (f"server CPU ms per call at {r['config']['fixed_rate']:.0f} calls/s", "fixed_cpu_ms_per_call"),
        (
            f"PostgreSQL transactions per call at {r['config']['fixed_rate']:.0f} calls/s",
            "fixed_xact_per_call",
        ),
        ("NATS messages per call", "nats_msgs_per_call"),
        ("records = calls completed", "records_ok"),
    ]
    lines = [
        "| | SQLite, 1 node | PostgreSQL, 1 node | PostgreSQL + NATS, 2 nodes |",
        "|---|---:|---:|---:|",
    ]
    for label, k in rows:
        lines.append(
            f"| {label} | {_fmt(r.get('sqlite_' + k))} | {_fmt(r.get('single_pg_' + k))}"
            f" | {_fmt(r.get('cluster2_' + k))} |"
        )
    lines.append("")
    lines.append(
        f"failover (2 nodes, {r['failover_rate']:.0f} calls/s, lease {r['lease_s']} s, owner SIGKILLed):"
        f" new owner after {r['failover_takeover_s']} s,"
        f" every pair served again after {_fmt(r['failover_s'])} s; {r['failover_attempts_failed']} of"
        f" {r['failover_calls_completed'] + r['failover_attempts_failed']} call attempts failed"
        f" ({r['failover_attempts_acknowledged_failed']} of them after the server acknowledged the call);"
        f" acknowledged calls lost: {r['failover_calls_lost']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--pairs", type=int, default=100, help="caller/callee pairs (default 100)")
    p.add_argument("--workers", type=int, default=2, help="client processes (default 2)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per setup (default 2)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds of each measured phase (default 8)")
    p.add_argument(
        "--rate", type=float, default=100.0, help="the fixed load of the latency phase, calls/s (default 100)"
    )
    p.add_argument(
        "--failover-rate", type=float, default=200.0, help="the load of the failover phase (default 200)"
    )
    p.add_argument(
        "--failover-before", type=float, default=4.0, help="seconds of load before the kill (default 4)"
    )
    p.add_argument(
        "--failover-after", type=float, default=12.0, help="seconds of load after the kill (default 12)"
    )
    p.add_argument(
        "--lease", type=float, default=3.0, help="--cluster-lease of the nodes (default 3, as serve)"
    )
    p.add_argument("--quick", action="store_true", help="small and short: a smoke check in about a minute")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temp data dirs (server logs)")
    args = p.parse_args(argv)
    if args.quick:
        args.pairs = min(args.pairs, 20)
        args.warmup, args.duration = 0.5, 1.5
        args.rate = min(args.rate, 40.0)
        args.failover_rate = min(args.failover_rate, 40.0)
        args.failover_before, args.failover_after = 1.5, 6.0
        args.lease = min(args.lease, 1.5)
    r = run(args)
    print(table(r), file=sys.stderr)
    if args.json:
        print(json.dumps(r))
    return 0 if r["records_ok"] and r["failover_calls_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
