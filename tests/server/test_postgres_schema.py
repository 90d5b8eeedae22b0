"""The PostgreSQL store keeps its tables in a schema of their own (``ringline`` unless
named), creates it, and refuses to start afresh beside tables a Ringline before schemas
left in ``public``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from needs import import_or_missing
from ringline.server.store import PostgresStore, open_store
from ringline.server.store.postgres import DEFAULT_SCHEMA, SCHEMA_VERSION

asyncpg = import_or_missing("asyncpg", "asyncpg is part of the dev extra (pip install -e '.[dev]')")


async def _tables(url: str, schema: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
    finally:
        await conn.close()
    return {r[0] for r in rows}


async def test_tables_go_to_the_ringline_schema_created_on_open(pg_url: str) -> None:
    s = open_store(pg_url)
    assert isinstance(s, PostgresStore) and s.schema == DEFAULT_SCHEMA == "ringline"
    await s.open()
    try:
        assert await s.schema_version() == SCHEMA_VERSION
    finally:
        await s.close()
    assert {"schema_version", "calls", "outbox"} <= await _tables(pg_url, "ringline")
    assert await _tables(pg_url, "public") == set()
    again = PostgresStore(pg_url)  # a second start finds the schema and its tables
    await again.open()
    await again.close()


async def test_a_named_schema_and_the_dsn_search_path(pg_url: str) -> None:
    s = open_store(pg_url, pg_schema="calls_a")
    await s.open()
    await s.close()
    assert "calls" in await _tables(pg_url, "calls_a")
    by_dsn = PostgresStore(pg_url + "?search_path=calls_b")
    assert by_dsn.schema == "calls_b" and "search_path" not in by_dsn.dsn
    await by_dsn.open()
    await by_dsn.close()
    assert "calls" in await _tables(pg_url, "calls_b")
    assert await _tables(pg_url, "ringline") == set()


@pytest.mark.parametrize("name", ["Ringline", "1abc", "a-b", 'x"; DROP TABLE calls; --', "a" * 64])
def test_a_bad_schema_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        PostgresStore("postgresql://u@h/db", schema=name)


def test_two_different_schemas_are_refused() -> None:
    with pytest.raises(ValueError, match="name it once"):
        PostgresStore("postgresql://u@h/db?search_path=a", schema="b")


async def test_tables_left_in_public_are_refused_with_the_fix(pg_url: str) -> None:
    old = PostgresStore(pg_url, schema="public")  # what a Ringline before schemas made
    await old.open()
    await old.close()
    s = PostgresStore(pg_url)
    with pytest.raises(RuntimeError, match="--db-schema public") as info:
        await s.open()
    assert "\n" not in str(info.value) and "ALTER TABLE public" in str(info.value)
    assert await _tables(pg_url, "ringline") == set()  # nothing made beside them
    kept = PostgresStore(pg_url, schema="public")  # the first way out: keep them there
    await kept.open()
    await kept.close()
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    move = doc.split("```sql\n", 1)[1].split("```", 1)[0]
    conn = await asyncpg.connect(pg_url)  # the second: move them, as docs/cli.md says
    try:
        await conn.execute(move)
    finally:
        await conn.close()
    assert await _tables(pg_url, "public") == set()
    moved = PostgresStore(pg_url)
    await moved.open()
    try:
        assert await moved.schema_version() == SCHEMA_VERSION
    finally:
        await moved.close()


async def test_a_role_that_may_not_create_the_schema_is_told_how(pg_url: str) -> None:
    role = "rl_nocreate_" + uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN")
        user_url = pg_url.replace("postgres@", f"{role}@", 1)
        with pytest.raises(RuntimeError, match=f'CREATE SCHEMA ringline AUTHORIZATION "{role}"'):
            await PostgresStore(user_url).open()
        await conn.execute(f"CREATE SCHEMA ringline AUTHORIZATION {role}")
        s = PostgresStore(user_url)  # made by the owner: the role uses it
        await s.open()
        await s.close()
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS ringline CASCADE")
        await conn.execute(f"DROP ROLE IF EXISTS {role}")
        await conn.close()
