"""One member of an audio call whose media must go through a TURN relay (tests/media/routed.py).

    python tests/media/routed_member.py SERVER_URL USER PEER caller|callee

Logs in and prints ``{"ready": true}``; the callee then accepts the call, the caller
calls PEER. Once it hears PEER it prints one JSON object: what it heard and the ICE facts
of its connection to PEER; then it waits for a line on stdin, and the caller hangs up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from call_driver import WAIT, Member
from relay_driver import ice_facts

from ringline import MediaType
from serverproc import ServerProcess


async def main(url: str, user: str, peer: str, role: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rl-member-") as tmp:
        srv = ServerProcess(Path(tmp))  # not started: only its sig() and the url are used
    srv.url = url
    m = Member(srv, user, 300 if role == "caller" else 500)
    async with m.engine:
        await m.login()
        print(json.dumps({"ready": True}), flush=True)
        if role == "callee":
            cid = (await m.rec.wait_for("on_call_received", timeout=WAIT))["call_id"]
            await m.engine.accept()
        else:
            cid = await m.engine.calls([peer], MediaType.AUDIO)
        heard = await m.hears(peer)
        print(json.dumps({"heard": heard, "ice": ice_facts(m, peer)}), flush=True)
        # The test says when both have reported: then the caller hangs up.
        await asyncio.to_thread(sys.stdin.readline)
        if role == "caller":
            await m.engine.hangup()
        await m.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
