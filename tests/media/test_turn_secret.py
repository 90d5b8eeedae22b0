"""A real coturn run with ``use-auth-secret`` accepts the TURN credentials a Ringline
server (``--turn-url``/``--turn-secret``) hands out at login and at resume, and refuses
(401) those made with a wrong secret or whose time is up; inside a loopback-only
network namespace (docs/media.md "TURN with short-lived credentials")."""

from __future__ import annotations

from pathlib import Path

import pytest
from netns import loopback_netns, run_in
from turn import require_turnserver, turn_server

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
