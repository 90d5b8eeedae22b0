"""One big call of SDK engines made with ``media=``, through Janus or as a mesh.

    python tests/sfu/group_driver.py [--members 9] [--procs 3] [--mesh] [--video]  (in a
    loopback-only network namespace: tests/sfu/test_sfu_group.py runs it)

:func:`group_call` starts a real Janus (loopback shim preloaded; none with ``sfu=False``)
and ``ringline serve --sfu`` (plain ``ringline serve`` for the mesh), spreads the members
``m1..mN`` (each a tone of its own: 300, 400, … Hz; with ``video`` a 320×240 test pattern
too) over ``procs`` processes of tests/sfu/group_members.py, has ``m1`` call everyone
(audio, or video), waits until every member hears every other, lets ``during`` run
(bench/sfu.py measures CPU there; the audio frames decoded per second meanwhile are
counted too), asks each member for its frame counts and connections, hangs everyone up,
and reads the call's record (v4 ``get_record_by_filter``) and whether Janus still has
the room.
Prints one JSON object (the findings) as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

import aiohttp
from callbackkit import Admin
from group_members import group_users
from janusproc import SECRET, JanusProcess

from ringline.server.sfu import JanusClient, room_id
from serverproc import ServerProcess

HERE = Path(__file__).resolve().parent

#: The processes and their roles, for ``during``: ``{"server": pid, "janus": pid or None,
#: "members": [pid, …]}``.
Pids = dict[str, Any]


class Members:
    """One tests/sfu/group_members.py process: its users, commands in, JSON lines out."""

    def __init__(self, proc: asyncio.subprocess.Process, users: list[str]) -> None:
        self.proc = proc
        self.users = users

    @classmethod
    async def start(cls, url: str, users: dict[str, float], everyone: int, video: bool, log: Path) -> Members:
        spec = ",".join(f"{u}:{f:g}" for u, f in users.items())
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "group_members.py"),
            "--url",
            url,
            "--users",
            spec,
            "--everyone",
            str(everyone),
            *(["--video"] if video else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log.open("wb"),
        )
        return cls(proc, list(users))

    async def read(self, key: str, timeout: float) -> dict[str, Any]:
        """The next JSON line that has ``key``."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"members {self.users} exited {await self.proc.wait()} before {key!r}")
                if line.startswith(b"{"):
                    got: dict[str, Any] = json.loads(line)
                    if key in got:
                        return got

    async def ask(self, command: str, key: str, timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.read(key, timeout)

    async def close(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def split(users: dict[str, float], procs: int) -> list[dict[str, float]]:
    """``users`` dealt over ``procs`` processes, round robin."""
    names = list(users)
    return [{u: users[u] for u in names[i::procs]} for i in range(procs) if names[i::procs]]


async def call_record(srv: ServerProcess, cid: str, since: int) -> dict[str, Any] | None:
    async with aiohttp.ClientSession() as http:
        page = await Admin(srv, http).v4(
            "call_record_http_srv/get_record_by_filter",
            {"StartTime": since, "User_Account": "m1", "NumberPerPage": 100},
        )
    return next((r for r in page["CallRecordList"] if r["CallId"] == cid), None)


async def group_call(
    tmp: Path,
    members: int = 9,
    procs: int = 3,
    sfu: bool = True,
    during: Callable[[Pids], Awaitable[Any]] | None = None,
    video: bool = False,
) -> dict[str, Any]:
    """Run the call (see the module's doc); the findings, with ``during``'s result under
    ``"during"``. Janus and the server are stopped at the end; their logs stay in ``tmp``."""
    users = group_users(members)
    janus = JanusProcess(tmp / "janus", preload_shim=True).start() if sfu else None
    out: dict[str, Any] = {"sfu": sfu, "members": members, "video": video}
    groups: list[Members] = []
    try:
        extra = ["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET] if janus else []
        # The server's own heartbeat (not the tests' 0.5 s): nine members' media keep a
        # 2-core machine busy, and this call is about media, not about noticing drops.
        srv = ServerProcess(tmp / "srv", heartbeat_interval=5.0, heartbeat_grace=15.0, extra_args=extra)
        srv.start()
        try:
            since = int(time.time()) - 1
            for i, part in enumerate(split(users, procs)):
                groups.append(await Members.start(srv.url, part, members, video, tmp / f"members{i}.log"))
            for g in groups:
                await g.read("ready", 120)
            started = time.monotonic()
            cid = (await groups[0].ask("call", "called", 60))["called"]
            heard: dict[str, Any] = {}
            for got in await asyncio.gather(*(g.ask("heard", "heard", 180) for g in groups)):
                heard.update(got["heard"])
            out.update(call_id=cid, heard=heard, all_heard_in_s=round(time.monotonic() - started, 1))

            async def reports() -> dict[str, Any]:
                got: dict[str, Any] = {}
                for part in await asyncio.gather(*(g.ask("report", "report", 120) for g in groups)):
                    got.update(part["report"])
                return got

            if during is not None:
                assert srv.proc is not None
                pids: Pids = {
                    "server": srv.proc.pid,
                    "janus": janus.proc.pid if janus and janus.proc else None,
                    "members": [g.proc.pid for g in groups],
                }
                before, t0 = await reports(), time.monotonic()
                out["during"] = await during(pids)
            out["report"] = await reports()
            if during is not None:
                # Audio frames decoded by all members per second, from before ``during``
                # to now: 50 per second per pair when every stream keeps up.
                now = sum(sum(m["frames"].values()) for m in out["report"].values())
                had = sum(sum(m["frames"].values()) for m in before.values())
                out["frames_per_s"] = (now - had) / (time.monotonic() - t0)
            for g in groups:  # one process after the other: the last one left ends the call
                await g.ask("hangup", "hung_up", 60)
            out["record"] = await call_record(srv, cid, since)
            if janus is not None:
                jc = JanusClient(janus.url, SECRET)
                try:
                    out["room_exists_after"] = await jc.exists(room_id(cid))
                finally:
                    await jc.close()
        finally:
            for g in groups:
                await g.close()
            out["server_exit"] = srv.stop()
    finally:
        if janus is not None:
            janus.stop()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=9)
    p.add_argument("--procs", type=int, default=3)
    p.add_argument("--mesh", action="store_true", help="no Janus: a full mesh")
    p.add_argument("--video", action="store_true", help="a video call (320x240 test patterns)")
    a = p.parse_args()
    TMP = Path(tempfile.mkdtemp(prefix="rl-sfu-group-"))
    print(json.dumps(asyncio.run(group_call(TMP, a.members, a.procs, sfu=not a.mesh, video=a.video))))
    shutil.rmtree(TMP, ignore_errors=True)  # kept (Janus's, the server's, the members' logs) when it failed
