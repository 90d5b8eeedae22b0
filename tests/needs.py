"""One rule for tests whose dependency is missing (PostgreSQL, Chromium, root for a
network namespace, coturn, nats-server, espeak-ng, an optional Python package …):

- on a developer's machine the test is **skipped**, loudly, with the reason and how to
  install the missing part;
- under CI (the environment variable ``CI`` set to anything but ``""``/``0``/``false``)
  it **fails**: ``scripts/test`` installs and starts everything the suite needs, so a
  missing part there is a broken install step, never a reason to run fewer tests.

Every test that cannot run must go through :func:`missing` (or :func:`import_or_missing`),
never ``pytest.skip``/``skipif``/``importorskip`` directly. ``tests/conftest.py`` also
fails a CI session in which anything was skipped at all.
"""

from __future__ import annotations

import importlib
import os
import socket
from types import ModuleType
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

__all__ = ["PG_DSN", "import_or_missing", "in_ci", "missing"]

#: The one PostgreSQL the suites use (``RINGLINE_TEST_PG_DSN``; by default the cluster's
#: own ``postgres`` database on 127.0.0.1:5432, which ``./scripts/test`` starts). The
#: store conformance suite makes a schema per test in it; server tests make a database
#: per test next to it. Both drop what they made.
PG_DSN = os.environ.get("RINGLINE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

#: The NATS server (JetStream enabled) the cluster tests use (``RINGLINE_TEST_NATS_URL``;
#: ``./scripts/test`` starts one on 127.0.0.1:4222 when none is running).
NATS_URL = os.environ.get("RINGLINE_TEST_NATS_URL", "nats://127.0.0.1:4222")


def in_ci() -> bool:
    """True when the tests run in CI (``CI`` set, as ``.ci/run`` and CI services do)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> NoReturn:
    """Stop the current test because a dependency is missing: fail under CI, else skip.

    ``reason`` says what is missing and how to get it (``./scripts/test`` installs …)."""
    if in_ci():
        pytest.fail(f"missing dependency under CI (scripts/test must provide it): {reason}", pytrace=False)
    pytest.skip(f"!!! NOT RUN: {reason} !!!", allow_module_level=True)


def require_nats() -> str:
    """:data:`NATS_URL` if something listens there, else :func:`missing`."""
    parts = urlsplit(NATS_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=2).close()
    except OSError as exc:
        missing(
            f"no NATS server at {NATS_URL} ({exc}); ./scripts/test starts one "
            "(nats-server -js -a 127.0.0.1 -p 4222) or set RINGLINE_TEST_NATS_URL"
        )
    return NATS_URL


def import_or_missing(module: str, reason: str) -> ModuleType:
    """``import module``, or :func:`missing` with ``reason`` when it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(f"{reason} ({exc})")
