"""A cluster of real nodes loses one: SIGKILL, SIGTERM (drain), SIGSTOP past the lease,
NATS gone for a while. Every device must see exactly one begin and one end per call
(I1), no push lost or repeated across the move, and every call gets exactly one record.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterproc import ClusterProcess, connections, moved, wait_owner
from ringline import CallEndReason, CallEngine, MediaType
from ringline.testing import RecordingObserver
from serverproc import SDK_APP_ID, unique

LEASE = 1.5


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    c = ClusterProcess(tmp_path, 3, lease=LEASE, own_nats=True, heartbeat_grace=6.0).start()
    try:
        yield c
    finally:
        c.kill()


User = tuple[CallEngine, RecordingObserver, str]
Users = list[User]


@pytest.fixture
async def engines() -> AsyncIterator[list[CallEngine]]:
    made: list[CallEngine] = []
    yield made
    for e in made:
        await e.uninit()


async def _user(
    cluster: ClusterProcess, made: list[CallEngine], first: int
) -> tuple[CallEngine, RecordingObserver, str]:
    """A user whose engine knows every node, starting with node ``first``."""
    u = unique("u")
    urls = cluster.urls[first:] + cluster.urls[:first]
    e = CallEngine(urls, device_id=f"{u}-d", request_timeout=20.0)
    rec = RecordingObserver()
    e.add_observer(rec)
    await e.init(SDK_APP_ID, u, cluster.sig(u))
    made.append(e)
    return e, rec, u


def _mics_off(rec: RecordingObserver, cid: str) -> int:
    return sum(
        1
        for ev in rec.events_for(cid)
        if ev.name == "on_user_audio_available" and not ev.kwargs["is_audio_available"]
    )


def _names(rec: RecordingObserver, cid: str, name: str) -> int:
    return sum(1 for ev in rec.events_for(cid) if ev.name == name)


async def _records(cluster: ClusterProcess, cid: str) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(cluster.db)
    try:
        rows = await conn.fetch("SELECT record FROM ringline.calls WHERE call_id = $1", cid)
    finally:
        await conn.close()
    return [json.loads(r["record"]) for r in rows]


async def _connected_call(cluster: ClusterProcess, made: list[CallEngine]) -> tuple[Users, str]:
    """A 1v1 call between a user on an edge and one on the other edge (the owner is node 0)."""
    assert cluster.owner() == 0
    a = await _user(cluster, made, 1)
    b = await _user(cluster, made, 2)
    cid = await a[0].calls([b[2]], MediaType.AUDIO)
    await b[1].wait_for("on_call_received", call_id=cid)
    await b[0].accept()
    await a[1].wait_for("on_call_begin", call_id=cid)
    await b[1].wait_for("on_call_begin", call_id=cid)
    return [a, b], cid


async def _finish_and_check(cluster: ClusterProcess, users: Users, cid: str) -> None:
    """Hang up after the move: each side hears one begin and one end; one record."""
    (a, ra, _), (_b, rb, _) = users
    await a.hangup()
    await ra.wait_for("on_call_end", call_id=cid, timeout=20)
    await rb.wait_for("on_call_end", call_id=cid, timeout=20)
    for rec in (ra, rb):
        assert _names(rec, cid, "on_call_begin") == 1, rec.events_for(cid)
        assert _names(rec, cid, "on_call_end") == 1, rec.events_for(cid)
    records = await _records(cluster, cid)
    assert len(records) == 1 and records[0]["result"] == "NormalEnd", records


@pytest.mark.parametrize("who", ["owner", "edge"])
async def test_a_connected_call_survives_sigkill_of_a_node(
    cluster: ClusterProcess, engines: list[CallEngine], who: str
) -> None:
    users, cid = await _connected_call(cluster, engines)
    victim = 0 if who == "owner" else 1
    cluster.nodes[victim].kill()
    if who == "owner":
        _, took = await wait_owner(cluster, 0, LEASE + 10)
        # failover time: from the kill until another node owns the calls
        # failover time, from the kill until another node owns the calls: lease + 2 s at
        # most (measured here: about the lease, as the dead owner renewed last)
        assert took <= LEASE + 2.0, took
    # the microphone goes off after the move: the other side hears it exactly once
    (a, ra, _), (_b, rb, ub) = users
    await users[1][0].close_microphone()
    await ra.wait_for(
        "on_user_audio_available", call_id=cid, user_id=ub, is_audio_available=False, timeout=20
    )
    await _finish_and_check(cluster, users, cid)
    assert _mics_off(ra, cid) == 1


async def test_a_ringing_call_survives_sigkill_of_the_owner(
    cluster: ClusterProcess, engines: list[CallEngine]
) -> None:
    a, ra, _ = await _user(cluster, engines, 1)
    b, rb, ub = await _user(cluster, engines, 2)
    cid = await a.calls([ub], MediaType.VIDEO)
    await rb.wait_for("on_call_received", call_id=cid)
    cluster.nodes[0].kill()
    _, took = await wait_owner(cluster, 0, LEASE + 10)
    assert took <= LEASE + 2.0, took  # failover time: lease + 2 s at most
    await b.accept()  # sent to whichever node owns the call now
    await ra.wait_for("on_call_begin", call_id=cid, timeout=20)
    await rb.wait_for("on_call_begin", call_id=cid, timeout=20)
    assert _names(rb, cid, "on_call_received") == 1
    await _finish_and_check(cluster, [(a, ra, ""), (b, rb, ub)], cid)


async def test_sigterm_of_the_owner_hands_every_session_over(
    cluster: ClusterProcess, engines: list[CallEngine]
) -> None:
    """Drain: the owner's own clients too (one user sits on it) move without a lost push."""
    a, ra, _ = await _user(cluster, engines, 0)  # on the owner itself
    b, rb, ub = await _user(cluster, engines, 1)
    cid = await a.calls([ub], MediaType.AUDIO)
    await rb.wait_for("on_call_received", call_id=cid)
    await b.accept()
    await ra.wait_for("on_call_begin", call_id=cid)
    stopping = asyncio.create_task(asyncio.to_thread(cluster.nodes[0].stop))
    # requests keep coming while the owner drains; each is answered exactly once
    for _ in range(3):
        await b.close_microphone()
        await b.open_microphone()
    assert await stopping == 0, cluster.log()
    await wait_owner(cluster, 0, LEASE + 10)
    await _finish_and_check(cluster, [(a, ra, ""), (b, rb, ub)], cid)
    seen = [
        ev.kwargs["is_audio_available"] for ev in ra.events_for(cid) if ev.name == "on_user_audio_available"
    ]
    assert seen[-6:] == [False, True] * 3 and seen.count(False) == 3, seen


async def test_an_owner_paused_past_its_lease_is_fenced_and_steps_down(
    cluster: ClusterProcess, engines: list[CallEngine]
) -> None:
    users, cid = await _connected_call(cluster, engines)
    before = connections(users)
    pid = cluster.nodes[0].proc.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGSTOP)
    try:
        new, _ = await wait_owner(cluster, 0, LEASE + 10)
    finally:
        os.kill(pid, signal.SIGCONT)
    # the old owner learns it lost the calls and says so
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        h = await asyncio.to_thread(cluster.health, 0)
        if h["cluster"]["role"] == "edge":
            break
        await asyncio.sleep(0.05)  # polling another process's state
    else:
        raise AssertionError(f"the paused owner did not step down: {cluster.log()}")
    assert h["cluster"]["owner"] in (None, f"n{new}")
    # its clients' connections close (1012) and they move on; a request sent into that
    # move could not be answered (the new owner restored without a handover), so hang up
    # once both are served again
    await moved(users, before)
    await _finish_and_check(cluster, users, cid)
    log = cluster.nodes[0].log()
    assert "stops owning the calls" in log


async def test_calls_go_on_while_nats_is_down(cluster: ClusterProcess, engines: list[CallEngine]) -> None:
    """NATS only carries hints: with it gone, a call starts and goes on; it comes back."""
    assert cluster.nats is not None
    users, cid = await _connected_call(cluster, engines)
    cluster.nats.kill()
    (a, ra, _), (b, rb, ub) = users
    await b.close_microphone()
    await ra.wait_for("on_user_audio_available", call_id=cid, user_id=ub, is_audio_available=False)
    more, cid2 = await _connected_call(cluster, engines)
    cluster.nats.start()  # same port: the nodes reconnect
    await _finish_and_check(cluster, more, cid2)
    await _finish_and_check(cluster, users, cid)


async def test_sigterm_of_an_edge_under_load_moves_its_clients(
    cluster: ClusterProcess, engines: list[CallEngine]
) -> None:
    """Four calls whose callers all sit on node 1; node 1 drains while their requests flow."""
    pairs = []
    for _ in range(4):
        a = await _user(cluster, engines, 1)
        b = await _user(cluster, engines, 2)
        cid = await a[0].calls([b[2]], MediaType.AUDIO)
        await b[1].wait_for("on_call_received", call_id=cid)
        await b[0].accept()
        await a[1].wait_for("on_call_begin", call_id=cid)
        pairs.append(([a, b], cid))
    busy = [asyncio.create_task(users[0][0].close_microphone()) for users, _ in pairs]
    assert await asyncio.to_thread(cluster.nodes[1].stop) == 0, cluster.log()
    await asyncio.gather(*busy)  # each answered exactly once, before or after the move
    for users, cid in pairs:
        ub = users[1][2]
        await users[1][1].wait_for(
            "on_user_audio_available", call_id=cid, user_id=users[0][2], is_audio_available=False, timeout=20
        )
        assert _mics_off(users[1][1], cid) == 1
        await _finish_and_check(cluster, users, cid)
        assert ub


async def test_admin_rest_answers_the_same_on_every_node(
    cluster: ClusterProcess, engines: list[CallEngine]
) -> None:
    import aiohttp

    users, cid = await _connected_call(cluster, engines)

    async def post(node: int, command: str, body: dict[str, Any]) -> dict[str, Any]:
        q = f"sdkappid={SDK_APP_ID}&identifier=administrator&usersig={cluster.sig('administrator')}&random=1"
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{cluster.urls[node]}/v4/{command}?{q}", json=body) as r,
        ):
            assert r.status == 200, await r.text()
            data: dict[str, Any] = await r.json()
            return data

    for node in range(3):
        nodes = await post(node, "call_engine_http_srv/get_nodes", {})
        assert nodes["ActionStatus"] == "OK", nodes
        listed = nodes["Response"]["NodeList"]
        assert nodes["Response"]["Mode"] == "Cluster"
        assert sorted(n["NodeId"] for n in listed) == ["n0", "n1", "n2"]
        assert [n["NodeId"] for n in listed if n["Role"] == "Owner"] == ["n0"]
        assert all(n["Lease"] == "Held" for n in listed)
        info = await post(node, "call_engine_http_srv/get_call_info", {"CallId": cid})
        assert info["ActionStatus"] == "OK", info
    # end_call through an edge for a call owned elsewhere
    ended = await post(2, "call_engine_http_srv/end_call", {"CallId": cid})
    assert ended["ActionStatus"] == "OK", ended
    for _e, rec, _u in users:
        await rec.wait_for("on_call_end", call_id=cid, timeout=20)
    records = await _records(cluster, cid)
    assert len(records) == 1


@pytest.fixture
def cluster_own_pg(tmp_path: Path) -> Iterator[ClusterProcess]:
    c = ClusterProcess(tmp_path, 2, lease=LEASE, own_pg=True, heartbeat_grace=8.0).start()
    try:
        yield c
    finally:
        c.kill()


@pytest.mark.parametrize("down_for", [0.0, 3 * LEASE])
async def test_a_call_survives_a_postgresql_restart(
    cluster_own_pg: ClusterProcess, engines: list[CallEngine], down_for: float
) -> None:
    """PostgreSQL stops and comes back: the owner holds every event back meanwhile; down
    longer than the lease, the owner steps down (its clients move and wait); once it is
    back a node owns the calls and the call ends normally."""
    cluster = cluster_own_pg
    assert cluster.pg is not None
    a = await _user(cluster, engines, 0)
    b = await _user(cluster, engines, 1)
    cid = await a[0].calls([b[2]], MediaType.AUDIO)
    await b[1].wait_for("on_call_received", call_id=cid)
    await b[0].accept()
    await a[1].wait_for("on_call_begin", call_id=cid)
    before = connections([a, b])
    await asyncio.to_thread(cluster.pg.stop)
    if down_for:
        await asyncio.sleep(down_for)  # the outage itself: a duration, not a wait for an event
    await asyncio.to_thread(cluster.pg.start)
    if down_for:
        await moved([a, b], before)
    await _finish_and_check(cluster, [a, b], cid)


async def test_two_callers_on_two_nodes_calling_one_callee_at_once(
    cluster: ClusterProcess, engines: list[CallEngine]
) -> None:
    """One authority decides: one call rings, the other caller hears busy."""
    a, ra, _ = await _user(cluster, engines, 1)
    c, rc, _ = await _user(cluster, engines, 2)
    b, rb, ub = await _user(cluster, engines, 0)
    cids = await asyncio.gather(a.calls([ub], MediaType.AUDIO), c.calls([ub], MediaType.AUDIO))
    got = await rb.wait_for("on_call_received")
    rang = got["call_id"]
    assert rang in cids
    busy, rbusy = (c, rc) if rang == cids[0] else (a, ra)
    lost = cids[1] if rang == cids[0] else cids[0]
    ended = await rbusy.wait_for("on_call_not_connected", call_id=lost, timeout=20)
    assert ended["reason"] == CallEndReason.LINE_BUSY, ended
    assert rb.events_for(lost) == []
    assert busy.call_id != rang


@pytest.fixture
def cluster_with_metrics(tmp_path: Path) -> Iterator[ClusterProcess]:
    c = ClusterProcess(tmp_path, 2, lease=LEASE, extra_args=("--metrics",)).start()
    try:
        yield c
    finally:
        c.kill()


async def test_each_node_exports_its_role_in_the_metrics(
    cluster_with_metrics: ClusterProcess, engines: list[CallEngine]
) -> None:
    import urllib.request

    cluster = cluster_with_metrics
    await _user(cluster, engines, 1)  # relayed by node 1

    def sample(node: int, name: str) -> float:
        with urllib.request.urlopen(cluster.urls[node] + "/metrics", timeout=5) as r:
            text = r.read().decode()
        return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))

    assert await asyncio.to_thread(sample, 0, "ringline_cluster_owner") == 1
    assert await asyncio.to_thread(sample, 1, "ringline_cluster_owner") == 0
    assert await asyncio.to_thread(sample, 1, "ringline_cluster_epoch") == 1
    assert await asyncio.to_thread(sample, 1, "ringline_cluster_relayed_connections") == 1
    assert await asyncio.to_thread(sample, 0, "ringline_connections") == 1


async def test_sigterm_of_the_owner_under_continuous_call_load(
    cluster: ClusterProcess, engines: list[CallEngine]
) -> None:
    """Pairs call, answer and hang up in a loop while the owner drains and hands over.

    Nothing is lost across the move: every call a caller started connects, both sides
    hear exactly one begin and one end, and every call has exactly one NormalEnd record.
    """
    pairs: list[tuple[User, User]] = []
    for first, second in ((0, 1), (1, 2), (2, 0), (1, 0)):
        pairs.append((await _user(cluster, engines, first), await _user(cluster, engines, second)))
    done: list[str] = []
    progress = asyncio.Condition()
    stop = asyncio.Event()

    async def wait_done(n: int) -> None:
        async with progress:
            await asyncio.wait_for(progress.wait_for(lambda: len(done) >= n), 60)

    async def loop(caller: User, callee: User) -> None:
        (a, ra, _), (b, rb, ub) = caller, callee
        while not stop.is_set():
            cid = await a.calls([ub], MediaType.AUDIO)
            await rb.wait_for("on_call_received", call_id=cid, timeout=20)
            await b.accept()
            await ra.wait_for("on_call_begin", call_id=cid, timeout=20)
            await rb.wait_for("on_call_begin", call_id=cid, timeout=20)
            await a.hangup()
            await ra.wait_for("on_call_end", call_id=cid, timeout=20)
            await rb.wait_for("on_call_end", call_id=cid, timeout=20)
            async with progress:
                done.append(cid)
                progress.notify_all()

    workers = [asyncio.create_task(loop(caller, callee)) for caller, callee in pairs]
    try:
        await wait_done(8)
        before = len(done)
        assert await asyncio.to_thread(cluster.nodes[0].stop) == 0, cluster.log()
        await wait_owner(cluster, 0, LEASE + 10)
        await wait_done(before + 8)  # calls go on under the new owner
        stop.set()
        await asyncio.gather(*workers)
    finally:
        stop.set()
        for w in workers:
            w.cancel()
    assert len(set(done)) == len(done)
    for (_a, ra, _), (_b, rb, _) in pairs:
        for rec in (ra, rb):
            for cid in {ev.call_id for ev in rec.events if ev.call_id}:
                assert cid in done, (cid, rec.events_for(cid))
                assert _names(rec, cid, "on_call_begin") == 1, rec.events_for(cid)
                assert _names(rec, cid, "on_call_end") == 1, rec.events_for(cid)
    import asyncpg

    conn = await asyncpg.connect(cluster.db)
    try:
        rows = await conn.fetch("SELECT call_id, record FROM ringline.calls WHERE call_id = ANY($1)", done)
    finally:
        await conn.close()
    assert sorted(r["call_id"] for r in rows) == sorted(done)
    assert all(json.loads(r["record"])["result"] == "NormalEnd" for r in rows)
