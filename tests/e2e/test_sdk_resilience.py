"""SDK engines through crashes: a bot process killed with SIGKILL, a server restart, and
(given several server URLs) a node that dies, leaves (close 1012) or cannot take the
session yet (close 1013)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ringline import CallEndReason, CallEngine, CallStatus, MediaType
from ringline.client.transport import AiohttpTransport, Connection
from ringline.testing import RecordingObserver
from serverproc import SDK_APP_ID, ServerProcess, free_port, unique
from wsproxy import Proxy

ROOT = Path(__file__).resolve().parents[2]


async def _engine(srv: ServerProcess, user: str) -> tuple[CallEngine, RecordingObserver]:
    e = CallEngine(srv.url, device_id=user + "-dev")
    rec = RecordingObserver()
    e.add_observer(rec)
    await e.init(SDK_APP_ID, user, srv.sig(user))
    return e, rec


async def test_bot_process_killed_with_sigkill_leaves_the_call_offline(server: ServerProcess) -> None:
    bot = unique("bot")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "auto_answer.py"),
            "--url",
            server.url,
            "--data-dir",
            str(server.data_dir),
            "--user",
            bot,
            "--hold",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    a, ra = await _engine(server, unique("a"))
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.startswith("logged in as"), line
        cid = await a.calls([bot], MediaType.AUDIO)
        await ra.wait_for("on_call_begin", call_id=cid)
        proc.kill()
        proc.wait()
        left = await ra.wait_for("on_user_leave", call_id=cid, timeout=10)
        assert left["user_id"] == bot
        end = await ra.wait_for("on_call_end", call_id=cid)
        assert end["reason"] is CallEndReason.OFFLINE and end["user_id"] == bot
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        await a.uninit()


async def test_engines_ride_through_a_server_restart_mid_call(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, heartbeat_grace=20.0).start()
    a = b = None
    try:
        ua, ub = unique("a"), unique("b")
        a, ra = await _engine(srv, ua)
        b, rb = await _engine(srv, ub)
        cid = await a.calls([ub], MediaType.VIDEO)
        await rb.wait_for("on_call_received", call_id=cid)
        await b.accept()
        await ra.wait_for("on_call_begin", call_id=cid)
        # SIGTERM: devices are told to come back (1001). Off the loop, so the engines
        # see the close and reconnect as they would in a real app.
        assert await asyncio.to_thread(srv.stop) == 0
        await asyncio.to_thread(srv.start)
        await a.hangup()  # waits for the engine to reconnect and resume
        await rb.wait_for("on_user_leave", call_id=cid, user_id=ua, timeout=15)
        end = await rb.wait_for("on_call_end", call_id=cid)
        assert end["reason"] is CallEndReason.HANGUP
        # Nothing was delivered twice across the restart.
        names = [e.name for e in rb.events_for(cid)]
        assert names.count("on_call_begin") == 1 and names.count("on_call_end") == 1
    finally:
        for e in (a, b):
            if e is not None:
                await e.uninit()
        srv.kill()


# ----------------------------------------------------------------- several server URLs
#
# One real server with small proxies in front of it (tests/wsproxy.py), each standing in
# for a node of a cluster: the engine is given the proxies' URLs.


class SeqTransport:
    """The real transport, noting the ``seq`` of every push received, per connection,
    and the URL of every connection opened."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()
        self.urls: list[str] = []
        self.seqs: list[list[int]] = []

    async def connect(self, url: str) -> Connection:
        conn = await self.inner.connect(url)
        self.urls.append(url)
        seqs: list[int] = []
        self.seqs.append(seqs)

        class Noting:
            async def send(self, text: str) -> None:
                await conn.send(text)

            async def receive(self) -> str:
                text = await conn.receive()
                frame = json.loads(text)
                if isinstance(frame, dict) and "ev" in frame and isinstance(frame.get("seq"), int):
                    seqs.append(frame["seq"])
                return text

            async def close(self, code: int = 1000, reason: str = "") -> None:
                await conn.close(code, reason)

        return Noting()

    def delivered(self) -> list[int]:
        """The seqs the engine handed on: each connection's, after dropping replays."""
        out: list[int] = []
        for seqs in self.seqs:
            out += [s for s in seqs if s > (out[-1] if out else 0)]
        return out


@pytest.fixture
def cluster_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server that keeps a dropped session long enough for a loaded machine."""
    srv = ServerProcess(tmp_path, heartbeat_grace=20.0).start()
    yield srv
    srv.kill()


@pytest.fixture
async def proxies(cluster_server: ServerProcess) -> AsyncIterator[list[Proxy]]:
    made = [await Proxy(cluster_server.port).start() for _ in range(3)]
    yield made
    for p in made:
        await p.kill()


async def _logged_in(
    srv: ServerProcess, urls: str | list[str], user: str, transport: SeqTransport | None = None
) -> tuple[CallEngine, RecordingObserver]:
    e = CallEngine(urls, device_id=user + "-dev", transport=transport)
    rec = RecordingObserver()
    e.add_observer(rec)
    await e.init(SDK_APP_ID, user, srv.sig(user))
    return e, rec


async def test_a_dead_first_url_logs_in_through_the_next(
    cluster_server: ServerProcess, proxies: list[Proxy]
) -> None:
    await proxies[0].kill()  # closed: nothing listens there any more
    nobody = f"http://127.0.0.1:{free_port()}"  # never listened on
    a, _ = await _logged_in(cluster_server, [proxies[0].url, proxies[1].url], unique("a"))
    b, _ = await _logged_in(cluster_server, [nobody, proxies[0].url, proxies[2].url], unique("b"))
    try:
        assert a.server_url == proxies[1].url and a.server_urls == (proxies[0].url, proxies[1].url)
        assert b.server_url == proxies[2].url
        # The session works through it.
        await a.set_self_info("A", "")
    finally:
        await a.uninit()
        await b.uninit()


def _availability(rec: RecordingObserver, since: int) -> list[tuple[str, bool]]:
    """The on_user_video/audio_available events after the first ``since`` events."""
    return [
        (e.name, bool(e.kwargs.get("is_video_available", e.kwargs.get("is_audio_available"))))
        for e in rec.events[since:]
        if e.name in ("on_user_video_available", "on_user_audio_available")
    ]


async def _seen(rec: RecordingObserver, since: int, want: list[tuple[str, bool]]) -> None:
    """Wait until ``want`` arrived after event ``since``, then check nothing else did."""
    await rec.wait_until(lambda: len(_availability(rec, since)) >= len(want))
    assert _availability(rec, since) == want


async def test_a_killed_node_mid_call_resumes_through_the_next_with_every_push_once(
    cluster_server: ServerProcess, proxies: list[Proxy]
) -> None:
    ua, ub = unique("a"), unique("b")
    ta = SeqTransport()
    a, ra = await _logged_in(cluster_server, [p.url for p in proxies], ua, ta)
    b, rb = await _logged_in(cluster_server, cluster_server.url, ub)
    try:
        assert a.server_url == proxies[0].url
        cid = await a.calls([ub], MediaType.VIDEO)
        await rb.wait_for("on_call_received", call_id=cid)
        await b.accept()
        await ra.wait_for("on_call_begin", call_id=cid)
        await b.set_self_info("B", "")  # a round trip: the pushes of the accept are out
        mark = len(ra.events)

        await proxies[0].kill()
        # Pushes made while a is away come after its resume, once, in order.
        await b.close_camera()
        await b.open_camera()
        await _seen(ra, mark, [("on_user_video_available", False), ("on_user_video_available", True)])
        assert a.server_url == proxies[1].url
        assert len(ta.urls) == 2 and ta.urls[1].startswith(proxies[1].url.replace("http", "ws"))
        await b.close_microphone()
        await _seen(
            ra,
            mark,
            [
                ("on_user_video_available", False),
                ("on_user_video_available", True),
                ("on_user_audio_available", False),
            ],
        )

        await a.hangup()  # the call goes on through the new node
        end = await rb.wait_for("on_call_end", call_id=cid)
        assert end["reason"] is CallEndReason.HANGUP
        await ra.wait_for("on_call_end", call_id=cid)
        assert a.call_status is CallStatus.NONE
        # Every push came once and in order: the seqs a handed on run 1, 2, … N with no
        # gap (none lost), and nothing twice to the observers.
        delivered = ta.delivered()
        assert delivered == list(range(1, len(delivered) + 1)), ta.seqs
        names = [e.name for e in ra.events_for(cid)]
        assert names.count("on_call_begin") == 1 and names.count("on_call_end") == 1
        names_b = [e.name for e in rb.events_for(cid)]
        assert names_b.count("on_call_begin") == 1 and names_b.count("on_call_end") == 1
    finally:
        await a.uninit()
        await b.uninit()


async def test_close_1012_moves_to_the_next_node_at_once_and_1013_to_the_one_after(
    cluster_server: ServerProcess, proxies: list[Proxy]
) -> None:
    ua, ub = unique("a"), unique("b")
    ta = SeqTransport()
    a, ra = await _logged_in(cluster_server, [p.url for p in proxies], ua, ta)
    b, rb = await _logged_in(cluster_server, cluster_server.url, ub)
    try:
        cid = await a.calls([ub], MediaType.AUDIO)
        await rb.wait_for("on_call_received", call_id=cid)
        await b.accept()
        await ra.wait_for("on_call_begin", call_id=cid)
        # 1012: no back-off before the next node. With an hour of it, only a reconnect
        # without one can resume before the wait below gives up.
        assert a._session is not None
        a._session._backoff = (3600.0, 3600.0)
        await b.set_self_info("B", "")  # a round trip: the pushes of the accept are out
        mark = len(ra.events)
        await proxies[0].close_clients(1012, "node leaving")
        await b.close_microphone()
        await _seen(ra, mark, [("on_user_audio_available", False)])
        assert a.server_url == proxies[1].url and len(ta.urls) == 2

        # 1013 from the next node: the engine goes on to the one after.
        a._session._backoff = (0.1, 0.5)
        proxies[0].refuse = 1013
        accepted = proxies[0].accepted
        await proxies[1].kill()
        await b.open_microphone()
        await _seen(ra, mark, [("on_user_audio_available", False), ("on_user_audio_available", True)])
        assert a.server_url == proxies[2].url
        assert proxies[0].accepted == accepted  # the next after 2 is 0, not tried yet
        # Now 2 leaves: 0 says 1013 (try again), 1 is dead, 2 is back: round robin
        # comes round to it.
        await proxies[2].close_clients(1012, "node leaving")
        await proxies[0].wait_accepted(accepted + 1)
        await b.close_microphone()
        await _seen(ra, mark, [("on_user_audio_available", x) for x in (False, True, False)])
        assert a.server_url == proxies[2].url
        await a.hangup()
        await rb.wait_for("on_call_end", call_id=cid)
        delivered = ta.delivered()
        assert delivered == list(range(1, len(delivered) + 1)), ta.seqs
        assert [e.name for e in ra.events_for(cid)].count("on_call_begin") == 1
    finally:
        await a.uninit()
        await b.uninit()
