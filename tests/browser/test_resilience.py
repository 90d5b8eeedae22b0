"""What the browser engine does when things break: a member whose media vanishes is
graded DOWN, a muted member's volume is 0, and a server restart mid-call leaves the
media running and the call usable, a request whose answer is lost in a drop is
answered after the resume, and an engine given several server URLs (proxies in front
of the server, as nodes of a cluster) logs in past a dead one and resumes on the next
one, round robin, after a node dies, leaves (1012) or says "try again" (1013)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from browserkit import NetnsServer, User

#: The proxy of tests/wsproxy.py, run as a process inside the namespace.
PROXY = Path(__file__).resolve().parents[1] / "wsproxy.py"

AUDIO = 1
VIDEO = 2
DOWN = 6


async def connected(users: Any) -> tuple[User, User, str]:
    a, b = await users(2)
    cid = (await a.ok("calls", [b.user_id], VIDEO))["callId"]
    await b.event("onCallReceived", callID=cid)
    await b.ok("accept")
    for me, other in ((a, b), (b, a)):
        await me.event("onUserEnter", callID=cid, userID=other.user_id)
        await me.wait("(rl, u) => rl.stats[u] && rl.stats[u].framesDecoded > 3", other.user_id)
    return a, b, cid


def latest_quality(user_id: str) -> tuple[str, str]:
    return (
        "(rl, u) => { const e = rl.events.filter((e) => e.name === 'onUserNetworkQualityChanged').pop();"
        " const x = e && e.p.networkQualityList.find((q) => q.userId === u); return x ? x.quality : -1; }",
        user_id,
    )


async def test_a_member_whose_media_vanishes_is_graded_down(users: Any) -> None:
    a, b, cid = await connected(users)
    expr, arg = latest_quality(b.user_id)
    await a.wait(f"(rl, u) => [1, 2].includes(({expr})(rl, u))", arg)
    # b's side of the connection disappears without a word (a crashed tab, a dead network).
    await b.js("(rl, u) => rl.engine.getPeerConnection(u).close()", a.user_id)
    await a.wait(f"(rl, u) => ({expr})(rl, u) === {DOWN}", arg, timeout=20)


async def test_a_muted_member_has_volume_zero(users: Any) -> None:
    a, b, cid = await connected(users)
    heard = (
        "(rl, u) => rl.events.filter((e) => e.name === 'onUserVoiceVolume').slice(-8)"
        ".map((e) => e.p.volumeMap.find((v) => v.userId === u)).filter(Boolean).map((v) => v.audioVolume)"
    )
    await b.wait(f"(rl, u) => ({heard})(rl, u).some((v) => v > 0)", a.user_id)
    await a.ok("closeMicrophone")
    await b.event("onUserAudioAvailable", userID=a.user_id, isAudioAvailable=False)
    # The last eight readings (~2.4 s) on both sides: all 0 (a sends silence).
    await a.wait(
        f"(rl, u) => {{ const v = ({heard})(rl, u); return v.length === 8 && v.every((x) => x === 0); }}",
        a.user_id,
    )
    await b.wait(
        f"(rl, u) => {{ const v = ({heard})(rl, u); return v.length === 8 && v.every((x) => x === 0); }}",
        a.user_id,
    )
    await a.ok("openMicrophone")
    await b.event("onUserAudioAvailable", userID=a.user_id, isAudioAvailable=True)


async def test_a_server_restart_mid_call_keeps_media_and_the_call_usable(
    users: Any, web_server: NetnsServer
) -> None:
    a, b, cid = await connected(users)
    assert web_server.stop() == 0  # SIGTERM: the server drains and closes connections with 1001
    for me in (a, b):
        await me.event("onConnectionChanged", state="reconnecting")
    n = await a.js("(rl, u) => rl.stats[u].framesDecoded", b.user_id)
    await a.wait(
        "(rl, x) => rl.stats[x.u].framesDecoded > x.n + 10", {"u": b.user_id, "n": n}
    )  # peer to peer
    web_server.start()
    for me in (a, b):
        await me.event("onConnectionChanged", state="online", resumed=True, timeout=30)
    await a.ok("switchCallMediaType", 1)
    await b.event("onCallTypeChanged", callID=cid, newCallType=1)
    await a.ok("hangup")
    end = await b.event("onCallEnd", callID=cid)
    assert end["p"]["userID"] == a.user_id


async def test_a_request_whose_answer_is_lost_in_a_drop_is_answered_after_the_resume(users: Any) -> None:
    a, b = await users(2)
    # The socket is closed right after `calls` is sent: a closing WebSocket delivers no
    # more messages, so its answer is lost; the engine resumes and sends it again.
    await a.js(
        "(rl) => { const ws = rl.engine._ws; const send = ws.send.bind(ws);"
        " ws.send = (t) => { send(t); if (JSON.parse(t).op === 'calls') { rl.cut = t; ws.close(); } }; }"
    )
    cid = (await a.ok("calls", [b.user_id], AUDIO))["callId"]
    assert await a.js("(rl) => JSON.parse(rl.cut).op") == "calls"
    await a.event("onConnectionChanged", state="online", resumed=True)
    await b.event("onCallReceived", callID=cid)
    await b.ok("accept")
    await a.event("onCallBegin", callID=cid)
    assert (await b.names()).count("onCallReceived") == 1  # placed once
    await a.ok("hangup")
    await b.event("onCallEnd", callID=cid)


async def test_a_request_made_while_reconnecting_survives_a_second_drop(users: Any) -> None:
    a, b = await users(2)
    # The first `set_self_info` frame any socket sends closes that socket at once: its
    # answer is lost.
    await a.js(
        "(rl) => { const send = WebSocket.prototype.send; rl.cuts = 0;"
        " WebSocket.prototype.send = function (t) { send.call(this, t);"
        " if (JSON.parse(t).op === 'set_self_info' && rl.cuts++ === 0) this.close(); }; }"
    )
    # The socket is closing when the request is made, so it waits, unsent, for the
    # resume; it goes out on the resumed session, whose socket then drops too; after the
    # second resume it is sent once more and answered.
    state = await a.js(
        "(rl) => { rl.engine._ws.close(4000, 'test drop');"
        " rl.answer = rl.engine._request('set_self_info', {nickname: 'Alice', avatar: ''})"
        ".then(() => 'answered', (e) => e.message); return rl.engine._ws.readyState; }"
    )
    assert state == 2  # CLOSING: the request could not be sent on it
    assert await a.js("(rl) => rl.answer") == "answered"
    assert await a.js("(rl) => rl.cuts") == 2  # sent on the resumed socket, then again
    resumes = [e for e in await a.js("(rl) => rl.events") if e["name"] == "onConnectionChanged"]
    assert [e["p"].get("resumed") for e in resumes if e["p"].get("state") == "online"][-2:] == [True, True]


class NetnsProxies:
    """``tests/wsproxy.py`` run inside the namespace: n proxies in front of the server,
    each standing in for a node of a cluster, driven through the process's stdin."""

    def __init__(self, proc: asyncio.subprocess.Process, ports: list[int]) -> None:
        self.proc = proc
        self.urls = [f"http://127.0.0.1:{p}" for p in ports]

    @classmethod
    async def start(cls, ns: str, upstream_port: int, n: int) -> NetnsProxies:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, sys.executable, str(PROXY), str(upstream_port), str(n),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("ready "), line
        return cls(proc, [int(p) for p in line.split()[1:]])

    async def do(self, *command: object) -> None:
        """Send one command (``kill I``, ``close I CODE``, ``refuse I CODE``); wait for its ``ok``."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((" ".join(map(str, command)) + "\n").encode())
        await self.proc.stdin.drain()
        async with asyncio.timeout(15):
            assert (await self.proc.stdout.readline()).decode().strip() == "ok"

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def test_server_urls_login_past_a_dead_one_and_resume_on_the_next_round_robin(
    users: Any, web_server: NetnsServer
) -> None:
    proxies = await NetnsProxies.start(web_server.ns, web_server.port, 4)
    try:
        p = proxies.urls
        await proxies.do("kill", 3)  # nothing listens there
        urls = [p[3], p[0], p[1], p[2]]
        (a,) = await users(1, prefix="a", server_url=urls)
        (b,) = await users(1, prefix="b")
        assert await a.js("(rl) => [rl.engine.serverUrl, rl.engine.serverUrls]") == [p[0], urls]
        cid = (await a.ok("calls", [b.user_id], AUDIO))["callId"]
        await b.event("onCallReceived", callID=cid)
        await b.ok("accept")
        await a.event("onCallBegin", callID=cid)
        await a.event("onUserAudioAvailable", userID=b.user_id, isAudioAvailable=True)

        # Node 0 dies; node 1 cannot take the session yet (1013): a resumes on node 2,
        # and what b did meanwhile arrives once.
        await proxies.do("refuse", 1, 1013)
        await proxies.do("kill", 0)
        await b.ok("closeMicrophone")
        await a.event("onUserAudioAvailable", userID=b.user_id, isAudioAvailable=False)
        assert await a.js("(rl) => rl.engine.serverUrl") == p[2]

        # Node 2 leaves (1012): a moves on at once, past the dead ones, to node 1 again.
        await proxies.do("refuse", 1, 0)
        await proxies.do("close", 2, 1012)
        await a.wait(
            "(rl, u) => rl.engine.serverUrl === u && rl.events.filter((e) =>"
            " e.name === 'onConnectionChanged' && e.p.state === 'online').length === 3",
            p[1],
            timeout=30,
        )
        await b.ok("openMicrophone")
        await a.wait(
            "(rl, u) => rl.events.filter((e) =>"
            " e.name === 'onUserAudioAvailable' && e.p.userID === u).length === 3",
            b.user_id,
        )
        await a.ok("hangup")
        await b.event("onCallEnd", callID=cid)
        await a.event("onCallEnd", callID=cid)

        events = await a.js("(rl) => rl.events")
        online = [
            e["p"] for e in events if e["name"] == "onConnectionChanged" and e["p"]["state"] == "online"
        ]
        assert [o["resumed"] for o in online] == [False, True, True]  # the login, two resumes
        audio = [
            e["p"]["isAudioAvailable"]
            for e in events
            if e["name"] == "onUserAudioAvailable" and e["p"]["userID"] == b.user_id
        ]
        assert audio == [True, False, True]  # every push once, in order
        names = [e["name"] for e in events]
        assert names.count("onCallBegin") == 1 and names.count("onCallEnd") == 1
    finally:
        await proxies.stop()
