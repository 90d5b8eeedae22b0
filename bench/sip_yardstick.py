"""Native SIP yardstick: Kamailio as a stateful SIP proxy between a SIPp caller (UAC)
and a SIPp callee (UAS), all on 127.0.0.1, doing complete calls (INVITE, 100, 180,
200, ACK, BYE, 200) at a fixed rate. Its calls/s and CPU per call say what call
signalling costs natively on this machine, beside what ``bench/calls.py`` measures
for Ringline (``bench/calls.py --sip-yardstick`` runs both). See docs/benchmarks.md.

    .venv/bin/python bench/sip_yardstick.py [--rate R] [--duration S] [--children N]
                                            [--fm] [--quick] [--json] [--keep]

Needs ``kamailio`` and ``sipp`` (Debian: ``apt-get install kamailio sip-tester``), and
``kamcmd`` (in the kamailio package) for the dialog check, which is skipped without it.

Exit codes: 0 measured (the table and the JSON say whether calls failed); 1 the
yardstick could not run (a process died, no call succeeded; with ``--json`` the object
is ``{"sip_error": REASON}``); 2 bad options; 3 ``kamailio`` or ``sipp`` is not
installed (one line on stderr says what to install; with ``--json`` the object is
``{"sip_skipped": REASON}``).

How: the Kamailio config and the two SIPp scenarios of ``bench/sip/`` go to a temp dir,
with free UDP ports of 127.0.0.1 filled in. Kamailio starts in the foreground
(``-DD -E``) with ``--children`` UDP workers (1 by default), 1024 MB of shared memory and
its default allocator, qm (``--fm``: fast malloc, ``-x fm -X fm``); then the UAS (ring
time 10 ms), then the UAC, which places ``rate x duration`` calls (hold 10 ms) and exits.
Kamailio's CPU is utime + stime from /proc of its main process and every descendant,
taken just before the UAC starts and ``--settle`` s (7) after it exits, so that the
cleanup of its transactions and dialogs counts, divided by the successful calls.
calls/s is the UAC's successful calls over the UAC's wall time. Every process is
stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as u

SIP_DIR = Path(__file__).resolve().parent / "sip"
INSTALL = "apt-get install kamailio sip-tester"
EXIT_ERROR = 1
EXIT_MISSING = 3

HOLD_MS = 10  # UAS ring time (180 -> 200) and UAC hold (ACK -> BYE)
SETTLE_S = 7.0  # tm keeps a finished transaction 5 s: its cleanup is part of the cost
SHM_MB = 1024  # ~30 KB per call for those 5 s: enough up to ~5,000 calls/s
PKG_MB = 32
MAX_CALLS_IN_FLIGHT = 5000


class YardstickError(RuntimeError):
    """The yardstick could not run (a process died, no call succeeded ...)."""


# ---------------------------------------------------------------- binaries


def _which(name: str) -> str | None:
    path = shutil.which(name)
    if path is None:
        for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
            if os.access(f"{d}/{name}", os.X_OK):
                return f"{d}/{name}"
    return path


def binaries() -> tuple[dict[str, str | None], str | None]:
    """Paths of kamailio, sipp and kamcmd (None where absent), and why the yardstick
    cannot run (None when it can: kamcmd is optional)."""
    found = {name: _which(name) for name in ("kamailio", "sipp", "kamcmd")}
    absent = [n for n in ("kamailio", "sipp") if found[n] is None]
    reason = None
    if absent:
        reason = (
            f"{' and '.join(absent)} not installed; install with `{INSTALL}`"
            " (Debian's SIPp package is sip-tester)"
        )
    return found, reason


def _version(argv: list[str], pattern: str) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        m = re.search(pattern, r.stdout + r.stderr)
        if m:
            return m.group(1)
    return None


# ---------------------------------------------------------------- ports and /proc


def _pick_ports() -> dict[str, int]:
    """Free UDP ports of 127.0.0.1, all distinct: the proxy, the UAS and the UAC, the
    SIPp control sockets, and the SIPp media ports (SIPp binds P and P+2 for its RTP
    echo, even when unused). All are held together while they are chosen."""
    held: list[socket.socket] = []

    def grab(port: int = 0) -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((u.HOST, port))
        except OSError:
            s.close()
            raise
        held.append(s)
        return int(s.getsockname()[1])

    try:
        out = {name: grab() for name in ("proxy", "uas", "uac", "uas_ctl", "uac_ctl")}
        for name in ("uas_media", "uac_media"):
            for _ in range(100):
                p = grab()
                if p + 2 <= 65535:
                    with contextlib.suppress(OSError):
                        grab(p + 2)
                        out[name] = p
                        break
            else:
                raise YardstickError("no free pair of UDP ports for SIPp's media sockets")
        return out
    finally:
        for s in held:
            s.close()


def _udp_sockets() -> dict[int, int]:
    """Local port -> drops, of the UDP sockets bound to 127.0.0.1 (/proc/net/udp)."""
    out: dict[int, int] = {}
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            addr, _, port = fields[1].partition(":")
            if addr == "0100007F":
                p = int(port, 16)
                out[p] = out.get(p, 0) + int(fields[-1])
    return out


def _tree(table: dict[int, u.ProcStat], root: int) -> set[int]:
    """``root`` and all its descendants."""
    kids: dict[int, list[int]] = {}
    for pid, st in table.items():
        kids.setdefault(st[0], []).append(pid)
    out: set[int] = set()
    todo = [root] if root in table else []
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(kids.get(pid, ()))
    return out


def _cpu_delta(t0: dict[int, u.ProcStat], t1: dict[int, u.ProcStat], pids: set[int]) -> float:
    """CPU seconds of ``pids`` between two tables; a process not in ``t0`` (or a reused
    pid) counts from 0."""
    total = 0.0
    for pid in pids:
        st1 = t1[pid]
        st0 = t0.get(pid)
        total += st1[2] - (st0[2] if st0 is not None and st0[1] == st1[1] else 0.0)
    return total


def _wait_udp(port: int, proc: u.Proc, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while port not in _udp_sockets():
        if not proc.alive():
            raise YardstickError(f"{what} exited with {proc.proc.returncode} at start:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise YardstickError(
                f"{what} did not bind 127.0.0.1:{port} within {timeout:.0f} s:\n{proc.tail()}"
            )
        time.sleep(0.05)


def _kamcmd(kamcmd: str, ctl: Path, *args: str) -> str:
    r = subprocess.run(
        [kamcmd, "-s", f"unix:{ctl}", *args], capture_output=True, text=True, timeout=10, check=False
    )
    if r.returncode != 0:
        raise YardstickError(f"kamcmd {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def _wait_kamcmd(kamcmd: str, ctl: Path, proc: u.Proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise YardstickError(f"kamailio exited with {proc.proc.returncode} at start:\n{proc.tail()}")
        if ctl.exists():
            with contextlib.suppress(YardstickError, subprocess.TimeoutExpired):
                _kamcmd(kamcmd, ctl, "core.uptime")
                return
        if time.monotonic() > deadline:
            raise YardstickError(f"kamailio's control socket did not answer within {timeout:.0f} s")
        time.sleep(0.05)


def _sipp_stats(path: Path) -> dict[str, str]:
    """The last line of a SIPp ``-trace_stat`` CSV (cumulative counters, ``(C)``)."""
    lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    if len(lines) < 2:
        raise YardstickError(f"no statistics in {path.name}")
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def _stop_all(procs: list[u.Proc], kam_pids: dict[int, int]) -> None:
    """Stop every process by PID: the UAS first gently (SIGUSR1: it ends its calls),
    Kamailio's main process with SIGTERM (it stops its children), then any Kamailio
    process still there with SIGKILL."""
    table = u.proc_table()
    for pid, start in list(kam_pids.items()):
        if pid in table and table[pid][1] == start:
            kam_pids.update({k: table[k][1] for k in _tree(table, pid)})
    for p in reversed(procs):
        if p.alive() and p.argv[0].endswith("sipp"):
            with contextlib.suppress(ProcessLookupError):
                p.proc.send_signal(signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(6.0)
        p.stop(grace=10.0)
    deadline = time.monotonic() + 5.0
    while True:
        table = u.proc_table()
        left = [pid for pid, start in kam_pids.items() if pid in table and table[pid][1] == start]
        left = [pid for pid in left if table[pid][3] != "Z"]
        if not left:
            return
        if time.monotonic() > deadline:
            for pid in left:
                u.log(f"kamailio process {pid} still there after its main process ended; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.1)


# ---------------------------------------------------------------- the run


def run(
    rate: int,
    duration: float,
    *,
    children: int = 1,
    fm: bool = False,
    shm_mb: int = SHM_MB,
    settle: float = SETTLE_S,
    keep: bool = False,
) -> dict[str, Any]:
    """One yardstick run; the ``sip_*`` results. ``{"sip_skipped": REASON}`` when kamailio
    or sipp is not installed; raises :class:`YardstickError` when it cannot run."""
    found, reason = binaries()
    if reason is not None:
        return {"sip_skipped": reason}
    kamailio, sipp, kamcmd = found["kamailio"], found["sipp"], found["kamcmd"]
    assert kamailio is not None and sipp is not None
    n_calls = max(1, round(rate * duration))
    tmp = Path(tempfile.mkdtemp(prefix="ringline-sip-"))
    procs: list[u.Proc] = []
    kam_pids: dict[int, int] = {}  # every Kamailio process seen: pid -> start time
    out: dict[str, Any] = {
        "sip_rate_offered": rate,
        "sip_duration_s": duration,
        "sip_allocator": "fm" if fm else "qm",
        "sip_children": children,
        "sip_shm_mb": shm_mb,
        "sip_hold_ms": HOLD_MS,
        "sip_settle_s": settle,
        "sip_kamailio_version": _version([kamailio, "-v"], r"kamailio ([0-9][^ ]*)"),
        "sip_sipp_version": _version([sipp, "-v"], r"SIPp v([0-9.]+)"),
    }
    try:
        ports = _pick_ports()
        ctl = tmp / "kamailio_ctl"
        cfg = (SIP_DIR / "kamailio.cfg").read_text()
        for key, val in (
            ("@CHILDREN@", str(children)),
            ("@PROXY_PORT@", str(ports["proxy"])),
            ("@UAS_PORT@", str(ports["uas"])),
            ("@CTL_SOCKET@", str(ctl)),
        ):
            cfg = cfg.replace(key, val)
        (tmp / "kamailio.cfg").write_text(cfg)
        for name in ("uac.xml", "uas.xml"):
            shutil.copyfile(SIP_DIR / name, tmp / name)

        argv = [kamailio, "-DD", "-E", "-f", str(tmp / "kamailio.cfg"), "-m", str(shm_mb), "-M", str(PKG_MB)]
        if fm:
            argv += ["-x", "fm", "-X", "fm"]
        kam = u.Proc(argv, tmp / "kamailio.log", cwd=tmp)
        procs.append(kam)
        kam_pids[kam.pid] = u.proc_table()[kam.pid][1]
        _wait_udp(ports["proxy"], kam, "kamailio")
        if kamcmd is not None:
            _wait_kamcmd(kamcmd, ctl, kam)
        table = u.proc_table()
        kam_pids.update({pid: table[pid][1] for pid in _tree(table, kam.pid)})

        def sipp_argv(role: str) -> list[str]:
            return [
                sipp,
                "-sf",
                str(tmp / f"{role}.xml"),
                *([f"{u.HOST}:{ports['proxy']}"] if role == "uac" else []),
                "-i",
                u.HOST,
                "-p",
                str(ports[role]),
                "-mi",
                u.HOST,
                "-mp",
                str(ports[f"{role}_media"]),
                "-ci",
                u.HOST,
                "-cp",
                str(ports[f"{role}_ctl"]),
                "-d",
                str(HOLD_MS),
                "-buff_size",
                "1048576",
                "-nostdin",
                "-trace_stat",
                "-stf",
                str(tmp / f"{role}_stat.csv"),
                "-fd",
                "1",
                "-trace_err",
                "-error_file",
                str(tmp / f"{role}_errors.log"),
            ]

        uas = u.Proc(sipp_argv("uas"), tmp / "uas.log", cwd=tmp)
        procs.append(uas)
        _wait_udp(ports["uas"], uas, "the SIPp UAS")

        u.log(
            f"kamailio pid {kam.pid} on udp {u.HOST}:{ports['proxy']} ({children} worker(s), "
            f"{'fm' if fm else 'qm'}, files in {tmp}); {n_calls:,} calls at {rate}/s"
        )
        uac_argv = [
            *sipp_argv("uac"),
            "-r",
            str(rate),
            "-rp",
            "1000",
            "-m",
            str(n_calls),
            "-l",
            str(MAX_CALLS_IN_FLIGHT),
            "-timeout",
            f"{int(duration) + 60}s",
            "-timeout_error",
        ]
        t0_table = u.proc_table()
        busy0, _ = u.machine_cpu()
        t0 = time.monotonic()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        uac = u.Proc(uac_argv, tmp / "uac.log", cwd=tmp)
        procs.append(uac)
        try:
            rc = uac.proc.wait(duration + 90.0)
        except subprocess.TimeoutExpired as e:
            raise YardstickError(f"the SIPp UAC did not finish within {duration + 90:.0f} s") from e
        uac_wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if rc not in (0, 1):  # 0: every call succeeded, 1: some failed
            raise YardstickError(f"the SIPp UAC exited with {rc}:\n{uac.tail()}")
        u.log(f"  UAC done in {uac_wall:.1f} s; {settle:.0f} s for Kamailio's cleanup")
        time.sleep(settle)  # part of the measured interval, not a synchronisation
        t1_table = u.proc_table()
        busy1, _ = u.machine_cpu()
        t1 = time.monotonic()
        if not kam.alive():
            raise YardstickError(f"kamailio exited with {kam.proc.returncode}:\n{kam.tail()}")
        kam_tree = _tree(t1_table, kam.pid)
        kam_pids.update({pid: t1_table[pid][1] for pid in kam_tree})
        drops = _udp_sockets()

        st = _sipp_stats(tmp / "uac_stat.csv")
        ok = int(st["SuccessfulCall(C)"])
        failed = int(st["FailedCall(C)"])
        if ok == 0:
            raise YardstickError(f"no call succeeded ({failed} failed):\n{uac.tail()}\n{kam.tail()}")
        kam_cpu = _cpu_delta(t0_table, t1_table, kam_tree)
        uas_cpu = _cpu_delta(t0_table, t1_table, {uas.pid})
        uac_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        window = max(1e-9, t1 - t0)
        busy = busy1 - busy0  # /proc/stat: the whole machine, all cores
        out.update(
            {
                "sip_calls": ok,
                "sip_calls_failed": failed,
                "sip_calls_placed": int(st.get("OutgoingCall(C)", ok + failed)),
                "sip_calls_per_s": round(ok / uac_wall, 1),
                "sip_uac_wall_s": round(uac_wall, 2),
                "sip_cpu_us_per_call": round(1e6 * kam_cpu / ok, 1),
                "sip_cpu_ms_per_call": round(1e3 * kam_cpu / ok, 3),
                "sip_server_cpu_pct": round(100.0 * kam_cpu / uac_wall, 1),
                "sip_kamailio_processes": len(kam_tree),
                "sip_uac_cpu_pct": round(100.0 * uac_cpu / uac_wall, 1),
                "sip_uas_cpu_pct": round(100.0 * uas_cpu / uac_wall, 1),
                # over the whole interval (traffic + settle), in % of one core
                "sip_machine_busy_pct": round(100.0 * busy / window, 1),
                "sip_other_cpu_pct": round(
                    max(0.0, 100.0 * (busy - kam_cpu - uas_cpu - uac_cpu) / window), 1
                ),
                "sip_retransmissions": int(st.get("Retransmissions(C)", 0)),
                "sip_udp_drops": sum(drops.get(ports[k], 0) for k in ("proxy", "uas", "uac")),
            }
        )
        if kamcmd is None:
            out["sip_dialogs_ok"] = None
            out["sip_dialog_check"] = "skipped: kamcmd not found"
        else:
            stats = {
                m.group(1): int(m.group(2))
                for m in re.finditer(
                    r"dialog:(\w+) = (\d+)", _kamcmd(kamcmd, ctl, "stats.get_statistics", "dialog:")
                )
            }
            processed, active = stats.get("processed_dialogs"), stats.get("active_dialogs")
            out["sip_processed_dialogs"] = processed
            out["sip_active_dialogs"] = active
            out["sip_failed_dialogs"] = stats.get("failed_dialogs")
            out["sip_expired_dialogs"] = stats.get("expired_dialogs")
            out["sip_dialogs_ok"] = processed == ok + failed and active == 0
            out["sip_dialog_check"] = "ok" if out["sip_dialogs_ok"] else "MISMATCH"
        u.log(
            f"  {ok:,} calls ({failed} failed), {out['sip_calls_per_s']:,.1f} calls/s; Kamailio "
            f"{out['sip_cpu_us_per_call']:.0f} us CPU per call, {out['sip_server_cpu_pct']}% of a core"
        )
    finally:
        _stop_all(procs, kam_pids)
        if keep:
            u.log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


# ---------------------------------------------------------------- report


def table(r: dict[str, Any]) -> str:
    def row(name: str, val: Any) -> tuple[str, str]:
        if isinstance(val, float):
            return name, f"{val:,.1f}"
        if isinstance(val, int) and not isinstance(val, bool):
            return name, f"{val:,}"
        return name, "-" if val is None else str(val)

    dialogs = (
        f"{r['sip_processed_dialogs']:,} / {r['sip_active_dialogs']} ({r['sip_dialog_check']})"
        if "sip_processed_dialogs" in r
        else r["sip_dialog_check"]
    )
    rows = [
        row(
            "Kamailio (allocator, UDP workers, shm MB)",
            f"{r['sip_kamailio_version']}: {r['sip_allocator']}, {r['sip_children']}, {r['sip_shm_mb']}",
        ),
        row("calls/s offered x seconds", f"{r['sip_rate_offered']:,} x {r['sip_duration_s']:g}"),
        row("complete calls / failed", f"{r['sip_calls']:,} / {r['sip_calls_failed']:,}"),
        row("complete calls/s", r["sip_calls_per_s"]),
        row("Kamailio CPU us per call", r["sip_cpu_us_per_call"]),
        row("Kamailio CPU % of a core", r["sip_server_cpu_pct"]),
        row(
            "SIPp UAC / UAS / other processes CPU %",
            f"{r['sip_uac_cpu_pct']:.0f} / {r['sip_uas_cpu_pct']:.0f} / {r['sip_other_cpu_pct']:.0f}",
        ),
        row("retransmissions / UDP drops", f"{r['sip_retransmissions']:,} / {r['sip_udp_drops']:,}"),
        row("dialogs processed / active after", dialogs),
    ]
    w0 = max(len(a) for a, _ in rows)
    w1 = max(len(b) for _, b in rows)
    lines = [f"{'SIP yardstick':<{w0}}  {'value':>{w1}}", "-" * (w0 + w1 + 2)]
    lines += [f"{a:<{w0}}  {b:>{w1}}" for a, b in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rate", type=int, default=None, help="calls/s offered (default 1000; --quick 300)")
    p.add_argument("--duration", type=float, default=None, help="seconds of calls (default 15; --quick 3)")
    p.add_argument(
        "--children", type=int, default=1, help="Kamailio UDP workers (default 1; Debian's own config has 8)"
    )
    p.add_argument(
        "--fm", action="store_true", help="Kamailio's fast allocator (-x fm -X fm) instead of its default, qm"
    )
    p.add_argument(
        "--shm",
        type=int,
        default=SHM_MB,
        metavar="MB",
        help=f"Kamailio's shared memory (default {SHM_MB}; ~30 KB per call for 5 s: use 3072 above 5,000/s)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=SETTLE_S,
        metavar="S",
        help=f"seconds after the last call still counted, for Kamailio's cleanup (default {SETTLE_S:g})",
    )
    p.add_argument("--quick", action="store_true", help="short: 3 s at 300 calls/s")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs, SIPp statistics)")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)"
    )
    args = p.parse_args(argv)
    rate = args.rate if args.rate is not None else (300 if args.quick else 1000)
    duration = args.duration if args.duration is not None else (3.0 if args.quick else 15.0)
    if rate < 1 or duration <= 0 or args.children < 1 or args.shm < 64 or args.settle < 0:
        p.error("--rate, --duration, --children must be positive, --shm at least 64, --settle not negative")

    def emit(obj: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(obj))

    try:
        r = run(
            rate,
            duration,
            children=args.children,
            fm=args.fm,
            shm_mb=args.shm,
            settle=args.settle,
            keep=args.keep,
        )
    except YardstickError as e:
        print(f"sip_yardstick: could not run: {e}", file=sys.stderr)
        emit({"sip_error": str(e)})
        return EXIT_ERROR
    if "sip_skipped" in r:
        print(f"sip_yardstick: skipped: {r['sip_skipped']}", file=sys.stderr)
        emit(r)
        return EXIT_MISSING
    r["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = table(r)
    print(text, file=sys.stderr if args.json else sys.stdout)
    emit(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
