"""TURN credentials of coturn's ``use-auth-secret`` scheme (``--turn-url``/``--turn-secret``):
the formula, the flags, and the credentials every device gets at login and resume
(docs/media.md "ICE servers"). coturn accepting them: tests/media/test_turn_secret.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rawclient import Raw
from ringline.server.config import Settings, check_turn, turn_credential
from serverproc import ServerProcess, unique

SECRET = "turn-static-auth-secret-for-tests"


def test_turn_credential_matches_a_vector_made_elsewhere() -> None:
    # printf '%s' "1700000000:alice" | openssl dgst -sha1 -hmac s3cret -binary | base64
    assert turn_credential("s3cret", "alice", 1700000000.9) == (
        "1700000000:alice",
        "TtElzSjT0GdnTQ9xdcRNxx96yQs=",
    )


@pytest.mark.parametrize("user_id", ["alice", "user:with:colons", "émile", "x" * 100])
def test_turn_credential_is_base64_hmac_sha1_of_expiry_and_user(user_id: str) -> None:
    username, credential = turn_credential(SECRET, user_id, 1893456000)
    assert username == f"1893456000:{user_id}"
    want = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == want


def test_ice_server_list_puts_per_user_credentials_on_turn_urls() -> None:
    s = Settings(
        ice_servers=("stun:s.example:3478", "turn:static.example:3478", "turn:t.example:3478"),
        ice_username="u",
        ice_credential="c",
        turn_urls=("turn:t.example:3478", "turns:t.example:5349"),
        turn_secret=SECRET,
        turn_ttl=600,
    )
    username, credential = turn_credential(SECRET, "bob", 1000 + 600)
    assert s.ice_server_list("bob", now=1000.0) == [
        {"urls": "stun:s.example:3478"},
        {"urls": "turn:static.example:3478", "username": "u", "credential": "c"},
        # The same URL as a --turn-url: the per-user credential wins, listed once.
        {"urls": "turn:t.example:3478", "username": username, "credential": credential},
        {"urls": "turns:t.example:5349", "username": username, "credential": credential},
    ]
    assert SECRET not in repr(s)


def test_check_turn() -> None:
    check_turn((), "")
    check_turn(("turn:a:3478", "turns:a:5349?transport=tcp"), "x")
    with pytest.raises(ValueError, match="needs --turn-secret"):
        check_turn(("turn:a:3478",), "")
    with pytest.raises(ValueError, match="no --turn-url"):
        check_turn((), "x")
    for bad in ("stun:a:3478", "turn:", "turn:a b", "a:3478"):
        with pytest.raises(ValueError, match="must be a turn: or turns: URL"):
            check_turn((bad,), "x")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--turn-secret", SECRET], "no --turn-url"),
        (["--turn-url", "turn:t.example:3478"], "needs --turn-secret"),
        (["--turn-url", "stun:t.example:3478", "--turn-secret", SECRET], "must be a turn: or turns: URL"),
        (["--turn-url", "turn:t.example:3478", "--turn-secret", SECRET, "--turn-ttl", "0"], "--turn-ttl"),
    ],
)
def test_bad_turn_flags_stop_the_server_in_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    srv = ServerProcess(tmp_path / "srv")
    r = subprocess.run([*srv.args, *extra], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert SECRET not in r.stderr


def test_turn_flags_come_from_the_environment_and_allow_relay(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RINGLINE_TURN_URLS": "turn:t.example:3478, turns:t.example:5349",
        "RINGLINE_TURN_SECRET": SECRET,
        "RINGLINE_TURN_TTL": "7200",
        "RINGLINE_ICE_TRANSPORT_POLICY": "relay",  # a --turn-url is a TURN server for relay too
    }
    out = _settings_from_cli(ServerProcess(tmp_path / "srv").args, env)
    assert out == {
        "urls": ["turn:t.example:3478", "turns:t.example:5349"],
        "secret": SECRET,
        "ttl": 7200.0,
        "policy": "relay",
    }


async def test_each_device_gets_its_credentials_at_login_and_fresh_ones_at_resume(tmp_path: Path) -> None:
    ttl = 3600
    srv = ServerProcess(
        tmp_path / "srv",
        extra_args=[
            "--ice-server",
            "stun:stun.example.org:3478",
            "--turn-url",
            "turn:turn.example.org:3478",
            "--turn-secret",
            SECRET,
            "--turn-ttl",
            str(ttl),
            "--log-level",
            "DEBUG",
        ],
    )
    srv.start()
    c = Raw(srv)
    try:
        user = unique("turn")
        res = await c.login(user)
        after = time.time()
        first = _turn_entry(res, user, ttl, after)
        await c.drop()
        await c.connect()
        again = await c.ok("resume", v=1, session=res["session"], ack=c.last_seq)
        renewed = _turn_entry(again, user, ttl, time.time())
        # Renewed: valid for the whole lifetime counted from the resume, not from the login.
        assert int(again["server_time"] + ttl) <= int(renewed["username"].split(":")[0])
        assert int(first["username"].split(":")[0]) <= int(renewed["username"].split(":")[0])
        for answer in (res, again):
            assert answer["ice_servers"][0] == {"urls": "stun:stun.example.org:3478"}
            assert SECRET not in json.dumps(answer)
    finally:
        await c.close()
        assert srv.stop() == 0
    assert SECRET not in srv.log_path.read_text(errors="replace")


def _turn_entry(answer: dict[str, Any], user: str, ttl: int, received: float) -> dict[str, str]:
    """The TURN entry of a login/resume ``answer``, checked: ``user``'s credential, valid
    ``ttl`` seconds from when the server answered (between its ``server_time`` and ``received``)."""
    [entry] = [e for e in answer["ice_servers"] if e["urls"] == "turn:turn.example.org:3478"]
    expiry, _, who = entry["username"].partition(":")
    assert who == user
    assert int(answer["server_time"] + ttl) <= int(expiry) <= int(received + ttl)
    assert (entry["username"], entry["credential"]) == turn_credential(SECRET, user, int(expiry))
    return dict(entry)


def _settings_from_cli(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The TURN settings ``ringline serve`` would run with (the server is not started)."""
    code = (
        "import sys, json, ringline.server.app as app\n"
        "async def fake(settings, ident, **_):\n"
        "    print(json.dumps({'urls': settings.turn_urls, 'secret': settings.turn_secret,\n"
        "                      'ttl': settings.turn_ttl, 'policy': settings.ice_transport_policy}))\n"
        "app.serve = fake\n"
        "from ringline.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, *args[3:]], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out
