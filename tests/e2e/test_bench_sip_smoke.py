"""The SIP yardstick still runs end to end and reports what docs/benchmarks.md says.

A ``bench/sip_yardstick.py --quick`` run: Kamailio as a stateful SIP proxy between a
SIPp caller and callee on 127.0.0.1, 3 s of calls at 300/s. No timing is judged here:
only that the JSON carries the documented keys, that calls completed and none failed,
that Kamailio's dialogs match the calls, and that no process of the run is left.
Without kamailio and sipp the bench says what to install and exits with 3.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from needs import missing

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "sip_yardstick.py"

pytestmark = pytest.mark.timeout(180)


def _cmdlines_with(needle: str) -> list[str]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in cmd:
                out.append(f"{name}: {cmd}")
    return out


def test_sip_yardstick_quick_run_reports_calls_and_cpu_per_call() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
    )
    if proc.returncode == 3:
        missing(
            f"{json.loads(proc.stdout)['sip_skipped']}; ./scripts/test installs them"
            " (apt-get install kamailio sip-tester)"
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "sip_calls_per_s",
        "sip_calls_failed",
        "sip_cpu_us_per_call",
        "sip_cpu_ms_per_call",
        "sip_server_cpu_pct",
        "sip_rate_offered",
        "sip_allocator",
        "sip_children",
        "sip_retransmissions",
        "sip_other_cpu_pct",
    ):
        assert key in r, (key, sorted(r))
    assert r["sip_rate_offered"] == 300 and r["sip_allocator"] == "qm" and r["sip_children"] == 1
    assert r["sip_calls"] == r["sip_calls_placed"] == 900
    assert r["sip_calls_failed"] == 0
    assert r["sip_calls_per_s"] > 0 and r["sip_cpu_us_per_call"] > 0
    # kamcmd comes with the kamailio package: the dialog check ran
    assert r["sip_dialog_check"] == "ok", r
    assert r["sip_processed_dialogs"] == 900 and r["sip_active_dialogs"] == 0
    assert "Kamailio CPU us per call" in proc.stderr  # the table
    # Every process of the run (Kamailio's, the UAS's) was stopped: none still names its files.
    m = re.search(r"files in (\S+?)\)", proc.stderr)
    assert m, proc.stderr[-2000:]
    assert _cmdlines_with(m.group(1)) == []
    assert not Path(m.group(1)).exists()  # temp dir removed (no --keep)


def test_sip_yardstick_without_sipp_says_what_to_install_and_exits_3() -> None:
    # An empty PATH hides sipp (/usr/bin); the bench reports instead of failing.
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": ""},
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "sipp" in json.loads(proc.stdout)["sip_skipped"]
    assert "apt-get install kamailio sip-tester" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
