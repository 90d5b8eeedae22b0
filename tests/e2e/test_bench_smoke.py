"""The callback benchmark still runs end to end and reports what docs/benchmarks.md says.

A short ``bench/callbacks.py`` run (low call rate, a second of load, a 1 s receiver
stall, no records) against a real server, receiver and client processes. No timing is
judged here: only that every planned callback arrived exactly once and in order, that
the JSON carries the documented keys, and that the stall held exactly the server's
in-flight limit of requests at most (the other callbacks waited in the outbox).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("workers", ["auto", "0"])
def test_callbacks_bench_quick_run_reports_every_callback_and_the_stall(workers: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "callbacks.py"),
            "--quick",
            "--records",
            "0",
            "--rate",
            "100",
            "--users",
            "40",
            "--workers",
            "1",
            "--warmup",
            "0.5",
            "--duration",
            "1",
            "--stall",
            "1",
            "--after-stall",
            "1",
            "--baseline-duration",
            "0.5",
            "--callback-workers",
            workers,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout)
    assert r["callback_workers"] == workers
    for key in ("callbacks_per_s", "lag_p99_ms", "capacity_callbacks_per_s", "stall_backlog", "steal_pct"):
        assert key in r, (key, sorted(r))
    assert r["all_arrived"] is True, r["outbox_after_wait"]
    assert r["receiver_duplicates"] == 0 and r["order_violations"] == 0
    assert r["callbacks_planned"] == r["receiver_distinct_event_ids"] > 0
    # 4 v4 callbacks per 1v1 call: start, member changed x2, end
    assert r["callbacks_per_call_typical"] == 4
    # The stall held what the server had in flight: at most its limit (256) and, with
    # per-call order, one request per call; the later callbacks of those calls waited
    # in the outbox and arrived after it.
    assert 0 < r["stall_held"] <= 256
    assert r["stall_backlog"] > r["stall_held"]
    # (whether the backlog was gone before the load ended is timing: not judged here)
    assert r["capacity_callbacks_per_s"] > 0 and isinstance(r["stall_cleared"], bool)
    assert r["targets_met"]["all_arrived"] is True
    assert "callbacks delivered/s, capacity" in proc.stderr  # the table
