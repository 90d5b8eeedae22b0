"""Callback signing secrets: generated once and kept, given values win, bad ones refused;
``ringline callback-secrets`` prints what the server signs with."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ringline.cli import main
from ringline.server.config import load_callback_secrets, load_identity
from ringline.server.webhooks.signing import decode_secret

GIVEN = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_generated_once_kept_private_and_reused(tmp_path: Path) -> None:
    first = load_callback_secrets(str(tmp_path))
    assert first.generated and first.token and len(first.webhook_secrets) == 1
    assert len(decode_secret(first.webhook_secrets[0])) >= 24
    kept = tmp_path / "callbacks.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    again = load_callback_secrets(str(tmp_path))
    assert (again.token, again.webhook_secrets) == (first.token, first.webhook_secrets)
    assert not again.generated


def test_given_values_win_and_are_not_written(tmp_path: Path) -> None:
    got = load_callback_secrets(str(tmp_path), "tok", (GIVEN, GIVEN))
    assert (got.token, got.webhook_secrets, got.generated) == ("tok", (GIVEN, GIVEN), False)
    assert not (tmp_path / "callbacks.json").exists()
    only_token = load_callback_secrets(str(tmp_path), "tok")
    assert only_token.token == "tok" and only_token.generated
    assert json.loads((tmp_path / "callbacks.json").read_text())["callback_token"] == ""


def test_a_bad_secret_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whsec_ followed by base64"):
        load_callback_secrets(str(tmp_path), "t", ("whsec_!!notbase64",))
    with pytest.raises(ValueError, match="at least 24"):
        load_callback_secrets(str(tmp_path), "t", ("whsec_" + base64.b64encode(b"short").decode(),))


def test_cli_prints_flags_and_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_identity(str(tmp_path))  # a server's data folder (the CLI refuses any other)
    assert main(["callback-secrets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    kept = json.loads((tmp_path / "callbacks.json").read_text())
    assert f"callback token:  {kept['callback_token']}" in out
    assert f"webhook secret:  {kept['webhook_secrets'][0]}" in out
    assert main(["callback-secrets", "--data-dir", str(tmp_path), "--callback-token", "X"]) == 0
    assert "callback token:  X\n" in capsys.readouterr().out
    env = {**os.environ, "RINGLINE_CALLBACK_TOKEN": "from-env", "RINGLINE_WEBHOOK_SECRET": f"{GIVEN},{GIVEN}"}
    r = subprocess.run(
        [sys.executable, "-m", "ringline.cli", "callback-secrets", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "callback token:  from-env" in r.stdout and r.stdout.count(GIVEN) == 2


def test_cli_refuses_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    load_identity(d)
    assert main(["callback-secrets", "--data-dir", d, "--webhook-secret", "nope!"]) == 2
    assert "bad webhook secret" in capsys.readouterr().err
    assert main(["callback-secrets", "--data-dir", d, "--callback-retry-delays", "5,1"]) == 2
    assert "never decrease" in capsys.readouterr().err
    assert main(["callback-secrets", "--data-dir", d, "--callback-retry-delays", "a,b"]) == 2
    assert main(["callback-secrets", "--data-dir", d, "--callback-give-up-after", "0.5"]) == 2
    assert "at least 1 hour" in capsys.readouterr().err
    assert main(["callback-secrets", "--data-dir", d, "--callback-retention", "-1"]) == 2
    assert "--callback-retention" in capsys.readouterr().err
