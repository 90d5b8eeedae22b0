"""Two SDK members (``media=``) of an audio call through Janus, relay only, run inside
namespace ``a`` of tests/media/routed.py (tests/sfu/test_sfu_turn.py): Janus is in ``b``,
which ``a`` has no route to, so their media can only meet on coturn in ``t``.

    python tests/sfu/sfu_turn_driver.py SERVER_URL

Alice calls Bob; once each member's SFU connection for the other is connected, it waits
for more audio through it and reports what it heard, its links (publisher, SFU feeds,
mesh connections) and the ICE facts of its publishing and receiving connections. Prints
one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))

from call_driver import WAIT, LogWatch, Member
from relay_driver import pc_ice_facts

from ringline import MediaType
from serverproc import ServerProcess


async def main(url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rl-sfu-turn-") as tmp:
        srv = ServerProcess(Path(tmp))  # not started: only its sig() and the url are used
    srv.url = url
    watch = LogWatch()
    a, b = Member(srv, "alice", 300), Member(srv, "bob", 500)
    out: dict[str, Any] = {}
    async with a.engine, b.engine:
        await a.login()
        await b.login()
        cid = await a.engine.calls(["bob"], MediaType.AUDIO)
        await b.rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
        await b.engine.accept()
        for m, other in ((a, "bob"), (b, "alice")):
            await watch.wait(f"<sfu feed {other}->{m.user} connected>", 2 * WAIT)
        for m, other in ((a, "bob"), (b, "alice")):
            session = m.engine.media
            assert session is not None and session.publisher is not None
            frames = await m.probe.wait_frames(other, "audio", 50, WAIT)  # through the SFU now
            out[m.user] = {
                "frames": frames,
                "heard": await m.hears(other),
                "links": {
                    "publisher": session.publisher.pc.connectionState,
                    "feeds": sorted(
                        p.remote for p in session.peers.values() if type(p).__name__ == "_SfuFeed"
                    ),
                    "mesh": sorted(p.remote for p in session.peers.values() if type(p).__name__ == "_Peer"),
                },
                "publisher_ice": pc_ice_facts(session.publisher.pc, session.ice_transport_policy),
                "feed_ice": pc_ice_facts(session.peers[other].pc, session.ice_transport_policy),
            }
        await a.engine.hangup()
        for m in (a, b):
            await m.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
    watch.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
