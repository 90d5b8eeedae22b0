"""``ringline serve --sfu janus=A --sfu janus=B`` when the Janus holding a call's room dies
and does not come back: the server marks it down (failed health probes), makes the room on
the other Janus with new tokens (a new ``on_sfu`` for every member), and the call goes
on; with no Janus up the call still goes on, and the first Janus that answers again is
back in rotation and gets the room. Real Janus processes, killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from janus_peer import Peer
from janusproc import SECRET, JanusProcess, running
from test_sfu_server import _until_event, group_call, sfu_info

from rawclient import Raw
from restclient import admin_post, fail_of
from ringline.server.sfu import JanusClient, JanusError, room_id, room_secret
from serverproc import ServerProcess

pytestmark = pytest.mark.timeout(180)

#: How long the server may take to notice a dead Janus and move the room, or to notice a
#: Janus back (its probes back off up to 10 s): generous, for a loaded machine.
MOVE = 30.0


@pytest.fixture
async def clients() -> AsyncIterator[list[Raw]]:
    made: list[Raw] = []
    yield made
    for c in made:
        await c.close()


def kill(j: JanusProcess) -> None:
    """SIGKILL, not restarted (until the test says so)."""
    assert j.proc is not None
    j.proc.kill()
    j.proc.wait()


class Look:
    """The test's own view of the Janus processes: a fresh client per look (a client
    that failed to reach a dead Janus marks it down, as the server's do)."""

    def __init__(self, js: dict[str, JanusProcess]) -> None:
        self.js = js
        self.made: list[JanusClient] = []

    def __call__(self, name: str) -> JanusClient:
        self.made.append(JanusClient(self.js[name].url, SECRET))
        return self.made[-1]

    async def holders(self, room: str, *names: str) -> list[str]:
        """Which of ``names`` (all by default) have ``room`` (a dead Janus has nothing)."""
        got = []
        for name in names or self.js:
            try:
                if await self(name).exists(room):
                    got.append(name)
            except JanusError:
                continue
        return got

    async def close(self) -> None:
        for jc in self.made:
            await jc.close()


async def test_a_room_moves_off_a_dead_janus_and_a_janus_back_up_takes_rooms_again(
    tmp_path: Path, clients: list[Raw]
) -> None:
    js = {n: JanusProcess(tmp_path / n) for n in ("A", "B")}
    (tmp_path / "srv").mkdir()
    args = ["--sfu-secret", SECRET, "--log-level", "INFO"]
    for j in js.values():
        args += ["--sfu", f"janus={j.url}"]
    srv = ServerProcess(tmp_path / "srv", extra_args=args)
    look = Look(js)
    try:
        for j in js.values():
            j.start()
        srv.start()
        cid, members = await group_call(clients, srv)
        room = room_id(cid)
        secret = room_secret(SECRET, room)
        first = {u: (await sfu_info(cl, cid))["token"] for cl, u in members}
        on = await look.holders(room)
        assert len(on) == 1, on
        x = on[0]
        y = "B" if x == "A" else "A"

        # The Janus holding the room dies: the room is made on the other one, every
        # member gets a new token there (the old ones are not in its list).
        kill(js[x])
        moved = {}
        for cl, u in members:
            info = await sfu_info_within(cl, cid, MOVE)
            assert info["room"] == room and info["id"] == u
            moved[u] = info["token"]
        assert await look.holders(room) == [y]
        assert sorted(await look(y).allowed(room, secret, "add", [])) == sorted(moved.values())
        assert not set(first.values()) & set(moved.values())
        (a, ua), (b, ub), (c, uc) = members
        peer = await asyncio.to_thread(Peer, js[y].url)
        refused = await asyncio.to_thread(peer.join, room, ub, first[ub])  # an old token
        assert refused.get("error_code") == 433, refused
        joined = await asyncio.to_thread(peer.join, room, ub, moved[ub])
        assert joined.get("videoroom") == "joined", joined
        await asyncio.to_thread(peer.leave)

        # The other Janus dies too: no Janus is up, and the call goes on (a member hangs
        # up, the others hear it; media requests are refused: there is no room).
        kill(js[y])
        await c.ok("hangup", call_id=cid)
        await a.event("on_user_leave", call_id=cid, user_id=uc)
        await b.event("on_user_leave", call_id=cid, user_id=uc)
        deadline = asyncio.get_running_loop().time() + MOVE
        r = await a.request("sfu", call_id=cid, data={"type": "publish", "sdp": "v=0"})
        while r.get("code") == -1406 and asyncio.get_running_loop().time() < deadline:
            # Janus's death not noticed yet (-1406: Janus unreachable); the server's view
            # of another process has no event to await.
            await asyncio.sleep(0.5)
            r = await a.request("sfu", call_id=cid, data={"type": "publish", "sdp": "v=0"})
        assert not r["ok"] and r["code"] == -1203 and "wait for on_sfu" in r["message"], r

        # The first Janus comes back (a new process, no rooms): it is back in rotation,
        # and the call that waited for a Janus gets its room there, with new tokens for
        # the two members still connected.
        js[x].start()
        back = {}
        for cl, u in ((a, ua), (b, ub)):
            info = await sfu_info_within(cl, cid, MOVE)
            assert info["room"] == room
            back[u] = info["token"]
        assert await look.holders(room) == [x]
        assert sorted(await look(x).allowed(room, secret, "add", [])) == sorted(back.values())
        assert not set(back.values()) & (set(moved.values()) | set(first.values()))

        # The call ends normally: the room is destroyed, the record is there.
        await a.ok("hangup", call_id=cid)
        await b.event("on_call_end", call_id=cid)
        assert not await look(x).exists(room)
        status, answer = await admin_post(
            srv, "/v4/call_record_http_srv/get_record_by_callid", json.dumps({"CallId": cid})
        )
        assert status == 200 and fail_of("v4", answer) == (0, ""), answer
        assert answer["Response"]["CallRecord"]["CallResult"] == "NormalEnd", answer
        for cl, _ in members:
            assert cl.names(cid).count("on_call_begin") == 1, cl.names(cid)
        log = srv.log()
        assert f"Janus {js[x].url} is down" in log and f"Janus {js[x].url} answers again" in log, log
    finally:
        await look.close()
        srv.kill()
        for j in js.values():
            j.stop()


async def sfu_info_within(client: Raw, cid: str, timeout: float) -> dict[str, Any]:
    ev = await client.event("on_sfu", call_id=cid, timeout=timeout)
    assert ev["args"]["sfu"] is not None, ev
    return dict(ev["args"]["sfu"])


async def test_a_restarted_server_takes_over_the_room_of_a_call_now_below_the_threshold(
    tmp_path: Path, clients: list[Raw]
) -> None:
    # A call of three gets its room; one member leaves (two left: the room stays); the
    # server restarts: the two get new tokens in the same room, and its end destroys it.
    with running(tmp_path / "janus") as janus:
        srv = ServerProcess(
            tmp_path / "srv",
            heartbeat_grace=30.0,
            extra_args=["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET],
        )
        look = Look({"J": janus})
        try:
            srv.start()
            cid, members = await group_call(clients, srv)
            room = room_id(cid)
            for cl, _ in members:
                await sfu_info(cl, cid)
            (a, ua), (b, ub), (c, uc) = members
            await c.ok("hangup", call_id=cid)
            await a.event("on_user_leave", call_id=cid, user_id=uc)
            assert srv.stop() == 0
            assert await look.holders(room) == ["J"]
            srv.start()
            fresh = {}
            for cl, u in ((a, ua), (b, ub)):
                cl.consumed = len(cl.events)
                await cl.connect()
                await cl.ok("resume", session=cl.session, sfu=True)
                fresh[u] = (await sfu_info_within(cl, cid, MOVE))["token"]
            allowed = await look("J").allowed(room, room_secret(SECRET, room), "add", [])
            assert sorted(allowed) == sorted(fresh.values())
            peer = await asyncio.to_thread(Peer, janus.url)
            joined = await asyncio.to_thread(peer.join, room, ub, fresh[ub])
            assert joined.get("videoroom") == "joined", joined
            await a.ok("hangup", call_id=cid)
            await b.event("on_call_end", call_id=cid)
            destroyed = await asyncio.to_thread(_until_event, peer, "destroyed")
            assert destroyed.get("room") == room
            await asyncio.to_thread(peer.leave)
            assert await look.holders(room) == []
        finally:
            await look.close()
            srv.kill()
