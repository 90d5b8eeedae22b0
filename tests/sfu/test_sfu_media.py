"""Media through Janus: three aiortc members of one call, inside a loopback-only network
namespace with a real Janus (loopback shim preloaded) and ``ringline serve --sfu``, each
publish a tone once through the server's ``sfu`` requests and hear the other two's tones
(each feed's own frequency) over subscriptions the server set up with Janus; when one
leaves, the other two go on hearing each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))

from netns import loopback_netns

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_three_members_hear_each_other_through_janus() -> None:
    with loopback_netns() as ns:
        path = os.pathsep.join(
            p
            for p in [str(ROOT / "tests"), str(ROOT / "tests" / "media"), os.environ.get("PYTHONPATH", "")]
            if p
        )
        proc = subprocess.run(
            [*ns, sys.executable, str(HERE / "sfu_media_driver.py")],
            capture_output=True,
            text=True,
            timeout=150,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": path},
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    r = json.loads(lines[-1])
    freq = {"alice": 440, "bob": 660, "carol": 880}
    assert sorted(r["members"]) == sorted(freq)
    for who, feeds in r["members"].items():
        assert sorted(feeds) == sorted(set(freq) - {who}), who
        for feed, got in feeds.items():
            assert got["state"] == "connected", (who, feed)
            assert got["frames"] >= 100, (who, feed)  # 2 s of audio
            assert abs(got["peak_hz"] - freq[feed]) <= 20, (who, feed, got)  # that member's tone
            assert got["rms"] > 0.05, (who, feed, got)  # a tone, not silence
    assert all(n >= 50 for n in r["after_carol_left"].values()), r["after_carol_left"]
