"""Janus gets TURN credentials from the Ringline server (docs/sfu.md "Configuring Janus:
TURN"): the TURN REST API endpoint Janus's ``turn_rest_api`` asks, and a call through
Janus whose media can only meet on a TURN relay."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))

from janusproc import SECRET, JanusProcess
from netns import run_in
from routed import B_ADDR, T_ADDR, routed_namespaces, server_in
from turn import require_turnserver, turn_server

from serverproc import ServerProcess, free_port

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).resolve().parent
TURN_SECRET = "coturn-static-auth-secret"
PATH = "/sfu/turn-credentials"


def _ask(url: str, method: str = "GET", **fields: str) -> tuple[int, dict[str, Any]]:
    """One request to the endpoint (fields in the query for GET, a form body for POST)."""
    query = urllib.parse.urlencode(fields)
    if method == "GET":
        req = urllib.request.Request(f"{url}{PATH}?{query}")
    else:
        req = urllib.request.Request(f"{url}{PATH}", data=query.encode(), method="POST")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_turn_credentials_for_janus_need_the_sfu_secret(tmp_path: Path) -> None:
    turn = ["--turn-url", "turn:turn.example.org:3478", "--turn-secret", TURN_SECRET, "--turn-ttl", "600"]
    sfu = ["--sfu", "janus=http://127.0.0.1:9/janus", "--sfu-secret", SECRET]
    srv = ServerProcess(tmp_path / "both", extra_args=[*turn, *sfu]).start()
    try:
        for method in ("GET", "POST"):
            before = time.time()
            status, got = _ask(srv.url, method, service="turn", api=SECRET, key=SECRET, username="janus")
            assert status == 200, got
            assert got["uris"] == ["turn:turn.example.org:3478"] and got["ttl"] == 600, got
            expiry, user = got["username"].split(":")
            assert user == "janus" and before + 600 - 1 <= int(expiry) <= time.time() + 600, got
            mac = hmac.new(TURN_SECRET.encode(), got["username"].encode(), hashlib.sha1).digest()
            assert got["password"] == base64.b64encode(mac).decode(), got  # what coturn recomputes
        assert _ask(srv.url, key=SECRET)[0] == 200  # Janus sends service=turn; it may be left out
        status, got = _ask(srv.url, service="turn")
        assert status == 401 and "turn_rest_api_key" in got["error"], got
        status, got = _ask(srv.url, "POST", service="turn", api="wrong", key="wrong")
        assert status == 403 and "--sfu-secret" in got["error"], got
        status, got = _ask(srv.url, service="stun", key=SECRET)
        assert status == 400 and "turn" in got["error"], got
        for body, code, words in ((b"key=\xff\xfe", 400, "UTF-8"), (b"k=" + b"v" * 5000, 413, "4096 bytes")):
            req = urllib.request.Request(f"{srv.url}{PATH}", data=body, method="POST")
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=10)
            answer = json.loads(refused.value.read())
            assert refused.value.code == code and words in answer["error"], answer
        assert _ask(srv.url, key=SECRET)[0] == 200  # and the server goes on serving
    finally:
        srv.stop()
    log = srv.log_path.read_text(errors="replace")
    assert "TURN credentials refused" in log and "wrong key" in log, log[-3000:]
    assert SECRET not in log and TURN_SECRET not in log
    for name, args, flag in (("turn-only", turn, "--sfu-secret"), ("sfu-only", sfu, "--turn-url")):
        srv = ServerProcess(tmp_path / name, extra_args=args).start()
        try:
            status, got = _ask(srv.url, service="turn", key=SECRET)
            assert status == 404 and flag in got["error"], (name, got)
        finally:
            srv.stop()


def test_media_between_a_client_and_janus_that_meet_only_on_a_turn_relay(tmp_path: Path) -> None:
    """The client in namespace ``a``, Janus in ``b``: no route between them. coturn and the
    Ringline server in ``t``, which both reach; coturn relays to no address of ``b``
    (``--denied-peer-ip``), so Janus's own address is of no use to anyone: only its relay
    candidate, allocated with the credential the server handed it, is. The clients are
    relay only. Media flows through Janus both ways, over relay-to-relay pairs."""
    require_turnserver()
    deny_b = "--denied-peer-ip=10.77.2.0-10.77.2.255"
    with (
        routed_namespaces() as ns,
        turn_server(ns.t, tmp_path / "turn", auth_secret=TURN_SECRET, ip=T_ADDR, extra=[deny_b]) as turn,
    ):
        r = subprocess.run([*ns.a, "ip", "route", "get", B_ADDR], capture_output=True, text=True)
        assert r.returncode != 0 and "unreachable" in r.stderr, (r.stdout, r.stderr)
        srv_port = free_port()
        janus = JanusProcess(
            tmp_path / "janus",
            prefix=ns.b,
            host=B_ADDR,
            ice_enforce_list="",
            turn_rest_api=f"http://{T_ADDR}:{srv_port}{PATH}",
        )
        args = ["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET]
        args += ["--sfu-min-members", "2", "--turn-url", turn.url, "--turn-secret", TURN_SECRET]
        args += ["--ice-transport-policy", "relay"]
        janus.start()
        try:
            with server_in(ns.t, tmp_path / "srv", args, srv_port) as url:
                out = run_in(ns.a, [str(HERE / "sfu_turn_driver.py"), url], timeout=150)
        finally:
            janus.stop()
        log = turn.log()
    assert "TURN REST API backend: http" in janus.log(), janus.log()[-3000:]
    for who, other in (("alice", "bob"), ("bob", "alice")):
        got = out[who]
        assert got["links"] == {"publisher": "connected", "feeds": [other], "mesh": []}, (who, got)
        assert got["heard"]["level"] > 0.05 and got["heard"]["max_volume"] > 0, (who, got)
        for conn in ("publisher_ice", "feed_ice"):
            ice = got[conn]
            assert ice["policy"] == "relay" and ice["state"] == "connected", (who, conn, ice)
            assert ice["local_sdp_types"] == ["relay"], (who, conn, ice)
            assert "relay" in ice["remote_sdp_types"], (who, conn, ice)  # Janus offered one
            assert ice["nominated"], (who, conn, ice)
            for pair in ice["nominated"]:  # client's relay <-> Janus's relay, both on coturn
                assert pair["local"] == "relay" and pair["remote"] == "relay", (who, conn, pair)
                assert pair["local_addr"][0] == T_ADDR and pair["remote_addr"][0] == T_ADDR, (who, conn, pair)
    # Janus allocated on coturn as the server's "janus" user, with the credential it got.
    lines = log.splitlines()
    assert any(
        re.search(r"user <\d+:janus>", line) and "ALLOCATE processed, success" in line for line in lines
    ), log[-4000:]
    # And Janus's own address was refused as a peer: only the relay could carry the media.
    assert any("Forbidden IP" in line or "forbidden" in line.lower() for line in lines), log[-4000:]
