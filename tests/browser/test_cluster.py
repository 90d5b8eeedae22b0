"""The browser engine against a real cluster: three ``ringline serve --cluster`` nodes on
PostgreSQL and NATS, two browsers in a call through two edges, then an edge killed and
the owner drained mid-call. Each side sees one begin and one end, every push once and
in order, media keeps flowing, and the call has one record.

The network: the nodes need PostgreSQL and NATS, which listen on 127.0.0.1 of the host,
so they run outside the browsers' namespace. The namespace gets a veth pair to the host
instead of only ``lo``: the nodes listen on the host's end (``10.201.X.Y+1``), Chromium
runs inside with the other end (``10.201.X.Y+2``) and ``lo``. The namespace has no
default route, so nothing in it reaches anything but the nodes and itself: the media of
the two browsers (both inside) never leaves the namespace.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import secrets
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browserkit import CHROMIUM, CHROMIUM_ARGS, HARNESS, User, dump, skip_reason

from clusterproc import ClusterProcess, wait_owner
from needs import missing
from serverproc import SDK_APP_ID

AUDIO = 1
LEASE = 1.5
#: A page's events but the periodic ones (for a failure's printout).
QUIET_EVENTS = (
    "(rl) => rl.events.filter((e) => !['onUserVoiceVolume', 'onUserNetworkQualityChanged'].includes(e.name))"
)


@dataclass(frozen=True)
class VethNamespace:
    name: str  #: the namespace (Chromium runs in it)
    link: str  #: the host's end of the veth pair
    host: str  #: the host's address on it: the nodes listen there
    inside: str  #: the namespace's address on the other end


def _ip(*args: str, ns: str = "") -> str:
    cmd = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _taken(net: ipaddress.IPv4Network, mine: str = "") -> bool:
    """Whether an interface of the host other than ``mine`` has an address in ``net``,
    or a route goes there (another test's veth, a VPN …)."""
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        dev, addr = line.split()[1], line.split()[3]
        if dev != mine and ipaddress.ip_interface(addr).network.overlaps(net):
            return True
    for line in _ip("-4", "route", "show", "table", "all").splitlines():
        words = line.split()  # "10.0.0.0/8 dev …", "local 10.0.0.1 dev …", "default via …"
        for word in words[:2]:
            try:
                other = ipaddress.ip_network(word, strict=False)
            except ValueError:
                continue
            if f" dev {mine} " not in f" {line} " and other.overlaps(net):
                return True
            break
    return False


def _make_veth_namespace() -> VethNamespace:
    tag = secrets.token_hex(4)
    name, link, peer = f"rlc-{tag}", f"rlc{tag}a", f"rlc{tag}b"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        _ip("link", "set", "lo", "up", ns=name)
        _ip("link", "add", link, "type", "veth", "peer", "name", peer, "netns", name)
        for _ in range(20):  # a /30 of 10.201.0.0/16 no other interface or route uses
            net = ipaddress.IPv4Network(f"10.201.{random.randrange(256)}.{4 * random.randrange(64)}/30")
            if _taken(net):
                continue
            host, inside = (str(a) for a in net.hosts())
            _ip("addr", "add", f"{host}/30", "dev", link)
            if _taken(net, mine=link):  # another test took it at the same moment
                _ip("addr", "del", f"{host}/30", "dev", link)
                continue
            _ip("link", "set", link, "up")
            _ip("addr", "add", f"{inside}/30", "dev", peer, ns=name)
            _ip("link", "set", peer, "up", ns=name)
            return VethNamespace(name, link, host, inside)
        raise RuntimeError("no free /30 in 10.201.0.0/16 after 20 tries")
    except BaseException:
        _drop_veth_namespace(name, link)
        raise


def _drop_veth_namespace(name: str, link: str) -> None:
    # Deleting one end deletes the pair at once (a namespace's links go asynchronously).
    subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def veth_ns() -> Iterator[VethNamespace]:
    reason = skip_reason()
    if reason:
        missing(reason)  # fails under CI, which installs everything (scripts/test)
    try:
        made = _make_veth_namespace()
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        err = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        missing(f"cannot create a network namespace with a veth pair: {err!s}".strip())
    try:
        yield made
    finally:
        _drop_veth_namespace(made.name, made.link)


@pytest.fixture
def cluster(veth_ns: VethNamespace, tmp_path: Path) -> Iterator[ClusterProcess]:
    c = ClusterProcess(tmp_path, 3, lease=LEASE, own_nats=True, heartbeat_grace=6.0, host=veth_ns.host)
    try:
        c.start()
        yield c
    finally:
        c.kill()


@pytest.fixture
async def browser(veth_ns: VethNamespace, cluster: ClusterProcess, tmp_path: Path) -> AsyncIterator[Any]:
    """Chromium (Playwright) running inside the namespace, as conftest's ``browser``, for
    which the nodes' origins are secure: a page from ``http://10.201.…`` is not (unlike
    ``http://127.0.0.1``), and would have no ``navigator.mediaDevices``."""
    from playwright.async_api import async_playwright

    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {veth_ns.name} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    secure = "--unsafely-treat-insecure-origin-as-secure=" + ",".join(cluster.urls)
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=str(wrapper), args=[*CHROMIUM_ARGS, secure], headless=True
        )
        try:
            yield b
        finally:
            await b.close()


Opener = Callable[[int, str], Awaitable[User]]


@pytest.fixture
async def cluster_user(browser: Any, cluster: ClusterProcess) -> AsyncIterator[Opener]:
    """``await cluster_user(first, prefix)``: a signed-in user whose engine has every
    node's URL, starting with node ``first``, in its own browser context."""
    contexts: list[Any] = []

    async def make(first: int, prefix: str) -> User:
        ctx = await browser.new_context(viewport={"width": 640, "height": 480})
        contexts.append(ctx)
        page = await ctx.new_page()
        page.on("pageerror", lambda e: print("page error:", e))
        # The page comes from node 2, which the test never stops (the engine's scripts
        # are all loaded by rlSetup; a page's origin does not matter to the engine).
        await page.goto(cluster.urls[2] + "/sdk/ringline.js")
        user_id = f"{prefix}{secrets.token_hex(3)}"
        urls = cluster.urls[first:] + cluster.urls[:first]
        await page.add_script_tag(content=HARNESS)
        await page.evaluate(
            "async (a) => { await window.rlSetup(a); }",
            {"sdkAppId": SDK_APP_ID, "userId": user_id, "userSig": cluster.sig(user_id), "serverUrl": urls},
        )
        user = User(page, user_id)
        assert await user.js("(rl) => rl.engine.serverUrl") == urls[0]
        return user

    try:
        yield make
    finally:
        for ctx in contexts:
            await ctx.close()


async def _records(cluster: ClusterProcess, cid: str) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(cluster.db)
    try:
        rows = await conn.fetch("SELECT record FROM ringline.calls WHERE call_id = $1", cid)
    finally:
        await conn.close()
    return [json.loads(r["record"]) for r in rows]


async def _hears(me: User, other: User) -> None:
    """``other``'s microphone is heard by ``me`` now: 20 more packets, and its beep
    (the energy of the received audio grows)."""
    n, energy = await me.wait(
        "(rl, u) => { const s = rl.stats[u];"
        " return s && s.audioPackets > 0 && [s.audioPackets, s.audioEnergy]; }",
        other.user_id,
    )
    await me.wait(
        "(rl, a) => rl.stats[a.u].audioPackets > a.n + 20 && rl.stats[a.u].audioEnergy > a.e",
        {"u": other.user_id, "n": n, "e": energy},
    )


async def _onlines(me: User) -> list[bool]:
    """``resumed`` of every ``onConnectionChanged`` online, in order."""
    events = await me.js("(rl) => rl.events")
    return [
        e["p"]["resumed"]
        for e in events
        if e["name"] == "onConnectionChanged" and e["p"]["state"] == "online"
    ]


async def _online_again(me: User, before: int, timeout: float = 20.0) -> None:
    """``me`` went online again (more than ``before`` times in all) and is online now."""
    await me.wait(
        "(rl, n) => { const s = rl.events"
        ".filter((e) => e.name === 'onConnectionChanged').map((e) => e.p.state);"
        " return s.filter((x) => x === 'online').length > n && s[s.length - 1] === 'online'; }",
        before,
        timeout,
    )


def _audio(events: list[dict[str, Any]], user_id: str) -> list[bool]:
    return [
        e["p"]["isAudioAvailable"]
        for e in events
        if e["name"] == "onUserAudioAvailable" and e["p"]["userID"] == user_id
    ]


async def test_a_browser_call_survives_an_edge_killed_and_the_owner_drained(
    cluster: ClusterProcess, cluster_user: Opener
) -> None:
    assert await asyncio.to_thread(cluster.owner) == 0
    a = await cluster_user(1, "a")  # on edge 1; then 2, 0
    b = await cluster_user(2, "b")  # on edge 2; then 0, 1
    try:
        cid = (await a.ok("calls", [b.user_id], AUDIO))["callId"]
        await b.event("onCallReceived", callID=cid)
        await b.ok("accept")
        for me, other in ((a, b), (b, a)):
            await me.event("onCallBegin", callID=cid)
            await me.event("onUserEnter", callID=cid, userID=other.user_id)
            await _hears(me, other)
        await a.event("onUserAudioAvailable", userID=b.user_id, isAudioAvailable=True)

        # Edge 1 dies: a resumes on node 2 (the next in its list); what b does
        # meanwhile arrives once.
        cluster.nodes[1].kill()
        await _online_again(a, 1)
        assert await a.js("(rl) => rl.engine.serverUrl") == cluster.urls[2]
        await b.ok("closeMicrophone")
        await a.event("onUserAudioAvailable", userID=b.user_id, isAudioAvailable=False)
        await _hears(b, a)  # peer to peer: the move did not touch the media

        # The owner drains (SIGTERM) and hands over: both (relayed by node 2) move on.
        online = [len(await _onlines(me)) for me in (a, b)]
        assert await asyncio.to_thread(cluster.nodes[0].stop) == 0
        assert "NATS connection lost" not in cluster.nodes[0].log()  # it let go of NATS itself
        new, _ = await wait_owner(cluster, 0, LEASE + 10)
        assert new == 2, new  # node 1 is dead
        for me, n in zip((a, b), online, strict=True):
            await _online_again(me, n)
        await b.ok("openMicrophone")
        await a.wait(  # its third onUserAudioAvailable (all three are checked below)
            "(rl, u) => rl.events.filter((e) =>"
            " e.name === 'onUserAudioAvailable' && e.p.userID === u).length >= 3",
            b.user_id,
        )
        for me, other in ((a, b), (b, a)):
            await _hears(me, other)

        for me in (a, b):
            assert await me.js("(rl) => rl.engine.serverUrl") == cluster.urls[2]  # the one left
        await a.ok("hangup")
        for me in (a, b):
            await me.event("onCallEnd", callID=cid)
    except BaseException:
        for me in (a, b):
            print(me.user_id, "stats", dump(await me.js("(rl) => rl.stats")))
            print(me.user_id, dump(await me.js(QUIET_EVENTS)))
        print(cluster.log())
        raise

    events = {me.user_id: await me.js("(rl) => rl.events") for me in (a, b)}
    for me in (a, b):
        names = [e["name"] for e in events[me.user_id]]
        assert names.count("onCallBegin") == 1 and names.count("onCallEnd") == 1, dump(names)
        # the login, then only resumes: the session was never lost
        onlines = await _onlines(me)
        assert onlines[0] is False and all(onlines[1:]) and len(onlines) >= 2 + (me is a), onlines
    # every push of b's microphone once, in order, across both moves
    assert _audio(events[a.user_id], b.user_id) == [True, False, True]
    assert _audio(events[b.user_id], a.user_id) == [True]
    end = next(e for e in events[b.user_id] if e["name"] == "onCallEnd")
    assert end["p"]["userID"] == a.user_id
    records = await _records(cluster, cid)
    assert len(records) == 1 and records[0]["result"] == "NormalEnd", records
