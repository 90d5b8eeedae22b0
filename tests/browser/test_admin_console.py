"""The admin console at ``/admin``, driven in Chromium as an operator would: refused
without admin credentials, then signed in, a live call appearing with its members'
states changing, ended from the console, found among the records, its callbacks listed
and one sent again to a real receiver (tests/callback_receiver.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from browserkit import NetnsServer, artifact

from serverproc import SDK_APP_ID, free_port

RECEIVER = str(Path(__file__).resolve().parent.parent / "callback_receiver.py")
TOKEN = "ringline-callback-token-for-admin-tests"
WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()
ADMIN = "administrator"
WAIT = 20.0


@pytest.fixture(scope="module")
def admin_server(netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsServer]:
    """A server in the namespace whose callbacks the test receiver can verify."""
    srv = NetnsServer(
        tmp_path_factory.mktemp("adminsrv"),
        netns,
        heartbeat_interval=1.0,
        heartbeat_grace=10.0,
        extra_args=["--callback-token", TOKEN, "--webhook-secret", WHSEC],
    ).start()
    try:
        yield srv
    finally:
        code = srv.stop()
        assert code == 0, f"server did not exit cleanly on SIGTERM ({code}): {srv.log()}"


@pytest.fixture
def web_server(admin_server: NetnsServer) -> NetnsServer:
    """The ``users`` fixture signs its users in on this module's server."""
    return admin_server


class Receiver:
    """tests/callback_receiver.py inside the namespace; ``hits`` are its JSON lines."""

    def __init__(self, netns: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/ringline-callback"
        self.netns = netns
        self.hits: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Receiver:
        self.proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.netns, sys.executable, RECEIVER,
            "--port", str(self.port), "--token", TOKEN, "--secret", WHSEC, "--app-id", str(SDK_APP_ID),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        async with asyncio.timeout(WAIT):
            assert (await self.proc.stdout.readline()).strip() == b"READY"
        self._reader = asyncio.create_task(self._read(self.proc.stdout))
        return self

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.hits.append(json.loads(line))
            self._changed.set()
            self._changed = asyncio.Event()

    async def until(self, predicate: Any, what: str) -> None:
        try:
            async with asyncio.timeout(WAIT):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"receiver: {what} not within {WAIT} s: {self.hits}") from None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


@pytest.fixture
async def receiver(netns: str) -> AsyncIterator[Receiver]:
    r = await Receiver(netns).start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
async def console(browser: Any, admin_server: NetnsServer) -> AsyncIterator[Any]:
    """An operator's tab on ``/admin`` (not signed in)."""
    ctx = await browser.new_context(viewport={"width": 1360, "height": 900})
    page = await ctx.new_page()
    page.on("pageerror", lambda e: print("admin page error:", e))
    # "End call" asks to confirm; the operator says yes.
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.goto(admin_server.url + "/admin")
    try:
        yield page
    finally:
        await ctx.close()


async def until(page: Any, predicate: str, arg: Any = None) -> Any:
    handle = await page.wait_for_function(predicate, arg=arg, timeout=WAIT * 1000, polling=100)
    return await handle.json_value()


async def rest(page: Any, command: str, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    """POST a v4 command from inside the namespace (the page's origin); the envelope."""
    got: dict[str, Any] = await page.evaluate(
        "async (a) => { const r = await fetch('/v4/' + a.command + '?' + new URLSearchParams(a.query),"
        " {method: 'POST', body: JSON.stringify(a.body)}); return await r.json(); }",
        {"command": command, "body": body, "query": query},
    )
    return got


def admin_query(srv: NetnsServer, **override: str) -> dict[str, str]:
    q = {"sdkappid": str(SDK_APP_ID), "identifier": ADMIN, "usersig": srv.sig(ADMIN), "contenttype": "json"}
    return {k: v for k, v in {**q, **override}.items() if v}


async def open_with_fragment(page: Any, url: str) -> None:
    """Load ``url`` afresh (from the same page a new fragment alone would not reload it)."""
    await page.goto("about:blank")
    await page.goto(url)


async def sign_in_form(page: Any, identifier: str, sig: str) -> None:
    await page.fill("#ad-identifier", identifier)
    await page.fill("#ad-usersig", sig)
    await page.click("#ad-signin-btn")


async def member_states(page: Any, call_id: str) -> dict[str, str]:
    got: dict[str, str] = await page.evaluate(
        "(cid) => Object.fromEntries([...document.querySelectorAll("
        "`#ad-calls tr[data-call-id='${cid}'] .ad-member`)].map((m) => [m.dataset.user, m.dataset.state]))",
        call_id,
    )
    return got


async def test_nothing_is_shown_or_served_without_admin_credentials(
    console: Any, admin_server: NetnsServer
) -> None:
    page = console
    # The page itself loads, asking for the sig; it shows no data.
    await until(page, "() => document.getElementById('admin').dataset.state === 'signed-out'")
    assert await page.is_visible("#ad-signin") and not await page.is_visible("#ad-console")
    # Every data command refuses a missing, a wrong and a non-admin sig.
    user = "op" + secrets.token_hex(3)
    refusals = {
        "no sig": admin_query(admin_server, usersig=""),
        "garbage": admin_query(admin_server, usersig="not-a-sig"),
        "a user's sig": admin_query(admin_server, identifier=user, usersig=admin_server.sig(user)),
        "a user's sig as admin": admin_query(admin_server, usersig=admin_server.sig(user)),
    }
    for command in (
        "call_engine_http_srv/get_live_calls",
        "call_engine_http_srv/get_nodes",
        "call_record_http_srv/get_record_by_filter",
        "call_callback_http_srv/get_deliveries",
        "call_engine_http_srv/end_call",
        "call_callback_http_srv/redeliver",
    ):
        for what, query in refusals.items():
            env = await rest(page, command, {"CallId": "c1", "EventId": "e1"}, query)
            assert env["ActionStatus"] == "FAIL" and "Response" not in env, (command, what, env)
            assert env["ErrorCode"] in (60011, 70002, 70003, 70013), (command, what, env)

    # Signing in with them: a clear error, and nothing kept.
    for identifier, sig, words in (
        (ADMIN, "not-a-sig", "(code 70003)"),
        (user, admin_server.sig(user), "(code 60011)"),
        (ADMIN, admin_server.sig(user), "(code 70013)"),
    ):
        await sign_in_form(page, identifier, sig)
        text = await until(
            page,
            "() => document.getElementById('admin').dataset.state === 'refused'"
            " && document.getElementById('ad-signin-error').textContent",
        )
        assert text.startswith("The server refused these credentials") and words in text, text
        assert not await page.is_visible("#ad-console")
        assert await page.evaluate("() => sessionStorage.length") == 0
        await page.evaluate("() => { document.getElementById('admin').dataset.state = ''; }")
    await page.screenshot(path=str(artifact("admin-console-refused.png")))
    # A sig handed over in the URL fragment that is not an admin's: refused the same way.
    await open_with_fragment(page, admin_server.url + "/admin#usersig=" + admin_server.sig(user))
    text = await until(
        page,
        "() => document.getElementById('admin').dataset.state === 'refused'"
        " && document.getElementById('ad-signin-error').textContent",
    )
    assert "refused" in text and await page.evaluate("() => location.hash") == ""


async def test_operator_watches_a_call_ends_it_finds_its_record_and_redelivers_a_callback(
    console: Any, admin_server: NetnsServer, users: Any, receiver: Receiver
) -> None:
    page = console
    q = admin_query(admin_server)
    env = await rest(
        page,
        "call_config/set_callback",
        {
            "Url": receiver.url,
            "CallbackCommandList": [
                "Call.CallbackAfterStartCall",
                "Call.CallbackAfterMemberChanged",
                "Call.CallbackAfterEndCall",
            ],
        },
        q,
    )
    assert env["ErrorCode"] == 0, env

    # Signed in through the URL fragment: it leaves the address bar, stays in this tab only.
    await open_with_fragment(page, admin_server.url + "/admin#usersig=" + q["usersig"])
    await until(page, "() => document.getElementById('admin').dataset.state === 'signed-in'")
    assert await page.evaluate("() => location.hash") == ""
    assert await page.evaluate("() => localStorage.length") == 0
    kept = json.loads(await page.evaluate("() => sessionStorage.getItem('ringline-admin')"))
    assert kept == {"identifier": ADMIN, "usersig": q["usersig"]}
    assert await page.text_content("#ad-who") == ADMIN
    # The node list: this one node, as get_nodes describes it.
    await until(page, "() => document.querySelectorAll('#ad-nodes tr').length === 1")
    assert await page.text_content("#ad-nodes-mode") == "single node"
    node = await page.get_attribute("#ad-nodes tr", "data-node")
    assert node and node.endswith(f":{admin_server.port}")  # --node-id's default

    # A call appears, its members' states change live.
    a, b = await users(2)
    cid = (await a.ok("calls", [b.user_id], 1))["callId"]
    await b.event("onCallReceived", callID=cid)
    row = f"#ad-calls tr[data-call-id='{cid}']"
    await page.wait_for_selector(row, timeout=WAIT * 1000)
    await until(
        page,
        "(a) => { const r = document.querySelector(a.row); if (!r) return false;"
        " const s = (u) => r.querySelector(`.ad-member[data-user='${u}']`)?.dataset.state;"
        " return s(a.a) === 'dialing' && s(a.b) === 'ringing'; }",
        {"row": row, "a": a.user_id, "b": b.user_id},
    )
    assert await member_states(page, cid) == {a.user_id: "dialing", b.user_id: "ringing"}
    assert a.user_id in await page.text_content(f"{row} td:nth-child(3)")
    assert "Audio · 1v1" in await page.text_content(f"{row} td:nth-child(2)")
    await page.screenshot(path=str(artifact("admin-console-ringing.png")), full_page=True)

    await b.ok("accept")
    await a.event("onCallBegin", callID=cid)
    await until(
        page,
        "(a) => [...document.querySelectorAll(a.row + ' .ad-member')].map((m) => m.dataset.state).join()"
        " === 'connected,connected'",
        {"row": row},
    )
    assert await page.get_attribute(row, "data-status") == "connected"
    # The "connected for" clock moves while nothing else changes.
    clock = f"{row} [data-since]"
    first = await page.text_content(clock)
    moved = "(a) => document.querySelector(a.sel)?.textContent !== a.first"
    await until(page, moved, {"sel": clock, "first": first})
    await page.screenshot(path=str(artifact("admin-console-live-call.png")), full_page=True)

    # Ended from the console: both members get the end, by the server (END_BY_SERVER, 9).
    await page.click(f"{row} button[data-action='end']")
    for u in (a, b):
        ended = await u.event("onCallEnd", callID=cid)
        assert ended["p"]["reason"] == 9 and ended["p"]["userID"] == ADMIN, ended
    await page.wait_for_selector(row, state="detached", timeout=WAIT * 1000)
    banner = "(cid) => document.getElementById('ad-banner').textContent === `Call ${cid} ended.`"
    await until(page, banner, cid)

    # The record: found by result (and user).
    await page.select_option("#ad-rec-result", "EndByServer")
    await page.fill("#ad-rec-user", b.user_id)
    await page.click("#ad-rec-search")
    rec = f"#ad-records tr[data-call-id='{cid}']"
    await page.wait_for_selector(rec, timeout=WAIT * 1000)
    assert await page.get_attribute(rec, "data-result") == "EndByServer"
    members = await page.eval_on_selector_all(f"{rec} .ad-member", "(ms) => ms.map((m) => m.dataset.user)")
    assert members == [a.user_id, b.user_id]
    # Another user's calls do not match.
    await page.fill("#ad-rec-user", "nobody" + secrets.token_hex(3))
    await page.click("#ad-rec-search")
    await until(page, "() => document.getElementById('ad-records-info').textContent === 'no record matches'")
    await page.fill("#ad-rec-user", b.user_id)
    await page.click("#ad-rec-search")
    await page.wait_for_selector(rec, timeout=WAIT * 1000)
    await page.screenshot(path=str(artifact("admin-console-records.png")), full_page=True)

    # Its callbacks arrived; the console lists them, and one is sent again.
    await receiver.until(
        lambda: any(h["command"] == "Call.CallbackAfterEndCall" and cid in h["body"] for h in receiver.hits),
        "the end-of-call callback",
    )
    await page.select_option("#ad-dlv-state", "Delivered")
    end_row = f"#ad-deliveries tr[data-call-id='{cid}'][data-state='Delivered']"
    await page.wait_for_selector(end_row, timeout=WAIT * 1000)
    event_id = await page.get_attribute(end_row, "data-event-id")
    assert event_id and sum(h["id"] == event_id for h in receiver.hits) == 1
    await page.screenshot(path=str(artifact("admin-console-deliveries.png")), full_page=True)
    await page.click(f"#ad-deliveries tr[data-event-id='{event_id}'] button[data-action='redeliver']")
    await receiver.until(lambda: sum(h["id"] == event_id for h in receiver.hits) == 2, "the redelivery")
    assert all(h["std_ok"] and h["tencent_ok"] for h in receiver.hits if h["id"] == event_id)
    await until(page, "() => document.getElementById('ad-banner').textContent.endsWith('to be sent again.')")

    # Signing out forgets the sig.
    await page.click("#ad-signout")
    assert await page.evaluate("() => sessionStorage.length") == 0
    assert await page.is_visible("#ad-signin") and not await page.is_visible("#ad-console")
    assert await page.evaluate("() => document.querySelectorAll('#ad-calls tr, #ad-records tr').length") == 0
