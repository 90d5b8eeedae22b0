"""Callback and record-query benchmark: callbacks delivered per second and their lag
under call load, and ``get_record_by_filter`` over a million records. See
docs/benchmarks.md.

    .venv/bin/python bench/callbacks.py [--rate 500] [--duration 20] [--records 1000000]
                                        [--callback-workers N[,N...]] [--json] [--quick]
                                        [--profile FILE]

Everything runs on 127.0.0.1. Two parts, each against its own ``ringline serve``
subprocess on a fresh temp data dir and a free port:

1. callbacks -- callbacks configured through the admin REST API (every v4 command and
                every v1 action) to a receiver *process* (aiohttp, answers 200 at once,
                notes each request's arrival time and body). bench/calls.py's client
                processes place 1v1 calls (invite, accept, hangup) paced at ``--rate``
                calls/s for ``--duration`` s (before that, the same load for
                ``--calls-baseline`` s with no callbacks configured). Then a bounded
                wait until the outbox has nothing pending; the receiver's distinct
                event ids must equal the server's delivered count. Lag = arrival at
                the receiver minus the v4 body's ``EventTime`` (ms, set when the state
                changed). Capacity: under the same load, the receiver stalls for
                ``--stall`` s (answers nothing), then answers everything while the
                calls go on; the delivery rate until the stall's backlog is gone.
                Baseline: one plain aiohttp client process POSTing the same bodies to
                the same receiver, 32 in flight, for a few seconds.
2. records   -- ``--records`` call records, spread over 30 days, seeded into a SQLite
                store with the store's own schema, row builder and INSERTs (those of
                ``SqliteStore.apply(FinishedCallWrite)``); then sequential admin REST
                ``get_record_by_filter`` calls with a mix of filters and deep pages,
                each followed by ``GET /healthz`` on the same keep-alive connection
                (the baseline: the HTTP round trip without the query). Every distinct
                filter's ``TotalNum`` is checked against a COUNT in SQLite.

With ``--callback-workers 0,1`` (a list) part 1 runs once per value, in that order, each
time with a fresh server and receiver (``ringline serve --callback-workers N``); the
calls baseline and the receiver baseline are measured in the first run only and reused.

Helper processes: ``python bench/callbacks.py receiver --port P`` (the receiver) and
``python bench/callbacks.py blast ...`` (the baseline client).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as u
import calls

TARGET_CALLBACKS_PER_S = 2000.0
TARGET_LAG_P99_MS = 1000.0
TARGET_FILTER_P99_MS = 50.0
TARGET_RATE = 500.0  # calls/s at which the lag target is judged

ADMIN = "administrator"
CONCURRENCY = 32  # requests in flight of the receiver baseline (the server allows 256)
RECEIVER_MAX_STORED = 3_000_000  # requests kept with their bodies; beyond that only counted
DAY = 86_400.0


# ============================================================== admin REST (sync, few calls)


def admin_query(app: int, key: str) -> str:
    from ringline.core.usersig import gen_user_sig

    sig = gen_user_sig(app, key, ADMIN, 86400, now=int(time.time()))
    return urllib.parse.urlencode(
        {
            "sdkappid": app,
            "identifier": ADMIN,
            "usersig": sig,
            "random": secrets.randbelow(2**32),
            "contenttype": "json",
        }
    )


def admin_post(base: str, query: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{base}/{command}?{query}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(json.loads(r.read()))


def _v4_ok(answer: dict[str, Any], what: str) -> dict[str, Any]:
    if answer.get("ErrorCode") != 0:
        raise RuntimeError(f"{what}: {answer}")
    return dict(answer.get("Response") or {})


# ============================================================== the receiver process


async def _receiver_main(port: int) -> None:
    """Answers every POST with 200 at once and keeps (arrival time, path, body); the
    analysis runs on ``GET /summary`` after the load, outside the measured window."""
    from aiohttp import web

    got: list[tuple[float, str, bytes]] = []
    counts = {"requests": 0, "dropped": 0, "held": 0}
    now = time.time
    released = asyncio.Event()
    released.set()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not released.is_set():  # a stall: answer nothing until it ends
            counts["held"] += 1
            await released.wait()
        t = now()  # when the answer goes out (after a stall, its end)
        counts["requests"] += 1
        if len(got) < RECEIVER_MAX_STORED:
            got.append((t, request.path, body))
        else:
            counts["dropped"] += 1
        return web.Response()

    async def healthz(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **counts, "stored": len(got)})

    async def summary(request: web.Request) -> web.Response:
        t0 = float(request.query["t0"])
        t1 = float(request.query["t1"])
        return web.json_response(_summarize(got, t0, t1, counts))

    async def stall(request: web.Request) -> web.Response:
        """Answer no request for ``s`` seconds (a receiver stalled by a GC pause or a
        deploy), then answer all held ones at once; returns when the stall ends."""
        seconds = float(request.query["s"])
        counts["held"] = 0
        released.clear()
        start = now()
        await asyncio.sleep(seconds)
        end = now()
        released.set()
        return web.json_response({"start": start, "release": end, "held": counts["held"]})

    async def capacity(request: web.Request) -> web.Response:
        return web.json_response(_capacity(got, float(request.query["release"]), float(request.query["end"])))

    async def samples(request: web.Request) -> web.Response:
        n = int(request.query.get("n", "64"))
        picked = [(p, b.decode()) for _, p, b in got if p != "/base"]
        step = max(1, len(picked) // max(1, n))
        return web.json_response([{"path": p, "body": b} for p, b in picked[::step][:n]])

    async def reset_base(_r: web.Request) -> web.Response:
        got[:] = [x for x in got if x[1] != "/base"]
        return web.json_response({"stored": len(got)})

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/v4", hook)
    app.router.add_post("/v1", hook)
    app.router.add_post("/base", hook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/summary", summary)
    app.router.add_get("/samples", samples)
    app.router.add_post("/stall", stall)
    app.router.add_get("/capacity", capacity)
    app.router.add_post("/reset-base", reset_base)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, u.HOST, port, backlog=4096).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def _summarize(
    got: list[tuple[float, str, bytes]], t0: float, t1: float, counts: dict[str, int]
) -> dict[str, Any]:
    """Everything the parent needs, computed in the receiver after the load."""
    ids: dict[str, int] = {}
    per_kind = {"/v4": 0, "/v1": 0}
    in_window = 0
    lag_ms: list[float] = []  # v4 callbacks of events that happened in [t0, t1]
    lag_v1_s: list[float] = []  # v1: EventTime is whole seconds, so only a coarse check
    per_second: dict[int, int] = {}
    last_seq: dict[tuple[str, str], int] = {}
    order_violations = 0
    calls_seen: dict[str, int] = {}
    sizes = 0
    commands: dict[str, int] = {}
    base_n = 0
    base_t: list[float] = []
    first = last = None
    for t, path, raw in got:
        if path == "/base":
            base_n += 1
            base_t.append(t)
            continue
        b = json.loads(raw)
        per_kind[path] = per_kind.get(path, 0) + 1
        sizes += len(raw)
        first = t if first is None else min(first, t)
        last = t if last is None else max(last, t)
        eid = str(b.get("EventId", ""))
        ids[eid] = ids.get(eid, 0) + 1
        if t0 <= t < t1:
            in_window += 1
        sec = int(t - t0) if t >= t0 else -1
        per_second[sec] = per_second.get(sec, 0) + 1
        if path == "/v4":
            call_id = b.get("CallId") or (b.get("CallInfo") or {}).get("CallId") or b["CallRecord"]["CallId"]
            cmd = str(b.get("CallbackCommand", ""))
            ev = float(b["EventTime"]) / 1000.0
            if t0 <= ev < t1:
                lag_ms.append((t - ev) * 1000.0)
        else:
            call_id = str(b.get("CallId", ""))
            cmd = "v1:" + (str(b["Event"]) if b.get("Event") else "status:" + str(b.get("CallResult", "")))
            ev = float(b["EventTime"])
            if t0 <= ev < t1:
                lag_v1_s.append(t - ev)
        commands[cmd] = commands.get(cmd, 0) + 1
        if ids[eid] == 1:
            calls_seen[call_id] = calls_seen.get(call_id, 0) + 1
            seq = int(b.get("Sequence", 0))
            k = (path, call_id)
            if seq <= last_seq.get(k, -1):
                order_violations += 1
            last_seq[k] = max(seq, last_seq.get(k, -1))
    per_call: dict[int, int] = {}
    for n in calls_seen.values():
        per_call[n] = per_call.get(n, 0) + 1
    lag_ms.sort()
    lag_v1_s.sort()
    seconds = sorted(k for k in per_second if k >= 0)
    return {
        "requests": sum(per_kind.values()),
        "requests_v4": per_kind.get("/v4", 0),
        "requests_v1": per_kind.get("/v1", 0),
        "distinct_event_ids": len(ids),
        "duplicates": sum(n - 1 for n in ids.values()),
        "in_window": in_window,
        "lag_ms_samples": len(lag_ms),
        "lag_p50_ms": _pct(lag_ms, 50),
        "lag_p90_ms": _pct(lag_ms, 90),
        "lag_p99_ms": _pct(lag_ms, 99),
        "lag_max_ms": lag_ms[-1] if lag_ms else None,
        "lag_v1_p50_s": _pct(lag_v1_s, 50),
        "lag_v1_p99_s": _pct(lag_v1_s, 99),
        "per_second": [per_second.get(s, 0) for s in range(seconds[-1] + 1)] if seconds else [],
        "before_window": per_second.get(-1, 0),
        "order_violations": order_violations,
        "calls": len(calls_seen),
        "callbacks_per_call": {str(k): v for k, v in sorted(per_call.items())},
        "commands": dict(sorted(commands.items())),
        "mean_body_bytes": round(sizes / max(1, sum(per_kind.values())), 1),
        "first_arrival": first,
        "last_arrival": last,
        "base_requests": base_n,
        "base_span_s": (max(base_t) - min(base_t)) if len(base_t) > 1 else None,
        "receiver_requests_total": counts["requests"],
        "receiver_dropped": counts["dropped"],
    }


def _event_time(path: str, b: dict[str, Any]) -> float:
    """When the body's state change happened (v1 has whole seconds only)."""
    return float(b["EventTime"]) / 1000.0 if path == "/v4" else float(b["EventTime"])


def _capacity(got: list[tuple[float, str, bytes]], release: float, end: float) -> dict[str, Any]:
    """Delivery rate while the backlog of a receiver stall drained under the call load:
    the requests answered from ``release`` until the last callback of an event from
    before ``release`` arrived (or until ``end``, the end of the load, if that never
    happened), over that time. Callbacks of new events delivered meanwhile count too:
    they are work done in that time."""
    after = [(t, p, b) for t, p, b in got if t >= release and p != "/base"]
    backlog = [t for t, p, raw in after if _event_time(p, json.loads(raw)) < release]
    cleared = bool(backlog) and max(backlog) <= end
    t_clear = max(backlog) if cleared else end
    n = sum(1 for t, _, _ in after if t <= t_clear)
    span = t_clear - release
    return {
        "backlog": len(backlog),
        "cleared": cleared,
        "clear_s": round(span, 2) if cleared else None,
        "delivered": n,
        "per_s": round(n / span, 1) if span > 0 and n > 0 else None,
    }


def _pct(sorted_samples: list[float], p: float) -> float | None:
    if not sorted_samples:
        return None
    k = max(0, min(len(sorted_samples) - 1, math.ceil(p / 100.0 * len(sorted_samples)) - 1))
    return round(sorted_samples[k], 2)


class Receiver(u.Proc):
    def __init__(self, log_dir: Path) -> None:
        self.port = u.free_port()
        self.url = f"http://{u.HOST}:{self.port}"
        super().__init__(
            [sys.executable, str(Path(__file__).resolve()), "receiver", "--port", str(self.port)],
            log_dir / "receiver.log",
        )
        try:
            u.wait_http(self.url + "/healthz", 20.0, self.proc)
        except Exception as e:
            self.stop()
            raise RuntimeError("the receiver did not start:\n" + self.tail()) from e

    def get(self, path: str, timeout: float = 120.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path: str, timeout: float = 120.0) -> Any:
        req = urllib.request.Request(self.url + path, data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())


# ============================================================== baseline client process


async def _blast_main(url: str, bodies_file: str, duration: float, concurrency: int) -> dict[str, Any]:
    """``concurrency`` loops POSTing the sampled callback bodies (with headers of the
    server's size) to ``url`` for ``duration`` s; prints requests/s."""
    import aiohttp

    with open(bodies_file) as f:  # noqa: ASYNC230 - read once before anything starts
        bodies = [(x["path"], x["body"].encode()) for x in json.load(f)]
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "evt_" + "0" * 32,
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1," + "A" * 44,
        "User-Agent": "Ringline-Webhooks/0.1.0",
    }
    query = "?SdkAppid=1400000001&CallbackCommand=Call.CallbackAfterMemberChanged&contenttype=json" + (
        "&Sign=" + "0" * 64 + "&RequestTime=1740464128"
    )
    perf = time.perf_counter
    n = 0
    errors = 0
    lat: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        start = perf()
        stop_at = start + duration

        async def loop(i: int) -> None:
            nonlocal n, errors
            k = i
            while perf() < stop_at:
                _, body = bodies[k % len(bodies)]
                k += concurrency
                t = perf()
                try:
                    async with s.post(url + query, data=body, headers=headers) as r:
                        await r.read()
                        if r.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                    continue
                n += 1
                lat.append(perf() - t)

        await asyncio.gather(*(loop(i) for i in range(concurrency)))
        elapsed = perf() - start
    lat.sort()
    return {
        "requests": n,
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "requests_per_s": round(n / elapsed, 1),
        "latency_p50_ms": u.ms(u.percentile(lat, 50)),
        "latency_p99_ms": u.ms(u.percentile(lat, 99)),
        "client_cpu_s": round(time.process_time(), 3),  # start-up included
    }


def run_blaster(recv: Receiver, tmp: Path, duration: float) -> dict[str, Any]:
    bodies = recv.get("/samples?n=64")
    if not bodies:
        raise RuntimeError("the receiver has no callback bodies to replay")
    path = tmp / "bodies.json"
    path.write_text(json.dumps(bodies))
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "blast",
        recv.url + "/base",
        str(path),
        str(duration),
        str(CONCURRENCY),
    ]
    meter = u.CpuMeter(recv.pid, [])
    cp = subprocess.run(argv, capture_output=True, timeout=duration + 60, check=False)
    cpu = meter.stop()
    if cp.returncode != 0:
        raise RuntimeError(f"baseline client failed: {cp.stderr.decode(errors='replace')[-800:]}")
    res = dict(json.loads(cp.stdout))
    res["receiver_cpu_pct"] = cpu["server_cpu_pct"]
    # CpuMeter counts the baseline client as "other": take its CPU out.
    res["background_cpu_pct"] = round(
        max(0.0, cpu["background_cpu_pct"] - 100.0 * res["client_cpu_s"] / max(1e-9, res["elapsed_s"])), 1
    )
    res["mean_body_bytes"] = round(sum(len(b["body"]) for b in bodies) / len(bodies), 1)
    return res


# ============================================================== part 1: callbacks under call load


def _deliveries(srv: u.Server, query: str) -> dict[str, int]:
    r = _v4_ok(
        admin_post(srv.url + "/v4", query, "call_callback_http_srv/get_deliveries", {"NumberPerPage": 1}),
        "get_deliveries",
    )
    return {k: int(v) for k, v in r["Counts"].items()}


def callbacks_phase(
    args: argparse.Namespace,
    tmp: Path,
    app: int,
    key: str,
    callback_workers: str,
    *,
    reuse: dict[str, Any] | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Part 1 against a fresh server (``serve --callback-workers callback_workers``) and
    receiver. ``reuse``: the calls-baseline and receiver-baseline keys of an earlier run
    of this invocation; given, neither baseline is measured again and those are copied."""
    from ringline.server.rest_contract import V1_CALLBACK_ACTIONS, V4_CALLBACK_COMMANDS
    from ringline.server.webhooks import generate_secret

    n_pairs = max(1, args.users // 2)
    n_workers = max(1, min(args.workers, n_pairs))
    u.raise_nofile(2 * n_pairs + 2048)
    recv = Receiver(tmp)
    srv: u.Server | None = None
    pool: calls.Pool | None = None
    out: dict[str, Any] = {}
    try:
        token = secrets.token_urlsafe(24)
        srv = u.Server(
            tmp / "callbacks",
            sdk_app_id=app,
            secret_key=key,
            extra_args=[
                # One argument: a token may begin with "-" (1 in 64), which a separate
                # argument after the flag would be taken for an option.
                f"--callback-token={token}",
                "--webhook-secret",
                generate_secret(),
                # auto (the default of serve) runs against a server without the flag
                *(["--callback-workers", callback_workers] if callback_workers != "auto" else []),
            ],
        )
        query = admin_query(app, key)
        cfgs = [
            {
                "ws_url": srv.ws_url,
                "app": app,
                "key": key,
                "prefix": "k",
                "pairs": list(range(w, n_pairs, n_workers)),
                "seed": w,
            }
            for w in range(n_workers)
        ]
        u.log(
            f"server pid {srv.pid} on {srv.url}, receiver pid {recv.pid} on {recv.url};"
            f" {n_pairs} pairs over {n_workers} client processes;"
            f" callback workers: {callback_workers}"
        )
        pool = calls.Pool(calls.call_worker, cfgs)
        pool.gather("ready", 120)
        u.log(f"{2 * n_pairs} users logged in")
        interval = n_pairs / args.rate
        nocb: dict[str, Any] | None = None
        if args.calls_baseline > 0 and reuse is None:
            u.log(f"calls baseline: {args.rate:.0f} calls/s for {args.calls_baseline} s, no callbacks set")
            nocb = calls._run_phase(pool, srv, {"duration": args.calls_baseline, "interval": interval})
            p99 = calls._lat(nocb, "invite_ring", 99)
            u.log(f"  {nocb['calls_per_s']:.1f} calls/s, p99 invite->ring {p99} ms")
        if "v4" in args.kinds:
            _v4_ok(
                admin_post(
                    srv.url + "/v4",
                    query,
                    "call_config/set_callback",
                    {"Url": recv.url + "/v4", "CallbackCommandList": list(V4_CALLBACK_COMMANDS)},
                ),
                "set_callback",
            )
        if "v1" in args.kinds:
            r = admin_post(
                srv.url + "/v1",
                query,
                "callback/set",
                {"address": recv.url + "/v1", "actions": list(V1_CALLBACK_ACTIONS)},
            )
            if r.get("errorCode") != 0:
                raise RuntimeError(f"v1/callback/set: {r}")
        counts0 = _deliveries(srv, query)  # fails early if the endpoint is missing
        u.log(f"callbacks set ({args.callbacks}) to the receiver; outbox {counts0}; warm-up {args.warmup} s")
        warm = calls._run_phase(pool, srv, {"duration": args.warmup, "interval": interval})

        profiler = None
        prof_path = Path(profile).resolve() if profile else None
        if prof_path is not None:
            profiler = u.start_py_spy(srv.pid, args.duration, prof_path)
        u.log(f"callbacks: {args.rate:.0f} calls/s for {args.duration} s")
        rcpu0 = u.cpu_seconds(recv.pid)
        t0 = time.time()
        load = calls._run_phase(pool, srv, {"duration": args.duration, "interval": interval})
        t1 = t0 + args.duration
        rcpu = u.cpu_seconds(recv.pid) - rcpu0
        wall = max(1e-9, time.time() - t0)
        if profiler is not None:
            _finish_profile(profiler, prof_path, out, "callbacks_profile")
        at_end = _deliveries(srv, query)
        u.log(
            f"  {load['calls_per_s']:.1f} calls/s ({load['failed']} failed, {load['late']} late slots);"
            f" server CPU {load['server_cpu_pct']}%; outbox at the end {at_end}"
        )

        def drain(since: float) -> tuple[dict[str, int], float]:
            """Bounded wait until nothing is pending or in flight."""
            deadline = time.monotonic() + args.drain_timeout
            counts = _deliveries(srv, query)
            polls = 0
            while counts.get("Pending", 0) + counts.get("InFlight", 0) > 0 and time.monotonic() < deadline:
                time.sleep(1.0)  # each poll counts the outbox: not too often
                counts = _deliveries(srv, query)
                polls += 1
                if polls % 10 == 0:
                    u.log(f"  waiting for the outbox: {counts}")
            return counts, time.time() - since

        counts, drained_s = drain(t1)
        open_left = counts.get("Pending", 0) + counts.get("InFlight", 0)
        u.log(f"  outbox {'drained' if not open_left else 'NOT drained'} {drained_s:.1f} s after the load")
        # The receiver notes a request when it answers it; the server marks it delivered
        # after the answer, so the receiver has every delivered one.
        s = recv.get(f"/summary?t0={t0}&t1={t1}")
        after = s["requests"] - s["in_window"] - s["before_window"]
        drain_rate = after / (s["last_arrival"] - t1) if after > 0 and s["last_arrival"] > t1 else None

        # Capacity: a backlog under the same load. The receiver stalls for --stall s
        # (answers nothing; the deliverer's requests wait, everything else stays
        # pending), then answers all at once while the calls go on for --after-stall s.
        cap: dict[str, Any] | None = None
        cap_load: dict[str, Any] = {"completed": 0, "failed": 0}
        if args.stall > 0 and not open_left:
            u.log(
                f"capacity: the receiver stalls for {args.stall} s under {args.rate:.0f} calls/s,"
                f" then the calls go on for {args.after_stall} s"
            )
            stall: dict[str, Any] = {}
            stall_err: list[BaseException] = []

            def stall_receiver() -> None:
                try:
                    stall.update(recv.post(f"/stall?s={args.stall}", timeout=args.stall + 60))
                except BaseException as e:  # reported below, after the load
                    stall_err.append(e)

            staller = threading.Thread(target=stall_receiver, name="stall", daemon=True)
            staller.start()
            cap_load = calls._run_phase(
                pool, srv, {"duration": args.stall + args.after_stall, "interval": interval}
            )
            cap_end = time.time()
            staller.join(60)
            if stall_err or "release" not in stall:
                raise RuntimeError(f"the receiver's stall failed: {stall_err or 'no answer'}")
            c = recv.get(f"/capacity?release={stall['release']}&end={cap_end}")
            cap = {
                "stall_s": args.stall,
                "stall_held": stall["held"],
                "stall_backlog": c["backlog"],
                "stall_cleared": c["cleared"],
                "stall_clear_s": c["clear_s"],
                "capacity_callbacks_per_s": c["per_s"],
                "stall_calls_per_s": round(cap_load["calls_per_s"], 1),
                "stall_server_cpu_pct": cap_load["server_cpu_pct"],
                "stall_server_workers_cpu_pct": cap_load["server_workers_cpu_pct"],
            }
            u.log(
                f"  {stall['held']} requests held, {c['backlog']} callbacks of earlier events after the"
                f" stall; {_fmt(c['per_s'])} callbacks/s while they drained"
                + (f", cleared in {c['clear_s']} s" if c["cleared"] else ", NOT cleared during the load")
                + f"; {cap_load['calls_per_s']:.1f} calls/s"
            )
            counts, _ = drain(cap_end)
            open_left = counts.get("Pending", 0) + counts.get("InFlight", 0)
        pool.close()
        pool = None

        planned = sum(counts.values())
        delivered = counts.get("Delivered", 0)
        fin = recv.get(f"/summary?t0={t0}&t1={t1}") if cap is not None else s
        u.log(
            f"  receiver: {fin['requests']} requests, {fin['distinct_event_ids']} distinct event ids;"
            f" server: {planned} planned, {delivered} delivered"
        )

        base: dict[str, Any] | None = None
        if reuse is None:
            u.log(f"baseline: one client process POSTing to the receiver, {CONCURRENCY} in flight")
            base = run_blaster(recv, tmp, args.baseline_duration)
            u.log(f"  {base['requests_per_s']:.0f} requests/s")

        completed = warm["completed"] + load["completed"] + cap_load["completed"]
        failed = warm["failed"] + load["failed"] + cap_load["failed"]
        out.update(
            {
                # Delivery capacity: the rate while the backlog of a receiver stall
                # drained under the load; without a stall, the rate while a backlog
                # existed after the load, else what the load window got.
                "callbacks_per_s": (
                    cap["capacity_callbacks_per_s"]
                    if cap is not None and cap["capacity_callbacks_per_s"] is not None
                    else round(max(drain_rate or 0.0, s["in_window"] / args.duration), 1)
                ),
                "callbacks_in_load_per_s": round(s["in_window"] / args.duration, 1),
                "callbacks_in_window": s["in_window"],
                "callbacks_planned_per_s": None,  # filled below
                "lag_p50_ms": s["lag_p50_ms"],
                "lag_p90_ms": s["lag_p90_ms"],
                "lag_p99_ms": s["lag_p99_ms"],
                "lag_max_ms": s["lag_max_ms"],
                "lag_samples": s["lag_ms_samples"],
                "lag_v1_p50_s": s["lag_v1_p50_s"],
                "lag_v1_p99_s": s["lag_v1_p99_s"],
                "calls_rate_target": args.rate,
                "calls_per_s": round(load["calls_per_s"], 1),
                "calls_completed": completed,
                "calls_failed": failed,
                "call_errors": calls._sum_counts(warm["errors"], load["errors"]),
                "late_slots": load["late"],
                "invite_to_ring_p50_ms": calls._lat(load, "invite_ring", 50),
                "invite_to_ring_p99_ms": calls._lat(load, "invite_ring", 99),
                "hangup_to_end_p99_ms": calls._lat(load, "hangup_end", 99),
                "outbox_at_load_end": at_end,
                "outbox_after_wait": counts,
                "drained": open_left == 0,
                "drain_s": round(drained_s, 1),
                "drain_callbacks_per_s": None if drain_rate is None else round(drain_rate, 1),
                "callbacks_planned": planned,
                "callbacks_delivered_server": delivered,
                "receiver_requests": fin["requests"],
                "receiver_requests_v4": fin["requests_v4"],
                "receiver_requests_v1": fin["requests_v1"],
                "receiver_distinct_event_ids": fin["distinct_event_ids"],
                "receiver_duplicates": fin["duplicates"],
                "order_violations": fin["order_violations"],
                "all_arrived": (
                    open_left == 0
                    and fin["distinct_event_ids"] == delivered == planned
                    and counts.get("GivenUp", 0) == 0
                    and counts.get("Gone", 0) == 0
                ),
                "calls_seen_by_receiver": fin["calls"],
                "callbacks_per_call": fin["callbacks_per_call"],
                "commands": fin["commands"],
                "mean_body_bytes": fin["mean_body_bytes"],
                "delivered_per_second": s["per_second"],
                "server_cpu_pct": load["server_cpu_pct"],
                "server_loop_thread_cpu_pct": load["server_loop_thread_cpu_pct"],
                "server_other_threads_cpu_pct": load["server_other_threads_cpu_pct"],
                "server_workers_cpu_pct": load["server_workers_cpu_pct"],
                "callback_workers": callback_workers,
                "client_cpu_pct": load["client_cpu_pct"],
                "receiver_cpu_pct": round(100.0 * rcpu / wall, 1),
                # CpuMeter counts the receiver as "other"; here it has its own column.
                "background_cpu_pct": round(max(0.0, load["background_cpu_pct"] - 100.0 * rcpu / wall), 1),
                "steal_pct": load["steal_pct"],
            }
        )
        if cap is not None:
            out.update(cap)
        if base is not None:
            out.update({"baseline_receiver_requests_per_s": base["requests_per_s"], "baseline": base})
        if reuse is not None:
            out.update(reuse)
        elif nocb is not None:
            out.update(
                {
                    "no_callbacks_calls_per_s": round(nocb["calls_per_s"], 1),
                    "no_callbacks_invite_to_ring_p50_ms": calls._lat(nocb, "invite_ring", 50),
                    "no_callbacks_invite_to_ring_p99_ms": calls._lat(nocb, "invite_ring", 99),
                    "no_callbacks_server_cpu_pct": nocb["server_cpu_pct"],
                    "no_callbacks_background_cpu_pct": nocb["background_cpu_pct"],
                }
            )
        per_call = max(s["callbacks_per_call"].items(), key=lambda kv: kv[1])[0] if s["calls"] else "0"
        out["callbacks_per_call_typical"] = int(per_call)
        out["callbacks_planned_per_s"] = round(int(per_call) * load["calls_per_s"], 1)
        if out["background_cpu_pct"] > 25:
            u.log(
                f"  WARNING: other processes used {out['background_cpu_pct']}% of a core during the load;"
                " the numbers are low (run on a quiet machine, or use --wait-quiet)"
            )
        return out
    finally:
        if pool is not None:
            pool.close()
        if srv is not None:
            srv.stop()
        recv.stop()


def _reused(first: dict[str, Any]) -> dict[str, Any]:
    """The keys of the baselines a later run takes over from the first one."""
    return {
        k: v
        for k, v in first.items()
        if k.startswith("no_callbacks_") or k in ("baseline_receiver_requests_per_s", "baseline")
    }


def callbacks_runs(args: argparse.Namespace, tmp: Path, app: int, key: str) -> dict[str, Any]:
    """Part 1 once per ``--callback-workers`` value, in the order given. The keys of the
    first run at the top level (as with a single value); with several values also
    ``by_callback_workers``: {"N": that run's keys} for every run."""
    values: list[str] = args.callback_workers_list
    if len(values) == 1:
        return callbacks_phase(args, tmp, app, key, values[0], profile=args.profile)
    runs: dict[str, dict[str, Any]] = {}
    first: dict[str, Any] | None = None
    for i, n in enumerate(values):
        u.log(f"=== part 1, run {i + 1} of {len(values)}: --callback-workers {n}")
        run_dir = tmp / f"cbw{n}"
        run_dir.mkdir(parents=True, exist_ok=True)
        res = callbacks_phase(
            args,
            run_dir,
            app,
            key,
            n,
            reuse=None if first is None else _reused(first),
            profile=f"{args.profile}.cbw{n}" if args.profile else None,  # one file per run
        )
        res["targets_met"] = verdicts(res)
        runs[str(n)] = res
        if first is None:
            first = res
    assert first is not None
    top = {k: v for k, v in first.items() if k != "targets_met"}
    top["by_callback_workers"] = runs
    return top


def _finish_profile(
    profiler: subprocess.Popen[bytes], path: Path | None, out: dict[str, Any], k: str
) -> None:
    try:
        _, err = profiler.communicate(timeout=60)
        if profiler.returncode == 0 and path is not None and path.exists():
            out[k] = u.summarize_collapsed(path)
            out[k]["file"] = str(path)
        else:
            u.log(f"py-spy failed ({profiler.returncode}): {err.decode(errors='replace')[-400:]}")
    except Exception as e:
        profiler.kill()
        u.log(f"py-spy: {e}")


# ============================================================== part 2: seeding records

N_USERS = 20_000
# Share of calls starting in each hour of the day (UTC), roughly a working day.
_HOURLY = [1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 7, 8, 8, 8, 7, 7, 7, 6, 5, 4, 3, 2]
# 1v1 outcomes and their shares.
_SINGLE = (
    ("answered", 0.58),
    ("rejected", 0.10),
    ("no_answer", 0.13),
    ("canceled", 0.11),
    ("busy", 0.04),
    ("dropped", 0.02),  # connected, then a device went offline
    ("offline", 0.01),  # the callee's device went silent while ringing
    ("end_by_server", 0.01),
)
# Per-callee outcomes in multi-party calls.
_MULTI = (("accept", 0.6), ("reject", 0.15), ("no_answer", 0.2), ("busy", 0.05))


def _start_times(rng: random.Random, n: int, t_end: float, days: int) -> list[float]:
    """``n`` start times over ``days`` days before ``t_end``, following ``_HOURLY``, sorted."""
    total = sum(_HOURLY)
    cum: list[float] = []
    acc = 0.0
    for w in _HOURLY:
        acc += w / total
        cum.append(acc)
    day0 = math.floor((t_end - days * DAY) / DAY) * DAY
    out = []
    for _ in range(n):
        r = rng.random()
        h = next(i for i, c in enumerate(cum) if r <= c)
        t = day0 + rng.randrange(days + 1) * DAY + h * 3600.0 + rng.random() * 3600.0
        if t >= t_end:
            t = t_end - rng.random() * days * DAY
        out.append(t)
    out.sort()
    return out


def _duration(rng: random.Random) -> float:
    return min(7200.0, rng.lognormvariate(math.log(90.0), 1.0))


def _make_record(rng: random.Random, app: int, users: list[str], start: float) -> Any:
    from ringline.core.enums import CallEndReason as R
    from ringline.core.enums import CallRole, CallScene, MediaType
    from ringline.core.records import CallRecord, MemberRecord, call_result_for
    from ringline.core.types import RoomId

    caller = users[rng.randrange(len(users))]
    r = rng.random()
    group = ""
    if r < 0.85:
        n_callees, scene = 1, CallScene.SINGLE_CALL
    elif r < 0.95:
        n_callees, scene = rng.randint(2, 4), CallScene.MULTI_CALL
    else:
        n_callees, scene = rng.randint(2, 8), CallScene.GROUP_CALL
        group = f"group{rng.randrange(2000):04d}"
    callees: list[str] = []
    while len(callees) < n_callees:
        c = users[rng.randrange(len(users))]
        if c != caller and c not in callees:
            callees.append(c)
    members: list[MemberRecord] = []
    if n_callees == 1:
        outcome = rng.choices([o for o, _ in _SINGLE], [w for _, w in _SINGLE])[0]
        accept = 0.0
        if outcome in ("answered", "dropped", "end_by_server"):
            accept = start + rng.uniform(1.5, 12.0)
            end = accept + _duration(rng)
            reason = {"answered": R.HANGUP, "dropped": R.OFFLINE, "end_by_server": R.END_BY_SERVER}[outcome]
            ended_by = rng.choice((caller, callees[0])) if outcome != "end_by_server" else ""
        else:
            end = (
                start
                + {
                    "rejected": rng.uniform(1.0, 20.0),
                    "no_answer": 30.0,
                    "canceled": rng.uniform(1.0, 25.0),
                    "busy": rng.uniform(0.01, 0.1),
                    "offline": rng.uniform(5.0, 30.0),
                }[outcome]
            )
            reason = {
                "rejected": R.REJECT,
                "no_answer": R.NO_RESPONSE,
                "canceled": R.CANCELED,
                "busy": R.LINE_BUSY,
                "offline": R.OFFLINE,
            }[outcome]
            ended_by = (
                callees[0] if outcome in ("rejected", "busy") else (caller if outcome == "canceled" else "")
            )
        members.append(MemberRecord(callees[0], CallRole.CALLED, start, accept, end, reason, caller))
        first_accept = accept
    else:
        picks = rng.choices([o for o, _ in _MULTI], [w for _, w in _MULTI], k=n_callees)
        accepts = [start + rng.uniform(1.5, 12.0) if p == "accept" else 0.0 for p in picks]
        first_accept = min((a for a in accepts if a), default=0.0)
        if first_accept:
            end = first_accept + _duration(rng)
            reason = R.HANGUP if rng.random() < 0.97 else R.END_BY_SERVER
            ended_by = caller if reason is R.HANGUP else ""
        else:
            end = 0.0
            reason = R.NO_RESPONSE
            ended_by = ""
        for callee, pick, acc in zip(callees, picks, accepts, strict=True):
            if pick == "accept":
                members.append(MemberRecord(callee, CallRole.CALLED, start, acc, end, reason, caller))
                continue
            own, leave = {
                "reject": (R.REJECT, start + rng.uniform(1.0, 20.0)),
                "no_answer": (R.NO_RESPONSE, start + 30.0),
                "busy": (R.LINE_BUSY, start + 0.05),
            }[pick]
            if first_accept:
                leave = min(leave, end)
            elif leave >= end:
                end, reason = leave, own  # the call ends with its last callee
            members.append(MemberRecord(callee, CallRole.CALLED, start, 0.0, leave, own, caller))
    caller_member = MemberRecord(caller, CallRole.CALLER, start, first_accept, end, reason)
    return CallRecord(
        call_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        sdk_app_id=app,
        caller=caller,
        media_type=MediaType.AUDIO if rng.random() < 0.7 else MediaType.VIDEO,
        scene=scene,
        chat_group_id=group,
        room_id=RoomId(int_room_id=rng.randrange(1, 2**31)),
        start_time=start,
        accept_time=first_accept,
        end_time=end,
        result=call_result_for(ever_connected=bool(first_accept), end_reason=reason),
        end_reason=reason,
        ended_by=ended_by,
        callees=tuple(callees),
        members=(caller_member, *members),
        user_data="" if rng.random() < 0.9 else f'{{"order":"{rng.randrange(10**8)}"}}',
    )


SEED_CHUNK = 10_000  # records per worker task and per transaction


def _seed_chunk(
    spec: tuple[int, int, int, list[float]],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Worker process: build the records of ``spec`` = (seed, chunk index, app id, start
    times) and return the rows the store writes for them: ``calls`` rows from the store's
    own ``_call_row``, and per user of each call the ``user_calls`` row of
    ``SqliteStore`` applying a ``FinishedCallWrite`` (user, call id, start, result type)."""
    from ringline.core.records import result_type_for
    from ringline.server.store.sqlite import _call_row

    seed, index, app, starts = spec
    rng = random.Random(seed * 1_000_003 + index)
    users = [f"user{i:05d}" for i in range(N_USERS)]
    call_rows: list[tuple[Any, ...]] = []
    user_rows: list[tuple[Any, ...]] = []
    for start in starts:
        rec = _make_record(rng, app, users, start)
        call_rows.append(_call_row(rec))
        user_rows.extend((x, rec.call_id, rec.start_time, int(result_type_for(rec, x))) for x in rec.users())
    return call_rows, user_rows


def _seed(
    db_path: Path, n: int, app: int, t_end: float, days: int, seed: int, workers: int
) -> dict[str, Any]:
    """Writes ``n`` records over ``days`` days as the server would: the schema comes from
    ``SqliteStore.open()``, the rows from the store's own row builder and INSERT
    statements (those ``SqliteStore.apply(FinishedCallWrite)`` runs), in start-time order, one
    transaction per chunk. Records are built in ``workers`` processes meanwhile. At the
    end the store is opened and closed once more, as a server restart would (its
    ``PRAGMA optimize`` on close included)."""
    import multiprocessing as mp

    from ringline.server.store import SqliteStore
    from ringline.server.store.sqlite import _SQL_INSERT_CALL, _SQL_INSERT_USER_CALL

    async def open_close() -> None:
        store = SqliteStore(str(db_path))
        await store.open()
        await store.close()

    u.run_async(open_close())  # the schema, exactly as the server creates it
    t0 = time.monotonic()
    starts = _start_times(random.Random(seed), n, t_end, days)
    specs = [(seed, i, app, starts[k : k + SEED_CHUNK]) for i, k in enumerate(range(0, n, SEED_CHUNK))]
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    done = 0
    last_log = t0
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a fresh file for a benchmark: no crash to survive
        conn.execute("PRAGMA cache_size = -1000000")  # 1 GB: the indexes stay in memory
        with mp.get_context("spawn").Pool(max(1, workers)) as pool:
            for call_rows, user_rows in pool.imap(_seed_chunk, specs):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_SQL_INSERT_CALL, call_rows)
                conn.executemany(_SQL_INSERT_USER_CALL, user_rows)
                conn.execute("COMMIT")
                done += len(call_rows)
                now = time.monotonic()
                if now - last_log > 15:
                    last_log = now
                    u.log(f"  {done:,} records, {done / (now - t0):,.0f}/s")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    u.run_async(open_close())
    took = time.monotonic() - t0
    return {"seed_s": round(took, 1), "seed_records_per_s": round(n / took)}


# ============================================================== part 2: queries

V4_RESULTS = ("NormalEnd", "Cancel", "Reject", "NotAnswer", "CallBusy", "Offline", "EndByServer")


def _filters(rng: random.Random, n: int, t_first: int, t_last: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` request bodies, round-robin over the kinds of filter an operator uses."""
    day0 = t_first - t_first % 86400
    days = max(1, (t_last - day0) // 86400 + 1)

    def window(n_days: int) -> dict[str, int]:
        d = rng.randrange(max(1, days - n_days + 1))
        return {"StartTime": day0 + d * 86400, "EndTime": day0 + (d + n_days) * 86400 - 1}

    kinds: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("newest 10 ({})", lambda: {}),
        ("1-day window, 100/page", lambda: {**window(1), "NumberPerPage": 100}),
        ("1-day window, page 2-5 of 10", lambda: {**window(1), "Page": rng.randint(2, 5)}),
        ("30 days (all), 100/page", lambda: {"StartTime": day0, "EndTime": t_last, "NumberPerPage": 100}),
        ("7 days + CallResult", lambda: {**window(7), "CallResult": rng.choice(V4_RESULTS)}),
        (
            "CallResult [NotAnswer, CallBusy]",
            lambda: {"CallResult": ["NotAnswer", "CallBusy"], "NumberPerPage": rng.choice((10, 100))},
        ),
        ("7 days + MultiCall", lambda: {**window(7), "CallType": "MultiCall", "NumberPerPage": 100}),
        ("SingleCall + Reject", lambda: {"CallType": "SingleCall", "CallResult": "Reject"}),
        ("Page 1000 of 10 (offset 9,990)", lambda: {"Page": 1000, "NumberPerPage": 10}),
        ("Page 1000 of 100 (offset 99,900)", lambda: {"Page": 1000, "NumberPerPage": 100}),
    ]
    return [(kinds[i % len(kinds)][0], kinds[i % len(kinds)][1]()) for i in range(n)]


async def _time_queries(
    base: str, query: str, reqs: list[tuple[str, dict[str, Any]]], warmup: int
) -> tuple[list[dict[str, Any]], list[float], list[float]]:
    """Sequential requests on one keep-alive connection: each filter request is followed
    by a ``GET /healthz`` (the baseline). Returns per filter request {kind, body, ms,
    answer summary} and the healthz times (ms)."""
    import aiohttp

    perf = time.perf_counter
    url = f"{base}/v4/call_record_http_srv/get_record_by_filter?{query}"
    health = f"{base}/healthz"
    results: list[dict[str, Any]] = []
    hz: list[float] = []
    fl: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for i, (kind, body) in enumerate(reqs[:warmup] + reqs):
            data = json.dumps(body).encode()
            t = perf()
            async with s.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
                raw = await r.read()
            dt_ms = (perf() - t) * 1000.0
            t = perf()
            async with s.get(health) as r:
                await r.read()
            h_ms = (perf() - t) * 1000.0
            if i < warmup:
                continue
            a = json.loads(raw)
            if a.get("ErrorCode") != 0:
                raise RuntimeError(f"get_record_by_filter {body}: {a}")
            resp = a["Response"]
            starts = [x["StartTime"] for x in resp["CallRecordList"]]
            results.append(
                {
                    "kind": kind,
                    "body": body,
                    "ms": dt_ms,
                    "total": resp["TotalNum"],
                    "n": len(starts),
                    "sorted": all(x >= y for x, y in itertools.pairwise(starts)),
                    "bytes": len(raw),
                }
            )
            fl.append(dt_ms)
            hz.append(h_ms)
    return results, fl, hz


def _direct_count(conn: sqlite3.Connection, body: dict[str, Any]) -> int:
    """The number of records ``body`` selects, counted straight from table ``calls``."""
    where, args = [], []
    if "StartTime" in body:
        where.append("start_time >= ?")
        args.append(float(body["StartTime"]))
    if "EndTime" in body:
        where.append("start_time < ?")  # whole seconds: StartTime 12:00:00.7 matches EndTime 12:00:00
        args.append(float(body["EndTime"]) + 1.0)
    res = body.get("CallResult")
    if res:
        res = [res] if isinstance(res, str) else list(res)
        where.append(f"result IN ({','.join('?' * len(res))})")
        args.extend(res)
    if "CallType" in body:
        where.append("call_type = ?")
        args.append(body["CallType"])
    sql = "SELECT COUNT(*) FROM calls" + (f" WHERE {' AND '.join(where)}" if where else "")
    return int(conn.execute(sql, args).fetchone()[0])


def records_phase(args: argparse.Namespace, tmp: Path, app: int, key: str) -> dict[str, Any]:
    data_dir = tmp / "records"
    data_dir.mkdir(parents=True)
    db = data_dir / "ringline.db"
    t_end = time.time() - 3600.0
    u.log(f"records: seeding {args.records:,} call records over 30 days into {db}")
    seeded = _seed(db, args.records, app, t_end, 30, 7, workers=2)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        n_rows = int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
        n_user_rows = int(conn.execute("SELECT COUNT(*) FROM user_calls").fetchone()[0])
        t_first, t_last = (
            int(x) for x in conn.execute("SELECT MIN(start_time), MAX(start_time) FROM calls").fetchone()
        )
        by_result = dict(conn.execute("SELECT result, COUNT(*) FROM calls GROUP BY result").fetchall())
        by_type = dict(conn.execute("SELECT call_type, COUNT(*) FROM calls GROUP BY call_type").fetchall())
        analyzed = bool(
            conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()[0]
        )
    finally:
        conn.close()
    db_mb = sum(p.stat().st_size for p in data_dir.glob("ringline.db*")) / 1e6
    t_sync = time.monotonic()
    os.sync()  # the queries should not compete with the kernel writing the seeded file back
    seeded["sync_s"] = round(time.monotonic() - t_sync, 1)
    u.log(
        f"  {n_rows:,} records ({n_user_rows:,} user_calls rows, {db_mb:,.0f} MB) in {seeded['seed_s']} s;"
        f" results {by_result}"
    )
    srv = u.Server(data_dir, sdk_app_id=app, secret_key=key)
    out: dict[str, Any] = {}
    try:
        query = admin_query(app, key)
        rng = random.Random(11)
        reqs = _filters(rng, args.queries, t_first, t_last)
        u.log(f"  server pid {srv.pid}; {args.queries} get_record_by_filter + /healthz requests, sequential")
        profiler = None
        prof_path = Path(args.profile_records).resolve() if args.profile_records else None
        if prof_path is not None:
            profiler = u.start_py_spy(srv.pid, 600, prof_path)
        meter = u.CpuMeter(srv.pid, [])
        t0 = time.monotonic()
        results, fl, hz = u.run_async(_time_queries(srv.url, query, reqs, warmup=20))
        wall = time.monotonic() - t0
        cpu = meter.stop()
        if profiler is not None:
            with contextlib.suppress(ProcessLookupError):
                profiler.send_signal(2)  # SIGINT: py-spy writes what it has
            _finish_profile(profiler, prof_path, out, "records_profile")
    finally:
        srv.stop()
    # TotalNum against a direct COUNT, once per distinct filter (paging fields aside).
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    mismatches: list[dict[str, Any]] = []
    checked = 0
    try:
        seen: dict[str, int] = {}
        for r in results:
            f = {k: v for k, v in r["body"].items() if k not in ("Page", "NumberPerPage")}
            k = json.dumps(f, sort_keys=True)
            if k not in seen:
                seen[k] = _direct_count(conn, f)
                checked += 1
            per_page = r["body"].get("NumberPerPage", 10)
            offset = (r["body"].get("Page", 1) - 1) * per_page
            want_n = max(0, min(per_page, seen[k] - offset))
            if r["total"] != seen[k] or r["n"] != want_n or not r["sorted"]:
                mismatches.append({"body": r["body"], "total": r["total"], "count": seen[k], "n": r["n"]})
    finally:
        conn.close()
    kinds: dict[str, list[float]] = {}
    totals: dict[str, list[int]] = {}
    for r in results:
        kinds.setdefault(r["kind"], []).append(r["ms"])
        totals.setdefault(r["kind"], []).append(r["total"])
    per_kind = [
        {
            "kind": k,
            "n": len(v),
            "p50_ms": round(statistics.median(v), 2),
            "p99_ms": round(u.percentile(v, 99) or 0.0, 2),
            "max_ms": round(max(v), 2),
            "median_total": int(statistics.median(totals[k])),
        }
        for k, v in kinds.items()
    ]
    out.update(
        {
            "records": n_rows,
            "user_calls_rows": n_user_rows,
            "db_mb": round(db_mb, 1),
            "records_by_result": by_result,
            "records_by_type": by_type,
            "records_span_days": round((t_last - t_first) / DAY, 1),
            "sqlite_stat1": analyzed,
            **seeded,
            "filter_requests": len(fl),
            "filter_p50_ms": round(statistics.median(fl), 2),
            "filter_p90_ms": round(u.percentile(fl, 90) or 0.0, 2),
            "filter_p99_ms": round(u.percentile(fl, 99) or 0.0, 2),
            "filter_max_ms": round(max(fl), 2),
            "healthz_p50_ms": round(statistics.median(hz), 2),
            "healthz_p99_ms": round(u.percentile(hz, 99) or 0.0, 2),
            "filter_by_kind": per_kind,
            "filter_mean_response_kb": round(sum(r["bytes"] for r in results) / len(results) / 1024, 1),
            "totalnum_checked_filters": checked,
            "totalnum_mismatches": mismatches[:10],
            "totalnum_ok": not mismatches,
            "filter_server_cpu_pct": cpu["server_cpu_pct"],
            "filter_background_cpu_pct": cpu["background_cpu_pct"],
            "filter_wall_s": round(wall, 1),
        }
    )
    u.log(
        f"  filter p50 {out['filter_p50_ms']} ms, p99 {out['filter_p99_ms']} ms; /healthz p50"
        f" {out['healthz_p50_ms']} ms; TotalNum {'ok' if not mismatches else 'MISMATCH'} ({checked} filters)"
    )
    return out


# ============================================================== report


def verdicts(r: dict[str, Any]) -> dict[str, bool | None]:
    """Per target: True/False, or None when this run cannot judge it (a part skipped,
    or a call load below the 500 calls/s the targets are stated for)."""
    v: dict[str, bool | None] = {"callbacks_per_s": None, "lag_p99_ms": None, "filter_p99_ms": None}
    if "callbacks_per_s" in r:
        full_load = r["calls_rate_target"] >= TARGET_RATE
        sustained = r["calls_per_s"] >= 0.97 * r["calls_rate_target"]
        fast = r["callbacks_per_s"] >= TARGET_CALLBACKS_PER_S and bool(r["all_arrived"])
        # The capacity is reached while a backlog drains: the receiver stall's under the
        # load; without one, the backlog left after the load (if any). With neither the
        # load never outran delivery, so this run cannot judge it (docs/benchmarks.md).
        reached = r.get("capacity_callbacks_per_s") is not None or r.get("drain_callbacks_per_s") is not None
        planned = r.get("callbacks_planned_per_s") or 0.0
        v["keeps_up"] = (r["callbacks_in_load_per_s"] >= 0.95 * planned) if full_load else None
        v["callbacks_per_s"] = True if fast else (False if full_load and reached else None)
        lag = r["lag_p99_ms"]
        lag_ok = lag is not None and lag <= TARGET_LAG_P99_MS and bool(r["drained"])
        v["lag_p99_ms"] = (lag_ok and sustained) if full_load else None
        v["all_arrived"] = bool(r["all_arrived"])
    if "filter_p99_ms" in r:
        v["filter_p99_ms"] = r["filter_p99_ms"] <= TARGET_FILTER_P99_MS if r["records"] >= 1_000_000 else None
        v["totalnum_ok"] = bool(r["totalnum_ok"])
    return v


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _workers_name(n: str) -> str:
    if n == "auto":
        return "default (auto)"
    return "in-process" if int(n) == 0 else f"{n} worker{'s' if int(n) > 1 else ''}"


def _callback_rows(cols: list[dict[str, Any]]) -> list[tuple[str, list[Any], str, list[str]]]:
    """Part 1's rows: per row (metric, one value per run, target, one ok? per run). Runs
    after the first show ``same`` for the baselines they took over from it."""
    ok = {True: "yes", False: "NO", None: "-"}
    vs = [verdicts(r) for r in cols]

    def row(
        label: str, value: Callable[[dict[str, Any]], Any], target: str = "", verdict: str | None = None
    ) -> tuple[str, list[Any], str, list[str]]:
        return (
            label,
            [value(r) for r in cols],
            target,
            ["" if verdict is None else ok[v[verdict]] for v in vs],
        )

    def reused(
        label: str, value: Callable[[dict[str, Any]], Any], key: str
    ) -> tuple[str, list[Any], str, list[str]]:
        later = "same" if key in cols[0] else value(cols[0])  # "same" only for a measured baseline
        return (label, [value(cols[0])] + [later] * (len(cols) - 1), "", [""] * len(cols))

    def open_at_end(r: dict[str, Any]) -> int:
        return int(r["outbox_at_load_end"].get("Pending", 0) + r["outbox_at_load_end"].get("InFlight", 0))

    def losses(r: dict[str, Any]) -> str:
        c = r["outbox_after_wait"]
        return (
            f"{c.get('GivenUp', 0)} / {c.get('Gone', 0)}"
            f" / {r['receiver_duplicates']} / {r['order_violations']}"
        )

    def cpu(r: dict[str, Any]) -> str:
        return (
            f"{r['server_cpu_pct']:.0f} ({r['server_loop_thread_cpu_pct']:.0f}/"
            f"{r['server_other_threads_cpu_pct']:.0f}/{r['server_workers_cpu_pct']:.0f})"
            f" / {r['receiver_cpu_pct']:.0f} / {r['client_cpu_pct']:.0f}"
            f" / {r['background_cpu_pct']:.0f} / {r['steal_pct']:.0f}"
        )

    return [
        row(
            f"calls/s achieved (asked {cols[0]['calls_rate_target']:.0f})", lambda r: r["calls_per_s"], "500"
        ),
        row(
            "callbacks planned per call / per s",
            lambda r: f"{r['callbacks_per_call_typical']} / {r['callbacks_planned_per_s']:,.0f}",
        ),
        row(
            "callbacks delivered/s during the load (>= 95% of planned?)",
            lambda r: r["callbacks_in_load_per_s"],
            "keeps up",
            "keeps_up",
        ),
        row(
            "callbacks delivered/s, capacity (stall backlog under load)",
            lambda r: r["callbacks_per_s"],
            ">= 2,000",
            "callbacks_per_s",
        ),
        row(
            "receiver stall s: requests held / backlog; cleared in s",
            lambda r: (
                f"{_fmt(r['stall_s'])}: {r['stall_held']:,} / {r['stall_backlog']:,};"
                f" {_fmt(r['stall_clear_s']) if r['stall_cleared'] else 'not cleared'}"
                if "stall_s" in r
                else "-"
            ),
        ),
        row("lag event->arrival p50 ms (v4)", lambda r: r["lag_p50_ms"]),
        row("lag event->arrival p99 ms (v4)", lambda r: r["lag_p99_ms"], "<= 1,000", "lag_p99_ms"),
        row("lag event->arrival max ms (v4)", lambda r: r["lag_max_ms"]),
        row("outbox pending+in flight at load end", open_at_end),
        row(
            "outbox drained, s after load end",
            lambda r: r["drain_s"] if r["drained"] else f"no ({r['drain_s']})",
        ),
        row("callbacks delivered/s after the load (backlog)", lambda r: r["drain_callbacks_per_s"]),
        row(
            "planned / delivered (server) / distinct at receiver",
            lambda r: (
                f"{r['callbacks_planned']:,} / {r['callbacks_delivered_server']:,}"
                f" / {r['receiver_distinct_event_ids']:,}"
            ),
            "equal",
            "all_arrived",
        ),
        row("given up / gone / duplicates / order violations", losses, "0"),
        reused(
            "same load without callbacks: calls/s; invite->ring p99 ms",
            lambda r: (
                f"{_fmt(r.get('no_callbacks_calls_per_s'))};"
                f" {_fmt(r.get('no_callbacks_invite_to_ring_p99_ms'))}"
            ),
            "no_callbacks_calls_per_s",
        ),
        row(
            "calls completed / failed; invite->ring p99 ms",
            lambda r: f"{r['calls_completed']:,} / {r['calls_failed']}; {_fmt(r['invite_to_ring_p99_ms'])}",
        ),
        row("CPU %: server (loop/other/workers) / receiver / clients / others / steal", cpu),
        reused(
            f"baseline: receiver alone, requests/s ({CONCURRENCY} in flight)",
            lambda r: r["baseline_receiver_requests_per_s"],
            "baseline_receiver_requests_per_s",
        ),
    ]


def table(r: dict[str, Any]) -> str:
    """The report. With several ``--callback-workers`` values (``by_callback_workers``)
    part 1 has one value column per worker count, and its ok? column one verdict per
    column ("yes / NO"); part 2's values stand in the first column."""
    v = verdicts(r)
    ok = {True: "yes", False: "NO", None: "-"}
    runs: dict[str, dict[str, Any]] = r.get("by_callback_workers") or {}
    names = [_workers_name(n) for n in runs] if runs else ["value"]
    ncol = len(names)
    rows: list[tuple[str, list[Any], str, list[str]]] = []
    if "callbacks_per_s" in r:
        rows += _callback_rows(list(runs.values()) if runs else [r])
    rows2: list[tuple[str, Any, str, str]] = []
    if "filter_p99_ms" in r:
        rows2 += [
            (f"records in the store ({r['records_span_days']:.0f} days)", r["records"], "1,000,000", ""),
            ("get_record_by_filter p50 ms", r["filter_p50_ms"], "", ""),
            ("get_record_by_filter p99 ms", r["filter_p99_ms"], "<= 50", ok[v["filter_p99_ms"]]),
            ("get_record_by_filter max ms", r["filter_max_ms"], "", ""),
            (
                "baseline: GET /healthz p50 / p99 ms",
                f"{r['healthz_p50_ms']:.2f} / {r['healthz_p99_ms']:.2f}",
                "",
                "",
            ),
            (
                f"TotalNum = COUNT(*) ({r['totalnum_checked_filters']} filters)",
                "all equal" if r["totalnum_ok"] else f"{len(r['totalnum_mismatches'])}+ differ",
                "equal",
                ok[v["totalnum_ok"]],
            ),
            (
                "server CPU % / others CPU % while querying",
                f"{r['filter_server_cpu_pct']:.0f} / {r['filter_background_cpu_pct']:.0f}",
                "",
                "",
            ),
        ]
        rows2 += [
            (f"  {k['kind']}: p50 / p99 ms", f"{k['p50_ms']:.1f} / {k['p99_ms']:.1f}", "", "")
            for k in r["filter_by_kind"]
        ]
    # Part 2 was measured once: its value in the first column.
    rows += [(a, [b] + [""] * (ncol - 1), c, [d]) for a, b, c, d in rows2]
    cells = [(a, [_fmt(x) for x in b], c, " / ".join(d) if any(d) else "") for a, b, c, d in rows]
    w0 = max(len(x[0]) for x in cells)
    # One column keeps today's widths: "value" may stick out over short values.
    ws = [max([len(x[1][j]) for x in cells] + ([len(names[j])] if runs else [])) for j in range(ncol)]
    w2 = max(len(x[2]) for x in cells)
    w3 = max([3] + [len(x[3]) for x in cells])
    lines = [
        f"{'metric':<{w0}}"
        + "".join(f"  {n:>{w}}" for n, w in zip(names, ws, strict=True))
        + f"  {'target':<{w2}}  ok?",
        "-" * (w0 + sum(w + 2 for w in ws) + w2 + 4 + w3),
    ]
    lines += [
        f"{a:<{w0}}" + "".join(f"  {x:>{w}}" for x, w in zip(b, ws, strict=True)) + f"  {c:<{w2}}  {d}"
        for a, b, c, d in cells
    ]
    m = r["machine"]
    cfg = r["config"]
    if runs:
        workers = f"{' / '.join(runs)} callback worker processes (one run each, in that order)"
    else:
        workers = f"callback workers: {cfg.get('callback_workers', 'auto')}"
    lines.append("")
    lines.append(
        f"{r['date']}; {m['cores']} cores ({m['cpu_model']}), Python {m['python']}, {m['loop']},"
        f" aiohttp {m['aiohttp']}; {cfg['users']} users in {cfg['client_workers']} client processes,"
        f" {cfg['duration_s']} s at {cfg['rate']:.0f} calls/s;"
        f" {workers}; {cfg['records']:,} records"
    )
    profiles = [("callbacks", "", x) for x in ([r] if not runs else [])]
    profiles += [("callbacks", f", {_workers_name(n)}", x) for n, x in runs.items()]
    profiles.append(("records", "", r))
    for part, which, src in profiles:
        key = f"{part}_profile"
        if key in src:
            lines.append("")
            lines.append(
                f"server profile, {part}{which} (py-spy, {src[key]['samples']} samples), by component:"
            )
            for row in src[key]["components"][:10]:
                lines.append(f"  {row['pct']:5.1f}%  {row['function']}")
            lines.append("top source lines (self time):")
            for row in src[key]["self_lines"][:10]:
                lines.append(f"  {row['pct']:5.1f}%  {row['function']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    app = 1400000000 + secrets.randbelow(99_999_999)
    key = secrets.token_hex(32)
    tmp = Path(tempfile.mkdtemp(prefix="ringline-bench-cb-"))
    n_pairs = max(1, args.users // 2)
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": u.machine_info(),
        "config": {
            "users": 2 * n_pairs,
            "client_workers": max(1, min(args.workers, n_pairs)),
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "records": args.records,
            "queries": args.queries,
            "callbacks": args.callbacks,
            "quick": args.quick,
            "callback_workers": args.callback_workers_list[0],
        },
    }
    try:
        # Callbacks first: the 2 GB the records part writes would otherwise still be
        # flushed to disk under the call load and slow the server's writes.
        if args.duration > 0:
            out.update(callbacks_runs(args, tmp, app, key))
        if args.records > 0:
            out.update(records_phase(args, tmp, app, key))
    finally:
        if args.keep:
            u.log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


MAX_CALLBACK_WORKERS = 16


def _worker_counts(text: str) -> list[str]:
    """``--callback-workers``: "auto", "0" or "auto,0,1": distinct values (auto or
    integers 0..16), order kept."""
    out: list[str] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "auto":
            if part in out:
                raise argparse.ArgumentTypeError(f"{text!r}: auto is given twice")
            out.append(part)
            continue
        try:
            n = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: each value must be auto or an integer 0..{MAX_CALLBACK_WORKERS}, comma-separated"
            ) from None
        if not 0 <= n <= MAX_CALLBACK_WORKERS:
            raise argparse.ArgumentTypeError(f"{text!r}: {n} is not in 0..{MAX_CALLBACK_WORKERS}")
        if str(n) in out:
            raise argparse.ArgumentTypeError(f"{text!r}: {n} is given twice")
        out.append(str(n))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rate", type=float, default=TARGET_RATE, help="calls/s of the call load (default 500)")
    p.add_argument(
        "--duration", type=float, default=None, help="seconds of call load (default 20; --quick 4; 0 skips)"
    )
    p.add_argument("--warmup", type=float, default=None, help="seconds of load before (default 3; --quick 1)")
    p.add_argument(
        "--calls-baseline",
        type=float,
        default=None,
        help="seconds of the same call load before callbacks are configured (default 10; --quick 0)",
    )
    p.add_argument(
        "--callbacks",
        default="v4",
        help="which callbacks to configure: v4 (all 3 commands: 4 per call, 2,000/s at 500 calls/s, the"
        " load the targets are stated for), v1 (all actions: 8 more per call) or v4,v1 (default v4)",
    )
    p.add_argument("--users", type=int, default=400, help="simulated users, 2 per call (default 400)")
    p.add_argument("--workers", type=int, default=3, help="client processes (default 3)")
    p.add_argument(
        "--callback-workers",
        type=_worker_counts,
        default=["auto"],
        metavar="N[,N...]",
        dest="callback_workers_list",
        help="ringline serve --callback-workers N: N processes deliver the callbacks, 0: the"
        " server's event loop (default auto: serve's default, the flag is not passed). A list, e.g. auto,0,"
        " runs part 1 once per value in that order, each against a fresh server; the calls and"
        " receiver baselines are measured in the first run only (--profile FILE: FILE.cbwN per run)",
    )
    p.add_argument(
        "--stall",
        type=float,
        default=None,
        help="capacity: after the load, the receiver answers nothing for S s under the same load"
        " (default 3; --quick 2; 0 skips)",
        metavar="S",
    )
    p.add_argument(
        "--after-stall",
        type=float,
        default=None,
        help="seconds the load goes on after the stall (default 10; --quick 4)",
        metavar="S",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=None,
        help="max wait for the outbox (default 180 s; --quick 30)",
    )
    p.add_argument(
        "--baseline-duration",
        type=float,
        default=None,
        help="seconds of the receiver baseline (default 5; --quick 2)",
    )
    p.add_argument(
        "--records",
        type=int,
        default=None,
        help="records to seed (default 1,000,000; --quick 100,000; 0 skips)",
    )
    p.add_argument(
        "--queries", type=int, default=None, help="get_record_by_filter requests (default 500; --quick 200)"
    )
    p.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="S", help="first wait up to S s for a quiet CPU"
    )
    p.add_argument(
        "--profile", metavar="FILE", help="py-spy the server during the call load; collapsed stacks to FILE"
    )
    p.add_argument("--profile-records", metavar="FILE", help="py-spy the server during the record queries")
    p.add_argument("--quick", action="store_true", help="small and short: a smoke check in < 60 s")
    p.add_argument("--keep", action="store_true", help="keep the temp data dirs (server logs, SQLite files)")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)"
    )
    args = p.parse_args(argv)
    q = args.quick
    args.duration = args.duration if args.duration is not None else (4.0 if q else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if q else 3.0)
    args.calls_baseline = args.calls_baseline if args.calls_baseline is not None else (0.0 if q else 10.0)
    args.stall = args.stall if args.stall is not None else (2.0 if q else 3.0)
    args.after_stall = args.after_stall if args.after_stall is not None else (4.0 if q else 10.0)
    if not 0 <= args.stall <= 8:
        p.error("--stall must be between 0 and 8 s (the server gives up on a request after 10 s)")
    args.drain_timeout = args.drain_timeout if args.drain_timeout is not None else (30.0 if q else 180.0)
    args.baseline_duration = (
        args.baseline_duration if args.baseline_duration is not None else (2.0 if q else 5.0)
    )
    args.records = args.records if args.records is not None else (100_000 if q else 1_000_000)
    args.queries = args.queries if args.queries is not None else (200 if q else 500)
    if args.rate <= 0 or args.users < 2:
        p.error("--rate must be > 0 and --users at least 2")
    args.kinds = {k.strip() for k in args.callbacks.split(",") if k.strip()}
    if not args.kinds or not args.kinds <= {"v4", "v1"}:
        p.error("--callbacks takes v4, v1 or v4,v1")
    if args.wait_quiet > 0:
        busy = u.wait_quiet(args.wait_quiet)
        u.log(f"machine at {busy:.0f}% of a core before the start")
    t0 = time.monotonic()
    r = run(args)
    r["wall_s"] = round(time.monotonic() - t0, 1)
    r["targets"] = {
        "callbacks_per_s": f">= {TARGET_CALLBACKS_PER_S:.0f}, every planned callback delivered",
        "lag_p99_ms": f"<= {TARGET_LAG_P99_MS:.0f} at {TARGET_RATE:.0f} calls/s",
        "filter_p99_ms": f"<= {TARGET_FILTER_P99_MS:.0f} over 1,000,000 records",
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
    if len(sys.argv) == 4 and sys.argv[1] == "receiver" and sys.argv[2] == "--port":
        u.run_async(_receiver_main(int(sys.argv[3])))
    elif len(sys.argv) == 6 and sys.argv[1] == "blast":
        res = u.run_async(_blast_main(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])))
        print(json.dumps(res))
    else:
        raise SystemExit(main())
