"""Two Python members in an audio call whose media must go through a TURN relay.

    python tests/media/relay_driver.py TURN_URL CREDENTIAL ok|refused   (inside a loopback-only netns)

Starts ``ringline serve --ice-server TURN_URL --ice-username ringline --ice-credential
CREDENTIAL --ice-transport-policy relay``; alice calls bob, bob accepts. ``ok``: waits
until each hears the other, then reports the candidate types of the nominated ICE
pairs and of both SDPs. ``refused`` (a wrong credential): waits a bounded time and
reports what arrived (nothing should). Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from call_driver import WAIT, Member

from ringline import MediaType
from serverproc import ServerProcess

#: Seconds the ``refused`` scenario watches a call whose relay cannot be reached.
REFUSED_WATCH = 8.0


def candidate_types(sdp: str | None) -> list[str]:
    return sorted(set(re.findall(r"^a=candidate:.* typ (\w+)", sdp or "", re.MULTILINE)))


def ice_facts(m: Member, other: str) -> dict[str, Any]:
    """The peer connection to ``other``: its state, the nominated candidate pairs of its
    ICE transports (aioice's ``_nominated``), and the candidate types in both SDPs."""
    session = m.engine.media
    assert session is not None
    return pc_ice_facts(session.peers[other].pc, session.ice_transport_policy)


def pc_ice_facts(pc: Any, policy: str) -> dict[str, Any]:
    """:func:`ice_facts` of one aiortc ``RTCPeerConnection`` (``policy``: the session's)."""
    pairs = []
    for t in pc.getTransceivers():
        ice = t.sender.transport.transport
        for pair in ice._connection._nominated.values():
            pairs.append(
                {
                    "local": pair.local_candidate.type,
                    "remote": pair.remote_candidate.type,
                    "local_addr": [pair.local_candidate.host, pair.local_candidate.port],
                    "remote_addr": [pair.remote_candidate.host, pair.remote_candidate.port],
                }
            )
    local, remote = pc.localDescription, pc.remoteDescription
    return {
        "policy": policy,
        "state": pc.connectionState,
        "nominated": pairs,
        "local_sdp_types": candidate_types(local.sdp if local else None),
        "remote_sdp_types": candidate_types(remote.sdp if remote else None),
    }


async def scenario(srv: ServerProcess, mode: str) -> dict[str, Any]:
    a, b = Member(srv, "alice", 300), Member(srv, "bob", 500)
    out: dict[str, Any] = {}
    async with a.engine, b.engine:
        await a.login()
        await b.login()
        cid = await a.engine.calls(["bob"], MediaType.AUDIO)
        await b.rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
        await b.engine.accept()
        if mode == "ok":
            out["alice_hears_bob"] = await a.hears("bob")
            out["bob_hears_alice"] = await b.hears("alice")
            out["alice"] = ice_facts(a, "bob")
            out["bob"] = ice_facts(b, "alice")
        else:
            # Both ends are in the call (media starts at on_call_begin); give ICE a
            # bounded time, then see what came through.
            for m in (a, b):
                await m.rec.wait_for("on_call_begin", call_id=cid, timeout=WAIT)
            start = time.monotonic()
            await asyncio.sleep(REFUSED_WATCH)
            out["watched"] = time.monotonic() - start
            for m, other in ((a, "bob"), (b, "alice")):
                session = m.engine.media
                out[m.user] = {
                    "audio_frames": m.probe.count(other, "audio"),
                    "heard": [v.get(other, 0) for v in m.volume_events() if v.get(other, 0) > 0],
                    "audio_available": [
                        e.kwargs["is_audio_available"]
                        for e in m.rec.events_for(cid)
                        if e.name == "on_user_audio_available" and e.kwargs["user_id"] == other
                    ],
                    "errors": [e.kwargs for e in m.rec.events if e.name == "on_error"],
                    "connected": bool(
                        session is not None
                        and other in session.peers
                        and session.peers[other].pc.connectionState == "connected"
                    ),
                    "ice": ice_facts(m, other) if session is not None and other in session.peers else None,
                }
        await a.engine.hangup()
        for m in (a, b):
            await m.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
    return out


async def main(turn_url: str, credential: str, mode: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rl-relay-") as tmp:
        flags = ["--ice-server", turn_url, "--ice-username", "ringline", "--ice-credential", credential]
        srv = ServerProcess(Path(tmp) / "srv", extra_args=[*flags, "--ice-transport-policy", "relay"]).start()
        try:
            return await scenario(srv, mode)
        finally:
            srv.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))))
