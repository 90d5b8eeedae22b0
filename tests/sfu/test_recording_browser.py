"""The call page's recording indicator, for real: inside a loopback-only network namespace a
real Janus (loopback shim preloaded), ``ringline serve --sfu --dev``, one Chromium page on
the call page (``/?user=…``) and a Python SDK engine with media. The engine calls the page
with ``record``; the page answers; while the call is recorded the page shows a
"Recording" badge that is a live status region with its label, and the browser engine
emitted ``onCallRecordingChanged``; when the admin stops recording over REST the badge goes.

The test runs this file again as a script inside the namespace (``python
tests/sfu/test_recording_browser.py``), which prints one JSON object of what it saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))

from netns import loopback_netns, run_in

from needs import missing

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.timeout(180)

WEB = "webrec"

BADGE = """() => {
  const b = document.getElementById('rl-recording');
  return { hidden: b.hidden, visible: b.offsetParent !== null, text: b.textContent.trim(),
           role: b.getAttribute('role'), live: b.getAttribute('aria-live'),
           label: b.getAttribute('aria-label') };
}"""


def test_call_page_shows_that_the_call_is_recorded() -> None:
    if not Path("/usr/bin/chromium").exists():
        missing("Debian's chromium is not installed (./scripts/test installs it)")
    with loopback_netns() as ns:
        r = run_in(ns, [str(Path(__file__).resolve())], timeout=150)
    # Told while it rang (the call view, and so the badge, shows once answered).
    assert not r["before_answer"]["visible"], r["before_answer"]
    on = r["recording"]
    assert on["visible"] and not on["hidden"] and on["text"] == "Recording", on
    assert (on["role"], on["live"], on["label"]) == ("status", "polite", "This call is being recorded"), on
    assert r["engine_events"][0] == {"callID": r["cid"], "isRecording": True}, r["engine_events"]
    off = r["stopped"]
    assert off["hidden"] and not off["visible"] and off["label"] == "Recording stopped", off
    assert r["engine_events"][-1] == {"callID": r["cid"], "isRecording": False}, r["engine_events"]
    assert r["bot_events"] == [True, False]
    assert r["page_errors"] == []


# ---------------------------------------------------------------- inside the namespace


async def _drive() -> dict[str, Any]:
    import aiohttp
    from browser_driver import CHROMIUM_ARGS
    from call_driver import WAIT, Member
    from janusproc import SECRET, running
    from playwright.async_api import async_playwright

    sys.path.insert(0, str(HERE.parent / "e2e"))
    from callbackkit import Admin

    from ringline import CallParams, MediaType
    from serverproc import ServerProcess

    out: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="rl-rec-web-") as tmp,
        running(Path(tmp) / "janus", preload_shim=True) as janus,
    ):
        args = ["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET, "--dev"]
        srv = ServerProcess(Path(tmp) / "srv", extra_args=args).start()
        bot = Member(srv, "botrec", 440.0)
        try:
            async with async_playwright() as p, aiohttp.ClientSession() as http:
                browser = await p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
                )
                page = await browser.new_page(viewport={"width": 1100, "height": 720})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(f"{srv.url}/?user={WEB}")

                async def until(predicate: str) -> Any:
                    handle = await page.wait_for_function(predicate, timeout=WAIT * 1000, polling=100)
                    return await handle.json_value()

                await until("() => document.getElementById('ringline').dataset.connection === 'online'")
                await page.evaluate(
                    "() => { window.recEvents = [];"
                    " window.ringlinePage.engine.on('onCallRecordingChanged',"
                    " (p) => window.recEvents.push(p)); }"
                )
                await bot.login()
                cid = await bot.engine.calls([WEB], MediaType.AUDIO, CallParams(record=True))
                out["cid"] = cid
                await page.locator("#rl-accept").wait_for(state="visible", timeout=WAIT * 1000)
                out["before_answer"] = await page.evaluate(BADGE)
                await page.click("#rl-accept")
                out["recording"] = await until(
                    f"() => {{ const b = ({BADGE})();"
                    " return b.visible && window.recEvents.length >= 1 && b; }"
                )
                await bot.rec.wait_for(
                    "on_call_recording_changed", call_id=cid, is_recording=True, timeout=WAIT
                )
                admin = Admin(srv, http)
                await admin.v4("call_record_http_srv/stop_recording", {"CallId": cid})
                out["stopped"] = await until(
                    f"() => {{ const b = ({BADGE})();"
                    " return b.hidden && window.recEvents.length >= 2 && b; }"
                )
                await bot.rec.wait_for(
                    "on_call_recording_changed", call_id=cid, is_recording=False, timeout=WAIT
                )
                out["engine_events"] = await page.evaluate("() => window.recEvents")
                out["bot_events"] = [
                    e.kwargs["is_recording"] for e in bot.rec.events if e.name == "on_call_recording_changed"
                ]
                await bot.engine.hangup()
                await until("() => document.getElementById('rl-recording').hidden")
                out["page_errors"] = errors
                await browser.close()
        finally:
            await bot.engine.uninit()
            srv.kill()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_drive())))
