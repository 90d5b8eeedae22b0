"""server/sfu.py's JanusClient against a real Janus (tests/sfu/janusproc.py): rooms made
and destroyed, members admitted by token and refused without one, kicked, Janus's errors
named, a lost Janus session made again, keepalives that keep one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from janus_peer import Peer
from janusproc import SECRET, JanusProcess, running

from ringline.server.sfu import JanusClient, JanusError, new_token, room_id, room_secret
from serverproc import free_port


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JanusProcess]:
    with running(tmp_path_factory.mktemp("janus")) as j:
        yield j


async def test_room_tokens_kick_destroy(janus: JanusProcess) -> None:
    c = JanusClient(janus.url, SECRET)
    room = room_id("call-a")
    secret = room_secret(SECRET, room)
    try:
        await c.create_room(room, secret, [])
        assert await c.exists(room)
        assert room in [r["room"] for r in await c.list_rooms()]  # private: listed with the admin_key
        alice, bob = new_token(), new_token()
        assert sorted(await c.allowed(room, secret, "add", [alice, bob])) == sorted([alice, bob])

        # A participant with no token, or a wrong one, is refused; with its token it joins.
        peer = await asyncio.to_thread(Peer, janus.url)
        refused = await asyncio.to_thread(peer.join, room, "mallory", None)
        assert refused.get("error_code") == 433, refused  # VIDEOROOM_UNAUTHORIZED
        refused = await asyncio.to_thread(peer.join, room, "mallory", "not-a-token")
        assert refused.get("error_code") == 433, refused
        joined = await asyncio.to_thread(peer.join, room, "alice", alice)
        assert joined.get("videoroom") == "joined", joined
        assert [p["id"] for p in await c.participants(room)] == ["alice"]

        # Revoked and kicked: out of the room, and the token no longer admits anyone.
        assert await c.allowed(room, secret, "remove", [alice]) == [bob]
        assert await c.kick(room, secret, "alice")
        assert await c.participants(room) == []
        assert not await c.kick(room, secret, "alice")  # not there (any more)
        again = await asyncio.to_thread(Peer, janus.url)
        refused = await asyncio.to_thread(again.join, room, "alice", alice)
        assert refused.get("error_code") == 433, refused

        # Only the room's secret edits it.
        with pytest.raises(JanusError) as e:
            await c.allowed(room, "wrong", "add", ["x"])
        assert e.value.name == "VIDEOROOM_UNAUTHORIZED"

        assert await c.destroy(room, secret)
        assert not await c.exists(room)
        assert not await c.destroy(room, secret)  # gone already
        await asyncio.to_thread(peer.leave)
        await asyncio.to_thread(again.leave)
    finally:
        await c.close()


async def test_errors_are_named(janus: JanusProcess) -> None:
    wrong = JanusClient(janus.url, "not-the-secret")
    try:
        with pytest.raises(JanusError) as e:
            await wrong.exists("x")
        assert (e.value.code, e.value.name, e.value.request) == (403, "UNAUTHORIZED", "create")
    finally:
        await wrong.close()
    c = JanusClient(janus.url, SECRET)
    try:
        with pytest.raises(JanusError) as e:  # a room made without the admin_key
            await c.request({"request": "create", "room": "no-key"})
        assert (
            str(e.value)
            == "Janus create: 429 VIDEOROOM_MISSING_ELEMENT: Missing mandatory element (admin_key)"
        )
        await c.create_room("twice", "s", [])
        with pytest.raises(JanusError) as e:
            await c.create_room("twice", "s", [])
        assert e.value.name == "VIDEOROOM_ROOM_EXISTS"
        assert await c.destroy("twice", "s")
    finally:
        await c.close()
    port = free_port()  # nobody listens there
    gone = JanusClient(f"http://127.0.0.1:{port}/janus", SECRET, timeout=3)
    try:
        with pytest.raises(JanusError) as e:
            await gone.exists("x")
        assert e.value.code == 0 and e.value.name == "UNREACHABLE" and "cannot reach" in str(e.value)
    finally:
        await gone.close()


async def test_lost_session_is_made_again(janus: JanusProcess) -> None:
    c = JanusClient(janus.url, SECRET)
    try:
        assert not await c.exists("nothing")
        sid = c.session_id
        assert sid is not None and c.sessions_made == 1
        # Janus forgets the session (as after its restart): the next request makes a new one.
        janus.admin("destroy_session", session_id=sid)
        assert sid not in janus.admin("list_sessions")["sessions"]
        assert not await c.exists("nothing")
        assert c.sessions_made == 2 and c.session_id != sid
    finally:
        await c.close()
    assert c.session_id is None


async def test_keepalive_keeps_the_session(tmp_path: Path) -> None:
    # Janus drops a session silent for session_timeout seconds; the client's keepalives
    # (every 0.5 s here) keep it across several of those.
    with running(tmp_path, session_timeout=2) as janus:
        c = JanusClient(janus.url, SECRET, keepalive=0.5)
        try:
            assert not await c.exists("nothing")
            sid = c.session_id
            await asyncio.sleep(5)  # the point: more than twice Janus's timeout passes
            assert sid in janus.admin("list_sessions")["sessions"]
            assert not await c.exists("nothing")
            assert c.sessions_made == 1
        finally:
            await c.close()
