"""Faults for the media test drivers: a connection whose network dies under it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import aioice


async def break_ice(pc: Any) -> None:
    """Close the ICE connection under an aiortc ``RTCPeerConnection``, as a dead
    network does (aioice closes it when ICE consent expires): nothing can be sent or
    received on it any more, and aiortc closes the peer connection by itself."""
    for t in pc.getTransceivers():
        dtls = t.sender.transport  # bundled: one transport for audio and video
        if dtls is not None:
            await dtls.transport._connection.close()
            return
    raise AssertionError(f"{pc} has no transport to break")


@contextlib.contextmanager
def offerers_cannot_connect() -> Iterator[list[int]]:
    """While active, the ICE of every new offering (controlling) connection in this
    process fails at once, as when the remote cannot be reached. Yields a list that
    counts the refused attempts."""
    original = aioice.Connection.connect
    refused: list[int] = []

    async def connect(self: aioice.Connection) -> None:
        if self.ice_controlling:
            refused.append(1)
            raise ConnectionError("test: ICE cannot reach the remote")
        await original(self)

    aioice.Connection.connect = connect  # type: ignore[method-assign]
    try:
        yield refused
    finally:
        aioice.Connection.connect = original  # type: ignore[method-assign]
