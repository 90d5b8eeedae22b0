"""The call page as a person meets it, at a desktop and a phone viewport: signing in with
the keyboard, seeing whom you call (their name, or that they are offline), ringback and
ringtone (and muting them), answering with the keyboard, 1v1 video with a
picture-in-picture, a group grid, avatars for cameras that are off, sentences instead of
API errors, and no serious accessibility violation (axe-core) on any screen.

Screenshots of every step land in ``test-artifacts/`` (git-ignored):
``call-page-<viewport>-<step>.png``.
"""

from __future__ import annotations

import secrets
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browserkit import NetnsServer, artifact

from needs import missing

VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
AXE_TARBALL = Path(__file__).resolve().parents[2] / ".cache" / "web-frameworks" / "axe-core-4.10.2.tgz"


def axe_source() -> str:
    """axe-core's browser build, read from the npm tarball scripts/test fetched."""
    if not AXE_TARBALL.is_file():
        missing(f"{AXE_TARBALL} is absent: ./scripts/test fetches it with `npm pack` (see DEVELOPERS.md)")
    with tarfile.open(AXE_TARBALL) as tar:
        member = tar.extractfile("package/axe.min.js")
        assert member is not None
        return member.read().decode()


class Person:
    """One person with the call page open in a browser context of their own."""

    def __init__(self, page: Any, user_id: str, name: str, viewport: str) -> None:
        self.page = page
        self.user_id = user_id
        self.name = name
        self.viewport = viewport

    async def until(self, predicate: str, arg: Any = None, timeout: float = 15.0) -> Any:
        handle = await self.page.wait_for_function(predicate, arg=arg, timeout=timeout * 1000, polling=100)
        return await handle.json_value()

    async def view(self, view: str) -> None:
        """Wait until the page shows ``view`` (signin, home, dialing, incoming, call)."""
        await self.until("(v) => document.getElementById('ringline').dataset.view === v", view)

    async def text(self, selector: str) -> str:
        got: str = await self.page.inner_text(selector)
        return got

    async def tone(self) -> dict[str, Any]:
        got: dict[str, Any] = await self.page.evaluate("() => window.ringlinePage.tone")
        return got

    async def tone_is(self, kind: str) -> None:
        """The tone ``kind`` plays (Web Audio running), or none does (``"none"``)."""
        await self.until(
            "(k) => { const t = window.ringlinePage.tone;"
            " return k === 'none' ? t.kind === 'none' && !t.playing : t.kind === k && t.playing; }",
            kind,
        )
        assert await self.page.evaluate("() => document.getElementById('ringline').dataset.tone") == kind

    async def shot(self, step: str) -> None:
        await self.page.screenshot(path=str(artifact(f"call-page-{self.viewport}-{step}.png")))

    async def accessible(self, axe: str, where: str) -> None:
        """No serious or critical axe-core violation on what the page shows now."""
        if not await self.page.evaluate("() => !!window.axe"):
            await self.page.add_script_tag(content=axe)
        violations = await self.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".map((v) => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.slice(0, 4).map((n) => n.target.join(' '))}))"
        )
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not bad, f"{self.viewport} {where}: {bad}"


@pytest.fixture
async def people(browser: Any, web_server: NetnsServer) -> AsyncIterator[Any]:
    """``await people(viewport, "Alice Archer", ...)``: each signs in on the page (keyboard)."""
    contexts: list[Any] = []

    async def make(viewport: str, *names: str) -> list[Person]:
        out = []
        tag = secrets.token_hex(2)
        for i, name in enumerate(names):
            ctx = await browser.new_context(**VIEWPORTS[viewport])
            contexts.append(ctx)
            page = await ctx.new_page()
            page.on("pageerror", lambda e: print("page error:", e))
            person = Person(page, f"{name.split()[0].lower()}{i}{tag}", name, viewport)
            await page.goto(web_server.url + "/")
            await person.view("signin")
            await person.until("() => document.getElementById('rl-signin-msg').textContent !== ''")
            if i == 0:
                await person.shot("1-sign-in")
            await page.fill("#rl-user", person.user_id)
            await page.fill("#rl-name", name)
            await page.press("#rl-name", "Enter")
            await person.view("home")
            await person.until("() => document.getElementById('ringline').dataset.connection === 'online'")
            out.append(person)
        return out

    try:
        yield make
    finally:
        for ctx in contexts:
            await ctx.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_a_1v1_video_call_as_the_caller_and_the_callee_see_it(people: Any, viewport: str) -> None:
    axe = axe_source()
    alice, bob = await people(viewport, "Alice Archer", "Bob Baker")
    await alice.accessible(axe, "home")
    # The developer log is there, folded away.
    assert await alice.page.evaluate("() => !document.getElementById('rl-devlog').open")
    assert await alice.text("#rl-devlog summary") == "Developer log"

    # Enter in the callee field places a video call.
    await alice.page.fill("#rl-callees", bob.user_id)
    await alice.page.press("#rl-callees", "Enter")
    await alice.view("dialing")
    # The caller sees whom it calls (Bob's name, not his id) and hears the ringback.
    await alice.until(
        "(n) => document.getElementById('rl-call-title').textContent === 'Calling ' + n", bob.name
    )
    assert await alice.text("#rl-call-state") == "Ringing…"
    await alice.tone_is("ringback")

    # The callee's screen: the caller's name, the ringtone, Accept focused.
    await bob.view("incoming")
    assert await bob.text("#rl-incoming-name") == alice.name
    assert "is calling you — video call" in await bob.text("#rl-incoming-text")
    await bob.tone_is("ringtone")
    assert await bob.page.evaluate("() => document.activeElement.id") == "rl-accept"
    await alice.shot("2-caller-ringing")
    await bob.shot("3-callee-ringing")
    await alice.accessible(axe, "dialing")
    await bob.accessible(axe, "incoming")

    # Enter answers (the Accept button has the focus); both tones stop.
    await bob.page.keyboard.press("Enter")
    for me, other in ((alice, bob), (bob, alice)):
        await me.view("call")
        await me.tone_is("none")
        tile = f"#rl-grid figure[data-user='{other.user_id}']"
        # 1v1: the other fills the stage, showing video; I am the picture-in-picture.
        await me.until("(sel) => document.querySelector(sel)?.dataset.video === 'on'", tile)
        assert await me.page.evaluate("() => document.getElementById('rl-grid').dataset.layout") == "pip"
        assert await me.text(f"{tile} .rl-name") == other.name
        box = await me.page.locator(tile).bounding_box()
        own = await me.page.locator("#rl-grid figure.rl-self").bounding_box()
        size = VIEWPORTS[viewport]["viewport"]
        assert box["width"] == size["width"], (box, size)  # full width
        assert own["width"] * own["height"] < box["width"] * box["height"] / 4, (own, box)
    await alice.until("() => document.getElementById('rl-timer').textContent !== '00:00'")
    await alice.shot("4-in-call-1v1")
    await bob.shot("4-in-call-1v1-callee")
    await alice.accessible(axe, "in call")

    # Camera off: Bob sees Alice's avatar (her initials) instead of her video.
    await alice.page.click("#rl-cam")
    alice_tile = f"#rl-grid figure[data-user='{alice.user_id}']"
    await bob.until("(sel) => document.querySelector(sel).dataset.video === 'off'", alice_tile)
    assert await bob.text(f"{alice_tile} .rl-big-avatar") == "AA"
    await bob.shot("5-camera-off")

    await alice.page.click("#rl-hangup")
    for me in (alice, bob):
        await me.view("home")
        await me.tone_is("none")
        await me.until("() => document.getElementById('rl-dial-msg').textContent.startsWith('Call ended')")
    assert "You hung up" in await alice.text("#rl-dial-msg")
    assert f"{alice.name} hung up" in await bob.text("#rl-dial-msg")
    await alice.until("() => document.querySelector('#rl-recent li[data-result=\"outgoing\"]')")
    await alice.shot("6-after-hang-up")
    await alice.accessible(axe, "after hang-up")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_a_group_call_is_a_grid(people: Any, viewport: str) -> None:
    alice, bob, carol = await people(viewport, "Alice Archer", "Bob Baker", "Carol Chen")
    await alice.page.fill("#rl-callees", f"{bob.user_id}, {carol.user_id}")
    await alice.page.click("#rl-call-video")
    await alice.until(
        "(n) => document.getElementById('rl-call-title').textContent === 'Calling ' + n",
        f"{bob.name} and {carol.name}",
    )
    assert await alice.page.locator("#rl-dialing .rl-callee").count() == 2
    await alice.shot("7-group-dialing")
    for callee in (bob, carol):
        await callee.view("incoming")
        assert f"with {(carol if callee is bob else bob).user_id}" in await callee.text("#rl-incoming-text")
        await callee.page.click("#rl-accept")
    for me in (alice, bob, carol):
        await me.view("call")
        await me.until("() => document.querySelectorAll('#rl-grid figure:not(.rl-waiting)').length === 3")
        assert await me.page.evaluate("() => document.getElementById('rl-grid').dataset.layout") == "grid"
        await me.until(
            "() => [...document.querySelectorAll('#rl-grid figure:not(.rl-self)')]"
            ".every((f) => f.dataset.video === 'on')"
        )
    await alice.shot("8-in-call-group")
    await bob.shot("8-in-call-group-member")
    await alice.page.click("#rl-hangup")
    await alice.view("home")
    for me in (bob, carol):
        await me.until(
            "(n) => document.getElementById('rl-toast').textContent === n + ' left the call'", alice.name
        )
    await bob.page.click("#rl-hangup")
    for me in (bob, carol):
        await me.view("home")


async def test_an_offline_callee_a_muted_ringback_and_errors_in_words(
    people: Any, web_server: NetnsServer
) -> None:
    (alice,) = await people("desktop", "Alice Archer")
    nobody = "nobody" + secrets.token_hex(3)
    await alice.page.fill("#rl-callees", nobody)
    await alice.page.click("#rl-call-audio")
    await alice.view("dialing")
    await alice.until(
        "(t) => document.getElementById('rl-call-state').textContent === t",
        f"{nobody} is offline — ringing until the timeout",
    )
    await alice.tone_is("ringback")
    # The ringing can be muted; the tone keeps its place (and stops with the call).
    await alice.page.click("#rl-tone-mute")
    tone = await alice.tone()
    assert tone["muted"] and tone["kind"] == "ringback"
    assert await alice.page.get_attribute("#rl-tone-mute", "aria-pressed") == "true"
    await alice.shot("9-callee-offline")
    await alice.page.click("#rl-hangup")
    await alice.view("home")
    await alice.tone_is("none")
    assert await alice.text("#rl-dial-msg") == "Call cancelled."
    await alice.page.evaluate("() => window.ringlinePage.muteTones(false)")

    # Mistakes typed by a person are answered in words, before anything is sent.
    for typed, said in (
        ("", "Type the user id of the person to call."),
        ("bob smith!", "“smith!” is not a user id"),
        (alice.user_id, "That is you."),
    ):
        await alice.page.fill("#rl-callees", typed)
        await alice.page.press("#rl-callees", "Enter")
        assert said in await alice.text("#rl-dial-msg")
        assert await alice.page.evaluate("() => document.activeElement.id") == "rl-callees"
    # An engine error (an app calling the engine directly): a sentence for the person,
    # the technical message in the developer log only.
    await alice.page.evaluate("() => window.ringlinePage.engine.calls([], 1).catch(() => {})")
    await alice.until("() => document.getElementById('rl-dial-msg').textContent.includes('could not place')")
    shown = await alice.text("#rl-dial-msg")
    assert "userIdList" not in shown and "calls()" not in shown and "-1202" not in shown
    await alice.page.click("#rl-devlog summary")
    assert "userIdList is empty" in await alice.text("#rl-log")
    await alice.shot("10-error")

    # The page has a favicon, served by the server.
    icon = await alice.page.evaluate(
        "async () => { const r = await fetch(document.querySelector('link[rel=icon]').href);"
        " return {ok: r.ok, type: r.headers.get('content-type'), svg: (await r.text()).startsWith('<svg')}; }"
    )
    assert icon == {"ok": True, "type": "image/svg+xml", "svg": True}
