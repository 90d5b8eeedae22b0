"""Crashes and losses: server SIGKILL/SIGTERM and restart, client SIGKILL."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rawclient import Raw
from serverproc import SDK_APP_ID, ServerProcess, unique


def _record(data_dir: Path, call_id: str) -> tuple[str, float, float, float] | None:
    db = sqlite3.connect(f"file:{data_dir / 'ringline.db'}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT result, start_time, accept_time, end_time FROM calls WHERE call_id = ?", (call_id,)
        ).fetchone()
    finally:
        db.close()
    return None if row is None else (str(row[0]), float(row[1]), float(row[2]), float(row[3]))


def _last_known(data_dir: Path) -> float:
    """The last time a (killed) server left in its store: its last alive mark (every
    second) or its last write of a live call, whichever is later."""
    db = sqlite3.connect(f"file:{data_dir / 'ringline.db'}?mode=ro", uri=True)
    try:
        (alive,) = db.execute("SELECT max(at) FROM alive").fetchone()
        (live,) = db.execute("SELECT max(updated_at) FROM live_calls").fetchone()
    finally:
        db.close()
    return max(float(alive or 0.0), float(live or 0.0))


async def _connected(srv: ServerProcess) -> tuple[Raw, Raw, str, str, str]:
    a, b = await Raw(srv).connect(), await Raw(srv).connect()
    ua, ub = unique("a"), unique("b")
    await a.login(ua)
    await b.login(ub)
    cid = (await a.ok("calls", user_ids=[ub], media_type=2))["call_id"]
    await b.event("on_call_received", call_id=cid)
    await b.ok("accept", call_id=cid)
    await a.event("on_call_begin", call_id=cid)
    await b.event("on_call_begin", call_id=cid)
    return a, b, ua, ub, cid


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
async def test_call_survives_a_server_restart_when_devices_come_back(tmp_path: Path, how: str) -> None:
    srv = ServerProcess(tmp_path, heartbeat_grace=6.0).start()
    try:
        a, b, ua, ub, cid = await _connected(srv)
        acks = (a.last_seq, b.last_seq)
        sessions = (a.session, b.session)
        if how == "sigkill":
            srv.kill()
        else:
            assert srv.stop() == 0
        await a.close()
        await b.close()
        srv.start()
        a2, b2 = Raw(srv), Raw(srv)
        await a2.connect()
        await b2.connect()
        ra = await a2.ok("resume", v=1, session=sessions[0], ack=acks[0])
        await b2.ok("resume", v=1, session=sessions[1], ack=acks[1])
        assert ra["next_seq"] == acks[0] + 1
        state = (await a2.ok("get_state"))["call"]
        assert state["call_id"] == cid and state["status"] == 2
        await a2.ok("hangup", call_id=cid)
        await b2.event("on_user_leave", call_id=cid, user_id=ua)
        end = await b2.event("on_call_end", call_id=cid)
        assert end["args"]["reason"] == 1
        assert end["seq"] > acks[1]  # numbering continues where the client left off
        rec = _record(tmp_path, cid)
        assert rec is not None and rec[0] == "NormalEnd" and rec[2] > 0
        await a2.close()
        await b2.close()
    finally:
        srv.kill()


async def test_calls_nobody_returns_to_end_as_end_by_server_at_the_last_known_time(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, heartbeat_grace=1.5).start()
    try:
        a, b, ua, ub, cid = await _connected(srv)
        killed_at = time.time()
        srv.kill()
        last_known = _last_known(tmp_path)
        await a.close()
        await b.close()
        srv.start()
        # Nobody resumes. B comes back much later with a fresh login of the same device.
        b2 = Raw(srv)
        await b2.connect()
        deadline = time.monotonic() + 10
        rec = None
        while rec is None and time.monotonic() < deadline:
            rec = _record(tmp_path, cid)
            if rec is None:
                await asyncio.sleep(0.2)  # polling a database file: no event to await
        assert rec is not None, "no record after the recovery deadline"
        result, start, accept, end = rec
        assert result == "EndByServer"
        assert accept > 0 and start <= accept <= end <= killed_at + 0.01
        # The last time the server was known to run, however late its marks were.
        assert end == last_known
        # The device, logging in afresh instead of resuming, still gets its end.
        await b2.login(ub)
        ev = await b2.event("on_call_end", call_id=cid)
        assert ev["args"]["reason"] == 9
        await b2.close()
    finally:
        srv.kill()


_CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys, aiohttp
    url, app, user, sig = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    async def main():
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url + "/v1/ws")
            await ws.send_str(json.dumps({"id": 1, "op": "login", "sdk_app_id": app,
                "user_id": user, "user_sig": sig, "device_id": user + "-proc"}))
            async def ping():
                while True:
                    await ws.send_str(json.dumps({"op": "ping"}))
                    await asyncio.sleep(0.3)
            task = asyncio.create_task(ping())
            async for msg in ws:
                f = json.loads(msg.data)
                if f.get("ev") == "on_call_received":
                    await ws.send_str(json.dumps({"id": 2, "op": "accept", "call_id": f["args"]["call_id"]}))
                if f.get("ev") == "on_call_begin":
                    print("begun", flush=True)
            task.cancel()
    asyncio.run(main())
    """
)


async def test_client_process_killed_with_sigkill_leaves_the_call_offline(
    server: ServerProcess,
) -> None:
    a = Raw(server)
    ua, ub = unique("a"), unique("b")
    await a.login(ua)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, server.url, str(SDK_APP_ID), ub, server.sig(ub)],
        stdout=subprocess.PIPE,
    )
    try:
        # B may not be logged in yet: the invitation waits for it (row 1).
        cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        await a.event("on_call_begin", call_id=cid, timeout=15)
        assert proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        assert line.strip() == b"begun"
        proc.kill()
        proc.wait()
        await a.event("on_user_leave", call_id=cid, user_id=ub, timeout=8)
        end = (await a.event("on_call_end", call_id=cid))["args"]
        assert end["reason"] == 4 and end["user_id"] == ub
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        await a.close()


async def test_pushes_queued_before_a_device_resumes_after_a_restart_are_replayed(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, heartbeat_grace=6.0).start()
    try:
        a, b, ua, ub, cid = await _connected(srv)
        acks = (a.last_seq, b.last_seq)
        sessions = (a.session, b.session)
        srv.kill()
        await a.close()
        await b.close()
        srv.start()
        a2 = await Raw(srv).connect()
        await a2.ok("resume", v=1, session=sessions[0], ack=acks[0])
        await a2.ok("hangup", call_id=cid)  # B is still away: its pushes queue up
        await a2.event("on_call_end", call_id=cid)
        b2 = await Raw(srv).connect()
        res = await b2.ok("resume", v=1, session=sessions[1], ack=acks[1])
        assert res["next_seq"] == acks[1] + 1
        leave = await b2.event("on_user_leave", call_id=cid, user_id=ua)
        end = await b2.event("on_call_end", call_id=cid)
        assert (leave["seq"], end["seq"]) == (acks[1] + 1, acks[1] + 2)
        await a2.close()
        await b2.close()
    finally:
        srv.kill()


async def _profile_survives_a_restart(data_dir: Path, db: str, how: str) -> None:
    """The server answers ``set_self_info`` only after the batch that writes the profile
    is committed (the hub sends the answers of requests that write after the store's
    commit), so a SIGKILL right after the answer arrived loses nothing. After the restart
    alice logs in afresh and never calls ``set_self_info`` again; bob's invitation still
    carries her nickname and avatar."""
    srv = ServerProcess(data_dir, db=db).start()
    nickname, avatar = "Alice ✨ " + "é" * 240, "https://a.example/" + "x" * 2000 + ".png"
    try:
        ua, ub = unique("a"), unique("b")
        a = Raw(srv)
        await a.login(ua)
        await a.ok("set_self_info", nickname=nickname, avatar=avatar)
        if how == "sigkill":
            srv.kill()
        else:
            assert srv.stop() == 0
        await a.close()
        srv.start()
        a2, b = Raw(srv), Raw(srv)
        await a2.login(ua)
        await b.login(ub)
        cid = (await a2.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        info = (await b.event("on_call_received", call_id=cid))["args"]["info"]
        assert (info["inviter_id"], info["inviter_nickname"], info["inviter_avatar"]) == (
            ua,
            nickname,
            avatar,
        )
        # A change after the restart replaces the loaded profile.
        await a2.ok("hangup", call_id=cid)
        await b.event("on_call_not_connected", call_id=cid)
        await a2.ok("set_self_info", nickname="Al", avatar="")
        cid = (await a2.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        info = (await b.event("on_call_received", call_id=cid))["args"]["info"]
        assert (info["inviter_nickname"], info["inviter_avatar"]) == ("Al", "")
        await a2.close()
        await b.close()
    finally:
        srv.kill()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_a_profile_set_before_a_restart_still_shows_in_invitations(tmp_path: Path, how: str) -> None:
    """SQLite; see :func:`_profile_survives_a_restart`."""
    await _profile_survives_a_restart(tmp_path, "", how)


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_a_profile_set_before_a_restart_still_shows_in_invitations_on_postgres(
    tmp_path: Path, pg_url: str, how: str
) -> None:
    """PostgreSQL; see :func:`_profile_survives_a_restart`."""
    await _profile_survives_a_restart(tmp_path, pg_url, how)
