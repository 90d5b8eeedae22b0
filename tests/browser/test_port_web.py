"""Port tests in the browser: the vendor's uni-app event samples run unchanged on Ringline.

``port/uniapp_events.js`` is every ``TUICallEngine.addEventListener('onX', (res) =>
console.log('onX', JSON.stringify(res)))`` sample of the vendor's uni-app TUICallEvent
page, as printed there; only the line that gets the engine differs. The test records
what those samples print and checks that every event fires with the payload keys and
values the page documents (``res.userId``, ``res.groupId``, ``res.volumeMap`` as a
user → volume map, ``res.oldCallMediaType`` …), through real calls between Chromium
tabs with real media.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest
from browserkit import User

from needs import missing
from serverproc import SDK_APP_ID

AUDIO, VIDEO = 1, 2
CALLER, CALLED = 1, 2
SAMPLES = (Path(__file__).parent / "port" / "uniapp_events.js").read_text()
# Keeps what the samples print (console.log(name, res)) in window.portLog.
CAPTURE = """
window.portLog = [];
const realLog = console.log.bind(console);
console.log = (name, res) => {
  if (typeof name === "string" && name.startsWith("on")) {
    const copy = typeof res === "string" ? JSON.parse(res) : JSON.parse(JSON.stringify(res ?? null));
    window.portLog.push({ name, res: copy });
  }
  realLog(name, res);
};
"""


async def install(*users: User) -> None:
    for u in users:
        await u.page.add_script_tag(content=CAPTURE)
        await u.page.add_script_tag(content=SAMPLES)


async def printed(u: User, name: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
    """The ``res`` of the first ``name`` the samples printed whose keys have ``match``'s values."""
    found: dict[str, Any] = await u.wait(
        "(rl, a) => { const e = window.portLog.find((e) => e.name === a.name && "
        "Object.entries(a.match).every(([k, v]) => JSON.stringify(e.res[k]) === JSON.stringify(v)));"
        " return e && e.res; }",
        {"name": name, "match": match},
        timeout,
    )
    return found


async def names(u: User) -> list[str]:
    out: list[str] = await u.js("() => window.portLog.map((e) => e.name)")
    return out


async def test_uniapp_samples_hear_a_group_call_from_ring_to_end(users: Any) -> None:
    a, b, c = await users(3)
    await install(a, b, c)
    r = await a.ok("calls", [b.user_id, c.user_id], AUDIO, {"chatGroupId": "team-1", "userData": "order-7"})
    cid = r["callId"]
    for callee in (b, c):
        res = await printed(callee, "onCallReceived")
        assert res["callerId"] == a.user_id
        assert res["calleeIdList"] == [b.user_id, c.user_id]
        assert (res["groupId"], res["callMediaType"], res["userData"]) == ("team-1", AUDIO, "order-7")
    await b.ok("accept")
    await c.ok("accept")
    for me, role in ((a, CALLER), (b, CALLED), (c, CALLED)):
        res = await printed(me, "onCallBegin")
        assert (res["callMediaType"], res["callRole"]) == (AUDIO, role)
        assert isinstance(res["roomID"], int) and res["roomID"] > 0
    for me, others in ((a, (b, c)), (b, (a, c)), (c, (a, b))):
        for other in others:
            await printed(me, "onUserJoin", userId=other.user_id)
            await printed(me, "onUserAudioAvailable", userId=other.user_id, isAudioAvailable=True)
            await printed(me, "onUserVideoAvailable", userId=other.user_id)
    # Volumes: a map of user id -> 0..100 with this user and each member; the beep is heard.
    vol = await a.wait(
        "(rl, u) => { const e = window.portLog.filter((e) => e.name === 'onUserVoiceVolumeChanged')"
        ".find((e) => e.res.volumeMap[u] > 0); return e && e.res.volumeMap; }",
        b.user_id,
    )
    assert not isinstance(vol, list) and set(vol) == {a.user_id, b.user_id, c.user_id}
    assert all(isinstance(v, int) and 0 <= v <= 100 for v in vol.values())
    res = await printed(a, "onUserNetworkQualityChanged")
    assert {q["userId"] for q in res["networkQualityList"]} >= {a.user_id}
    # The media type switch, in the uni-app keys.
    await a.ok("switchCallMediaType", VIDEO)
    for me in (a, b, c):
        res = await printed(me, "onCallMediaTypeChanged")
        assert (res["oldCallMediaType"], res["newCallMediaType"]) == (AUDIO, VIDEO)
    await b.wait(
        "(rl, u) => window.portLog.some((e) => e.name === 'onUserVideoAvailable' && e.res.userId === u"
        " && e.res.isVideoAvailable === true)",
        a.user_id,
    )
    # C leaves: the others hear onUserLeave; A ends the call: onCallEnd with the seconds.
    await c.ok("hangup")
    for me in (a, b):
        await printed(me, "onUserLeave", userId=c.user_id)
    res = await printed(c, "onCallEnd")
    assert (res["callMediaType"], res["callRole"]) == (VIDEO, CALLED) and res["totalTime"] >= 0
    await a.ok("hangup")  # the last two: the call ends for B too
    await printed(b, "onCallEnd")
    res = await printed(a, "onCallEnd")
    begin = await printed(a, "onCallBegin")
    assert (res["callMediaType"], res["callRole"], res["roomID"]) == (VIDEO, CALLER, begin["roomID"])
    assert res["callID"] == cid


async def test_uniapp_samples_hear_reject_no_answer_busy_and_cancel(users: Any) -> None:
    a, b, c = await users(3)
    await install(a, b, c)
    # Rejected: onUserReject at the caller; onCallCancelled with the user ids of the page.
    await a.ok("calls", [b.user_id], AUDIO)
    await printed(b, "onCallReceived")
    await b.ok("reject")
    assert (await printed(a, "onUserReject"))["userId"] == b.user_id
    assert (await printed(a, "onCallCancelled"))["userId"] == a.user_id
    assert (await printed(b, "onCallCancelled"))["userId"] == b.user_id
    # Not answered in time: onUserNoResponse.
    await a.ok("calls", [b.user_id], AUDIO, {"timeout": 1})
    assert (await printed(a, "onUserNoResponse"))["userId"] == b.user_id
    await a.wait("() => window.portLog.filter((e) => e.name === 'onCallCancelled').length === 2")
    # Busy: C rings B, then A calls B: onUserLineBusy.
    await c.ok("calls", [b.user_id], AUDIO)
    await b.wait("() => window.portLog.filter((e) => e.name === 'onCallReceived').length === 3")
    await a.ok("calls", [b.user_id], AUDIO)
    assert (await printed(a, "onUserLineBusy"))["userId"] == b.user_id
    # Cancelled by the caller: the callee's onCallCancelled names the caller.
    await c.ok("hangup")
    assert (await printed(b, "onCallCancelled", userId=c.user_id))["userId"] == c.user_id


async def test_uniapp_samples_hear_kicked_offline_sig_expired_and_errors(
    users: Any, browser: Any, web_server: Any
) -> None:
    (a,) = await users(1)
    await install(a)
    ctx = await browser.new_context()
    try:
        # Another login of A: onKickedOffline.
        page = await ctx.new_page()
        await page.goto(web_server.url + "/sdk/ringline.js")
        await page.evaluate(
            "async (a) => { const m = await import('/sdk/ringline.js');"
            " window.e2 = new m.CallEngine({}); await window.e2.init(a); }",
            {"sdkAppId": SDK_APP_ID, "userId": a.user_id, "userSig": web_server.sig(a.user_id)},
        )
        assert await printed(a, "onKickedOffline") == {}
        # A sig that expires: onUserSigExpired.
        page2 = await ctx.new_page()
        await page2.goto(web_server.url + "/sdk/ringline.js")
        await page2.evaluate(
            "async () => { const m = await import('/sdk/ringline.js');"
            " window.rl = { engine: new m.CallEngine({}) }; }"
        )
        expiring = User(page2, "exp-" + a.user_id)
        await install(expiring)
        await page2.evaluate(
            "async (a) => { await window.rl.engine.init(a); }",
            {
                "sdkAppId": SDK_APP_ID,
                "userId": expiring.user_id,
                "userSig": web_server.sig(expiring.user_id),
            },
        )
        # A sig that expires in 1-2 s, given once logged in (at login it would race the
        # login); whole-second sig times: one already expired on arrival is made again.
        for _ in range(10):
            r = await expiring.call("renewUserSig", web_server.sig(expiring.user_id, 2))
            if "error" not in r:
                break
            assert r["error"]["code"] == 70001, r
        assert await printed(expiring, "onUserSigExpired", timeout=10) == {}
        # A camera that cannot open: onError with the page's res.code and res.msg.
        page3 = await ctx.new_page()
        await page3.goto(web_server.url + "/sdk/ringline.js")
        await page3.evaluate(
            "async () => { const m = await import('/sdk/ringline.js');"
            " window.rl = { engine: new m.CallEngine({ video: { width: { exact: 12345 } } }) }; }"
        )
        broken = User(page3, "cam-" + a.user_id)
        await install(broken)
        await page3.evaluate(
            "async (a) => { await window.rl.engine.init(a); }",
            {"sdkAppId": SDK_APP_ID, "userId": broken.user_id, "userSig": web_server.sig(broken.user_id)},
        )
        await broken.ok("calls", ["nobody-" + a.user_id], VIDEO)
        res = await printed(broken, "onError")
        assert res["code"] == -1101 and "camera" in res["msg"]
    finally:
        await ctx.close()


async def test_add_and_remove_event_listener_under_both_names(users: Any) -> None:
    a, b = await users(2)
    await a.js(
        "(rl) => { window.got = []; window.h1 = (p) => window.got.push(['onUserJoin', p.userId]);"
        " window.h2 = (p) => window.got.push(['onUserEnter', p.userID]);"
        " rl.engine.addEventListener('onUserJoin', window.h1); rl.engine.on('onUserEnter', window.h2);"
        " rl.engine.addEventListener('onCallEnd', (p) => window.got.push(['onCallEnd', p.userId])); }"
    )
    await a.ok("calls", [b.user_id], AUDIO)
    await b.event("onCallReceived")
    await b.ok("accept")
    await a.wait("() => window.got.length >= 2")
    assert sorted(await a.js("() => window.got")) == [["onUserEnter", b.user_id], ["onUserJoin", b.user_id]]
    await a.js(
        "(rl) => { rl.engine.removeEventListener('onUserJoin', window.h1);"
        " rl.engine.off('onUserEnter', window.h2); }"
    )
    await b.ok("hangup")
    await a.wait("() => window.got.some((g) => g[0] === 'onCallEnd')")
    # A second call: the removed handlers hear nothing, the remaining one its onCallEnd.
    await a.ok("calls", [b.user_id], AUDIO)
    await b.wait("(rl) => rl.events.filter((e) => e.name === 'onCallReceived').length === 2")
    await b.ok("accept")
    await a.wait("(rl) => rl.events.filter((e) => e.name === 'onUserEnter').length === 2")
    await b.ok("hangup")
    await a.wait("() => window.got.filter((g) => g[0] === 'onCallEnd').length === 2")
    assert sorted(await a.js("() => window.got")) == [
        ["onCallEnd", b.user_id],
        ["onCallEnd", b.user_id],
        ["onUserEnter", b.user_id],
        ["onUserJoin", b.user_id],
    ]
    r = await a.js(
        "(rl) => { try { rl.engine.addEventListener(undefined, () => {}); } catch (e) { return e.message; } }"
    )
    assert "event name" in r


KIT_PAGE = (Path(__file__).parent / "port" / "webkit_page.js").read_text()
# What the kit's samples print, with what the user saw at that moment: the kit's
# status ("idle" until the call UI shows), whether a call screen was visible, the call.
KIT_CAPTURE = """
window.portLog = [];
const realLog = console.log.bind(console);
console.log = (...args) => {
  const el = document.querySelector("tui-call-kit");
  const page = el && el.shadowRoot && el.shadowRoot.querySelector(".rl-page");
  const visible = (id) => !!page && !page.querySelector(id).hidden;
  const engine = window.TUICallKitServer && window.TUICallKitServer.getTUICallEngineInstance();
  window.portLog.push({
    text: args.map((a) => (typeof a === "string" ? a : "")).join("").trim(),
    arg: args[1] && typeof args[1] === "object" ? JSON.parse(JSON.stringify(args[1])) : null,
    shown: !!page && page.dataset.status !== "idle" && (visible("#rl-incoming") || visible("#rl-call")),
    callId: engine ? engine.callId : null,
  });
  realLog(...args);
};
"""


async def kit_user(browser: Any, web_server: Any, user_id: str) -> tuple[Any, User]:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    page.on("pageerror", lambda e: print("page error:", e))
    await page.goto(web_server.url + "/sdk/ringline.js")
    await page.evaluate("() => { document.body.innerHTML = ''; }")
    await page.add_script_tag(content=KIT_CAPTURE)
    await page.add_script_tag(content=KIT_PAGE, type="module")
    await page.wait_for_function("() => window.TUICallKitServer")
    await page.evaluate(
        "async (a) => { await window.TUICallKitServer.init(a);"
        " window.rl = { engine: window.TUICallKitServer.getTUICallEngineInstance() }; }",
        {"SDKAppID": SDK_APP_ID, "userID": user_id, "userSig": web_server.sig(user_id)},
    )
    return ctx, User(page, user_id)


async def hooks(u: User) -> list[list[Any]]:
    out: list[list[Any]] = await u.js(
        "() => window.portLog.filter((e) => e.text.startsWith('[TUICallKit Demo]'))"
        ".map((e) => [e.text.split(' ').pop(), e.shown, e.callId])"
    )
    return out


async def test_web_kit_hooks_fire_for_every_call_at_the_vendors_moments(
    users: Any, browser: Any, web_server: Any
) -> None:
    (b,) = await users(1)
    ctx, a = await kit_user(browser, web_server, "kit" + b.user_id)
    try:
        await a.js("() => window.portOn()")
        # 1. Incoming: beforeCalling before the incoming screen shows; accepted with the
        # kit's own button; afterCalling once the call is over.
        r = await b.ok("calls", [a.user_id], AUDIO)
        cid1 = r["callId"]
        await a.wait("() => window.portLog.some((e) => e.text.endsWith('beforeCalling'))")
        await a.page.locator("tui-call-kit #rl-accept").click()
        entered = await a.wait("() => window.portLog.find((e) => e.text === 'TUICallEvent.USER_ENTER:')")
        assert entered["arg"]["userID"] == b.user_id and entered["arg"]["callID"] == cid1
        assert entered["shown"] is True  # the call UI is up while connected
        await b.ok("hangup")
        await a.wait("() => window.portLog.some((e) => e.text.endsWith('afterCalling'))")
        assert await hooks(a) == [["beforeCalling", False, cid1], ["afterCalling", False, ""]]
        await a.js("() => window.portOff()")
        # 2. Placed through TUICallKitServer: beforeCalling before the request (no call
        # id yet); B rejects; afterCalling.
        await a.js("(rl, u) => window.TUICallKitServer.calls({ userIDList: [u], type: 1 })", b.user_id)
        await b.wait("(rl) => rl.events.filter((e) => e.name === 'onCallReceived').length === 1")
        await b.ok("reject")
        await a.wait("() => window.portLog.filter((e) => e.text.endsWith('afterCalling')).length === 2")
        # 3. Placed through the engine directly, as the vendor's engine samples do.
        await a.js("(rl, u) => rl.engine.calls([u], 1)", b.user_id)
        await b.wait("(rl) => rl.events.filter((e) => e.name === 'onCallReceived').length === 2")
        await b.ok("accept")
        await a.wait("(rl) => rl.engine.callStatus === 2")
        await a.ok("hangup")
        await a.wait("() => window.portLog.filter((e) => e.text.endsWith('afterCalling')).length === 3")
        assert await hooks(a) == [
            ["beforeCalling", False, cid1],
            ["afterCalling", False, ""],
            ["beforeCalling", False, ""],  # before the request: no call id yet
            ["afterCalling", False, ""],
            ["beforeCalling", False, ""],
            ["afterCalling", False, ""],
        ]
        # The sample's off() took effect: one USER_ENTER printed, for the first call only.
        assert (
            await a.js("() => window.portLog.filter((e) => e.text === 'TUICallEvent.USER_ENTER:').length")
            == 1
        )
    finally:
        await ctx.close()


FRAMEWORKS = Path(__file__).resolve().parents[2] / ".cache" / "web-frameworks"
# package tarball -> its browser build (sets window.React / ReactDOM / Vue)
BUILDS = {
    "react-18.3.1.tgz": "package/umd/react.production.min.js",
    "react-dom-18.3.1.tgz": "package/umd/react-dom.production.min.js",
    "vue-3.5.13.tgz": "package/dist/vue.global.prod.js",
}


def framework(tarball: str) -> str:
    """A framework's browser build, read from the npm tarball scripts/test fetched."""
    path = FRAMEWORKS / tarball
    if not path.is_file():
        missing(f"{path} is absent: ./scripts/test fetches it with `npm pack` (see DEVELOPERS.md)")
    with tarfile.open(path) as tar:
        member = tar.extractfile(BUILDS[tarball])
        assert member is not None
        return member.read().decode()


# The vendor's React sample (App with <TUICallKit beforeCalling afterCalling />), with
# its JSX written as the React.createElement call it stands for: no build step.
REACT_APP = """
import { createReactTUICallKit, TUICallKitServer } from "/sdk/tuicallkit.js";
const TUICallKit = createReactTUICallKit(React);
function App() {
const handleBeforeCalling = () => {
console.log("[TUICallKit Demo] beforeCalling");
};
const handleAfterCalling = () => {
console.log("[TUICallKit Demo] afterCalling");
};
return (
React.createElement(TUICallKit, {
beforeCalling: handleBeforeCalling,
afterCalling: handleAfterCalling })
)
}
document.body.innerHTML = "<div id=root></div>";
ReactDOM.createRoot(document.getElementById("root")).render(React.createElement(App));
window.TUICallKitServer = TUICallKitServer;
"""

# The vendor's Vue sample (<template> + <script setup>) as a component object: the
# template is the sample's, compiled by Vue in the page.
VUE_APP = """
import { createVueTUICallKit, TUICallKitServer } from "/sdk/tuicallkit.js";
const App = {
template: `<TUICallKit
:beforeCalling="handleBeforeCalling"
:afterCalling="handleAfterCalling" />`,
setup() {
function handleBeforeCalling() {
console.log("[TUICallKit Demo] beforeCalling");
}
function handleAfterCalling() {
console.log("[TUICallKit Demo] afterCalling");
}
return { handleBeforeCalling, handleAfterCalling };
},
};
document.body.innerHTML = "<div id=app></div>";
const app = Vue.createApp(App);
app.component("TUICallKit", createVueTUICallKit(Vue));
app.mount("#app");
window.TUICallKitServer = TUICallKitServer;
"""


async def framework_user(
    browser: Any, web_server: Any, user_id: str, builds: list[str], app: str
) -> tuple[Any, User]:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(web_server.url + "/sdk/ringline.js")
    await page.evaluate("() => { document.body.innerHTML = ''; }")
    for build in builds:
        await page.add_script_tag(content=framework(build))
    await page.add_script_tag(content=KIT_CAPTURE)
    await page.add_script_tag(content=app, type="module")
    try:
        await page.wait_for_function(
            "() => window.TUICallKitServer && document.querySelector('tui-call-kit')"
        )
    except Exception:
        raise AssertionError(f"the {builds} page did not start: {errors}") from None
    assert errors == []
    await page.evaluate(
        "async (a) => { await window.TUICallKitServer.init(a);"
        " window.rl = { engine: window.TUICallKitServer.getTUICallEngineInstance() }; }",
        # serverUrl given after the element made its engine: the kit makes it again.
        {
            "SDKAppID": SDK_APP_ID,
            "userID": user_id,
            "userSig": web_server.sig(user_id),
            "serverUrl": web_server.url,
        },
    )
    return ctx, User(page, user_id)


@pytest.mark.parametrize(
    ("name", "builds", "app"),
    [
        ("react", ["react-18.3.1.tgz", "react-dom-18.3.1.tgz"], REACT_APP),
        ("vue", ["vue-3.5.13.tgz"], VUE_APP),
    ],
)
async def test_the_vendors_react_and_vue_samples_get_their_hooks(
    users: Any, browser: Any, web_server: Any, name: str, builds: list[str], app: str
) -> None:
    (b,) = await users(1)
    ctx, a = await framework_user(browser, web_server, name + b.user_id, builds, app)
    try:
        # Received, answered in the kit's UI (rendered by the framework's component).
        await b.ok("calls", [a.user_id], AUDIO)
        await a.wait("() => window.portLog.some((e) => e.text.endsWith('beforeCalling'))")
        await a.page.locator("tui-call-kit #rl-accept").click()
        await a.wait("(rl) => rl.engine.callStatus === 2")
        await b.ok("hangup")
        # Placed through the engine directly.
        await a.js("(rl, u) => rl.engine.calls([u], 1)", b.user_id)
        await b.wait("(rl) => rl.events.filter((e) => e.name === 'onCallReceived').length === 1")
        await b.ok("reject")
        await a.wait("() => window.portLog.filter((e) => e.text.endsWith('afterCalling')).length === 2")
        assert [h[:2] for h in await hooks(a)] == [
            ["beforeCalling", False],
            ["afterCalling", False],
            ["beforeCalling", False],
            ["afterCalling", False],
        ]
    finally:
        await ctx.close()
