"""The call page at ``/``, driven like a person would: sign in, call, answer, talk,
mute, switch to audio, hang up; hooks, ringtone, recent calls, closing the tab."""

from __future__ import annotations

import base64
import io
import secrets
import wave
from collections.abc import AsyncIterator
from typing import Any

import pytest
from browserkit import NetnsServer, artifact

HOOKS = """() => {
  window.hookLog = [];
  window.ringlinePage.setCallback({
    beforeCalling: () => window.hookLog.push("before"),
    afterCalling: () => window.hookLog.push("after"),
  });
}"""


class PageUser:
    def __init__(self, page: Any, user_id: str) -> None:
        self.page = page
        self.user_id = user_id

    async def until(self, predicate: str, arg: Any = None, timeout: float = 15.0) -> Any:
        handle = await self.page.wait_for_function(predicate, arg=arg, timeout=timeout * 1000, polling=100)
        return await handle.json_value()

    async def status(self, status: str) -> None:
        await self.until("(s) => document.getElementById('ringline').dataset.status === s", status)

    async def log_has(self, name: str) -> None:
        await self.until("(n) => window.ringlinePage.log.some((e) => e.name === n)", name)

    async def hooks(self) -> list[str]:
        got: list[str] = await self.page.evaluate("() => window.hookLog")
        return got


@pytest.fixture
async def page_users(browser: Any, web_server: NetnsServer) -> AsyncIterator[Any]:
    """``await page_users(n)``: n users signed in on the call page (dev sign-in)."""
    contexts: list[Any] = []

    async def make(n: int) -> list[PageUser]:
        out = []
        tag = secrets.token_hex(2)
        for i in range(n):
            ctx = await browser.new_context(viewport={"width": 1100, "height": 720})
            contexts.append(ctx)
            page = await ctx.new_page()
            user = f"p{i}{tag}"
            await page.goto(f"{web_server.url}/?user={user}")
            pu = PageUser(page, user)
            await pu.until("() => document.getElementById('ringline').dataset.connection === 'online'")
            await page.evaluate(HOOKS)
            out.append(pu)
        return out

    try:
        yield make
    finally:
        for ctx in contexts:
            await ctx.close()


def ring_wav() -> str:
    """A 0.2 s 440 Hz tone as a data: URL (a ringtone the test can recognise)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10\x00\xf0" * 800)
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


async def test_the_page_calls_rings_connects_shows_video_meters_and_hangs_up(page_users: Any) -> None:
    alice, bob = await page_users(2)
    tone = ring_wav()
    await bob.page.evaluate("(u) => window.ringlinePage.setCallingBell(u)", tone)

    await alice.page.fill("#rl-callees", bob.user_id)
    await alice.page.click("#rl-call-video")
    await alice.status("waiting")
    assert await alice.hooks() == ["before"]

    # Bob's incoming screen rings with the replaced ringtone.
    await bob.until("() => !document.getElementById('rl-incoming').hidden")
    assert alice.user_id in await bob.page.inner_text("#rl-incoming-text")
    ring = await bob.until("() => window.ringlinePage.ringtone.playing && window.ringlinePage.ringtone")
    assert ring["kind"] == "file" and ring["url"] == tone
    assert await bob.hooks() == ["before"]
    await bob.page.click("#rl-accept")
    for me, other in ((alice, bob), (bob, alice)):
        await me.status("connected")
        # The other's tile shows decoded video, gets volume and a quality mark.
        tile = f"#rl-grid figure[data-user='{other.user_id}']"
        await me.page.wait_for_selector(tile)
        await me.until(
            "(sel) => { const v = document.querySelector(sel + ' video');"
            " return v && v.readyState >= 2 && v.videoWidth > 0; }",
            tile,
        )
        await me.until("(sel) => Number(document.querySelector(sel).dataset.volume) > 0", tile)
        quality = await me.until(
            "(sel) => Number(document.querySelector(sel + ' .rl-quality').dataset.quality)", tile
        )
        assert quality in (1, 2)
        await me.until("() => document.getElementById('rl-timer').textContent !== '00:00'", timeout=5)
        await me.log_has("onCallBegin")
    assert not await bob.page.evaluate("() => window.ringlinePage.ringtone.playing")

    await alice.page.screenshot(path=str(artifact("call-page-mid-call.png")), full_page=True)
    await bob.page.screenshot(path=str(artifact("call-page-mid-call-callee.png")), full_page=True)

    # Mute: bob sees alice's microphone off.
    await alice.page.click("#rl-mic")
    await bob.until(
        "(u) => document.querySelector(`#rl-grid figure[data-user='${u}'] .rl-flag`)"
        ".classList.contains('off')",
        alice.user_id,
    )
    # Switch to audio: both pages say so; the camera button goes away.
    await alice.page.click("#rl-to-audio")
    for me in (alice, bob):
        await me.until("() => document.getElementById('rl-call-title').textContent === 'Audio call'")
        await me.until("() => document.getElementById('rl-cam').hidden")
        await me.log_has("onCallTypeChanged")

    await alice.page.click("#rl-hangup")
    for me in (alice, bob):
        await me.status("idle")
        await me.log_has("onCallEnd")
        await me.until("() => !document.getElementById('rl-dial').hidden")
        assert await me.hooks() == ["before", "after"]
    # Recent calls: outgoing for alice, incoming for bob.
    await alice.until("() => document.querySelector('#rl-recent li[data-result=\"outgoing\"]')")
    await bob.until("() => document.querySelector('#rl-recent li[data-result=\"incoming\"]')")


async def test_closing_the_tab_declines_a_ringing_call_and_hangs_up_a_connected_one(
    page_users: Any,
) -> None:
    alice, bob, carol = await page_users(3)
    # Ringing: bob's tab closes -> the call is declined (REJECT), as the vendor's kit does.
    await alice.page.fill("#rl-callees", bob.user_id)
    await alice.page.click("#rl-call-audio")
    await bob.until("() => !document.getElementById('rl-incoming').hidden")
    await bob.page.close(run_before_unload=True)
    await alice.log_has("onReject")
    await alice.status("idle")
    assert await alice.hooks() == ["before", "after"]
    # Connected: alice's tab closes -> carol hears the hang-up.
    await alice.page.fill("#rl-callees", carol.user_id)
    await alice.page.click("#rl-call-audio")
    await carol.until("() => !document.getElementById('rl-incoming').hidden")
    await carol.page.click("#rl-accept")
    await carol.status("connected")
    await alice.status("connected")
    await alice.page.close(run_before_unload=True)
    await carol.log_has("onUserLeave")
    await carol.log_has("onCallEnd")
    await carol.status("idle")
    end = await carol.page.evaluate(
        "() => window.ringlinePage.log.find((e) => e.name === 'onCallEnd').payload"
    )
    assert end["userID"] == alice.user_id and end["reason"] == 1  # HANGUP
