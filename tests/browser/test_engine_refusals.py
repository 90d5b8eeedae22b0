"""The browser engine surfaces a server's refusal at once: a request over the rate limit
rejects with -1413 when its answer arrives, not after ``requestTimeout`` with -1406; and
it refuses a bad list of server URLs at once, naming the entry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browserkit import NetnsServer

from serverproc import SDK_APP_ID, unique


@pytest.fixture(scope="module")
def strict_server(netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsServer]:
    """A server in the namespace that allows 4 frames per second per connection."""
    srv = NetnsServer(
        tmp_path_factory.mktemp("strict"),
        netns,
        heartbeat_interval=1.0,
        heartbeat_grace=10.0,
        extra_args=["--rate-limit", "4"],
    ).start()
    try:
        yield srv
    finally:
        assert srv.stop() == 0, srv.log()


async def test_a_rate_limited_request_rejects_at_once_with_its_code(
    browser: Any, strict_server: NetnsServer
) -> None:
    ctx = await browser.new_context()
    try:
        page = await ctx.new_page()
        await page.goto(strict_server.url + "/sdk/ringline.js")
        user = unique("js")
        out = await page.evaluate(
            """async (a) => {
              const { CallEngine, RinglineError, ErrorCode } = await import("/sdk/ringline.js");
              // A refusal that waited for its timeout would take two minutes.
              const engine = new CallEngine({ requestTimeout: 120000 });
              await engine.init({ sdkAppId: a.sdkAppId, userId: a.userId, userSig: a.userSig });
              const started = performance.now();
              const all = Array.from({ length: 20 }, (_, i) => engine.setSelfInfo(`name ${i}`, ""));
              const results = await Promise.allSettled(all);
              const refused = results.filter((r) => r.status === "rejected").map((r) => ({
                isError: r.reason instanceof RinglineError,
                code: r.reason && r.reason.code,
                msg: r.reason && r.reason.msg,
              }));
              const ms = performance.now() - started;
              await engine.uninit();
              return { refused, ms, rateLimited: ErrorCode.RATE_LIMITED };
            }""",
            {"sdkAppId": SDK_APP_ID, "userId": user, "userSig": strict_server.sig(user)},
        )
    finally:
        await ctx.close()
    assert out["rateLimited"] == -1413
    assert out["refused"], "20 requests at once on a limit of 4 frames/s: some must be refused"
    for r in out["refused"]:
        assert r["isError"] and r["code"] == -1413, r
        assert "slow down" in r["msg"]
    assert out["ms"] < 60_000  # answered, not timed out (the timeout is 120 s)


async def test_bad_lists_of_server_urls_are_refused_and_a_good_one_kept(
    browser: Any, strict_server: NetnsServer
) -> None:
    ctx = await browser.new_context()
    try:
        page = await ctx.new_page()
        await page.goto(strict_server.url + "/sdk/ringline.js")
        out = await page.evaluate(
            """async () => {
              const { CallEngine } = await import("/sdk/ringline.js");
              const attempt = (serverUrl) => {
                try { new CallEngine({ serverUrl }); return null; }
                catch (e) { return { code: e.code, msg: e.msg }; }
              };
              const many = Array.from({ length: 17 }, (_, i) => `http://h${i}:80`);
              const good = new CallEngine({ serverUrl: ["http://a:1", "https://b.example.com/x"] });
              return {
                empty: attempt([]),
                tooMany: attempt(many),
                sixteen: attempt(many.slice(0, 16)),
                badEntry: attempt(["http://a:1", "ftp://b"]),
                notString: attempt(["http://a:1", 8080]),
                twice: attempt(["http://a:1", "http://b:2", "http://a:1/"]),
                kept: [good.serverUrl, good.serverUrls],
              };
            }"""
        )
    finally:
        await ctx.close()
    assert out["empty"]["code"] == -1202 and "empty array" in out["empty"]["msg"]
    assert out["tooMany"]["code"] == -1202 and "17 URLs; at most 16" in out["tooMany"]["msg"]
    assert out["sixteen"] is None
    assert "serverUrl[1] must be" in out["badEntry"]["msg"]
    assert "serverUrl[1] must be" in out["notString"]["msg"]
    assert "serverUrl[2]" in out["twice"]["msg"] and "same server as serverUrl[0]" in out["twice"]["msg"]
    assert out["kept"] == ["http://a:1", ["http://a:1", "https://b.example.com/x"]]
