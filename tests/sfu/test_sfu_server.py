"""``ringline serve --sfu janus=URL --sfu-secret …`` against a real Janus: a call of 3
members gets a room when it starts and each connected member its own token (``on_sfu``);
a member who leaves is revoked and kicked; the room is destroyed when the call ends; a
1v1 call gets none; a restarted server takes the rooms of live calls over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from janus_peer import Peer
from janusproc import SECRET, JanusProcess, running

from rawclient import Raw, logged_in
from ringline.server.sfu import JanusClient, room_id, room_secret
from serverproc import ServerProcess


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JanusProcess]:
    with running(tmp_path_factory.mktemp("janus")) as j:
        yield j


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, janus: JanusProcess) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        tmp_path_factory.mktemp("srv"),
        extra_args=["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET, "--log-level", "INFO"],
    ).start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture
async def clients() -> AsyncIterator[list[Raw]]:
    made: list[Raw] = []
    yield made
    for c in made:
        await c.close()


@pytest.fixture
async def jc(janus: JanusProcess) -> AsyncIterator[JanusClient]:
    c = JanusClient(janus.url, SECRET)
    yield c
    await c.close()


async def group_call(
    clients: list[Raw], server: ServerProcess, sfu: bool = True
) -> tuple[str, list[tuple[Raw, str]]]:
    """Alice calls Bob and Carol, both accept; the call id and the three (client, user).
    ``sfu``: their devices say they follow SFU rooms."""
    a, ua = await logged_in(server, clients, "alice", sfu=sfu)
    b, ub = await logged_in(server, clients, "bob", sfu=sfu)
    c, uc = await logged_in(server, clients, "carol", sfu=sfu)
    cid = (await a.ok("calls", user_ids=[ub, uc], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await c.event("on_call_received", call_id=cid)
    await b.ok("accept", call_id=cid)
    await c.ok("accept", call_id=cid)
    return cid, [(a, ua), (b, ub), (c, uc)]


async def hang_up_all(members: list[tuple[Raw, str]], cid: str) -> None:
    """Every member hangs up (the call ends when one is left)."""
    for cl, _ in members:
        await cl.request("hangup", call_id=cid)
    await members[-1][0].event("on_call_end", call_id=cid)


async def sfu_info(client: Raw, cid: str) -> dict[str, Any]:
    ev = await client.event("on_sfu", call_id=cid)
    return dict(ev["args"]["sfu"])


async def test_a_group_call_gets_a_room_tokens_kicks_and_its_end_destroys_it(
    server: ServerProcess, janus: JanusProcess, jc: JanusClient, clients: list[Raw]
) -> None:
    cid, members = await group_call(clients, server)
    room = room_id(cid)
    infos = {user: await sfu_info(cl, cid) for cl, user in members}
    for user, info in infos.items():
        assert info["room"] == room and info["id"] == user and set(info) == {"room", "token", "id"}
        assert "secret" not in info
    assert len({i["token"] for i in infos.values()}) == 3
    # Media requests the server refuses before asking Janus.
    a0 = members[0][0]
    for data, code in (
        ({"type": "dance"}, -1202),
        ({"type": "publish", "sdp": "not sdp"}, -1202),
        ({"type": "subscribe", "feed": members[1][1]}, -1202),  # publishes nothing (yet)
        ({"type": "start", "feed": members[1][1], "sdp": "v=0"}, -1202),  # not subscribed
        ({"type": "configure", "video": "no"}, -1202),  # not a boolean
        ({"type": "configure", "video": False}, -1202),  # nothing published yet
    ):
        r = await a0.request("sfu", call_id=cid, data=data)
        assert not r["ok"] and r["code"] == code, (data, r)
    assert await jc.exists(room)
    secret = room_secret(SECRET, room)
    assert sorted(await jc.allowed(room, secret, "add", [])) == sorted(i["token"] for i in infos.values())

    # Each member's token admits it; none without.
    (a, ua), (b, ub), (c, uc) = members
    peers = {u: await asyncio.to_thread(Peer, janus.url) for u in (ub, uc)}
    refused = await asyncio.to_thread(peers[ub].join, room, ub, None)
    assert refused.get("error_code") == 433, refused
    for u in (ub, uc):
        joined = await asyncio.to_thread(peers[u].join, room, u, infos[u]["token"])
        assert joined.get("videoroom") == "joined", joined
    assert sorted(p["id"] for p in await jc.participants(room)) == sorted([ub, uc])

    # Carol hangs up: her token is revoked and she is kicked out of the room.
    await c.ok("hangup", call_id=cid)
    kicked = await asyncio.to_thread(_until_event, peers[uc], "leaving")
    assert kicked.get("reason") == "kicked", kicked
    assert [p["id"] for p in await jc.participants(room)] == [ub]
    assert sorted(await jc.allowed(room, secret, "add", [])) == sorted(
        [infos[ua]["token"], infos[ub]["token"]]
    )

    # The call ends: the room is destroyed (Bob, still in it, hears so).
    await a.ok("hangup", call_id=cid)  # Bob alone: the call ends
    await b.event("on_call_end", call_id=cid)
    destroyed = await asyncio.to_thread(_until_event, peers[ub], "destroyed")
    assert destroyed.get("room") == room
    assert not await jc.exists(room)
    assert room not in [r["room"] for r in await jc.list_rooms()]
    for p in peers.values():
        await asyncio.to_thread(p.leave)


def _until_event(peer: Peer, key: str) -> dict[str, Any]:
    """The first VideoRoom event of ``peer`` whose data has ``key`` (or is of that kind)."""
    for _ in range(20):
        ev = peer.event()
        data = ev.get("plugindata", {}).get("data", {})
        if key in data or data.get("videoroom") == key:
            return dict(data)
    raise AssertionError(f"no {key} event")


async def test_a_1v1_call_stays_peer_to_peer(
    server: ServerProcess, jc: JanusClient, clients: list[Raw]
) -> None:
    a, _ = await logged_in(server, clients, "dan", sfu=True)
    b, ub = await logged_in(server, clients, "eve", sfu=True)
    one = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
    await b.event("on_call_received", call_id=one)
    await b.ok("accept", call_id=one)
    await a.event("on_user_join", call_id=one, user_id=ub)
    # A group call afterwards gets its room (the 1v1 call's turn came first).
    cid, members = await group_call(clients, server)
    await sfu_info(members[0][0], cid)
    rooms = [r["room"] for r in await jc.list_rooms()]
    assert room_id(cid) in rooms and room_id(one) not in rooms
    assert "on_sfu" not in a.names(one) + b.names(one)
    r = await a.request("sfu", call_id=one, data={"type": "publish", "sdp": "v=0"})
    assert not r["ok"] and r["code"] == -1203 and "no SFU room" in r["message"], r
    await hang_up_all(members, cid)
    await a.ok("hangup", call_id=one)


async def test_a_restarted_server_takes_the_room_over(
    tmp_path: Path, janus: JanusProcess, jc: JanusClient, clients: list[Raw]
) -> None:
    srv = ServerProcess(
        tmp_path, heartbeat_grace=30.0, extra_args=["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET]
    ).start()
    try:
        cid, members = await group_call(clients, srv)
        room = room_id(cid)
        old = {u: (await sfu_info(cl, cid))["token"] for cl, u in members}
        assert srv.stop() == 0  # SIGTERM: the call stays live in the store, the room in Janus
        assert await jc.exists(room)
        srv.start()
        fresh = {}
        for cl, u in members:
            cl.consumed = len(cl.events)
            await cl.connect()
            await cl.ok("resume", session=cl.session, sfu=True)
            fresh[u] = (await sfu_info(cl, cid))["token"]
        # The same room; the tokens handed out before the restart no longer admit anyone.
        assert sorted(await jc.allowed(room, room_secret(SECRET, room), "add", [])) == sorted(fresh.values())
        assert not set(old.values()) & set(fresh.values())
        await hang_up_all(members, cid)
    finally:
        srv.kill()


async def test_a_room_janus_lost_is_made_again(tmp_path: Path, clients: list[Raw]) -> None:
    # Janus restarts mid-call (its rooms are gone); at the next change in the call the
    # server makes the room again and hands every connected member a new token.
    with running(tmp_path / "janus") as janus:
        (tmp_path / "srv").mkdir()
        srv = ServerProcess(
            tmp_path / "srv", extra_args=["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET]
        ).start()
        jc = JanusClient(janus.url, SECRET)
        try:
            a, ua = await logged_in(srv, clients, "fay", sfu=True)
            others = [await logged_in(srv, clients, n, sfu=True) for n in ("gus", "hal", "ivy")]
            ids = [u for _, u in others]
            cid = (await a.ok("calls", user_ids=ids, media_type=1))["call_id"]
            for cl, _ in others[:2]:
                await cl.event("on_call_received", call_id=cid)
                await cl.ok("accept", call_id=cid)
            first = {u: (await sfu_info(cl, cid))["token"] for cl, u in [(a, ua), *others[:2]]}
            janus.stop()
            janus.start()
            assert not await jc.exists(room_id(cid))
            ivy, uivy = others[2]
            await ivy.event("on_call_received", call_id=cid)
            await ivy.ok("accept", call_id=cid)
            again = {u: (await sfu_info(cl, cid))["token"] for cl, u in [(a, ua), *others]}
            assert await jc.exists(room_id(cid))
            room = room_id(cid)
            assert sorted(await jc.allowed(room, room_secret(SECRET, room), "add", [])) == sorted(
                again.values()
            )
            assert not set(first.values()) & set(again.values())
            await hang_up_all([(a, ua), *others], cid)
        finally:
            await jc.close()
            srv.kill()


async def test_a_device_that_does_not_follow_rooms_keeps_the_call_in_the_mesh(
    server: ServerProcess, jc: JanusClient, clients: list[Raw]
) -> None:
    # Devices that do not say "sfu": true at login (the browser engine, for now): no room.
    plain, members = await group_call(clients, server, sfu=False)
    # A call with a room, then such a device joins: the room goes, every member hears
    # on_sfu with sfu null (back to the mesh), and the call stays in the mesh.
    cid, members2 = await group_call(clients, server)
    for cl, _ in members2:
        await sfu_info(cl, cid)
    assert room_id(plain) not in [r["room"] for r in await jc.list_rooms()]
    assert "on_sfu" not in [n for cl, _ in members for n in cl.names(plain)]
    assert await jc.exists(room_id(cid))
    d, ud = await logged_in(server, clients, "dora")
    await members2[0][0].ok("invite_user", call_id=cid, user_ids=[ud])
    await d.event("on_call_received", call_id=cid)
    await d.ok("accept", call_id=cid)
    for cl, _ in members2:
        ev = await cl.event("on_sfu", call_id=cid)
        assert ev["args"]["sfu"] is None
    await d.ok("hangup", call_id=cid)
    await members2[0][0].event("on_user_leave", call_id=cid, user_id=ud)
    rooms = [r["room"] for r in await jc.list_rooms()]
    assert room_id(cid) not in rooms  # and not made again after Dora left
    assert "on_sfu" not in d.names(cid)
    await hang_up_all(members2, cid)
    await hang_up_all(members, plain)
