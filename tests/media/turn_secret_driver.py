"""TURN allocations with the credentials a Ringline server hands out (``--turn-secret``).

    python tests/media/turn_secret_driver.py TURN_URL SECRET   (inside a loopback-only netns)

Starts ``ringline serve --turn-url TURN_URL --turn-secret SECRET``, logs in, resumes, and
allocates a relay on the TURN server (aioice's TURN client, as aiortc uses it) with the
credential of the login answer and with that of the resume answer; then with the
credential a server with a wrong secret hands out, and with one already expired. Prints
one JSON object: per case, the relayed address or the TURN error code.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aioice import stun
from aioice.turn import create_turn_endpoint

from rawclient import Raw
from ringline.server.config import turn_credential
from serverproc import ServerProcess

USER = "alice"


async def allocate(url: str, username: str, credential: str) -> dict[str, Any]:
    """Allocate a UDP relay on the TURN server of ``url`` (``turn:HOST:PORT``); release it."""
    host, _, port = url.removeprefix("turn:").partition(":")
    try:
        transport, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol, (host, int(port)), username=username, password=credential
        )
    except stun.TransactionFailed as e:
        code, reason = e.response.attributes["ERROR-CODE"]
        return {"username": username, "error": code, "reason": reason}
    relayed = transport.get_extra_info("sockname")
    transport.close()
    return {"username": username, "relayed": list(relayed)}


async def credentials(turn_url: str, secret: str, tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The TURN entries of the login and of the resume answer of a server with ``secret``."""
    srv = ServerProcess(tmp, extra_args=["--turn-url", turn_url, "--turn-secret", secret]).start()
    c = Raw(srv)
    try:
        res = await c.login(USER)
        await c.drop()
        await c.connect()
        again = await c.ok("resume", v=1, session=res["session"], ack=c.last_seq)
    finally:
        await c.close()
        srv.stop()
    [login] = [e for e in res["ice_servers"] if e["urls"] == turn_url]
    [resume] = [e for e in again["ice_servers"] if e["urls"] == turn_url]
    return login, resume


async def main(turn_url: str, secret: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rl-turn-") as tmp:
        login, resume = await credentials(turn_url, secret, Path(tmp) / "right")
        wrong, _ = await credentials(turn_url, "not-" + secret, Path(tmp) / "wrong")
    out["login"] = await allocate(turn_url, login["username"], login["credential"])
    out["resume"] = await allocate(turn_url, resume["username"], resume["credential"])
    out["wrong_secret"] = await allocate(turn_url, wrong["username"], wrong["credential"])
    # Signed with the right secret, but its time is up.
    expired = turn_credential(secret, USER, time.time() - 60)
    out["expired"] = await allocate(turn_url, *expired)
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
