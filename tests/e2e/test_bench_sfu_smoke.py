"""The SFU benchmark still runs end to end and reports what docs/benchmarks.md says.

A ``bench/sfu.py --quick --json`` run: a 3-member audio call through a real Janus, then
as a full mesh, 3 s of CPU measurement each way, in a loopback-only namespace the bench
makes. No timing is judged here: only that both ways completed (every member heard
every other, the record ended normally), that each client sent its audio once through
the SFU and twice in the mesh, and that the JSON carries the documented keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from needs import missing

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def test_sfu_bench_quick_run_compares_the_sfu_with_the_mesh() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sfu.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    if proc.returncode in (2, 3):  # no root / iproute2, or no Janus
        missing(f"{proc.stderr.strip()}; ./scripts/test installs what it needs")
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["members"] == 3 and r["video"] is False
    assert "clients_cpu_mesh_over_sfu" in r and r["machine"]["cores"] >= 1
    sfu, mesh = r["ways"]
    assert (sfu["way"], mesh["way"]) == ("sfu", "mesh")
    for w in (sfu, mesh):
        for key in (
            "server_cpu_pct",
            "janus_cpu_pct",
            "server_janus_cpu_pct_per_member",
            "clients_cpu_pct",
            "clients_cpu_pct_per_member",
            "machine_cpu_pct",
            "all_heard_in_s",
            "audio_received_pct",
            "clients_cpu_pct_per_member_full_rate",
        ):
            assert w[key] >= 0, (w["way"], key, w)
        assert w["record"] == "NormalEnd", w
        assert w["receiving_per_client"] == [2], w  # a connection per other member
        assert w["clients_cpu_pct"] > 0, w
    assert sfu["outbound_audio_per_client"] == [1]  # one upload each through the SFU
    assert mesh["outbound_audio_per_client"] == [2]  # N-1 in the mesh
    assert sfu["janus_cpu_pct"] > 0 and mesh["janus_cpu_pct"] == 0  # no Janus in the mesh
    assert sfu["outbound_video_per_client"] == mesh["outbound_video_per_client"] == [0]
