"""examples/answering_bot.py answers a call placed by examples/call_and_measure.py.

    python tests/media/examples_driver.py      (inside a loopback-only netns)

Starts ``ringline serve``, the bot (``--once``), then the caller (``--json``), and
prints one JSON object: the caller's summary, the bot's output, and the RMS level of
each recording (the caller's tone recorded by the bot, the bot's greeting recorded
by the caller).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np

from ringline.media import rms_level
from serverproc import SDK_APP_ID, SECRET, ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def wav_level(path: str) -> dict[str, float]:
    with wave.open(path) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return {"seconds": len(pcm) / w.getframerate(), "level": rms_level(pcm)}


def main() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rl-examples-") as tmp:
        srv = ServerProcess(Path(tmp) / "srv").start()
        auth = ["--url", srv.url, "--sdk-app-id", str(SDK_APP_ID), "--secret-key", SECRET]
        bot = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "examples/answering_bot.py"),
                *auth,
                "--user",
                "bot",
                "--hold",
                "6",
                "--record-dir",
                f"{tmp}/bot-rec",
                "--once",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert bot.stdout is not None
            for line in bot.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        bot_out: list[str] = []
        try:
            while True:  # wait for the bot to be logged in (bounded by the queue timeout)
                line = lines.get(timeout=60)
                if line is None:
                    raise RuntimeError(f"the bot exited: {bot_out}")
                bot_out.append(line)
                if line.startswith("logged in"):
                    break
            caller = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "examples/call_and_measure.py"),
                    *auth,
                    "--user",
                    "caller",
                    "--callee",
                    "bot",
                    "--seconds",
                    "30",
                    "--record-dir",
                    f"{tmp}/caller-rec",
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            out["caller_rc"] = caller.returncode
            out["caller_lines"] = caller.stdout.splitlines()[:-1]
            out["caller_stderr"] = caller.stderr[-2000:]
            summary = json.loads(caller.stdout.splitlines()[-1])
            out["caller"] = summary
            out["bot_rc"] = bot.wait(timeout=60)
            reader.join(timeout=10)
            while (line := lines.get(timeout=5)) is not None:
                bot_out.append(line)
            out["bot_lines"] = bot_out
            recorded = [ln for ln in bot_out if ln.startswith("ended:")]
            bot_recordings = json.loads(recorded[-1].split("recordings: ", 1)[1]) if recorded else {}
            out["caller_recorded_by_bot"] = [wav_level(p) for p in bot_recordings.get("caller", [])]
            out["greeting_recorded_by_caller"] = [wav_level(p) for p in summary["recordings"].get("bot", [])]
        finally:
            if bot.poll() is None:
                bot.kill()
                bot.wait()
            srv.stop()
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
