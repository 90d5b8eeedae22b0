"""Media benchmark: CPU of Python call members (aiortc) per duplex audio call and per
one-way video stream. See docs/benchmarks.md ("Media").

    .venv/bin/python bench/media.py [--window S] [--calls N] [--json] [--quick]

Runs as root inside its own loopback-only network namespace (made and deleted here),
with a real ``ringline serve`` (no ICE servers) and two processes of SDK engines made
with ``media=MediaOptions(...)``:

* the **bot** process: N engines (users ``bot0..``) that answer every call;
* the **caller** process: N engines (``caller0..``) that call them.

Once every call carries media (frames decoding both ways), the CPU of each process is
read from /proc over ``--window`` seconds. Scenarios:

1. ``audio``   -- 1 duplex audio call (a 440 Hz tone each way, Opus);
2. ``audio-N`` -- N duplex audio calls at once (``--calls``, default 4);
3. ``video``   -- 1 video call where only the caller sends video (640x480 @ 15 fps
                  VP8 test pattern), audio both ways as in 1. Its CPU minus scenario
                  1's is the cost of one one-way video stream: encoding on the caller,
                  decoding on the bot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as u

SDK_APP_ID = 1400000077
SECRET = "bench-media-" + "0" * 40
READY_TIMEOUT = 60.0


# ============================================================== member processes


async def _bot(url: str, calls: int, video: bool) -> None:
    from ringline import CallEngine, CallObserver
    from ringline.core.usersig import gen_user_sig
    from ringline.media import MediaOptions, TestTone

    class Answer(CallObserver):
        def __init__(self, engine: CallEngine) -> None:
            self.engine = engine

        async def on_call_received(self, *args: Any) -> None:
            await self.engine.accept()

    engines = []
    for i in range(calls):
        e = CallEngine(url, media=MediaOptions(audio=TestTone(), video=None))
        e.add_observer(Answer(e))
        sig = gen_user_sig(SDK_APP_ID, SECRET, f"bot{i}", 86400, now=int(time.time()))
        await e.init(SDK_APP_ID, f"bot{i}", sig)
        engines.append(e)
    print("ready", flush=True)
    await asyncio.Event().wait()  # until SIGTERM


async def _caller(url: str, calls: int, video: bool, hold: float) -> None:
    from ringline import CallEngine, MediaType
    from ringline.core.usersig import gen_user_sig
    from ringline.media import MediaOptions, TestPattern, TestTone
    from ringline.testing import RecordingObserver

    opts = MediaOptions(audio=TestTone(), video=TestPattern(640, 480, 15) if video else None)
    members: list[tuple[CallEngine, RecordingObserver]] = []
    for i in range(calls):
        e = CallEngine(url, media=opts)
        rec = RecordingObserver()
        e.add_observer(rec)
        sig = gen_user_sig(SDK_APP_ID, SECRET, f"caller{i}", 86400, now=int(time.time()))
        await e.init(SDK_APP_ID, f"caller{i}", sig)
        members.append((e, rec))
    for i, (e, _) in enumerate(members):
        await e.calls([f"bot{i}"], MediaType.VIDEO if video else MediaType.AUDIO)
    for i, (e, rec) in enumerate(members):
        await rec.wait_for("on_call_begin", timeout=READY_TIMEOUT)

        def flowing(e: CallEngine = e, peer: str = f"bot{i}") -> bool:
            s = e.media
            st = s.stats().get(peer) if s is not None else None
            return st is not None and st.audio_frames > 50

        await rec.wait_until(flowing, timeout=READY_TIMEOUT)
    print("ready", flush=True)
    await asyncio.sleep(hold)
    stats = {}
    for i, (e, _) in enumerate(members):
        s = e.media
        if s is not None:
            st = s.stats()[f"bot{i}"]
            stats[f"caller{i}"] = {
                "rtt_ms": st.rtt_ms,
                "loss_pct": st.loss_pct,
                "jitter_ms": st.jitter_ms,
                "quality": st.quality.name,
                "audio_frames": st.audio_frames,
            }
        await e.hangup()
    print("stats " + json.dumps(stats), flush=True)
    for e, _ in members:
        await e.uninit()


# ============================================================== the run (inside the netns)


def _wait_line(proc: u.Proc, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proc.log_path.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line
        if not proc.alive():
            raise RuntimeError(f"{proc.argv[2:]} exited early:\n{proc.tail()}")
        time.sleep(0.1)  # polling a child's log: there is no event to await across processes
    raise RuntimeError(f"no {prefix!r} from {proc.argv[2:]} within {timeout} s:\n{proc.tail()}")


def _scenario(name: str, srv: u.Server, tmp: Path, calls: int, video: bool, window: float) -> dict[str, Any]:
    me = str(Path(__file__).resolve())
    common = ["--url", srv.url, "--calls", str(calls)] + (["--video"] if video else [])
    u.log(f"{name}: {calls} call(s){', caller sends video' if video else ''}")
    bot = u.Proc([sys.executable, me, "--role", "bot", *common], tmp / f"{name}-bot.log")
    caller: u.Proc | None = None
    try:
        _wait_line(bot, "ready", READY_TIMEOUT)
        caller = u.Proc(
            [sys.executable, me, "--role", "caller", *common, "--hold", str(window + 3)],
            tmp / f"{name}-caller.log",
        )
        _wait_line(caller, "ready", READY_TIMEOUT + 10 * calls)
        time.sleep(1.0)  # let the first keyframes and jitter buffers settle
        c0 = {p.pid: u.cpu_seconds(p.pid) for p in (bot, caller)}
        t0 = time.monotonic()
        time.sleep(window)
        wall = time.monotonic() - t0
        cpu = {p.pid: 100.0 * (u.cpu_seconds(p.pid) - c0[p.pid]) / wall for p in (bot, caller)}
        rss = {p.pid: u.rss_kb(p.pid) for p in (bot, caller)}
        stats = json.loads(_wait_line(caller, "stats ", window + 60)[6:])
        caller.proc.wait(timeout=60)
    finally:
        for p in (caller, bot):
            if p is not None:
                p.stop()
    return {
        "scenario": name,
        "calls": calls,
        "video": video,
        "bot_cpu_pct": round(cpu[bot.pid], 1),
        "bot_cpu_pct_per_call": round(cpu[bot.pid] / calls, 1),
        "caller_cpu_pct": round(cpu[caller.pid], 1),
        "caller_cpu_pct_per_call": round(cpu[caller.pid] / calls, 1),
        "bot_rss_mb": round(rss[bot.pid] / 1024, 1),
        "caller_rss_mb": round(rss[caller.pid] / 1024, 1),
        "link": stats,
    }


def run_inside(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rl-bench-media-"))
    srv = u.Server(tmp / "srv", sdk_app_id=SDK_APP_ID, secret_key=SECRET)
    rows = []
    try:
        rows.append(_scenario("audio", srv, tmp, 1, False, args.window))
        if args.calls > 1:
            rows.append(_scenario(f"audio-{args.calls}", srv, tmp, args.calls, False, args.window))
        rows.append(_scenario("video", srv, tmp, 1, True, args.window))
    finally:
        srv.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    audio, video = rows[0], rows[-1]
    import aiortc
    import av

    return {
        "machine": {**u.machine_info(), "aiortc": aiortc.__version__, "av": av.__version__},
        "window_s": args.window,
        "scenarios": rows,
        "per_duplex_audio_call_bot_cpu_pct": rows[1 if len(rows) > 2 else 0]["bot_cpu_pct_per_call"],
        "per_one_way_video_stream": {
            "sender_cpu_pct": round(video["caller_cpu_pct"] - audio["caller_cpu_pct"], 1),
            "receiver_cpu_pct": round(video["bot_cpu_pct"] - audio["bot_cpu_pct"], 1),
        },
    }


def table(r: dict[str, Any]) -> str:
    lines = [
        f"media benchmark: {r['machine']['cores']} cores, Python {r['machine']['python']}, "
        f"aiortc {r['machine']['aiortc']}, PyAV {r['machine']['av']}, window {r['window_s']} s "
        "(CPU in % of one core)",
        "",
        "| scenario | calls | bot CPU | bot CPU / call | caller CPU | caller CPU / call | bot RSS MB "
        "| rtt ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in r["scenarios"]:
        rtts = [v["rtt_ms"] for v in s["link"].values() if v.get("rtt_ms") is not None]
        rtt = f"{max(rtts):.1f}" if rtts else "?"
        lines.append(
            f"| {s['scenario']} | {s['calls']} | {s['bot_cpu_pct']} | {s['bot_cpu_pct_per_call']} | "
            f"{s['caller_cpu_pct']} | {s['caller_cpu_pct_per_call']} | {s['bot_rss_mb']} | {rtt} |"
        )
    v = r["per_one_way_video_stream"]
    lines += [
        "",
        "per duplex audio call handled by a Python bot: "
        f"{r['per_duplex_audio_call_bot_cpu_pct']} % of a core",
        f"per one-way video stream (640x480 @ 15 fps VP8): sender +{v['sender_cpu_pct']} %, "
        f"receiver +{v['receiver_cpu_pct']} % of a core",
    ]
    return "\n".join(lines)


# ============================================================== entry


def _in_netns(argv: list[str]) -> int:
    """Run this script again inside a fresh loopback-only network namespace."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("bench/media.py needs root and iproute2 (it makes a network namespace)", file=sys.stderr)
        return 2
    name = f"rl-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        return subprocess.run(
            ["ip", "netns", "exec", name, sys.executable, __file__, "--inside", *argv]
        ).returncode
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--window", type=float, default=10.0, help="seconds of CPU measurement per scenario")
    p.add_argument("--calls", type=int, default=4, help="calls at once in the audio-N scenario (1 skips it)")
    p.add_argument("--quick", action="store_true", help="3 s windows, 2 calls: a smoke check")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout (the table goes to stderr)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder with the logs")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--role", choices=["bot", "caller"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--video", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--hold", type=float, default=10.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "bot":
        with contextlib.suppress(KeyboardInterrupt):
            u.run_async(_bot(args.url, args.calls, args.video))
        return 0
    if args.role == "caller":
        u.run_async(_caller(args.url, args.calls, args.video, args.hold))
        return 0
    if not args.inside:
        return _in_netns(argv)
    if args.quick:
        args.window, args.calls = 3.0, 2
    r = run_inside(args)
    if args.json:
        print(table(r), file=sys.stderr)
        print(json.dumps(r))
    else:
        print(table(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
