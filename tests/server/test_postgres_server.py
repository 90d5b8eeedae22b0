"""The server on PostgreSQL (`--db postgresql://…`): a call, its record, a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from needs import import_or_missing
from rawclient import Raw
from ringline.server.store.postgres import SCHEMA_VERSION
from serverproc import ServerProcess, unique

asyncpg = import_or_missing("asyncpg", "asyncpg is part of the dev extra (pip install -e '.[dev]')")


async def test_calls_are_recorded_in_postgres_and_survive_a_restart(tmp_path: Path, pg_url: str) -> None:
    srv = ServerProcess(tmp_path, db=pg_url).start()
    a, b = Raw(srv), Raw(srv)
    try:
        ua, ub = unique("a"), unique("b")
        await a.login(ua)
        await b.login(ub)
        cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
        await b.event("on_call_received", call_id=cid)
        await b.ok("accept", call_id=cid)
        await a.ok("hangup", call_id=cid)
        await b.event("on_call_end", call_id=cid)
        await a.close()
        await b.close()
        assert srv.stop() == 0
        srv.start()
        a = Raw(srv)
        await a.login(ua)
        recs = (await a.ok("query_recent_calls"))["records"]
        assert [(r["call_id"], r["result"], r["role"]) for r in recs] == [(cid, 3, 1)]
        conn = await asyncpg.connect(pg_url)
        try:
            result = await conn.fetchval("SELECT result FROM ringline.calls WHERE call_id = $1", cid)
            in_public = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await conn.close()
        assert result == "NormalEnd"
        assert in_public == 0  # the tables live in their own schema, ringline by default
    finally:
        await a.close()
        await b.close()
        srv.kill()


async def _table_schema(conn: Any, table: str) -> str:
    """The schema holding Ringline's ``table`` (wherever the server keeps its tables)."""
    schema = await conn.fetchval(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = $1", table
    )
    assert schema is not None, f"no table {table} in the database"
    return str(schema)


async def test_several_servers_opening_one_new_database_at_once_migrate_it_once(
    tmp_path: Path, pg_url: str
) -> None:
    """Real processes started together on one empty database: every one starts (the
    migrations are serialised, none fails on another's half-made tables), each schema
    version is applied exactly once, and every server then records its calls there."""
    servers = [ServerProcess(tmp_path / f"srv{i}", db=pg_url) for i in range(3)]
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        calls = []
        for srv in servers:
            a, b = Raw(srv), Raw(srv)
            try:
                ua, ub = unique("a"), unique("b")
                await a.login(ua)
                await b.login(ub)
                cid = (await a.ok("calls", user_ids=[ub], media_type=1))["call_id"]
                await b.event("on_call_received", call_id=cid)
                await b.ok("reject", call_id=cid)
                await a.event("on_call_not_connected", call_id=cid)
                calls.append(cid)
            finally:
                await a.close()
                await b.close()
        conn = await asyncpg.connect(pg_url)
        try:
            schema = await _table_schema(conn, "schema_version")
            rows = await conn.fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY 1')
            versions = [r[0] for r in rows]
            results = await conn.fetch(
                f'SELECT call_id, result FROM "{schema}".calls WHERE call_id = ANY($1::text[])', calls
            )
        finally:
            await conn.close()
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        assert sorted((r["call_id"], r["result"]) for r in results) == sorted((c, "Reject") for c in calls)
        for srv in servers:
            assert srv.stop() == 0, srv.log()
            assert "Traceback" not in srv.log(), srv.log()
    finally:
        for srv in servers:
            srv.kill()
