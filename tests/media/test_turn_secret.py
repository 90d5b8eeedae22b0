"""A real coturn run with ``use-auth-secret`` accepts the TURN credentials a Ringline
server (``--turn-url``/``--turn-secret``) hands out at login and at resume, and refuses
(401) those made with a wrong secret or whose time is up; inside a loopback-only
network namespace (docs/media.md "TURN with short-lived credentials")."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import HERE, ROOT, loopback_netns, run_in
from routed import A_ADDR, B_ADDR, T_ADDR, routed_namespaces, server_in
from turn import require_turnserver, turn_server

from needs import missing

pytestmark = pytest.mark.timeout(180)

SECRET = "coturn-static-auth-secret"


def test_coturn_accepts_handed_out_credentials_and_refuses_wrong_or_expired_ones(tmp_path: Path) -> None:
    require_turnserver()
    with loopback_netns() as ns, turn_server(ns, tmp_path / "turn", auth_secret=SECRET) as turn:
        r = run_in(ns, ["tests/media/turn_secret_driver.py", turn.url, SECRET], timeout=150)
        log, refused = turn.log(), turn.refused()
        accepted = {case: turn.allocations(r[case]["username"]) for case in ("login", "resume")}
    for case in ("login", "resume"):
        assert r[case]["username"].endswith(":alice"), r
        assert r[case]["relayed"][0] == "127.0.0.1", r  # coturn gave a relay address
        assert accepted[case], log[-4000:]  # and logged the allocation as that user's
    for case in ("wrong_secret", "expired"):
        assert r[case]["error"] == 401 and "relayed" not in r[case], r
        assert any(f"user <{r[case]['username']}>" in line for line in refused), log[-4000:]


def test_members_with_no_route_to_each_other_talk_through_coturn_with_handed_out_credentials(
    tmp_path: Path,
) -> None:
    """The issue's test: each member in its own namespace, with no route to the other;
    coturn and the Ringline server (``--turn-url``/``--turn-secret``, relay only) in a third
    one both reach. Media flows both ways, over relay candidate pairs only, and coturn
    allocated for both users with the credentials the server handed out."""
    require_turnserver()
    with (
        routed_namespaces() as ns,
        turn_server(ns.t, tmp_path / "turn", auth_secret=SECRET, ip=T_ADDR) as turn,
    ):
        for inside, other in ((ns.a, B_ADDR), (ns.b, A_ADDR)):
            r = subprocess.run([*inside, "ip", "route", "get", other], capture_output=True, text=True)
            assert r.returncode != 0 and "unreachable" in r.stderr, (r.stdout, r.stderr)
        with _server_in(ns.t, tmp_path / "srv", turn.url) as url:
            member = [sys.executable, str(HERE / "routed_member.py"), url]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(HERE), *_src()])}
            with contextlib.ExitStack() as stack:
                procs = {
                    user: stack.enter_context(
                        subprocess.Popen(
                            [*prefix, *member, user, peer, role],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            stderr=stack.enter_context(open(tmp_path / f"{user}.err", "wb")),
                            text=True,
                            env=env,
                            cwd=ROOT,
                        )
                    )
                    for user, peer, role, prefix in (
                        ("bob", "alice", "callee", ns.b),
                        ("alice", "bob", "caller", ns.a),
                    )
                }
                lines: dict[str, list[str]] = {user: [] for user in procs}
                try:
                    for user in ("bob", "alice"):  # bob logs in before alice calls him
                        lines[user].append(_line(procs[user]))
                    for user in ("alice", "bob"):  # each hears the other and reports
                        lines[user].append(_line(procs[user]))
                    for proc in procs.values():  # then the caller hangs up and the call ends
                        assert proc.stdin is not None
                        proc.stdin.write("end\n")
                        proc.stdin.close()
                    for proc in procs.values():
                        proc.wait(60)
                finally:
                    for proc in procs.values():
                        if proc.poll() is None:
                            proc.kill()
                            proc.wait()
        log = turn.log()
    errors = {user: (tmp_path / f"{user}.err").read_text(errors="replace")[-4000:] for user in procs}
    assert all(p.returncode == 0 for p in procs.values()), (lines, errors)
    assert [json.loads(lines[u][0]) for u in procs] == [{"ready": True}] * 2, (lines, errors)
    results = {user: json.loads(lines[user][1]) for user in procs}
    for who, found in results.items():
        assert found["heard"]["level"] > 0.05 and found["heard"]["max_volume"] > 0, (who, found)
        ice = found["ice"]
        assert ice["policy"] == "relay" and ice["state"] == "connected", (who, ice)
        assert ice["local_sdp_types"] == ["relay"] and ice["remote_sdp_types"] == ["relay"], (who, ice)
        assert ice["nominated"], (who, ice)
        for pair in ice["nominated"]:
            assert pair["local"] == "relay" and pair["remote"] == "relay", (who, pair)
            assert pair["local_addr"][0] == T_ADDR and pair["remote_addr"][0] == T_ADDR, (who, pair)
        allocated = [
            line
            for line in log.splitlines()
            if re.search(rf"user <\d+:{who}>", line) and "ALLOCATE processed, success" in line
        ]
        assert allocated, log[-4000:]


def test_chromium_and_python_talk_through_coturn_with_handed_out_credentials(tmp_path: Path) -> None:
    """Relay only, Chromium and aiortc get their TURN credentials from the login answer
    (``--turn-url``/``--turn-secret``): both select relay pairs and audio flows both ways."""
    if not Path("/usr/bin/chromium").exists():
        missing("Debian's chromium is not installed (./scripts/test installs it)")
    require_turnserver()
    with loopback_netns() as ns, turn_server(ns, tmp_path / "turn", auth_secret=SECRET) as turn:
        r = run_in(ns, ["tests/media/browser_driver.py", "relay", turn.url, SECRET], timeout=200)
        log = turn.log()
    assert r["python_hears_browser"]["level"] > 0 and r["python_hears_browser"]["max_volume"] > 0
    assert r["browser_audio"]["audioEnergy"] > 0 and r["browser_audio"]["audioPackets"] > 20
    pair = r["browser_pair"]
    assert pair["policy"] == "relay" and pair["configured"] == "relay", pair
    assert pair["nominated"] and pair["local"] == "relay" and pair["remote"] == "relay", pair
    py = r["python"]
    assert py["state"] == "connected" and py["local_sdp_types"] == ["relay"], py
    # Both allocated on coturn, each as its own user with the credential it was given.
    for user in ("apy", "bweb"):
        assert any(
            re.search(rf"user <\d+:{user}>", line) and "ALLOCATE processed, success" in line
            for line in log.splitlines()
        ), log[-4000:]
    assert r["page_errors"] == []


def _line(proc: subprocess.Popen[str]) -> str:
    """The next line ``proc`` prints ("" once it has exited)."""
    assert proc.stdout is not None
    return proc.stdout.readline()


def _src() -> list[str]:
    """The caller's PYTHONPATH entries (the package under test, when not installed)."""
    return [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


@contextlib.contextmanager
def _server_in(prefix: list[str], data_dir: Path, turn_url: str) -> Iterator[str]:
    """``ringline serve`` inside the namespace of ``prefix``, on ``T_ADDR``, relay only with
    per-user credentials for ``turn_url``; yield its URL; stop it after."""
    args = ["--turn-url", turn_url, "--turn-secret", SECRET, "--ice-transport-policy", "relay"]
    with server_in(prefix, data_dir, args) as url:
        yield url
    assert SECRET not in (data_dir / "server.log").read_text(errors="replace")
