"""Call-server benchmark: complete 1v1 calls per second, latencies, a raw relay
baseline, and server memory per idle device. See docs/benchmarks.md.

    .venv/bin/python bench/calls.py [--users N] [--duration S] [--json]
                                    [--idle-devices 5000] [--quick] [--profile FILE]

Everything runs on 127.0.0.1: a real ``ringline serve`` subprocess (fresh temp data
dir, free port), and client worker *processes* (multiprocessing, uvloop when
installed) speaking protocol v1 over raw aiohttp WebSockets. Phases:

1. max rate   -- N/2 caller/callee pairs loop calls -> on_call_received -> accept
                 -> on_call_begin (both) -> hangup -> on_call_end (both), flat out.
2. half load  -- the same pairs, paced to about half the measured max rate; then
                 paced to 250 calls/s, the load of the latency target (half of 500).
3. records    -- rows of table ``calls`` in the server's SQLite file (read-only)
                 must equal the calls completed; plus one ``query_recent_calls``.
4. relay      -- the same worker processes against a bare aiohttp WebSocket relay
                 (json.loads + forward), for a msgs/s baseline on the same stack.
5. idle       -- a fresh server; ``--idle-devices`` logged-in devices that only ping;
                 server RSS before/after -> KiB per idle device.
6. SIP        -- with ``--sip-yardstick``: bench/sip_yardstick.py (Kamailio as a stateful
                 SIP proxy between SIPp's caller and callee) at the max rate of phase 1
                 (at most 1,900/s), for calls/s and CPU per call beside Ringline's.

The fd limit is raised (RLIMIT_NOFILE) so the server, which inherits it, can hold
every idle device: it needs ``ulimit -n`` above the device count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as u
import aiohttp

CALL_TIMEOUT = 10.0  # one call (all 3 steps) must finish within this, else it counts as failed
PING_INTERVAL = 2.0  # call-phase clients ping (with ack) this often; idle devices use the server's interval
CONNECT_CONCURRENCY = 64  # logins in flight per worker

TARGET_CALLS_PER_S = 2000.0
TARGET_CPU_MS_PER_CALL = 0.35
TARGET_LOAD_RATE = 250.0  # calls/s of phase 2b, where p99 invite->ring is judged
TARGET_HALF_P99_MS = 5.0
TARGET_KB_PER_DEVICE = 10.0
TARGET_RELAY_RATIO = 3.0
#: the SIP yardstick runs at Ringline's max rate, at most this: Kamailio's highest rate
#: without failed calls with 1 worker and its default allocator on a 2-core machine
SIP_RATE_CAP = 1900


# ============================================================== worker side


class _CallFailed(Exception):
    pass


class _Stats:
    __slots__ = (
        "accept_begin",
        "completed",
        "cycle",
        "errors",
        "failed",
        "hangup_end",
        "in_window",
        "invite_ring",
        "late",
        "placed",
    )

    def __init__(self) -> None:
        self.invite_ring = array("d")
        self.accept_begin = array("d")
        self.hangup_end = array("d")
        self.cycle = array("d")
        self.completed = 0
        self.in_window = 0
        self.failed = 0
        self.late = 0
        self.errors: dict[str, int] = {}
        #: call ids the server acknowledged, kept only when a caller asks (bench/cluster.py)
        self.placed: list[str] | None = None

    def error(self, key: str) -> None:
        self.failed += 1
        self.errors[key] = self.errors.get(key, 0) + 1


async def _one_call(caller: u.WsClient, callee: u.WsClient, st: _Stats, deadline: float) -> None:
    perf = time.perf_counter
    cid: str | None = None
    try:
        async with asyncio.timeout(CALL_TIMEOUT):
            ring = callee.expect("on_call_received")
            c_begin = caller.expect("on_call_begin")
            e_begin = callee.expect("on_call_begin")
            c_end = caller.expect("on_call_end")
            e_end = callee.expect("on_call_end")
            t0 = perf()
            r = await caller.request("calls", user_ids=[callee.user], media_type=1)
            if not r.get("ok"):
                raise _CallFailed(f"calls:{r.get('code')}")
            cid = r["result"]["call_id"]
            if st.placed is not None:
                st.placed.append(cid)
            t_ring, args = await ring
            if args.get("call_id") != cid:
                raise _CallFailed("stale on_call_received")
            t1 = perf()
            r = await callee.request("accept", call_id=cid)
            if not r.get("ok"):
                raise _CallFailed(f"accept:{r.get('code')}")
            t_begin, _ = await c_begin
            await e_begin
            t2 = perf()
            r = await caller.request("hangup", call_id=cid)
            if not r.get("ok"):
                raise _CallFailed(f"hangup:{r.get('code')}")
            t_end, _ = await e_end
            await c_end
            t3 = perf()
    except (_CallFailed, TimeoutError, ConnectionError) as e:
        st.error(str(e) if isinstance(e, _CallFailed) else type(e).__name__)
        caller.waiters.clear()
        callee.waiters.clear()
        if cid is not None:
            for c in (caller, callee):
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await c.request("hangup", call_id=cid)
        await asyncio.sleep(0.2)
        caller.waiters.clear()
        callee.waiters.clear()
        return
    st.invite_ring.append(t_ring - t0)
    st.accept_begin.append(t_begin - t1)
    st.hangup_end.append(t_end - t2)
    st.cycle.append(t3 - t0)
    st.completed += 1
    if t3 <= deadline:
        st.in_window += 1


async def _pair_loop(
    caller: u.WsClient,
    callee: u.WsClient,
    st: _Stats,
    deadline: float,
    interval: float | None,
    rng: random.Random,
) -> int:
    """Calls back to back until ``deadline`` (or one every ``interval`` s)."""
    perf = time.perf_counter
    done_before = st.completed
    next_at = perf() + (rng.uniform(0, interval) if interval else 0.0)
    while True:
        now = perf()
        if interval:
            if next_at >= deadline:
                break
            if next_at > now:
                await asyncio.sleep(next_at - now)
            elif now - next_at > interval:
                st.late += 1  # fell a whole slot behind: restart the schedule from now
                next_at = now
            next_at += interval
        elif now >= deadline:
            break
        await _one_call(caller, callee, st, deadline)
    return st.completed - done_before


async def _pinger(clients: list[u.WsClient], interval: float, stop: asyncio.Event) -> None:
    """Heartbeats with ``ack`` (so the server can drop its replay buffers), spread
    evenly over ``interval``."""
    chunk = 50
    while not stop.is_set():
        n = max(1, len(clients))
        pause = interval * chunk / n
        for i in range(0, len(clients), chunk):
            for c in clients[i : i + chunk]:
                with contextlib.suppress(Exception):
                    await c.ping()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            if stop.is_set():
                return


async def _connect_many(
    session: Any, ws_url: str, users: list[str], cfg: dict[str, Any]
) -> tuple[list[u.WsClient], int]:
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    failed = 0

    async def one(user: str) -> u.WsClient | None:
        nonlocal failed
        async with sem:
            for attempt in range(3):
                try:
                    return await u.connect_and_login(
                        session, ws_url, user, sdk_app_id=cfg["app"], secret_key=cfg["key"]
                    )
                except Exception:
                    await asyncio.sleep(0.2 * (attempt + 1))
            failed += 1
            return None

    got = await asyncio.gather(*(one(x) for x in users))
    return [c for c in got if c is not None], failed


async def _recv(conn: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, conn.recv)


async def _call_worker_main(cfg: dict[str, Any], conn: Any) -> None:
    session = u.client_session()
    rng = random.Random(cfg["seed"])
    stop = asyncio.Event()
    pairs: list[tuple[u.WsClient, u.WsClient]] = []
    per_pair_done: list[int] = []
    try:
        names = [(f"{cfg['prefix']}c{i}", f"{cfg['prefix']}e{i}") for i in cfg["pairs"]]
        flat = [x for p in names for x in p]
        clients, failed = await _connect_many(session, cfg["ws_url"], flat, cfg)
        if failed:
            conn.send(("error", f"{failed} logins failed"))
            return
        by_user = {c.user: c for c in clients}
        pairs = [(by_user[a], by_user[b]) for a, b in names]
        per_pair_done = [0] * len(pairs)
        pinger = asyncio.create_task(_pinger(clients, PING_INTERVAL, stop))
        conn.send(("ready", {"clients": len(clients)}))
        relay_ws: list[Any] = []
        while True:
            cmd, arg = await _recv(conn)
            if cmd == "quit":
                break
            if cmd == "run":
                st = _Stats()
                fin0 = sum(c.frames_in for c in clients)
                fout0 = sum(c.frames_out for c in clients)
                cpu0 = time.process_time()
                start = time.perf_counter()
                deadline = start + arg["duration"]
                counts = await asyncio.gather(
                    *(_pair_loop(a, b, st, deadline, arg.get("interval"), rng) for a, b in pairs)
                )
                for i, n in enumerate(counts):
                    per_pair_done[i] += n
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
                            "cpu_s": time.process_time() - cpu0,
                            "frames_in": sum(c.frames_in for c in clients) - fin0,
                            "frames_out": sum(c.frames_out for c in clients) - fout0,
                            "invite_ring": st.invite_ring.tolist(),
                            "accept_begin": st.accept_begin.tolist(),
                            "hangup_end": st.hangup_end.tolist(),
                            "cycle": st.cycle.tolist(),
                        },
                    )
                )
            elif cmd == "query":
                # The protocol-level check: the first caller asks for its recent calls.
                a, _ = pairs[0]
                r = await a.request("query_recent_calls", limit=200)
                recs = r.get("result", {}).get("records", []) if r.get("ok") else []
                conn.send(
                    (
                        "result",
                        {
                            "user": a.user,
                            "records": len(recs),
                            "expected": min(200, per_pair_done[0]),
                            "ok": bool(r.get("ok")),
                        },
                    )
                )
            elif cmd == "relay_connect":
                relay_ws = []
                for i in cfg["pairs"]:
                    for side in ("a", "b"):
                        relay_ws.append(
                            await session.ws_connect(
                                f"{arg['url']}?id=r{side}{i}", autoping=False, heartbeat=None, compress=0
                            )
                        )
                conn.send(("ready", {"relay_clients": len(relay_ws)}))
            elif cmd == "relay_run":
                res = await _relay_run(relay_ws, cfg["pairs"], arg["warmup"], arg["duration"], arg["window"])
                relay_ws = []
                conn.send(("result", res))
        stop.set()
        pinger.cancel()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    except Exception as e:  # report instead of dying silently
        import traceback

        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        stop.set()
        await session.close()


async def _relay_run(
    wss: list[Any], pair_ids: list[int], warmup: float, duration: float, window: int
) -> dict[str, Any]:
    """Ping-pong through the relay: each side keeps ``window`` frames in flight toward
    its peer and answers every frame it gets with a new one."""
    import aiohttp

    perf = time.perf_counter
    t_start = perf() + warmup
    t_stop = t_start + duration
    count = 0

    async def side(ws: Any, to: str, me: str) -> None:
        nonlocal count
        frame = json.dumps(
            {"to": to, "from": me, "op": "relay", "args": {"n": 1, "pad": "x" * 32}}, separators=(",", ":")
        )
        for _ in range(window):
            await ws.send_str(frame)
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            t = perf()
            if t_start <= t < t_stop:
                count += 1
            if t >= t_stop:
                break
            await ws.send_str(frame)

    cpu0 = time.process_time()
    tasks = []
    for k, i in enumerate(pair_ids):
        a, b = wss[2 * k], wss[2 * k + 1]
        tasks.append(asyncio.create_task(side(a, f"rb{i}", f"ra{i}")))
        tasks.append(asyncio.create_task(side(b, f"ra{i}", f"rb{i}")))
    await asyncio.sleep(max(0.0, t_stop - perf()) + 0.2)
    cpu = time.process_time() - cpu0
    # Frames still in flight would leave some sides waiting: closing ends every loop.
    await asyncio.gather(*(w.close() for w in wss), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"msgs": count, "duration": duration, "cpu_s": cpu}


async def _idle_worker_main(cfg: dict[str, Any], conn: Any) -> None:
    session = u.client_session()
    stop = asyncio.Event()
    clients: list[u.WsClient] = []
    try:
        users = [f"{cfg['prefix']}{i}" for i in range(cfg["n_total"])]
        warm, rest = users[: cfg["n_warm"]], users[cfg["n_warm"] :]
        got, failed = await _connect_many(session, cfg["ws_url"], warm, cfg)
        clients.extend(got)
        pinger = asyncio.create_task(_pinger(clients, cfg["ping_interval"], stop))
        conn.send(("warm", {"connected": len(got), "failed": failed}))
        cmd, _ = await _recv(conn)
        if cmd == "go":
            t0 = time.perf_counter()
            got, failed2 = await _connect_many(session, cfg["ws_url"], rest, cfg)
            clients.extend(got)  # the pinger iterates this same list
            conn.send(
                ("ready", {"connected": len(got), "failed": failed2, "connect_s": time.perf_counter() - t0})
            )
            cmd, _ = await _recv(conn)
        stop.set()
        pinger.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.close() for c in clients), return_exceptions=True), 20)
        conn.send(("bye", None))
    except Exception as e:
        import traceback

        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        stop.set()
        await session.close()


def call_worker(cfg: dict[str, Any], conn: Any) -> None:
    u.run_async(_call_worker_main(cfg, conn))


def idle_worker(cfg: dict[str, Any], conn: Any) -> None:
    u.run_async(_idle_worker_main(cfg, conn))


# ============================================================== parent side


class Pool:
    """Worker processes, each with a pipe; every command goes to all of them."""

    def __init__(self, target: Any, cfgs: list[dict[str, Any]]) -> None:
        ctx = mp.get_context("spawn")
        self.conns = []
        self.procs = []
        for cfg in cfgs:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=target, args=(cfg, child), daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)

    def send(self, cmd: str, arg: Any = None) -> None:
        for c in self.conns:
            c.send((cmd, arg))

    def gather(self, want: str, timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        out = []
        for c, p in zip(self.conns, self.procs, strict=True):
            while not c.poll(0.2):
                if not p.is_alive():
                    raise RuntimeError(f"worker {p.pid} died (exit {p.exitcode})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker {p.pid} sent no '{want}' within {timeout:.0f} s")
            kind, val = c.recv()
            if kind == "error":
                raise RuntimeError(f"worker {p.pid}: {val}")
            if kind != want:
                raise RuntimeError(f"worker {p.pid}: expected '{want}', got '{kind}'")
            out.append(val)
        return out

    def close(self, timeout: float = 20.0) -> None:
        for c in self.conns:
            with contextlib.suppress(Exception):
                c.send(("quit", None))
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(5)
        for c in self.conns:
            c.close()


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    m: dict[str, Any] = {
        "completed": 0,
        "in_window": 0,
        "failed": 0,
        "late": 0,
        "errors": {},
        "cpu_s": 0.0,
        "frames_in": 0,
        "frames_out": 0,
        "invite_ring": [],
        "accept_begin": [],
        "hangup_end": [],
        "cycle": [],
    }
    for r in results:
        for k in ("completed", "in_window", "failed", "late", "cpu_s", "frames_in", "frames_out"):
            m[k] += r[k]
        for k in ("invite_ring", "accept_begin", "hangup_end", "cycle"):
            m[k].extend(r[k])
        for k, v in r["errors"].items():
            m["errors"][k] = m["errors"].get(k, 0) + v
    m["duration"] = results[0]["duration"]
    m["elapsed"] = max(r["elapsed"] for r in results)
    return m


def _run_phase(pool: Pool, srv: u.Server, arg: dict[str, Any]) -> dict[str, Any]:
    meter = u.CpuMeter(srv.pid, [p.pid for p in pool.procs if p.pid])
    pool.send("run", arg)
    res = _merge(pool.gather("result", arg["duration"] + CALL_TIMEOUT + 60))
    res.update(meter.stop())
    res["calls_per_s"] = res["in_window"] / res["duration"]
    if res["background_cpu_pct"] > 25:
        u.log(
            f"  WARNING: other processes used {res['background_cpu_pct']}% of a core during this phase;"
            " the numbers are low (run on a quiet machine, or use --wait-quiet)"
        )
    return res


def _sum_counts(*ds: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _lat(res: dict[str, Any], key: str, p: float) -> float | None:
    return u.ms(u.percentile(res[key], p))


def _settle_rss(pid: int, n: int = 5, pause: float = 0.4) -> int:
    vals = []
    for _ in range(n):
        vals.append(u.rss_kb(pid))
        time.sleep(pause)
    return int(statistics.median(vals))


def run(args: argparse.Namespace) -> dict[str, Any]:
    app = 1400000000 + secrets.randbelow(99_999_999)
    key = secrets.token_hex(32)
    n_pairs = max(1, args.users // 2)
    n_workers = max(1, min(args.workers, n_pairs))
    need_fds = args.idle_devices + 2 * n_pairs + 1024
    soft, hard = u.raise_nofile(need_fds)
    if soft < args.idle_devices + 256:
        u.log(
            f"WARNING: fd limit {soft} (hard {hard}) is below the {args.idle_devices} idle devices;"
            " raise `ulimit -n` (the server needs one fd per device)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="ringline-bench-"))
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": u.machine_info(),
        "config": {
            "users": 2 * n_pairs,
            "pairs": n_pairs,
            "client_workers": n_workers,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "idle_devices": args.idle_devices,
            "quick": args.quick,
            "fd_limit": soft,
        },
    }
    out["loop"] = out["machine"]["loop"]
    out["cores"] = out["machine"]["cores"]
    out["python"] = out["machine"]["python"]
    srv: u.Server | None = None
    pool: Pool | None = None
    try:
        # ---------------------------------------------------------- calls
        srv = u.Server(tmp / "calls", sdk_app_id=app, secret_key=key)
        u.log(f"server pid {srv.pid} on {srv.url}; {n_pairs} pairs over {n_workers} client processes")
        cfgs = [
            {
                "ws_url": srv.ws_url,
                "app": app,
                "key": key,
                "prefix": "b",
                "pairs": list(range(w, n_pairs, n_workers)),
                "seed": w,
            }
            for w in range(n_workers)
        ]
        pool = Pool(call_worker, cfgs)
        pool.gather("ready", 120)
        u.log(f"{2 * n_pairs} users logged in; warm-up {args.warmup} s")
        warm = _run_phase(pool, srv, {"duration": args.warmup})

        profiler = None
        prof_path = Path(args.profile).resolve() if args.profile else None
        if prof_path is not None:
            profiler = u.start_py_spy(srv.pid, args.duration, prof_path)
        u.log(f"phase 1: max rate for {args.duration} s")
        full = _run_phase(pool, srv, {"duration": args.duration})
        if profiler is not None:
            try:
                _, err = profiler.communicate(timeout=30)
                if profiler.returncode == 0 and prof_path and prof_path.exists():
                    out["profile"] = u.summarize_collapsed(prof_path)
                    out["profile"]["file"] = str(prof_path)
                else:
                    u.log(f"py-spy failed ({profiler.returncode}): {err.decode(errors='replace')[-400:]}")
            except Exception as e:
                profiler.kill()
                u.log(f"py-spy: {e}")
        cps = full["calls_per_s"]
        calls = full["completed"] or 1
        u.log(
            f"  {cps:.1f} calls/s, server CPU {full['server_cpu_pct']}%,"
            f" clients CPU {full['client_cpu_pct']}%"
        )

        half_rate = args.half_rate or max(1.0, cps / 2.0)
        u.log(f"phase 2: paced at {half_rate:.1f} calls/s for {args.duration} s")
        half = _run_phase(pool, srv, {"duration": args.duration, "interval": n_pairs / half_rate})
        u.log(f"  {half['calls_per_s']:.1f} calls/s, p99 invite->ring {_lat(half, 'invite_ring', 99)} ms")
        tgt_rate = TARGET_LOAD_RATE
        u.log(f"phase 2b: paced at {tgt_rate:.0f} calls/s (the latency target's load) for {args.duration} s")
        tgt = _run_phase(pool, srv, {"duration": args.duration, "interval": n_pairs / tgt_rate})
        u.log(f"  {tgt['calls_per_s']:.1f} calls/s, p99 invite->ring {_lat(tgt, 'invite_ring', 99)} ms")

        pool.send("query")
        q = pool.gather("result", 30)[0]
        phases = (warm, full, half, tgt)
        completed = sum(x["completed"] for x in phases)
        failed = sum(x["failed"] for x in phases)
        records = u.count_rows(srv.db_path, "calls")
        u.log(f"records: {records} rows in table calls, {completed} calls completed, {failed} failed")
        if args.samples:
            keys = ("invite_ring", "accept_begin", "hangup_end", "cycle")
            dump = {
                name: {k: [round(x * 1000, 3) for x in ph[k]] for k in keys}
                for name, ph in (("max", full), ("half", half), ("target", tgt))
            }
            Path(args.samples).write_text(json.dumps(dump))
            u.log(f"latency samples (ms) written to {args.samples}")

        # ---------------------------------------------------------- relay baseline
        rcpu = {"server_cpu_pct": None, "client_cpu_pct": None, "background_cpu_pct": None}
        relay_mps = 0.0
        if args.relay_duration > 0:
            rcpu, relay_mps = _relay_phase(args, pool, tmp)
        pool.close()
        pool = None
        srv.stop()
        srv = None

        frames_per_call = (full["frames_in"] + full["frames_out"]) / calls
        out.update(
            {
                "calls_per_s": round(cps, 1),
                "calls_completed": completed,
                "calls_failed": failed,
                "call_errors": _sum_counts(*(x["errors"] for x in phases)),
                "records_persisted": records,
                "records_ok": records == completed and failed == 0,
                "recent_calls_check": q,
                "invite_to_ring_p50_ms": _lat(full, "invite_ring", 50),
                "invite_to_ring_p99_ms": _lat(full, "invite_ring", 99),
                "accept_to_begin_p50_ms": _lat(full, "accept_begin", 50),
                "accept_to_begin_p99_ms": _lat(full, "accept_begin", 99),
                "hangup_to_end_p99_ms": _lat(full, "hangup_end", 99),
                "call_cycle_p50_ms": _lat(full, "cycle", 50),
                "server_cpu_pct": full["server_cpu_pct"],
                "server_loop_thread_cpu_pct": full["server_loop_thread_cpu_pct"],
                "server_other_threads_cpu_pct": full["server_other_threads_cpu_pct"],
                "client_cpu_pct": full["client_cpu_pct"],
                "background_cpu_pct": full["background_cpu_pct"],
                "steal_pct": full["steal_pct"],
                # CPU cost per call: robust against other load on the machine (unlike calls/s).
                "server_cpu_ms_per_call": round(10.0 * full["server_cpu_pct"] / max(cps, 1e-9), 3),
                "server_loop_cpu_ms_per_call": round(
                    10.0 * full["server_loop_thread_cpu_pct"] / max(cps, 1e-9), 3
                ),
                # what the server wrote towards its disk (the SQLite WAL, checkpoints)
                "server_disk_kb_per_call": round(full["server_write_bytes"] / 1024 / calls, 2),
                "frames_per_call": round(frames_per_call, 1),
                "server_frames_per_s": round(frames_per_call * cps, 0),
                "half_load_target_calls_per_s": round(half_rate, 1),
                "half_load_calls_per_s": round(half["calls_per_s"], 1),
                "half_load_invite_to_ring_p50_ms": _lat(half, "invite_ring", 50),
                "half_load_invite_to_ring_p99_ms": _lat(half, "invite_ring", 99),
                "half_load_accept_to_begin_p99_ms": _lat(half, "accept_begin", 99),
                "half_load_late_slots": half["late"],
                "half_load_server_cpu_pct": half["server_cpu_pct"],
                "half_load_background_cpu_pct": half["background_cpu_pct"],
                "target_load_target_calls_per_s": tgt_rate,
                "target_load_calls_per_s": round(tgt["calls_per_s"], 1),
                "target_load_invite_to_ring_p50_ms": _lat(tgt, "invite_ring", 50),
                "target_load_invite_to_ring_p90_ms": _lat(tgt, "invite_ring", 90),
                "target_load_invite_to_ring_p99_ms": _lat(tgt, "invite_ring", 99),
                "target_load_invite_to_ring_max_ms": _lat(tgt, "invite_ring", 100),
                "target_load_accept_to_begin_p99_ms": _lat(tgt, "accept_begin", 99),
                "target_load_late_slots": tgt["late"],
                "target_load_server_cpu_pct": tgt["server_cpu_pct"],
                "target_load_background_cpu_pct": tgt["background_cpu_pct"],
                "relay_baseline_msgs_per_s": round(relay_mps, 0),
                "relay_window": args.relay_window,
                "relay_server_cpu_us_per_msg": (
                    round(1e4 * rcpu["server_cpu_pct"] / relay_mps, 1) if relay_mps else None
                ),
                "relay_server_cpu_pct": rcpu["server_cpu_pct"],
                # per WebSocket frame: the call server's frames in + out against the relay's
                # (each relayed message is one frame in and one out)
                "server_cpu_us_per_frame": round(
                    1e4 * full["server_cpu_pct"] / max(cps, 1e-9) / frames_per_call, 1
                ),
                "relay_cpu_us_per_frame": (
                    round(1e4 * rcpu["server_cpu_pct"] / relay_mps / 2, 1) if relay_mps else None
                ),
                "relay_ratio_cpu_per_frame": (
                    round(
                        (1e4 * full["server_cpu_pct"] / max(cps, 1e-9) / frames_per_call)
                        / (1e4 * rcpu["server_cpu_pct"] / relay_mps / 2),
                        2,
                    )
                    if relay_mps and rcpu["server_cpu_pct"]
                    else None
                ),
                "relay_client_cpu_pct": rcpu["client_cpu_pct"],
                "relay_background_cpu_pct": rcpu["background_cpu_pct"],
            }
        )

        # ---------------------------------------------------------- idle devices
        if args.idle_devices > 0:
            out.update(_idle_phase(args, tmp, app, key))
            out.update(_relay_idle_phase(args, tmp))

        # ---------------------------------------------------------- SIP yardstick
        if args.sip_yardstick:
            out.update(_sip_phase(args, out))
    finally:
        if pool is not None:
            pool.close()
        if srv is not None:
            srv.stop()
        if args.keep:
            u.log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _relay_phase(args: argparse.Namespace, pool: Pool, tmp: Path) -> tuple[dict[str, Any], float]:
    relay = u.RelayServer(tmp)
    try:
        pool.send("relay_connect", {"url": relay.ws_url})
        pool.gather("ready", 60)
        u.log(f"relay baseline for {args.relay_duration} s (pid {relay.pid})")
        meter = u.CpuMeter(relay.pid, [p.pid for p in pool.procs if p.pid])
        pool.send("relay_run", {"warmup": 1.0, "duration": args.relay_duration, "window": args.relay_window})
        rr = pool.gather("result", args.relay_duration + 30)
        rcpu = meter.stop()
        return rcpu, sum(r["msgs"] for r in rr) / args.relay_duration
    finally:
        relay.stop()


def _sip_phase(args: argparse.Namespace, r: dict[str, Any]) -> dict[str, Any]:
    import sip_yardstick as sip

    rate = int(min(SIP_RATE_CAP, max(50, round(r["calls_per_s"]))))
    u.log(f"SIP yardstick: Kamailio + SIPp at {rate} calls/s for {args.duration} s")
    try:
        s = sip.run(rate, args.duration, keep=args.keep)
    except sip.YardstickError as e:
        u.log(f"  the SIP yardstick could not run: {e}")
        return {"sip_error": str(e)}
    if "sip_skipped" in s:
        u.log(f"  SIP yardstick skipped: {s['sip_skipped']}")
        return s
    s["sip_cpu_ratio"] = round(r["server_cpu_ms_per_call"] / s["sip_cpu_ms_per_call"], 2)
    return s


def _idle_phase(args: argparse.Namespace, tmp: Path, app: int, key: str) -> dict[str, Any]:
    n = args.idle_devices
    n_workers = max(1, min(args.workers, (n + 999) // 1000))
    hb = 5.0
    srv = u.Server(tmp / "idle", sdk_app_id=app, secret_key=key, heartbeat_interval=hb)
    pool: Pool | None = None
    try:
        warm_per = 20
        share = [n // n_workers + (1 if w < n % n_workers else 0) for w in range(n_workers)]
        cfgs = [
            {
                "ws_url": srv.ws_url,
                "app": app,
                "key": key,
                "prefix": f"i{w}x",
                "n_warm": warm_per,
                "n_total": warm_per + share[w],
                "ping_interval": hb,
            }
            for w in range(n_workers)
        ]
        u.log(f"idle phase: fresh server pid {srv.pid}; {n} devices over {n_workers} client processes")
        pool = Pool(idle_worker, cfgs)
        warm = pool.gather("warm", 120)
        if any(w["failed"] for w in warm):
            raise RuntimeError(f"warm-up logins failed: {warm}")
        time.sleep(2.0)
        before = _settle_rss(srv.pid)
        sessions_before = srv.healthz()["sessions"]
        t0 = time.monotonic()
        pool.send("go")
        ready = pool.gather("ready", 300)
        connect_s = time.monotonic() - t0
        connected = sum(r["connected"] for r in ready)
        failed = sum(r["failed"] for r in ready)
        u.log(f"  {connected} idle devices logged in in {connect_s:.1f} s ({failed} failed); settling")
        time.sleep(hb + 2.0)  # at least one full round of pings
        meter = u.CpuMeter(srv.pid, [])
        after = _settle_rss(srv.pid, n=7, pause=0.5)
        idle_cpu = meter.stop()["server_cpu_pct"]
        sessions_after = srv.healthz()["sessions"]
        per = (after - before) / max(1, connected)
        u.log(f"  server RSS {before} KiB -> {after} KiB: {per:.1f} KiB per idle device")
        pool.close(timeout=40)
        pool = None
        return {
            "idle_devices_connected": connected,
            "idle_devices_failed": failed,
            "idle_login_rate_per_s": round(connected / connect_s, 0) if connect_s else None,
            "idle_sessions_before": sessions_before,
            "idle_sessions_after": sessions_after,
            "server_rss_kb_before": before,
            "server_rss_kb_after": after,
            "server_rss_kb_per_idle_device": round(per, 1),
            "idle_server_cpu_pct": round(idle_cpu, 1),
        }
    finally:
        if pool is not None:
            pool.close()
        srv.stop()


def _relay_idle_phase(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The floor of the idle phase: the bare relay's RSS per idle WebSocket (connected,
    nothing sent), same stack, same count as the idle devices."""
    n = args.idle_devices
    (tmp / "relay-idle").mkdir(parents=True, exist_ok=True)
    relay = u.RelayServer(tmp / "relay-idle")
    try:

        async def hold() -> tuple[int, int, int]:
            conns: list[Any] = []
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            try:
                for i in range(20):
                    conns.append(await session.ws_connect(f"{relay.ws_url}?id=w{i}"))
                await asyncio.sleep(2.0)
                before = await asyncio.to_thread(_settle_rss, relay.pid)
                for i in range(n):
                    conns.append(await session.ws_connect(f"{relay.ws_url}?id=i{i}"))
                await asyncio.sleep(2.0)
                after = await asyncio.to_thread(_settle_rss, relay.pid, 7, 0.5)
                return before, after, len(conns) - 20
            finally:
                await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
                await session.close()

        before, after, connected = asyncio.run(hold())
        per = (after - before) / max(1, connected)
        u.log(f"relay idle: RSS {before} KiB -> {after} KiB: {per:.1f} KiB per idle connection")
        return {
            "relay_idle_connections": connected,
            "relay_rss_kb_per_idle_connection": round(per, 1),
        }
    finally:
        relay.stop()


# ============================================================== report


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def verdicts(r: dict[str, Any]) -> dict[str, bool | None]:
    per = r.get("server_rss_kb_per_idle_device")
    p99 = r.get("target_load_invite_to_ring_p99_ms")
    return {
        "calls_per_s": r["calls_per_s"] >= TARGET_CALLS_PER_S and bool(r["records_ok"]),
        "records_persisted": bool(r["records_ok"]),
        "server_cpu_ms_per_call": r["server_cpu_ms_per_call"] <= TARGET_CPU_MS_PER_CALL,
        "relay_ratio_cpu_per_frame": (
            None
            if r.get("relay_ratio_cpu_per_frame") is None
            else r["relay_ratio_cpu_per_frame"] <= TARGET_RELAY_RATIO
        ),
        # Judged at 250 calls/s, and only if that rate was sustained.
        "invite_to_ring_p99_at_half_load": (
            None
            if p99 is None
            else p99 <= TARGET_HALF_P99_MS
            and r["target_load_calls_per_s"] >= 0.97 * r["target_load_target_calls_per_s"]
        ),
        "server_rss_kb_per_idle_device": None if per is None else per <= TARGET_KB_PER_DEVICE,
    }


def table(r: dict[str, Any]) -> str:
    v = verdicts(r)
    ok = {True: "yes", False: "NO", None: "-"}
    rows: list[tuple[str, Any, str, str]] = [
        (
            "complete calls/s (max, records persisted)",
            r["calls_per_s"],
            f">= {TARGET_CALLS_PER_S:,.0f}",
            ok[v["calls_per_s"]],
        ),
        (
            "records persisted / calls completed",
            f"{r['records_persisted']:,} / {r['calls_completed']:,}"
            + (f" ({r['calls_failed']} failed)" if r["calls_failed"] else ""),
            "equal",
            ok[v["records_persisted"]],
        ),
        ("invite->ring p50 ms (max rate)", r["invite_to_ring_p50_ms"], "", ""),
        ("invite->ring p99 ms (max rate)", r["invite_to_ring_p99_ms"], "", ""),
        ("accept->begin p50 ms (max rate)", r["accept_to_begin_p50_ms"], "", ""),
        ("accept->begin p99 ms (max rate)", r["accept_to_begin_p99_ms"], "", ""),
        ("hangup->end p99 ms (max rate)", r["hangup_to_end_p99_ms"], "", ""),
        ("server CPU % at max rate (1 core = 100)", r["server_cpu_pct"], "", ""),
        (
            "  of which event-loop thread / SQLite thread",
            f"{r['server_loop_thread_cpu_pct']:.0f} / {r['server_other_threads_cpu_pct']:.0f}",
            "",
            "",
        ),
        (
            "client processes CPU % / other processes CPU %",
            f"{r['client_cpu_pct']:.0f} / {r['background_cpu_pct']:.0f}",
            "",
            "",
        ),
        (
            "server CPU ms per call (all threads / event loop)",
            f"{r['server_cpu_ms_per_call']:.2f} / {r['server_loop_cpu_ms_per_call']:.2f}",
            f"<= {TARGET_CPU_MS_PER_CALL}",
            ok[v["server_cpu_ms_per_call"]],
        ),
        ("WebSocket frames per call (in+out)", r["frames_per_call"], "", ""),
        ("server disk writes KiB per call (WAL, checkpoints)", r["server_disk_kb_per_call"], "", ""),
        (
            f"half load: paced calls/s (asked {r['half_load_target_calls_per_s']})",
            r["half_load_calls_per_s"],
            "",
            "",
        ),
        ("half load: invite->ring p50 ms", r["half_load_invite_to_ring_p50_ms"], "", ""),
        ("half load: invite->ring p99 ms", r["half_load_invite_to_ring_p99_ms"], "", ""),
        ("half load: accept->begin p99 ms", r["half_load_accept_to_begin_p99_ms"], "", ""),
        ("250 calls/s: paced calls/s", r["target_load_calls_per_s"], "250", ""),
        ("250 calls/s: invite->ring p50 ms", r["target_load_invite_to_ring_p50_ms"], "", ""),
        (
            "250 calls/s: invite->ring p99 ms",
            r["target_load_invite_to_ring_p99_ms"],
            f"<= {TARGET_HALF_P99_MS:.0f}",
            ok[v["invite_to_ring_p99_at_half_load"]],
        ),
        ("250 calls/s: accept->begin p99 ms", r["target_load_accept_to_begin_p99_ms"], "", ""),
    ]
    if r.get("relay_baseline_msgs_per_s"):
        rows += [
            ("relay baseline msgs/s (json.loads + forward)", r["relay_baseline_msgs_per_s"], "", ""),
            (
                "relay server CPU % / CPU us per msg",
                f"{r['relay_server_cpu_pct']:.0f} / {r['relay_server_cpu_us_per_msg']:.1f}",
                "",
                "",
            ),
            (
                "CPU us per frame: call server / relay (ratio)",
                f"{_fmt(r['server_cpu_us_per_frame'])} / {_fmt(r['relay_cpu_us_per_frame'])}"
                f" ({_fmt(r['relay_ratio_cpu_per_frame'])})",
                f"ratio <= {TARGET_RELAY_RATIO:.0f}",
                ok[v["relay_ratio_cpu_per_frame"]],
            ),
        ]
    if "server_rss_kb_per_idle_device" in r:
        rows += [
            ("idle devices connected", r["idle_devices_connected"], "5,000", ""),
            (
                "server RSS KiB before -> after",
                f"{r['server_rss_kb_before']:,} -> {r['server_rss_kb_after']:,}",
                "",
                "",
            ),
            (
                "relay KiB per idle connection (the stack's floor)",
                r.get("relay_rss_kb_per_idle_connection"),
                "",
                "",
            ),
            (
                "server KiB per idle device",
                r["server_rss_kb_per_idle_device"],
                f"<= {TARGET_KB_PER_DEVICE:.0f}",
                ok[v["server_rss_kb_per_idle_device"]],
            ),
            ("server CPU % with idle devices pinging", r["idle_server_cpu_pct"], "", ""),
        ]
    if "sip_calls_per_s" in r:
        rows += [
            (
                f"SIP yardstick: Kamailio calls/s ({r['sip_rate_offered']:,} offered,"
                f" {r['sip_allocator']}, {r['sip_children']} worker)",
                r["sip_calls_per_s"],
                "",
                "",
            ),
            (
                "  Kamailio failed calls / CPU % of a core",
                f"{r['sip_calls_failed']:,} / {r['sip_server_cpu_pct']:.0f}",
                "",
                "",
            ),
            (
                "CPU ms per call, Ringline / Kamailio (ratio)",
                f"{r['server_cpu_ms_per_call']:.2f} / {r['sip_cpu_ms_per_call']:.3f}"
                f" ({r['sip_cpu_ratio']:.1f}x)",
                "",
                "",
            ),
        ]
    elif "sip_skipped" in r or "sip_error" in r:
        why = "skipped: apt-get install kamailio sip-tester" if "sip_skipped" in r else "failed (see the log)"
        rows.append((f"SIP yardstick {why}", None, "", ""))
    w0 = max(len(x[0]) for x in rows)
    w1 = max(len(_fmt(x[1])) for x in rows)
    w2 = max(len(x[2]) for x in rows)
    lines = [f"{'metric':<{w0}}  {'value':>{w1}}  {'target':<{w2}}  ok?", "-" * (w0 + w1 + w2 + 9)]
    lines += [f"{a:<{w0}}  {_fmt(b):>{w1}}  {c:<{w2}}  {d}" for a, b, c, d in rows]
    m = r["machine"]
    lines.append("")
    lines.append(
        f"{r['date']}; {m['cores']} cores ({m['cpu_model']}), Python {m['python']}, {m['loop']}, "
        f"aiohttp {m['aiohttp']}; {r['config']['users']} users in {r['config']['client_workers']} "
        f"client processes, {r['config']['duration_s']} s per phase"
    )
    if "profile" in r:
        lines.append("")
        lines.append(f"server profile at max rate (py-spy, {r['profile']['samples']} samples), by component:")
        for row in r["profile"]["components"][:10]:
            lines.append(f"  {row['pct']:5.1f}%  {row['function']}")
        lines.append("top source lines (self time):")
        for row in r["profile"]["self_lines"][:8]:
            lines.append(f"  {row['pct']:5.1f}%  {row['function']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--users",
        type=int,
        default=200,
        help=(
            "simulated users, 2 per call (default 200, --quick too: with fewer, each pair calls so"
            " often on a fast machine that the per-connection rate limit refuses some calls)"
        ),
    )
    p.add_argument(
        "--duration", type=float, default=None, help="seconds per measured phase (default 20; --quick 4)"
    )
    p.add_argument(
        "--idle-devices",
        type=int,
        default=None,
        help="idle devices for the memory phase (default 5000; --quick 500; 0 skips)",
    )
    p.add_argument("--workers", type=int, default=3, help="client processes (default 3)")
    p.add_argument(
        "--half-rate", type=float, default=None, help="calls/s of phase 2 (default: half the measured max)"
    )
    p.add_argument(
        "--relay-duration",
        type=float,
        default=None,
        help="seconds of the relay baseline (default 10; --quick 3; 0 skips)",
    )
    p.add_argument(
        "--relay-window", type=int, default=1, help="relay frames in flight per client (default 1)"
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S s for other processes to leave the CPU idle",
    )
    p.add_argument(
        "--warmup", type=float, default=None, help="seconds of unmeasured calls first (default 3; --quick 1)"
    )
    p.add_argument(
        "--profile", metavar="FILE", help="py-spy the server during phase 1; collapsed stacks to FILE"
    )
    p.add_argument(
        "--sip-yardstick",
        action="store_true",
        help="then run bench/sip_yardstick.py (Kamailio + SIPp) at the max rate measured, at most"
        f" {SIP_RATE_CAP:,}/s, and report its calls/s and CPU per call beside Ringline's",
    )
    p.add_argument("--quick", action="store_true", help="small and short: a smoke check in < 60 s")
    p.add_argument("--samples", metavar="FILE", help="write the raw latency samples (ms) as JSON to FILE")
    p.add_argument("--keep", action="store_true", help="keep the temp data dirs (server logs, SQLite files)")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)"
    )
    args = p.parse_args(argv)
    q = args.quick
    args.duration = args.duration if args.duration is not None else (4.0 if q else 20.0)
    args.idle_devices = args.idle_devices if args.idle_devices is not None else (500 if q else 5000)
    args.relay_duration = args.relay_duration if args.relay_duration is not None else (3.0 if q else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if q else 3.0)
    if args.users < 2:
        p.error("--users must be at least 2")
    if args.wait_quiet > 0:
        busy = u.wait_quiet(args.wait_quiet)
        u.log(f"machine at {busy:.0f}% of a core before the start")
    t0 = time.monotonic()
    r = run(args)
    r["wall_s"] = round(time.monotonic() - t0, 1)
    r["targets"] = {
        "calls_per_s": f">= {TARGET_CALLS_PER_S:.0f} with records persisted",
        "server_cpu_ms_per_call": f"<= {TARGET_CPU_MS_PER_CALL} at the max rate",
        "invite_to_ring_p99_at_half_load": f"<= {TARGET_HALF_P99_MS:.0f} at {TARGET_LOAD_RATE:.0f} calls/s",
        "server_rss_kb_per_idle_device": f"<= {TARGET_KB_PER_DEVICE:.0f} with 5000 devices",
        "relay_ratio_cpu_per_frame": f"<= {TARGET_RELAY_RATIO:.0f}",
    }
    r["targets_met"] = verdicts(r)
    text = table(r)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(r, sort_keys=False))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
