"""The cluster benchmark still runs end to end and reports what docs/benchmarks.md says.

A ``bench/cluster.py --quick`` run: the SQLite single node, one node on PostgreSQL, two
nodes on PostgreSQL + the bench's own nats-server, then the failover phase (the owner
SIGKILLed under load). No timing is judged here: only that the JSON carries the
documented keys, that every completed call has its record, and that every pair was
served again after the failover.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from needs import PG_DSN, missing

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def test_cluster_bench_quick_run_reports_the_documented_keys() -> None:
    if not (shutil.which("nats-server") or Path("/usr/sbin/nats-server").exists()):
        missing("nats-server is not installed; ./scripts/test installs it (apt-get install nats-server)")
    env = dict(os.environ, RINGLINE_BENCH_PG_DSN=PG_DSN, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cluster.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env=env,
    )
    if proc.returncode != 0 and "OSError" in proc.stderr and "5432" in proc.stderr:
        missing(f"PostgreSQL is absent at {PG_DSN}; run ./scripts/test (it starts it)")
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "single_pg_calls_per_s",
        "cluster2_calls_per_s",
        "sqlite_calls_per_s",
        "single_pg_cpu_ms_per_call",
        "cluster_cpu_ms_per_call",
        "single_pg_xact_per_call",
        "cluster2_nats_msgs_per_call",
        "cluster2_fixed_invite_to_ring_p99_ms",
        "lease_s",
        "failover_s",
        "failover_calls_lost",
        "failover_attempts_failed",
    ):
        assert key in r, (key, sorted(r))
    assert r["records_ok"] is True, {k: v for k, v in r.items() if "record" in k or "failed" in k}
    assert r["single_pg_calls_per_s"] > 0 and r["cluster2_calls_per_s"] > 0
    assert r["failover_pairs_never_served"] == 0 and r["failover_s"] is not None
    assert r["failover_calls_lost"] == 0  # nothing the server acknowledged is lost
    assert "PostgreSQL + NATS, 2 nodes" in proc.stderr  # the table
