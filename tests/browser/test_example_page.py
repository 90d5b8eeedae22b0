"""examples/web_minimal.html works as documented: opened from file://, against a
Ringline server with --dev, two windows make a video call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browserkit import NetnsServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "web_minimal.html"


async def test_the_minimal_web_example_makes_a_video_call(browser: Any, web_server: NetnsServer) -> None:
    pages = []
    for me, peer in (("exa", "exb"), ("exb", "exa")):
        ctx = await browser.new_context()
        page = await ctx.new_page()
        await page.goto(f"{EXAMPLE.as_uri()}?server={web_server.url}&me={me}&peer={peer}")
        await page.wait_for_function("() => document.getElementById('signin').onclick", timeout=15000)
        await page.click("#signin")
        await page.wait_for_function("() => document.getElementById('log').textContent.includes('signed in')")
        pages.append(page)
    a, b = pages
    await a.click("#call")
    await b.wait_for_function("() => !document.getElementById('accept').disabled", timeout=15000)
    await b.click("#accept")
    for page in (a, b):
        await page.wait_for_function(
            "() => { const v = document.getElementById('remote');"
            " return v.readyState >= 2 && v.videoWidth > 0; }",
            timeout=15000,
        )
    await a.click("#hangup")
    await b.wait_for_function("() => document.getElementById('log').textContent.includes('ended by exa')")
    for page in (a, b):
        await page.context.close()
