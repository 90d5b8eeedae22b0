"""SFU benchmark: CPU per member of one N-member call through Janus against the same call
as a full mesh, side by side in one run. See docs/benchmarks.md ("SFU vs mesh").

    .venv/bin/python bench/sfu.py [--members 9] [--seconds 10] [--procs 3] [--video] [--json] [--quick]

Runs as root inside its own loopback-only network namespace (made and deleted here). Each
way runs the call of the SFU tests (tests/sfu/group_driver.py): SDK engines made with
``media=`` (members ``m1..mN``, each a tone of its own; ``--video`` adds a 320×240 @ 15 fps
test pattern each) spread over ``--procs`` processes, a real ``ringline serve`` and, for
the SFU, a real Janus (``--sfu``). Once every member hears every other, the CPU (user +
system, all threads, from /proc) of the server, of Janus and of the members' processes is
read over ``--seconds``; then each member's outbound streams (those that carried packets,
over all its connections) are counted, and the call ends (its record checked).

In the mesh each member encodes and sends its media N-1 times and the server only relays
signalling; through the SFU each member sends once, Janus forwards, and the server relays
the members' SFU requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The SFU tests' call (tests/sfu/group_driver.py) and its helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "media"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sfu"))

import _util as u

ROOT = Path(__file__).resolve().parents[1]


async def _measure(pids: dict[str, Any], seconds: float) -> dict[str, Any]:
    """CPU in % of one core of the server, Janus and the members' processes over
    ``seconds`` (after 1 s to settle), and of the whole machine."""
    await asyncio.sleep(1.0)  # the last subscriptions' first packets and jitter buffers
    procs = {"server": pids["server"], **({"janus": pids["janus"]} if pids["janus"] else {})}
    procs |= {f"members{i}": pid for i, pid in enumerate(pids["members"])}
    before = {k: u.cpu_seconds(p) for k, p in procs.items()}
    machine0, t0 = u.machine_cpu()[0], time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    cpu = {k: 100.0 * (u.cpu_seconds(p) - before[k]) / wall for k, p in procs.items()}
    machine = 100.0 * (u.machine_cpu()[0] - machine0) / wall
    return {"cpu_pct": cpu, "machine_cpu_pct": machine, "wall_s": wall}


def _way(sfu: bool, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from group_driver import group_call

    name = "sfu" if sfu else "mesh"
    u.log(f"{name}: {args.members} members in {args.procs} processes, {args.seconds} s")
    r = asyncio.run(
        group_call(
            tmp / name,
            args.members,
            args.procs,
            sfu=sfu,
            during=lambda pids: _measure(pids, args.seconds),
            video=args.video,
        )
    )
    cpu = r["during"]["cpu_pct"]
    n = args.members
    clients = sum(v for k, v in cpu.items() if k.startswith("members"))
    server, janus = cpu["server"], cpu.get("janus", 0.0)
    links = [m["links"] for m in r["report"].values()]
    record = r["record"] or {}
    received = r["frames_per_s"] / (50.0 * n * (n - 1))
    return {
        "way": name,
        "members": n,
        "all_heard_in_s": r["all_heard_in_s"],
        "server_cpu_pct": round(server, 1),
        "janus_cpu_pct": round(janus, 1),
        "server_janus_cpu_pct_per_member": round((server + janus) / n, 2),
        "clients_cpu_pct": round(clients, 1),
        "clients_cpu_pct_per_member": round(clients / n, 1),
        "machine_cpu_pct": round(r["during"]["machine_cpu_pct"], 1),
        # Decoded audio frames over what N(N-1) streams of 50 frames/s would give:
        # below 100 % the clients did not keep up (their CPU figure then understates).
        "audio_received_pct": round(100.0 * received, 1),
        # The clients' CPU per member scaled to every stream at full rate: an estimate
        # for a machine where they were starved (linear in the frames decoded).
        "clients_cpu_pct_per_member_full_rate": round(clients / n / max(received, 0.01), 1),
        "outbound_audio_per_client": sorted({x["outbound_audio"] for x in links}),
        "outbound_video_per_client": sorted({x["outbound_video"] for x in links}),
        "receiving_per_client": sorted({len(x["feeds"]) + len(x["mesh"]) for x in links}),
        "record": record.get("CallResult"),
    }


def run_inside(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rl-bench-sfu-"))
    try:
        rows = [_way(True, args, tmp), _way(False, args, tmp)]
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    import aiortc

    sfu, mesh = rows
    return {
        "machine": {**u.machine_info(), "aiortc": aiortc.__version__},
        "members": args.members,
        "procs": args.procs,
        "seconds": args.seconds,
        "video": args.video,
        "ways": rows,
        "clients_cpu_mesh_over_sfu": round(mesh["clients_cpu_pct"] / max(sfu["clients_cpu_pct"], 0.1), 2),
    }


def table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"SFU vs mesh: {r['members']} members ({'audio + 320x240 video' if r['video'] else 'audio'}) "
        f"in {r['procs']} processes, {r['seconds']} s each way; {m['cores']} cores, Python {m['python']}, "
        f"aiortc {m['aiortc']} (CPU in % of one core)",
        "",
        "| way | server | Janus | server+Janus / member | clients | clients / member "
        "| audio received | clients / member at 100 % | outbound audio / client "
        "| outbound video / client | machine busy | all heard in |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in r["ways"]:
        cells = [
            w["way"],
            w["server_cpu_pct"],
            w["janus_cpu_pct"],
            w["server_janus_cpu_pct_per_member"],
            w["clients_cpu_pct"],
            w["clients_cpu_pct_per_member"],
            f"{w['audio_received_pct']} %",
            w["clients_cpu_pct_per_member_full_rate"],
            "/".join(map(str, w["outbound_audio_per_client"])),
            "/".join(map(str, w["outbound_video_per_client"])),
            w["machine_cpu_pct"],
            f"{w['all_heard_in_s']} s",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += [
        "",
        f"clients' CPU, mesh / SFU: {r['clients_cpu_mesh_over_sfu']}x "
        "(machine busy: every process on the machine, others' jobs included; "
        f"{m['cores'] * 100} % is all of it; audio received: decoded frames over what every "
        "stream at 50 frames/s would give, below 100 % the clients did not keep up; clients / member "
        "at 100 %: their CPU scaled to full rate, an estimate)",
    ]
    return "\n".join(lines)


def _in_netns(argv: list[str]) -> int:
    """Run this script again inside a fresh loopback-only network namespace."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("bench/sfu.py needs root and iproute2 (it makes a network namespace)", file=sys.stderr)
        return 2
    if shutil.which("janus") is None:
        print("bench/sfu.py needs Janus: apt-get install janus gcc (./scripts/test does)", file=sys.stderr)
        return 3
    import subprocess

    from netns import loopback_netns

    with loopback_netns() as prefix:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        }
        return subprocess.run([*prefix, sys.executable, __file__, "--inside", *argv], env=env).returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--members", type=int, default=9, help="members of the call (3..9, default 9)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of CPU measurement each way")
    p.add_argument("--procs", type=int, default=3, help="processes the members are spread over")
    p.add_argument(
        "--video", action="store_true", help="a video call: each member sends 320x240 @ 15 fps too"
    )
    p.add_argument("--quick", action="store_true", help="3 members, 3 s each way: a smoke check")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout (the table goes to stderr)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder with the logs")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.members, args.seconds, args.procs = 3, 3.0, 2
    if not 3 <= args.members <= 9:
        p.error(f"--members {args.members}: a call through the SFU has 3 to 9 members (the call limit)")
    if not 1 <= args.procs <= args.members:
        p.error(f"--procs {args.procs}: between 1 and --members")
    if not args.inside:
        return _in_netns(argv)
    r = run_inside(args)
    if args.json:
        print(table(r), file=sys.stderr)
        print(json.dumps(r))
    else:
        print(table(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
