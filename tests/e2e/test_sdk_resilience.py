"""SDK engines through crashes: a bot process killed with SIGKILL, a server restart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from ringline import CallEndReason, CallEngine, MediaType
from ringline.testing import RecordingObserver
from serverproc import SDK_APP_ID, ServerProcess, unique

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
