"""``--sfu`` with ``--cluster``: real nodes (PostgreSQL + NATS) and a real Janus. Only the
node that owns the calls manages their rooms: a group call gets its room and tokens that
Janus honours; when the owner is killed (SIGKILL), the node that takes the calls over
takes the room over (same room, the old tokens revoked, new ones handed out), and
destroys it when the call ends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sfu"))

from janus_peer import Peer
from janusproc import SECRET, JanusProcess, running
from test_sfu_server import _until_event, hang_up_all, sfu_info

from clusterproc import ClusterProcess, wait_owner
from rawclient import Raw, logged_in
from ringline.server.sfu import JanusClient, room_id, room_secret

pytestmark = pytest.mark.timeout(180)

LEASE = 1.5


@pytest.fixture
def janus(tmp_path: Path) -> Iterator[JanusProcess]:
    with running(tmp_path / "janus") as j:
        yield j


@pytest.fixture
def cluster(tmp_path: Path, janus: JanusProcess) -> Iterator[ClusterProcess]:
    c = ClusterProcess(
        tmp_path,
        2,
        lease=LEASE,
        own_nats=True,
        heartbeat_grace=8.0,
        extra_args=("--sfu", f"janus={janus.url}", "--sfu-secret", SECRET, "--log-level", "INFO"),
    ).start()
    try:
        yield c
    finally:
        c.kill()


@pytest.fixture
async def clients() -> AsyncIterator[list[Raw]]:
    made: list[Raw] = []
    yield made
    for c in made:
        await c.close()


def sfu_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "ringline.server.sfu" in line]


async def test_the_owner_manages_the_room_and_the_next_owner_takes_it_over(
    cluster: ClusterProcess, janus: JanusProcess, clients: list[Raw]
) -> None:
    assert cluster.owner() == 0
    owner, edge = cluster.nodes
    # Alice reaches the owner, Bob and Carol the edge (relayed to the owner).
    cid, members = await _call_across(clients, cluster)
    room = room_id(cid)
    secret = room_secret(SECRET, room)
    jc = JanusClient(janus.url, SECRET)
    try:
        first = {u: (await sfu_info(cl, cid))["token"] for cl, u in members}
        assert len(set(first.values())) == 3
        assert sorted(await jc.allowed(room, secret, "add", [])) == sorted(first.values())
        peer = await asyncio.to_thread(Peer, janus.url)
        (a, ua), (b, ub), (c, uc) = members
        joined = await asyncio.to_thread(peer.join, room, ub, first[ub])
        assert joined.get("videoroom") == "joined", joined
        await asyncio.to_thread(peer.leave)
        # Only the owner talks to Janus: the edge made no room, took none over.
        assert sfu_lines(edge.log()) == [], edge.log()
        assert any("created on" in line for line in sfu_lines(owner.log())), owner.log()

        # The owner dies: node 1 takes the calls over, and with them the room (the same
        # room on the same Janus, not a new one); every member resumes there and gets a
        # new token, the old ones no longer admit anyone.
        owner.kill()
        took, _ = await wait_owner(cluster, 0, LEASE + 15)
        assert took == 1
        fresh = {}
        for cl, u in members:
            cl.srv = edge
            cl.consumed = len(cl.events)
            await cl.connect()
            await cl.ok("resume", session=cl.session, sfu=True)
            info = await sfu_info(cl, cid)
            assert info["room"] == room and info["id"] == u
            fresh[u] = info["token"]
        assert sorted(await jc.allowed(room, secret, "add", [])) == sorted(fresh.values())
        assert not set(first.values()) & set(fresh.values())
        lines = sfu_lines(edge.log())
        assert any(f"SFU room {room} taken over" in line for line in lines), lines
        assert not any("created on" in line for line in lines), lines
        peer = await asyncio.to_thread(Peer, janus.url)
        refused = await asyncio.to_thread(peer.join, room, uc, first[uc])
        assert refused.get("error_code") == 433, refused
        joined = await asyncio.to_thread(peer.join, room, uc, fresh[uc])
        assert joined.get("videoroom") == "joined", joined

        # The call ends on the new owner: it destroys the room (Carol's participant,
        # still in it, hears so).
        await hang_up_all(members, cid)
        destroyed = await asyncio.to_thread(_until_event, peer, "destroyed")
        assert destroyed.get("room") == room
        await asyncio.to_thread(peer.leave)
        assert not await jc.exists(room)
        assert room not in [r["room"] for r in await jc.list_rooms()]
    finally:
        await jc.close()


async def _call_across(clients: list[Raw], cluster: ClusterProcess) -> tuple[str, list[tuple[Raw, str]]]:
    """A 3-member call: Alice on the owner (node 0), Bob and Carol on the edge (node 1)."""
    owner, edge = cluster.nodes
    a, ua = await logged_in(owner, clients, "alice", sfu=True)
    b, ub = await logged_in(edge, clients, "bob", sfu=True)
    c, uc = await logged_in(edge, clients, "carol", sfu=True)
    cid = (await a.ok("calls", user_ids=[ub, uc], media_type=1))["call_id"]
    for cl in (b, c):
        await cl.event("on_call_received", call_id=cid)
        await cl.ok("accept", call_id=cid)
    return cid, [(a, ua), (b, ub), (c, uc)]
