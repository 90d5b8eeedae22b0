"""Media connections that die and start over, signalling relayed in memory (no server).

    python tests/media/restart_driver.py [SCENARIO...]   (inside a loopback-only netns)

Each scenario makes a fresh 1v1 video call between ``alice`` (the offerer: lower id)
and ``bob``, waits until audio and video flow both ways, breaks something, and waits
until media flows again on the same call. Prints one JSON object: per scenario what
was seen, or ``{"error": ...}``. Scenarios (all by default):

* ``offerer-fails``: alice's ICE connection dies; alice starts over.
* ``answerer-fails``: bob's ICE connection dies; bob asks alice to start over.
* ``relogin-offerer`` / ``relogin-answerer``: the device logged in again (its session
  could not be resumed): the pair starts over from scratch.
* ``lost-offer``: the server is away (signals fail) while alice's connection dies, so
  alice's new offer is lost; once back (resumed), alice sends it again.
* ``give-up``: every new connection of alice fails at once; alice gives up after the
  attempts of ``RESTART_DELAYS`` (``on_error``), and tries again after a reconnect.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from faults import break_ice, offerers_cannot_connect
from probe import Probe

import ringline.media.session as media_session
from ringline.core.enums import MediaType
from ringline.media import MediaOptions, MediaSession, TestPattern, TestTone

WAIT = 30.0
USERS = ("alice", "bob")


async def until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """A bounded wait for a condition that no event announces (connection states)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


class Call:
    """Two media sessions whose signals go through :meth:`relay`."""

    def __init__(self) -> None:
        self.sessions: dict[str, MediaSession] = {}
        self.probes = {u: Probe() for u in USERS}
        self.events: dict[str, list[tuple[str, dict[str, Any]]]] = {u: [] for u in USERS}
        self.signals: list[tuple[str, str, dict[str, Any], bool]] = []  # from, to, data, sent
        self.away: set[str] = set()  # senders whose signals fail (their server is away)
        self.lost = asyncio.Event()  # a signal failed to send
        self._got_event = asyncio.Event()

    async def relay(self, frm: str, to: str, data: dict[str, Any]) -> None:
        sent = frm not in self.away
        self.signals.append((frm, to, dict(data), sent))
        if not sent:
            self.lost.set()
            raise ConnectionError("test: the server cannot be reached")
        self.sessions[to].on_signal(frm, json.loads(json.dumps(data)))  # as over the wire

    def _emitter(self, u: str) -> Callable[[str, dict[str, Any]], None]:
        def emit(name: str, args: dict[str, Any]) -> None:
            self.events[u].append((name, args))
            self._got_event.set()

        return emit

    async def wait_event(self, u: str, name: str) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while True:
                for n, args in self.events[u]:
                    if n == name:
                        return args
                self._got_event.clear()
                await self._got_event.wait()

    async def start(self) -> None:
        for i, u in enumerate(USERS):
            self.sessions[u] = MediaSession(
                user_id=u,
                call_id="call-1",
                media_type=MediaType.VIDEO,
                options=MediaOptions(
                    audio=TestTone(frequency=300 + 200 * i, amplitude=0.4),
                    video=TestPattern(width=320, height=240, fps=15),
                    sink=self.probes[u],
                ),
                ice_servers=[],
                send_signal=functools.partial(self.relay, u),
                emit=self._emitter(u),
            )
        for s in self.sessions.values():
            await s.start()
        self.sessions["alice"].add_peer("bob")
        self.sessions["bob"].add_peer("alice")

    async def flowing(self) -> dict[str, int]:
        """Wait for 1 s of audio (50 frames) and 10 video frames more, both ways."""
        for u, other in (("alice", "bob"), ("bob", "alice")):
            await self.probes[u].wait_frames(other, "audio", 50, WAIT)
            await self.probes[u].wait_frames(other, "video", 10, WAIT)
        return {
            f"{u}<-{o}": self.probes[u].count(o, "audio") for u, o in (("alice", "bob"), ("bob", "alice"))
        }

    def pc(self, u: str) -> Any:
        other = "bob" if u == "alice" else "alice"
        return self.sessions[u].peers[other].pc

    def restarts(self) -> dict[str, int]:
        return {u: self.sessions[u].stats()[o].restarts for u, o in (("alice", "bob"), ("bob", "alice"))}

    async def new_connection_up(self, old: dict[str, Any], n: int = 1) -> None:
        """Both sides are on new, connected peer connections (``n`` replacements)."""
        await until(
            lambda: (
                all(self.pc(u) is not old[u] and self.pc(u).connectionState == "connected" for u in USERS)
                and self.restarts() == {"alice": n, "bob": n}
            ),
            "a new connection on both sides",
        )

    def facts(self, old: dict[str, Any]) -> dict[str, Any]:
        stats = {u: self.sessions[u].stats() for u in USERS}
        return {
            "restarts": self.restarts(),
            "states": {u: self.pc(u).connectionState for u in USERS},
            "old_states": {u: old[u].connectionState for u in USERS},
            "new_pcs": {u: self.pc(u) is not old[u] for u in USERS},
            "offerer": {u: next(iter(stats[u].values())).offerer for u in USERS},
            "tracks_started": {
                f"{u}<-{k}": self.probes[u].started.get((o, k), 0)
                for u, o in (("alice", "bob"), ("bob", "alice"))
                for k in ("audio", "video")
            },
            "tracks_ended": {
                f"{u}<-{k}": self.probes[u].ended.get((o, k), 0)
                for u, o in (("alice", "bob"), ("bob", "alice"))
                for k in ("audio", "video")
            },
            "frames_kept": {u: next(iter(stats[u].values())).audio_frames for u in USERS},
            "offers_by": sorted({f for f, _, d, _ in self.signals if d["type"] == "offer"}),
            "restart_asks": [
                f
                for f, _, d, sent in self.signals
                if d["type"] == "renegotiate" and d.get("restart") and sent
            ],
            "byes": [f for f, _, d, _ in self.signals if d["type"] == "bye"],
            "errors": {u: [a for n, a in self.events[u] if n == "on_error"] for u in USERS},
        }

    async def close(self) -> None:
        for s in self.sessions.values():
            await s.close()


async def offerer_fails(c: Call) -> dict[str, Any]:
    old = {u: c.pc(u) for u in USERS}
    await break_ice(old["alice"])
    out: dict[str, Any] = {"after": await c.flowing()}
    await c.new_connection_up(old)
    return {**out, **c.facts(old)}


async def answerer_fails(c: Call) -> dict[str, Any]:
    old = {u: c.pc(u) for u in USERS}
    await break_ice(old["bob"])
    out: dict[str, Any] = {"after": await c.flowing()}
    await c.new_connection_up(old)
    return {**out, **c.facts(old)}


async def relogin(c: Call, who: str) -> dict[str, Any]:
    old = {u: c.pc(u) for u in USERS}
    c.sessions[who].reconnected(False)
    await c.new_connection_up(old)
    out: dict[str, Any] = {"after": await c.flowing()}
    return {**out, **c.facts(old)}


async def lost_offer(c: Call) -> dict[str, Any]:
    old = {u: c.pc(u) for u in USERS}
    c.away.update(USERS)  # the server is away: nothing can be signalled
    await break_ice(old["alice"])
    await asyncio.wait_for(c.lost.wait(), WAIT)  # alice's new offer is lost
    lost = [d["type"] for f, _, d, sent in c.signals if not sent]
    c.away.clear()
    for u in USERS:  # the server is back and both sessions resumed
        c.sessions[u].reconnected(True)
    out: dict[str, Any] = {"lost": lost, "after": await c.flowing()}
    await c.new_connection_up(old)
    return {**out, **c.facts(old)}


async def give_up(c: Call) -> dict[str, Any]:
    old = {u: c.pc(u) for u in USERS}
    delays = media_session.RESTART_DELAYS
    media_session.RESTART_DELAYS = (0.2, 0.2, 0.2)
    try:
        with offerers_cannot_connect() as refused:
            await break_ice(old["alice"])
            error = await c.wait_event("alice", "on_error")
            out: dict[str, Any] = {
                "on_error": error,
                "refused": len(refused),
                "restarts_at_give_up": c.sessions["alice"].stats()["bob"].restarts,
                "state_at_give_up": c.pc("alice").connectionState,
            }
        c.sessions["alice"].reconnected(True)  # the network is back: alice tries again
        out["after"] = await c.flowing()
        await until(lambda: c.pc("alice").connectionState == "connected", "alice connected again")
    finally:
        media_session.RESTART_DELAYS = delays
    return {**out, **c.facts(old)}


SCENARIOS: dict[str, Callable[[Call], Any]] = {
    "offerer-fails": offerer_fails,
    "answerer-fails": answerer_fails,
    "relogin-offerer": lambda c: relogin(c, "alice"),
    "relogin-answerer": lambda c: relogin(c, "bob"),
    "lost-offer": lost_offer,
    "give-up": give_up,
}


async def run(name: str) -> dict[str, Any]:
    c = Call()
    try:
        await c.start()
        before = await c.flowing()
        result: dict[str, Any] = await SCENARIOS[name](c)
        result["before"] = before
        return result
    except Exception as exc:
        return {
            "error": f"{type(exc).__name__}: {exc}",
            "signals": [(f, t, d["type"]) for f, t, d, _ in c.signals],
        }
    finally:
        await c.close()


async def main(names: list[str]) -> dict[str, Any]:
    return {name: await run(name) for name in names or SCENARIOS}


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO if os.environ.get("RL_LOG") else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    print(json.dumps(asyncio.run(main(sys.argv[1:])), default=str))
