"""The ``signal`` op and ``on_signal`` push against a real server (docs/media.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rawclient import Raw, logged_in
from ringline.server.config import Settings, check_ice_transport_policy, parse_ice_servers
from serverproc import ServerProcess, unique

OFFER = {"type": "offer", "sdp": "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\n"}


async def group_call(
    server: ServerProcess, clients: list[Raw], n: int, *, ringing: int = 0
) -> tuple[str, list[tuple[Raw, str]]]:
    """A calls n-1 others; all but the last ``ringing`` accept. Returns (call id, members)."""
    members = [await logged_in(server, clients, p) for p in "abcdefghi"[:n]]
    (a, _), rest = members[0], members[1:]
    cid = (await a.ok("calls", user_ids=[u for _, u in rest], media_type=2))["call_id"]
    for c, _ in rest:
        await c.event("on_call_received", call_id=cid)
    for c, _ in rest[: len(rest) - ringing]:
        await c.ok("accept", call_id=cid)
        await c.event("on_call_begin", call_id=cid)
    return cid, members


async def test_signal_is_answered_then_pushed_to_the_target_unchanged(
    server: ServerProcess, clients: list[Raw]
) -> None:
    cid, [(a, ua), (b, ub)] = await group_call(server, clients, 2)
    assert await a.ok("signal", call_id=cid, to_user_id=ub, data=OFFER) == {}
    ev = await b.event("on_signal", call_id=cid)
    assert ev["args"] == {"call_id": cid, "from_user_id": ua, "data": OFFER}
    answer = {"type": "answer", "sdp": "v=0\r\n"}
    await b.ok("signal", call_id=cid, to_user_id=ua, data=answer)
    assert (await a.event("on_signal", call_id=cid))["args"]["data"] == answer
    for data in (
        {
            "type": "candidate",
            "candidate": "candidate:1 1 udp 2122 127.0.0.1 50000 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": "Xy1z",
        },
        {"type": "candidate", "candidate": None},
        {"type": "renegotiate"},
        {"type": "bye"},
    ):
        await b.ok("signal", call_id=cid, to_user_id=ua, data=data)
        assert (await a.event("on_signal", call_id=cid))["args"]["data"] == data


async def test_signals_in_a_mesh_reach_only_their_target_in_order(
    server: ServerProcess, clients: list[Raw]
) -> None:
    cid, [(a, ua), (b, ub), (c, uc)] = await group_call(server, clients, 3)
    for i in range(20):
        await a.ok("signal", call_id=cid, to_user_id=uc, data={"type": "candidate", "candidate": f"c{i}"})
    await b.ok("signal", call_id=cid, to_user_id=uc, data=OFFER)
    got = [(await c.event("on_signal", call_id=cid, from_user_id=ua))["args"]["data"] for _ in range(20)]
    assert [d["candidate"] for d in got] == [f"c{i}" for i in range(20)]
    assert (await c.event("on_signal", call_id=cid, from_user_id=ub))["args"]["data"] == OFFER
    assert "on_signal" not in b.names(cid)
    assert "on_signal" not in a.names(cid)


async def test_signals_to_or_from_members_who_are_not_connected_are_refused(
    server: ServerProcess, clients: list[Raw]
) -> None:
    cid, [(a, ua), (b, ub), (c, uc)] = await group_call(server, clients, 3, ringing=1)
    r = await a.request("signal", call_id=cid, to_user_id=uc, data=OFFER)
    assert r["code"] == -1203 and r["message"].startswith(f"user {uc} is not connected to call {cid}")
    r = await c.request("signal", call_id=cid, to_user_id=ua, data=OFFER)
    assert r["code"] == -1203 and f"not connected to call {cid}" in r["message"]
    stranger, _ = await logged_in(server, clients, "s")
    r = await stranger.request("signal", call_id=cid, to_user_id=ua, data=OFFER)
    assert r["code"] == 8010 and r["message"].startswith(f"not in call {cid}")
    r = await a.request("signal", call_id="no-such-call", to_user_id=ub, data=OFFER)
    assert r["code"] == 8010
    # Nothing was relayed; the call goes on.
    await a.ok("signal", call_id=cid, to_user_id=ub, data={"type": "bye"})
    assert (await b.event("on_signal", call_id=cid))["args"]["data"] == {"type": "bye"}
    assert "on_signal" not in c.names(cid)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"call_id": None, "to_user_id": "x", "data": OFFER}, "call_id"),
        ({"data": OFFER}, "to_user_id"),
        ({"to_user_id": "x"}, "data"),
        ({"to_user_id": "x", "data": "offer"}, "data"),
        ({"to_user_id": "x", "data": {"type": "shout"}}, "'type' must be one of"),
        ({"to_user_id": "x", "data": {"type": "offer"}}, "sdp"),
        ({"to_user_id": "x", "data": {"type": "offer", "sdp": "x" * 17000}}, "16384"),
    ],
    ids=["no-call-id", "no-target", "no-data", "data-not-object", "bad-type", "no-sdp", "too-big"],
)
async def test_malformed_signals_are_bad_parameters_and_break_nothing(
    server: ServerProcess, clients: list[Raw], args: dict[str, object], needle: str
) -> None:
    cid, [(a, ua), (b, ub)] = await group_call(server, clients, 2)
    full = {"call_id": cid, **args}
    if full.get("to_user_id") == "x":
        full["to_user_id"] = ub
    full = {k: v for k, v in full.items() if v is not None}
    r = await a.request("signal", **full)
    assert r["code"] == -1202 and needle in r["message"], r
    await a.ok("signal", call_id=cid, to_user_id=ub, data=OFFER)
    assert (await b.event("on_signal", call_id=cid))["args"]["data"] == OFFER


async def test_after_a_member_leaves_signals_to_it_are_refused(
    server: ServerProcess, clients: list[Raw]
) -> None:
    cid, [(a, ua), (b, ub), (c, uc)] = await group_call(server, clients, 3)
    await c.ok("hangup", call_id=cid)
    await a.event("on_user_leave", call_id=cid, user_id=uc)
    r = await a.request("signal", call_id=cid, to_user_id=uc, data={"type": "bye"})
    assert r["code"] == -1203 and "not connected" in r["message"]
    r = await c.request("signal", call_id=cid, to_user_id=ua, data=OFFER)
    assert r["code"] == 8010


async def test_login_result_lists_no_ice_servers_by_default(
    server: ServerProcess, clients: list[Raw]
) -> None:
    c = await Raw(server).connect()
    clients.append(c)
    res = await c.login(unique("ice"))
    assert res["ice_servers"] == []
    assert res["ice_transport_policy"] == "all"


async def test_configured_ice_servers_reach_clients_at_login_and_resume(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "srv")
    srv.args += ["--ice-server", "stun:stun.example.org:3478", "--ice-server", "turns:turn.example.org:5349"]
    srv.args += [
        "--ice-username",
        "ringline",
        "--ice-credential",
        "s3cret",
        "--ice-transport-policy",
        "relay",
    ]
    start_or_kill(srv)
    c = Raw(srv)
    try:
        res = await c.login(unique("ice"))
        want = [
            {"urls": "stun:stun.example.org:3478"},
            {"urls": "turns:turn.example.org:5349", "username": "ringline", "credential": "s3cret"},
        ]
        assert res["ice_servers"] == want
        assert res["ice_transport_policy"] == "relay"
        await c.drop()
        await c.connect()
        again = await c.ok("resume", v=1, session=res["session"], ack=c.last_seq)
        assert again["ice_servers"] == want
        assert again["ice_transport_policy"] == "relay"
    finally:
        await c.close()
        assert srv.stop() == 0


def test_ice_servers_come_from_the_environment_too(tmp_path: Path) -> None:
    env = {**os.environ, "RINGLINE_ICE_SERVERS": "stun:a.example:3478, turn:b.example:3478?transport=tcp"}
    env["RINGLINE_ICE_USERNAME"] = "u"
    srv = ServerProcess(tmp_path / "srv")
    settings = _settings_from_cli(srv.args, env)
    assert settings.ice_servers == ("stun:a.example:3478", "turn:b.example:3478?transport=tcp")
    assert settings.ice_server_list()[1] == {"urls": "turn:b.example:3478?transport=tcp", "username": "u"}
    assert settings.ice_transport_policy == "all"
    env["RINGLINE_ICE_TRANSPORT_POLICY"] = "Relay"
    assert _settings_from_cli(srv.args, env).ice_transport_policy == "relay"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ice-transport-policy", "relay"], "no turn: or turns: server"),
        (
            ["--ice-transport-policy", "relay", "--ice-server", "stun:a.example:3478"],
            "no turn: or turns: server",
        ),
        (
            ["--ice-transport-policy", "turn-only", "--ice-server", "turn:a.example:3478"],
            "must be all or relay",
        ),
    ],
)
def test_a_relay_policy_without_turn_or_a_bad_policy_stops_the_server(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    srv = ServerProcess(tmp_path / "srv")
    r = subprocess.run([*srv.args, *extra], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "--ice-transport-policy" in r.stderr and message in r.stderr, r.stderr
    if "turn:" not in " ".join(extra):
        assert "add one, e.g. --ice-server turn:" in r.stderr


def test_check_ice_transport_policy() -> None:
    assert check_ice_transport_policy("all", ()) == "all"
    assert check_ice_transport_policy(" RELAY ", ("stun:a:1", "turns:b:5349")) == "relay"
    with pytest.raises(ValueError, match="add one"):
        check_ice_transport_policy("relay", ("stun:a:1",))
    with pytest.raises(ValueError, match="all or relay"):
        check_ice_transport_policy("none", ("turn:a:1",))


@pytest.mark.parametrize("url", ["http://stun.example.org", "stun:", "turn:a b", "example.org:3478"])
def test_a_bad_ice_server_url_stops_the_server_with_a_clear_message(tmp_path: Path, url: str) -> None:
    srv = ServerProcess(tmp_path / "srv")
    r = subprocess.run([*srv.args, "--ice-server", url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "stun:, turn: or turns: URL" in r.stderr and repr(url.strip()) in r.stderr


def test_parse_ice_servers_drops_blanks_and_duplicates() -> None:
    assert parse_ice_servers(["", " stun:a:1 ", "stun:a:1", "turn:b:2"]) == ("stun:a:1", "turn:b:2")
    assert Settings().ice_server_list() == []
    s = Settings(ice_servers=("stun:a:1",), ice_username="u", ice_credential="c")
    assert s.ice_server_list() == [{"urls": "stun:a:1"}]  # STUN needs no credentials


def _settings_from_cli(args: list[str], env: dict[str, str]) -> Settings:
    """The Settings ``ringline serve`` would run with (the server is not started)."""
    code = (
        "import sys, json, ringline.server.app as app\n"
        "async def fake(settings, ident, **_):\n"
        "    print(json.dumps({'ice': settings.ice_servers, 'u': settings.ice_username,\n"
        "                      'p': settings.ice_transport_policy}))\n"
        "app.serve = fake\n"
        "from ringline.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, *args[3:]], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return Settings(ice_servers=tuple(out["ice"]), ice_username=out["u"], ice_transport_policy=out["p"])


def start_or_kill(srv: ServerProcess) -> ServerProcess:
    """Start ``srv``; if it does not come up, kill it (no process is left behind)."""
    try:
        return srv.start()
    except BaseException:
        srv.kill()
        raise
