"""The server on PostgreSQL (`--db postgresql://…`): a call, its record, a restart."""

from __future__ import annotations

from pathlib import Path

from needs import import_or_missing
from rawclient import Raw
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
            result = await conn.fetchval("SELECT result FROM calls WHERE call_id = $1", cid)
        finally:
            await conn.close()
        assert result == "NormalEnd"
    finally:
        await a.close()
        await b.close()
        srv.kill()
