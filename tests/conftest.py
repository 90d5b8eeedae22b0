from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

from needs import PG_DSN, in_ci, missing
from rawclient import Raw
from serverproc import ServerProcess

# Hypothesis: no per-example deadline and no "too slow" health check. The machine may be
# loaded (CI shares its cores); how fast an example runs proves nothing, so it must never
# fail a test. A test may still set its own max_examples.
settings.register_profile("ringline", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ringline")

# ----------------------------------------------------------------- nothing skips in CI

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a run with any skipped test fails (tests/needs.py): scripts/test
    installs and starts every dependency, so a skip there hides a broken step."""
    if in_ci() and _skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if in_ci() and _skipped:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped)} test(s) skipped under CI, where nothing may skip "
            f"(tests/needs.py): {', '.join(_skipped[:20])}",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server process per test module (tests use unique user ids)."""
    srv = ServerProcess(tmp_path_factory.mktemp("srv")).start()
    try:
        yield srv
    finally:
        code = srv.stop()
        assert code == 0, f"server did not exit cleanly on SIGTERM ({code}): {srv.log()}"


@pytest.fixture
async def clients(server: ServerProcess) -> AsyncIterator[list[Raw]]:
    """Raw protocol clients a test made (see ``rawclient.logged_in``); closed after it."""
    made: list[Raw] = []
    yield made
    for c in made:
        await c.close()


ADMIN_DSN = PG_DSN


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for a server process (``--db``), dropped afterwards;
    skips the test, saying how to start PostgreSQL, when it is absent."""
    import asyncpg  # the dev extra

    name = "ringline_srv_" + uuid.uuid4().hex[:12]
    try:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        missing(
            f"PostgreSQL is absent at {ADMIN_DSN} ({exc}); run ./scripts/test (it starts it), "
            "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
            "or set RINGLINE_TEST_PG_DSN"
        )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
