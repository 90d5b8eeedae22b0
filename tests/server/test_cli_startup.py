"""``ringline serve``, ``usersig`` and ``callback-secrets`` as an operator runs them: every
config error is one line on stderr and exit code 2, at once, with no traceback, no banner
and nothing left running (Ctrl-C before the server listens: one line, exit code 130); the
banner comes once the server listens and shows commands that work as typed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from needs import PG_DSN, missing
from serverproc import free_port

#: Bound on how long a refused start may take (it is well under a second; the machine
#: may be loaded). A server that hangs after a fatal error fails on it.
EXIT_BOUND = 60.0
PG = PG_DSN.rsplit("/", 1)[0]


def ringline(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``python -m ringline.cli ARGS`` and wait (bounded) for it to exit."""
    r = subprocess.run(
        [sys.executable, "-m", "ringline.cli", *args],
        capture_output=True,
        text=True,
        timeout=EXIT_BOUND,
        cwd=cwd,
        env=env,
    )
    return r.returncode, r.stdout, r.stderr


def assert_refused(result: tuple[int, str, str], *needles: str) -> str:
    code, out, err = result
    assert code == 2, (code, err)
    assert err.endswith("\n") and err.count("\n") == 1, err  # exactly one line
    assert "Traceback" not in err and "Ringline on" not in err and out == "", err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_port_in_use_is_one_line_naming_it_and_the_process_exits(tmp_path: Path, taken_port: int) -> None:
    err = assert_refused(
        ringline("serve", "--data-dir", str(tmp_path), "--port", str(taken_port)),
        f"127.0.0.1:{taken_port} is already in use",
        "--port",
    )
    assert err.startswith("ringline: ")


def test_a_port_in_use_with_callback_workers_leaves_no_process(tmp_path: Path, taken_port: int) -> None:
    assert_refused(
        ringline("serve", "--data-dir", str(tmp_path), "--port", str(taken_port), "--callback-workers", "2"),
        "already in use",
    )


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--db", "mysql://u@h/db"], ["--db: unknown store URL scheme 'mysql'", "sqlite:///"]),
        (["--db", "sqlite://host/x.db"], ["--db: a SQLite URL has no host"]),
        (["--db", "sqlite:////nonexistent-rl/dir/rl.db"], ["the folder /nonexistent-rl/dir does not exist"]),
        (["--port", "abc"], ["--port: expected a whole number", "'abc'"]),
        (["--port", "70000"], ["--port", "at most 65535"]),
        (["--heartbeat-interval", "0"], ["--heartbeat-interval: expected a number above 0"]),
        (["--heartbeat-grace", "nan"], ["--heartbeat-grace"]),
        (["--sig-grace", "-1"], ["--sig-grace"]),
        (["--sdk-app-id", "-5"], ["--sdk-app-id"]),
        (["--log-level", "chatty"], ["--log-level", "DEBUG, INFO"]),
        (["--callback-workers", "x"], ["--callback-workers"]),
        (["--callback-retention", "soon"], ["--callback-retention"]),
        (["--db-schema", "Bad-Name"], ["--db-schema", "lower-case letters"]),
        (["--host", "no-such-host.invalid"], ["--host 'no-such-host.invalid'"]),
        (["--ice-transport-policy", "relay"], ["--ice-transport-policy"]),
        (["--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
        (["--cluster", "nats://127.0.0.1:4222"], ["--cluster needs --db postgresql://"]),
        (["--cluster", "http://x:4222", "--db", PG + "/x"], ["--cluster must be a NATS URL"]),
        (["--cluster", "nats://h:99999", "--db", PG + "/x"], ["--cluster must be a NATS URL"]),
        (["--public-url", "http://10.0.0.5:8080"], ["--public-url is for a cluster node"]),
        (
            ["--cluster", "nats://127.0.0.1:4222", "--db", PG + "/x", "--public-url", "ftp://x"],
            ["--public-url must be a base URL"],
        ),
        (["--cluster-lease", "0"], ["--cluster-lease"]),
        (["--sfu", "janus=http://127.0.0.1:8088/janus"], ["--sfu needs --sfu-secret"]),
        (["--sfu-secret", "s"], ["--sfu-secret is given but no --sfu"]),
        (["--sfu", "http://127.0.0.1:8088/janus", "--sfu-secret", "s"], ["must be janus=URL"]),
        (["--sfu", "janus=ftp://x/janus", "--sfu-secret", "s"], ["is not an http(s) URL"]),
        (
            ["--sfu", "janus=http://127.0.0.1:8088/janus", "--sfu-secret", "s", "--sfu-min-members", "1"],
            ["--sfu-min-members must be a whole number from 2 to 9, got 1"],
        ),
        (["--sfu-min-members", "three"], ["--sfu-min-members must be a whole number", "three"]),
        (["--record-calls"], ["--record-calls needs --sfu"]),
    ],
)
def test_config_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    assert_refused(ringline("serve", "--data-dir", str(tmp_path), "--port", "0", *args), *needles)


def test_a_bad_env_value_is_one_line_too(tmp_path: Path) -> None:
    env = {**os.environ, "RINGLINE_PORT": "eighty"}
    assert_refused(ringline("serve", "--data-dir", str(tmp_path), env=env), "--port", "'eighty'")


def test_a_bad_sfu_env_value_is_one_line_too(tmp_path: Path) -> None:
    env = {**os.environ, "RINGLINE_SFU": "janus=http://127.0.0.1:8088/janus,mediasoup=http://x"}
    env["RINGLINE_SFU_SECRET"] = "s"
    assert_refused(ringline("serve", "--data-dir", str(tmp_path), env=env), "--sfu 'mediasoup=http://x'")


def test_a_database_of_a_newer_ringline_stops_the_start_and_every_thread(tmp_path: Path) -> None:
    db = tmp_path / "ringline.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (999, 0)")
    assert_refused(ringline("serve", "--data-dir", str(tmp_path), "--port", "0"), "newer than this Ringline")


async def test_a_postgresql_database_of_a_newer_ringline_stops_the_start(tmp_path: Path, pg_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "CREATE SCHEMA ringline;"
            " CREATE TABLE ringline.schema_version (version INTEGER PRIMARY KEY, applied_at FLOAT8);"
            " INSERT INTO ringline.schema_version VALUES (999, 0)"
        )
    finally:
        await conn.close()
    result = await asyncio.to_thread(
        ringline, "serve", "--data-dir", str(tmp_path), "--port", "0", "--db", pg_url
    )
    assert_refused(result, "newer than this Ringline")


async def test_ctrl_c_before_the_server_listens_is_one_line_and_leaves_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    """SIGINT while the start waits (here: for the schema lock of another opener of the
    same database, which the test holds; seen waiting in pg_locks, no timing) ends the
    process at once with one line and exit code 130, no traceback."""
    import asyncpg

    holder = await asyncpg.connect(pg_url)
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT pg_advisory_xact_lock(hashtext('ringline.schema:' || $1::text))", "ringline"
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ringline.cli",
                "serve",
                *("--data-dir", str(tmp_path), "--port", "0", "--db", pg_url),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                async with asyncio.timeout(EXIT_BOUND):
                    while not await holder.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
                        assert proc.returncode is None, "the server did not wait for the schema lock"
                        await asyncio.sleep(0.05)  # polling the database, not a synchronisation
                proc.send_signal(signal.SIGINT)
                async with asyncio.timeout(EXIT_BOUND):
                    out, err = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    finally:
        await holder.close()
    text = err.decode()
    assert proc.returncode == 130, text
    assert text.count("\n") == 1 and "Traceback" not in text and out == b"", text
    assert text.startswith("ringline: interrupted before the server started"), text


def test_a_data_folder_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert_refused(ringline("serve", "--data-dir", str(tmp_path / "file"), "--port", "0"), "--data-dir")


def _pg_or_missing() -> None:
    try:
        where = urlsplit(PG_DSN)
        with socket.create_connection((where.hostname or "127.0.0.1", where.port or 5432), timeout=5):
            pass
    except OSError as exc:
        missing(f"PostgreSQL is absent at {PG_DSN} ({exc}); run ./scripts/test (it starts it)")


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        (
            f"postgresql://postgres@127.0.0.1:{free_port()}/x",
            ["cannot connect to PostgreSQL", "is PostgreSQL running"],
        ),
        (PG + "/rl_missing_" + uuid.uuid4().hex[:8], ["does not exist", "create the database"]),
        (
            PG.replace("postgres@", f"rl_norole_{uuid.uuid4().hex[:8]}@", 1) + "/postgres",
            ["role", "create the role"],
        ),
    ],
    ids=["unreachable", "no-database", "no-role"],
)
def test_postgresql_problems_are_one_line(tmp_path: Path, url: str, needles: list[str]) -> None:
    if "unreachable" not in needles[0]:
        _pg_or_missing()
    assert_refused(ringline("serve", "--data-dir", str(tmp_path), "--port", "0", "--db", url), *needles)


def test_usersig_errors_are_one_line(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path), "--create"]
    assert_refused(ringline("usersig", "alice", "--expire", "0", *d), "--expire", "at least 1")
    assert_refused(ringline("usersig", "not a user id!", *d), "user_id must be 1-32 characters")
    (tmp_path / "app.json").write_text("{broken")
    assert_refused(ringline("usersig", "alice", "--data-dir", str(tmp_path)), "cannot read the app")


# ------------------------------------------------------------------ usersig and the data folder


def test_usersig_outside_the_data_folder_refuses_and_says_where_it_looked(tmp_path: Path) -> None:
    err = assert_refused(
        ringline("usersig", "alice", cwd=tmp_path), "--data-dir", "RINGLINE_DATA_DIR", "--create"
    )
    assert str(tmp_path / "ringline-data") in err
    assert not (tmp_path / "ringline-data").exists()  # nothing made behind the user's back


def test_usersig_create_makes_an_app_and_says_so(tmp_path: Path) -> None:
    code, out, err = ringline("usersig", "alice", "--create", cwd=tmp_path)
    assert code == 0, err
    kept = json.loads((tmp_path / "ringline-data" / "app.json").read_text())
    assert f"new app {kept['sdk_app_id']} of {tmp_path / 'ringline-data'}" in err
    assert out.strip() and "\n" not in out.strip()
    code, out2, err = ringline("usersig", "alice", cwd=tmp_path)  # now there is one: it is used
    assert code == 0 and f"app {kept['sdk_app_id']} of" in err and "new app" not in err


def test_usersig_with_the_app_given_by_flags_needs_no_folder(tmp_path: Path) -> None:
    code, out, err = ringline(
        "usersig", "alice", "--sdk-app-id", "1400000001", "--secret-key", "k" * 32, cwd=tmp_path
    )
    assert code == 0 and out.strip()
    assert "app 1400000001 given by --sdk-app-id/--secret-key" in err
    assert list(tmp_path.iterdir()) == []  # no folder, no app.json made


# ------------------------------------------------------------------ callback-secrets and the data folder


def test_callback_secrets_outside_the_data_folder_refuses_and_makes_nothing(tmp_path: Path) -> None:
    err = assert_refused(ringline("callback-secrets", cwd=tmp_path), "--data-dir", "RINGLINE_DATA_DIR")
    assert f"no app in {tmp_path / 'ringline-data'}" in err
    assert list(tmp_path.iterdir()) == []


def test_callback_secrets_given_by_flags_need_no_folder(tmp_path: Path) -> None:
    secret = "whsec_" + "a" * 43 + "="
    code, out, err = ringline(
        "callback-secrets", "--callback-token", "tok", "--webhook-secret", secret, cwd=tmp_path
    )
    assert code == 0, err
    assert out == f"callback token:  tok\nwebhook secret:  {secret}\n"
    assert list(tmp_path.iterdir()) == []


def test_callback_secrets_print_what_the_server_signs_with(tmp_path: Path) -> None:
    code, _, err = ringline("usersig", "alice", "--create", cwd=tmp_path)  # an app, as a server makes
    assert code == 0, err
    code, out, err = ringline("callback-secrets", cwd=tmp_path)
    assert code == 0, err
    kept = json.loads((tmp_path / "ringline-data" / "callbacks.json").read_text())
    assert out.startswith(f"callback token:  {kept['callback_token']}\n")


# ------------------------------------------------------------------ the banner


def _venv_ringline() -> Path:
    return Path(sys.executable).parent / "ringline"


def test_the_banner_comes_once_the_server_listens_and_its_command_works(tmp_path: Path) -> None:
    """Started the way scripts/run starts it (``.venv/bin/ringline serve`` from the folder
    that holds the venv), the banner shows ``.venv/bin/ringline usersig …``, as the
    README does, and that command, typed as shown, mints a sig the server accepts."""
    exe = _venv_ringline()
    assert exe.exists(), f"{exe}: run the tests with the project's venv (scripts/test)"
    home = exe.parent.parent.parent  # the folder that holds the venv
    prog = os.path.relpath(exe, home)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != exe.parent)
    env = {**os.environ, "PATH": path}
    port = free_port()
    data = str(tmp_path / "data")
    proc = subprocess.Popen(
        [prog, "serve", "--port", str(port), "--data-dir", data, "--log-level", "WARNING"],
        cwd=home,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    reader: threading.Thread | None = None
    try:

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line.rstrip("\n"))
                if line.startswith("Mint a user sig with: "):
                    ready.set()
            ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert ready.wait(EXIT_BOUND), lines
        assert lines[0].startswith(f"Ringline on http://127.0.0.1:{port}  app "), lines
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert r.status == 200  # the banner said it listens: it does
        mint = lines[1].removeprefix("Mint a user sig with: ")
        assert mint == f"{prog} usersig USER_ID --data-dir {data}", lines
        if exe.parent.parent.name == ".venv":  # the README's setup: the README's words
            assert mint.startswith(".venv/bin/ringline usersig "), mint
        sig = subprocess.run(
            shlex.split(mint.replace("USER_ID", "administrator")),
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=EXIT_BOUND,
            check=True,
        ).stdout.strip()
        app = json.loads(Path(data, "app.json").read_text())["sdk_app_id"]
        url = (
            f"http://127.0.0.1:{port}/v4/call_config/get_callback?sdkappid={app}"
            f"&identifier=administrator&usersig={sig}&random=1&contenttype=json"
        )
        req = urllib.request.Request(url, data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["ErrorCode"] == 0
    finally:
        proc.terminate()
        code = proc.wait(timeout=EXIT_BOUND)
        if reader is not None:
            reader.join(EXIT_BOUND)
        assert proc.stderr is not None
        proc.stderr.close()
    assert code == 0, lines


def test_docs_show_the_commands_as_the_banner_does() -> None:
    """Shell lines in README.md and docs/ run ``.venv/bin/ringline`` (what ./scripts/run
    made), as the banner shows it, not a bare ``ringline`` the README's setup has not
    put on the PATH."""
    root = Path(__file__).parents[2]
    bad: list[str] = []
    for page in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        fenced = False
        for n, line in enumerate(page.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            text = line.strip()
            if fenced and re.search(r"(^|\$\(|\| |&& )ringline (serve|usersig|callback-secrets)(\s|$)", text):
                bad.append(f"{page.relative_to(root)}:{n}: {text}")
            if not fenced and not text.startswith(("#", "|")):
                for cmd in ("`ringline usersig ", "`ringline callback-secrets", "(ringline usersig"):
                    if cmd in line:
                        bad.append(f"{page.relative_to(root)}:{n}: {text}")
    assert bad == [], "write .venv/bin/ringline in commands to run:\n" + "\n".join(bad)


def test_without_node_id_the_node_is_named_by_the_port_picked(tmp_path: Path) -> None:
    """``--port 0`` picks a free port; the default node id (``<host name>:<port>``) names
    that port, in the logs, ``/healthz`` and the metrics alike, not ``:0``."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "ringline.cli", "serve", "--port", "0"),
            *("--data-dir", str(tmp_path), "--log-format", "json", "--metrics"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        serving: dict[str, object] = {}
        for line in proc.stderr:  # ends when the process does: a failed start fails below
            if line.startswith("{") and "ringline serving on" in line:
                serving = json.loads(line)
                break
        assert serving, "the server did not say where it listens"
        match = re.search(r"serving on 127\.0\.0\.1:(\d+) ", str(serving["event"]))
        assert match, serving
        port = int(match[1])
        node_id = f"{socket.gethostname()}:{port}"
        assert serving["node_id"] == node_id
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert json.loads(r.read())["node_id"] == node_id
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert f'node_id="{node_id}"' in r.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=EXIT_BOUND)
        if proc.stderr is not None:
            proc.stderr.close()


async def test_a_cluster_node_without_nats_is_one_line_and_leaves_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    """NATS unreachable: the node says so in one line, exits 2 and holds no port."""
    port = free_port()
    result = await asyncio.to_thread(
        ringline,
        "serve",
        "--data-dir",
        str(tmp_path),
        "--port",
        str(port),
        "--db",
        pg_url,
        "--cluster",
        f"nats://127.0.0.1:{free_port()}",
    )
    assert_refused(result, "cannot reach NATS at nats://127.0.0.1:", "start nats-server or fix --cluster")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens there
