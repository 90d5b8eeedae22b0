"""The runnable examples run against a real server and do what they say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def test_readme_quick_start_places_and_ends_a_call(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path).start()
    try:
        env = {**os.environ, "RINGLINE_URL": srv.url, "RINGLINE_DATA_DIR": str(tmp_path)}
        out = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    finally:
        srv.kill()
    assert "bob ringing: call from alice" in out
    assert "alice connected" in out and "bob connected" in out
    assert "bob ended by alice: HANGUP" in out
