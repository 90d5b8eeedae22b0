"""Runs inside a loopback-only network namespace (tests/sfu/test_recording.py): a real Janus
(loopback shim preloaded) and ``ringline serve --sfu``, then ``examples/recorded_call.py``
as a user runs it, against that server. Prints one JSON line: the example's exit code,
its output and where it saved the recording.

Usage: ``example_recorded_driver.py OUT_DIR SECONDS``."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from janusproc import SECRET, running

from serverproc import SDK_APP_ID, ServerProcess
from serverproc import SECRET as APP_SECRET

ROOT = Path(__file__).resolve().parents[2]
TMP = Path(tempfile.mkdtemp(prefix="rl-rec-example-"))


def main(out_dir: Path, seconds: str) -> dict[str, object]:
    out = out_dir / "call.ogg"
    with running(TMP / "janus", preload_shim=True) as janus:
        (TMP / "srv").mkdir()
        srv = ServerProcess(TMP / "srv", extra_args=["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET])
        srv.start()
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "examples" / "recorded_call.py"),
                    "--url",
                    srv.url,
                    "--sdk-app-id",
                    str(SDK_APP_ID),
                    "--secret-key",
                    APP_SECRET,
                    "--seconds",
                    seconds,
                    "--out",
                    str(out),
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=150,
                cwd=out_dir,
            )
        finally:
            srv.kill()
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr[-3000:], "file": str(out)}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2])))
