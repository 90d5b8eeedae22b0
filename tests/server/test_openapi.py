"""``/openapi.json``: a valid OpenAPI 3.1 document, listing exactly the routes the app
serves, with documentation pages that exist; and a bounded schemathesis run against a
real server process (no 5xx, every response conforms to its schema)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from ringline.server.app import build_app
from ringline.server.config import AppIdentity, Settings
from ringline.server.openapi import ENDPOINTS, build_document
from ringline.server.rest import AdminApi
from ringline.server.rest_contract import ERRORS
from serverproc import SDK_APP_ID, SECRET, ServerProcess

#: The SFU and TURN flags, so that every route answers (the TURN credentials for Janus
#: need both; the Janus address is never asked: no call gets a room here).
_SFU_TURN_FLAGS = [
    "--sfu", "janus=http://127.0.0.1:9/janus", "--sfu-secret", "openapi-sfu-secret",
    "--turn-url", "turn:127.0.0.1:3478", "--turn-secret", "openapi-turn-secret",
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """This module's server: the shared fixture's, with the SFU and TURN flags."""
    srv = ServerProcess(tmp_path_factory.mktemp("srv"), extra_args=_SFU_TURN_FLAGS).start()
    try:
        yield srv
    finally:
        code = srv.stop()
        assert code == 0, f"server did not exit cleanly on SIGTERM ({code}): {srv.log()}"


ROOT = Path(__file__).resolve().parents[2]


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = build_document()
    validate(doc)
    assert doc["openapi"] == "3.1.0"


async def test_the_server_serves_the_same_document(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/openapi.json") as r:
        assert r.status == 200 and r.content_type == "application/json"
        served = await r.json()
    assert served == build_document()


async def _served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of everything the real application answers, with the admin
    commands expanded from the tables of the AdminApi it mounted."""
    settings = Settings(data_dir=str(tmp_path), db=f"sqlite:///{tmp_path / 'r.db'}")
    app = await build_app(settings, AppIdentity(SDK_APP_ID, SECRET))
    runner = web.AppRunner(app)  # its cleanup closes the hub and the store (and their threads)
    await runner.setup()
    try:
        served: set[tuple[str, str]] = set()
        fallbacks: set[str] = set()
        for route in app.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            handler: Any = route.handler
            owner = getattr(handler, "__self__", None)
            if route.method == "HEAD":
                continue  # aiohttp adds HEAD to every GET
            if isinstance(owner, AdminApi) and handler.__name__ in ("wrong_method", "unknown_path"):
                fallbacks.add(f"{route.method} {path}")  # JSON errors for anything else
                continue
            if isinstance(owner, AdminApi) and handler.__name__ in ("handle_v4", "handle_v1"):
                table = owner.v4 if handler.__name__ == "handle_v4" else owner.v1
                prefix = path.split("/")[1]
                served |= {(route.method, f"/{prefix}/{c}") for c in table}
                continue
            served.add((route.method, path))
        assert fallbacks == {
            "* /v4/{service}/{command}",
            "* /v4/{tail}",
            "* /v1/{service}/{command}",
            "* /v1/{tail}",
        }
        return served
    finally:
        await runner.cleanup()


async def test_the_document_lists_every_route_the_app_serves(tmp_path: Path) -> None:
    served = await _served_routes(tmp_path)
    doc = build_document()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert {("POST", "/v4/call_engine_http_srv/end_call"), ("GET", "/healthz")} <= documented
    assert len(ENDPOINTS) == len(documented)


def test_every_endpoint_has_its_documentation_page() -> None:
    index = (ROOT / "docs" / "rest.md").read_text()
    for e in ENDPOINTS:
        page = ROOT / "docs" / e.doc
        assert page.exists(), f"{e.path}: {page} is missing"
        text = page.read_text()
        if e.api in ("v4", "v1"):
            assert e.path.lstrip("/") in text, f"{page} does not mention {e.path}"
            assert e.doc.removeprefix("rest/") in index or e.doc in index, (
                f"docs/rest.md does not link {e.doc}"
            )
    for err in ERRORS:
        assert f"| {err.code} |" in index, f"docs/rest.md has no row for error code {err.code}"


def _schemathesis_config(srv: ServerProcess, max_examples: int) -> str:
    return f"""
[generation]
max-examples = {max_examples}

[parameters]
"query.sdkappid" = {SDK_APP_ID}
"query.identifier" = "administrator"
"query.usersig" = "{srv.sig("administrator")}"
"query.random" = 7
"query.contenttype" = "json"
"query.key" = "openapi-sfu-secret"
"""


@pytest.mark.timeout(420)  # a hang guard only: on a loaded machine the run may take minutes
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Every operation, positive and negative data, bounded by the number of examples
    (about 10 s on an idle machine; no limit on the time it takes).

    All checks but ``negative_data_rejection``: the vendor API answers schema-violating
    requests with HTTP 200 and an error envelope, on purpose, and the envelope's schema
    (checked) says which codes each command may answer. ``GET /v1/ws`` is the WebSocket.
    """
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    config = tmp_path / "schemathesis.toml"
    config.write_text(_schemathesis_config(server, 25))
    run = subprocess.run(
        [
            st,
            "--config-file",
            str(config),
            "--no-color",
            "run",
            server.url + "/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "negative_data_rejection",
            "--exclude-path",
            "/v1/ws",
            # Only a real recording reaches its success path (a file, not JSON):
            # tests/sfu/test_recording.py downloads and checks one.
            "--exclude-path",
            "/v4/call_record_http_srv/download_recording",
            "--seed",
            "20260101",
            # One worker: CPython 3.11's ast.parse is not thread-safe ("AST constructor
            # recursion depth mismatch"), and hypothesis parses lambdas in each worker.
            "--workers",
            "1",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=400,
    )
    tail = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, f"schemathesis found problems:\n{tail}\nserver log:\n{server.log()}"
    assert "No issues found" in run.stdout, tail
