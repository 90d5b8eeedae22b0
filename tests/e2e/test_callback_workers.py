"""``ringline serve --callback-workers N``: callbacks delivered by worker processes.

Against real processes: the server, its workers, SDK clients and the receiver of
tests/callback_receiver.py (signatures checked with ``standardwebhooks``). What must
hold: everything arrives signed and in per-call order whatever the number of workers; a
worker killed with SIGKILL is restarted and what it held goes out again at once, also
with other workers running (whose claims stay theirs); no
worker outlives its server, whether the server stops or is killed; bad flag values are
refused with the fix.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from callbackkit import Admin, Receiver, log_in, server_args, talk
from test_callbacks import _all_delivered, check_order_and_signatures, day_of_calls

from ringline.cli import main
from ringline.client import CallEngine
from ringline.server.worker import CONFIG_ENV, RESTART_FIRST, WorkerConfig, parse_attempts
from serverproc import ServerProcess, free_port


def workers_of(server: ServerProcess) -> list[psutil.Process]:
    assert server.proc is not None
    return psutil.Process(server.proc.pid).children()


def call_of(event: dict[str, Any]) -> str:
    call = event.get("CallId") or event.get("CallInfo", {}).get("CallId") or event["CallRecord"]["CallId"]
    return str(call)


def claim_owner_of(worker: psutil.Process) -> str:
    """The claim owner the server gave ``worker`` (in its configuration)."""
    return WorkerConfig.from_json(worker.environ()[CONFIG_ENV]).claim_owner


def outbox_claims(db: Path) -> dict[str, tuple[str, str, float]]:
    """Event id -> (state, claimed_by, leased_until) of every delivery ever claimed, read
    straight from the server's SQLite file (the admin API does not show claim owners)."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        rows = conn.execute(
            "SELECT event_id, state, claimed_by, leased_until FROM outbox WHERE claimed_by != ''"
        )
        return {str(e): (str(st), str(o), float(lu)) for e, st, o, lu in rows}
    finally:
        conn.close()


def in_flight_by(claims: dict[str, tuple[str, str, float]], owner: str) -> dict[str, float]:
    """Event id -> lease end of the in-flight claims of ``owner``."""
    return {e: lu for e, (st, o, lu) in claims.items() if st == "in_flight" and o == owner}


async def until_held(db: Path, owners: dict[int, str], timeout: float = 30.0) -> int:
    """The pid of the first of ``owners`` seen holding in-flight claims. Claims show
    nowhere but in the store, so it re-reads the store, bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        claims = outbox_claims(db)
        for pid, owner in owners.items():
            if in_flight_by(claims, owner):
                return pid
        assert time.monotonic() < deadline, f"no claims of {sorted(owners.values())} within {timeout} s"
        await asyncio.sleep(0.05)


def freeze(db: Path, pid: int) -> None:
    """SIGSTOP worker ``pid``, at a moment it holds no SQLite write transaction (or
    the server's writes would wait for it)."""
    for _ in range(50):
        os.kill(pid, signal.SIGSTOP)
        conn = sqlite3.connect(db, timeout=2.0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.kill(pid, signal.SIGCONT)  # stopped mid-write: let it finish, try again
        finally:
            conn.close()
    raise AssertionError(f"worker {pid} was always writing")


def healthz(server: ServerProcess) -> dict[str, Any]:
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
        return data


def start_server(tmp_path: Path, workers: int, db: str = "") -> ServerProcess:
    return ServerProcess(
        tmp_path / "srv", db=db, extra_args=[*server_args(), "--callback-workers", str(workers)]
    ).start()


async def test_two_workers_deliver_a_day_of_calls_signed_and_in_order(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = start_server(tmp_path, 2)
    receiver = await Receiver(free_port()).start()
    engines: list[CallEngine] = []
    try:
        assert healthz(server)["callback_workers"] == {
            "configured": 2,
            "on_demand": False,
            "running": 2,
            "restarts": 0,
        }
        workers = workers_of(server)
        assert len(workers) == 2
        admin = Admin(server, session)
        await admin.subscribe(receiver.url)

        async def users(n: int) -> list[Any]:
            return await log_in(server, n, engines)

        expected = await day_of_calls(users, admin)
        ids = {d["EventId"] for d in await admin.deliveries()}
        await receiver.wait_until(lambda: ids <= receiver.ids(), "every planned callback")
        check_order_and_signatures(receiver.hits)
        assert len(receiver.hits) == len(ids)  # no claim was handed to two workers
        await admin.eventually(lambda: _all_delivered(admin, len(ids)), "all recorded as Delivered")
        assert {call_of(h["event"]) for h in receiver.hits} == set(expected)
    finally:
        for e in engines:
            await e.uninit()
        await receiver.stop()
        assert server.stop() == 0
    # The server waited for its workers to hand back their claims and exit.
    assert not [w for w in workers if w.is_running()], "a worker outlived its server's shutdown"


async def test_a_killed_worker_is_restarted_and_what_it_held_goes_out_at_once(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = start_server(tmp_path, 1)
    # Every request after the third is held: the kill surely comes while callbacks wait.
    receiver = await Receiver(free_port()).start(hold_after=3)
    engines: list[CallEngine] = []
    try:
        admin = Admin(server, session)
        await admin.subscribe(receiver.url)
        (a, ra, _), (b, rb, ub) = await log_in(server, 2, engines)
        for _ in range(4):
            await talk(a, ra, b, rb, ub)
        planned = {d["EventId"] for d in await admin.deliveries()}
        await receiver.wait_until(lambda: len(receiver.hits) >= 3, "the first callbacks")
        (worker,) = workers_of(server)
        worker.kill()
        worker.wait(10)
        assert not planned <= receiver.ids(), "the kill must come while callbacks are still waiting"
        receiver.release()

        async def restarted() -> bool:
            h = healthz(server)["callback_workers"]
            return bool(h["restarts"] == 1 and h["running"] == 1)

        await admin.eventually(restarted, "the worker restarted")
        (again,) = workers_of(server)
        assert again.pid != worker.pid
        # Within half the claim lease (60 s): the server handed the dead worker's claims
        # back instead of letting them expire.
        await receiver.wait_until(lambda: planned <= receiver.ids(), "everything after the restart", 30.0)
        check_order_and_signatures(receiver.hits)
        await admin.eventually(lambda: _all_delivered(admin, len(planned)), "all delivered")
        assert "callback worker 0 (pid" in server.log() and "exited with code -9" in server.log()
    finally:
        for e in engines:
            await e.uninit()
        await receiver.stop()
        server.kill()


async def test_with_two_workers_a_killed_workers_claims_go_out_at_once_and_the_others_stay(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = start_server(tmp_path, 2)
    db = tmp_path / "srv" / "ringline.db"
    receiver = await Receiver(free_port()).start(delay=1.0)  # slow: claims stay in flight
    engines: list[CallEngine] = []
    victim: psutil.Process | None = None
    try:
        admin = Admin(server, session)
        await admin.subscribe(receiver.url)
        owners = {w.pid: claim_owner_of(w) for w in workers_of(server)}
        assert len(owners) == 2 and all(owners.values()) and len(set(owners.values())) == 2
        pairs = [await log_in(server, 2, engines) for _ in range(6)]
        first, second = pairs[:3], pairs[3:]
        await asyncio.gather(*(talk(a, ra, b, rb, ub) for (a, ra, _), (b, rb, ub) in first))
        # Who holds which claim is only visible in the store: re-read it, bounded.
        victim_pid = await until_held(db, owners)
        victim = psutil.Process(victim_pid)
        # Freeze that worker, so its claims stay in flight, and let the other one claim
        # the callbacks of three more calls: then both hold claims.
        freeze(db, victim_pid)
        await asyncio.gather(*(talk(a, ra, b, rb, ub) for (a, ra, _), (b, rb, ub) in second))
        (survivor_pid,) = set(owners) - {victim_pid}
        await until_held(db, {survivor_pid: owners[survivor_pid]})
        claims = outbox_claims(db)
        victims = in_flight_by(claims, owners[victim_pid])
        kept = in_flight_by(claims, owners[survivor_pid])
        assert victims and kept
        planned = {d["EventId"] for d in await admin.deliveries()}
        victim.kill()
        victim.wait(10)

        async def restarted() -> bool:
            h = healthz(server)["callback_workers"]
            return bool(h["restarts"] == 1 and h["running"] == 2)

        await admin.eventually(restarted, "the worker restarted")
        # The pool handed the dead owner's claims back before restarting it: none is in
        # flight under that owner any more (its lease of 60 s has not nearly run out).
        after = outbox_claims(db)
        assert in_flight_by(after, owners[victim_pid]) == {}
        # The survivor's claims were not touched: each still has its owner and, if not
        # finished yet, its lease; none was handed back and claimed again.
        for event_id, lease_end in kept.items():
            state, owner, lease_now = after[event_id]
            assert owner == owners[survivor_pid], event_id
            assert state == "delivered" or (state, lease_now) == ("in_flight", lease_end), event_id

        await receiver.wait_until(lambda: planned <= receiver.ids(), "everything after the kill", 30.0)
        check_order_and_signatures(receiver.hits)
        await admin.eventually(lambda: _all_delivered(admin, len(planned)), "all delivered")
        sent = [h["id"] for h in receiver.hits]
        assert all(sent.count(e) == 1 for e in kept), "a live worker's claim was sent twice"
        assert set(victims) <= receiver.ids()
        assert "callback worker" in server.log() and "exited with code -9" in server.log()
    finally:
        if victim is not None and victim.is_running():
            victim.kill()  # a frozen worker would not see its server's pipe close
        for e in engines:
            await e.uninit()
        await receiver.stop()
        server.kill()


async def test_workers_on_postgresql_share_the_outbox_without_sending_anything_twice(
    tmp_path: Path, pg_url: str, session: aiohttp.ClientSession
) -> None:
    server = start_server(tmp_path, 3, db=pg_url)
    receiver = await Receiver(free_port()).start(delay=0.02)
    engines: list[CallEngine] = []
    try:
        admin = Admin(server, session)
        await admin.subscribe(receiver.url)
        pairs = [await log_in(server, 2, engines) for _ in range(3)]
        # Three pairs calling at once: callbacks of different calls spread over the workers.
        for _ in range(3):
            await asyncio.gather(*(talk(a, ra, b, rb, ub) for (a, ra, _), (b, rb, ub) in pairs))
        planned = {d["EventId"] for d in await admin.deliveries()}
        await receiver.wait_until(lambda: planned <= receiver.ids(), "every planned callback")
        check_order_and_signatures(receiver.hits)
        assert len(receiver.hits) == len(planned)  # SKIP LOCKED: no claim went to two workers
        await admin.eventually(lambda: _all_delivered(admin, len(planned)), "all recorded as Delivered")
        assert healthz(server)["callback_workers"]["running"] == 3
    finally:
        for e in engines:
            await e.uninit()
        await receiver.stop()
        assert server.stop() == 0


def test_no_worker_outlives_a_killed_server(tmp_path: Path) -> None:
    server = start_server(tmp_path, 2)
    workers = workers_of(server)
    assert len(workers) == 2 and all("ringline.server.worker" in " ".join(w.cmdline()) for w in workers)
    server.kill()  # SIGKILL: no shutdown code runs; the workers see their pipe close
    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"workers still running after their server was killed: {alive}"


@pytest.mark.parametrize(
    ("value", "db", "message"),
    [
        ("two", "", "a whole number of processes"),
        ("-1", "", "0 to 16"),
        ("17", "", "0 to 16"),
        ("1", "sqlite:///:memory:", "in-memory SQLite"),
    ],
)
def test_bad_worker_counts_are_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, db: str, message: str
) -> None:
    argv = ["serve", "--data-dir", str(tmp_path), "--callback-workers", value]
    if db:
        argv += ["--db", db]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--callback-workers" in err and message in err


def test_a_worker_started_by_hand_says_how_it_is_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    r = subprocess.run(
        [sys.executable, "-m", "ringline.server.worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert "ringline serve --callback-workers" in r.stderr
    with pytest.raises(ValueError, match="RINGLINE_WORKER_CONFIG"):
        WorkerConfig.from_json('{"db_url": "sqlite://"}')
    config = WorkerConfig("sqlite:///x.db", 1, "tok", ("whsec_a",), (1.0, 5.0), 3600.0, index=1)
    assert WorkerConfig.from_json(config.to_json()) == config


def test_without_callbacks_the_default_runs_no_worker_and_zero_means_in_process(tmp_path: Path) -> None:
    """The default (``auto``) on this multi-core machine: one worker, started when
    callbacks are first queued, so a server without callbacks runs no extra process;
    ``--callback-workers 0`` delivers from the server's own event loop."""
    assert len(os.sched_getaffinity(0)) > 1, "this test needs a machine with more than one core"
    server = ServerProcess(tmp_path / "srv").start()
    try:
        assert healthz(server)["callback_workers"] == {
            "configured": 1,
            "on_demand": True,
            "running": 0,
            "restarts": 0,
        }
        assert workers_of(server) == []
    finally:
        server.stop()
    server = ServerProcess(tmp_path / "srv0", extra_args=["--callback-workers", "0"]).start()
    try:
        assert healthz(server)["callback_workers"] == {
            "configured": 0,
            "on_demand": False,
            "running": 0,
            "restarts": 0,
        }
        assert workers_of(server) == []
    finally:
        server.stop()


async def test_by_default_a_worker_starts_with_the_first_callbacks_and_delivers_them(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Default flags: no worker until the app's first callbacks are queued; then one
    process delivers them, signed and in order, and stops with the server."""
    server = ServerProcess(tmp_path / "srv", extra_args=server_args()).start()
    receiver = await Receiver(free_port()).start()
    engines: list[CallEngine] = []
    workers: list[psutil.Process] = []
    try:
        admin = Admin(server, session)
        await admin.subscribe(receiver.url)
        [(a, ra, _ua), (b, rb, ub)] = await log_in(server, 2, engines)
        assert workers_of(server) == [] and healthz(server)["callback_workers"]["running"] == 0
        cid = await talk(a, ra, b, rb, ub)
        ids = {d["EventId"] for d in await admin.deliveries()}
        assert ids
        await receiver.wait_until(lambda: ids <= receiver.ids(), "every planned callback")
        check_order_and_signatures(receiver.hits)
        assert {call_of(h["event"]) for h in receiver.hits} == {cid}
        assert len(receiver.hits) == len(ids)
        h = healthz(server)["callback_workers"]
        assert h == {"configured": 1, "on_demand": True, "running": 1, "restarts": 0}, h
        workers = workers_of(server)
        assert len(workers) == 1 and "ringline.server.worker" in " ".join(workers[0].cmdline())
    finally:
        for e in engines:
            await e.uninit()
        await receiver.stop()
        assert server.stop() == 0
    assert not [w for w in workers if w.is_running()], "the worker outlived its server's shutdown"


def test_one_core_delivers_in_process_by_default(tmp_path: Path) -> None:
    """On one core (``taskset``), ``auto`` means no worker process at all."""
    taskset = shutil.which("taskset")
    assert taskset is not None, "taskset (util-linux) is needed"
    server = ServerProcess(tmp_path / "srv", extra_args=server_args())
    server.args = [taskset, "-c", "0", *server.args]
    server.start()
    try:
        assert healthz(server)["callback_workers"]["configured"] == 0
    finally:
        server.stop()


def test_worker_attempt_reports_are_parsed_and_anything_else_ignored() -> None:
    assert parse_attempts(b"[[200,0.002,0.1],[null,5.0,null],[503,0.1,null]]\n") == [
        (200, 0.002, 0.1),
        (None, 5.0, None),
        (503, 0.1, None),
    ]
    for junk in (b"", b"hello\n", b"{}", b"[1,2,3]", b'[["200",0.1,null],[200,"x",null],[200]]'):
        assert parse_attempts(junk) == []


async def test_a_worker_that_keeps_dying_is_restarted_after_growing_delays(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """--callback-workers: a worker that exits on its own is restarted after 1 s, then
    2 s, then 4 s … (RESTART_FIRST doubling up to RESTART_MAX), never sooner; the log
    says each delay and /healthz counts the restarts."""
    server = start_server(tmp_path, 1)
    admin = Admin(server, session)
    try:
        expected = [RESTART_FIRST * 2**i for i in range(3)]
        assert expected == [1.0, 2.0, 4.0]
        for n, delay in enumerate(expected, 1):
            (worker,) = workers_of(server)
            killed = time.monotonic()
            worker.kill()
            worker.wait(10)

            async def restarted(n: int = n) -> bool:
                h = healthz(server)["callback_workers"]
                return bool(h["restarts"] == n and h["running"] == 1)

            await admin.eventually(restarted, f"restart {n}")
            waited = time.monotonic() - killed
            assert waited >= delay * 0.95, f"restart {n} after {waited:.2f} s, before its {delay} s delay"
            (again,) = workers_of(server)
            assert again.pid != worker.pid
        said = re.findall(r"exited with code -9 after \d+ s; restarting it in (\d+) s", server.log())
        announced = [float(x) for x in said]
        assert announced == expected, server.log()
    finally:
        server.kill()
