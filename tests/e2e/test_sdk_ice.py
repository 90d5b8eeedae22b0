"""The Python SDK keeps the ICE servers the server announces (media uses them)."""

from __future__ import annotations

from pathlib import Path

from ringline import CallEngine
from serverproc import SDK_APP_ID, ServerProcess, unique


async def test_the_sdk_session_keeps_the_announced_ice_servers(tmp_path: Path, server: ServerProcess) -> None:
    srv = ServerProcess(
        tmp_path / "ice",
        extra_args=[
            *("--ice-server", "turn:127.0.0.1:3478", "--ice-username", "bot", "--ice-credential", "pw"),
            *("--ice-transport-policy", "relay"),
        ],
    ).start()
    try:
        u = unique("ice")
        engine = CallEngine(srv.url, device_id=f"{u}-d")
        await engine.init(SDK_APP_ID, u, srv.sig(u))
        try:
            session = engine._session
            assert session is not None
            assert session.ice_servers == [
                {"urls": "turn:127.0.0.1:3478", "username": "bot", "credential": "pw"}
            ]
            assert session.ice_transport_policy == "relay"
        finally:
            await engine.uninit()
        plain = CallEngine(server.url, device_id=f"{u}-p")
        await plain.init(SDK_APP_ID, u + "p", server.sig(u + "p"))
        try:
            assert plain._session is not None and plain._session.ice_servers == []
            assert plain._session.ice_transport_policy == "all"
        finally:
            await plain.uninit()
    finally:
        assert srv.stop() == 0
