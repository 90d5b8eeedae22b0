"""The PostgreSQL store, on an :mod:`asyncpg` connection pool.

Needs the optional extra: ``pip install 'ringline[postgres]'`` (asyncpg is imported
only by :meth:`PostgresStore.open`, so this module imports without it).

The operations are those of :mod:`.engine`, written once for both backends; this module
is PostgreSQL's dialect (:class:`PostgresDialect`: its statements and the steps it takes
its own way) and its driver (:func:`run_async`).

Writes use the same group commit as the SQLite store (:class:`.batching.GroupCommitter`):
one commit round at a time, on one pooled connection; batches that arrive meanwhile are
merged into the next round's single transaction, and if that transaction fails every
batch is retried alone, so a bad batch fails only its own caller (unless the connection
itself was lost: then every batch of the round fails with that error). Consecutive
writes of one type go out as one pipelined ``executemany``. Reads use other pooled
connections and run concurrently with writes; ``query_records`` reads its count and its
page in one REPEATABLE READ snapshot.

Callback outbox: :attr:`PostgresStore.outbox` (a :class:`PostgresOutbox`) keeps callback
deliveries in the ``outbox`` and ``webhook_gone`` tables (schema version 3; layout and
the *head* invariant in :mod:`.outbox`). Deliveries enter with the
:class:`~.base.DeliveriesWrite` write, in the batch of their event. Claims are one
``UPDATE … RETURNING`` over head rows picked ``FOR UPDATE SKIP LOCKED``, so several
servers may drain one database without claiming a delivery twice; claims, marks and
releases that arrive together share one transaction on one pooled connection
(:class:`~.outbox.OpBatcher`). The producer must queue the deliveries of one call from
one server at a time (the server that owns the call does).

The tables live in their own schema, ``ringline`` unless another is named (the
``schema`` argument, ``ringline serve --db-schema``; a ``search_path`` query parameter in
the DSN names it too). :meth:`PostgresStore.open` creates the schema if it is missing and
sets every pooled connection's ``search_path`` to it. A database that holds Ringline's
tables in ``public`` (from a Ringline that predates schemas) and none in the default
schema is refused with the fix: start with ``--db-schema public`` or move the tables.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import outbox
from .base import FinishedCallWrite, UserCallsHide
from .batching import Ok
from .engine import Runner, SqlOutbox, SqlStore, StoreDialect, Transition, in_rounds, migrate
from .ops import Execute, ExecuteMany, Fetch, Op, Query, fetch_one, fetch_value
from .outbox import (
    DEFAULT_LEASE,
    OUTBOX_COLUMNS,
    GroupInfo,
    NewRow,
    OpRefused,
)
from .schema import POSTGRES_DDL, SCHEMA_VERSION, migrations
from .sql import POSTGRES, RecordFilter, Statement, call_columns, records_count

__all__ = [
    "DEFAULT_SCHEMA",
    "SCHEMA_VERSION",
    "PostgresDialect",
    "PostgresOutbox",
    "PostgresStore",
    "check_schema_name",
    "run_async",
]

#: The PostgreSQL schema the tables live in unless another is named.
DEFAULT_SCHEMA = "ringline"
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_schema_name(name: str) -> str:
    """``name`` if it is a plain PostgreSQL schema name (lower-case letters, digits and
    ``_``, not starting with a digit, at most 63 characters); raise ValueError saying so."""
    if _SCHEMA_RE.fullmatch(name) is None:
        raise ValueError(
            f"schema name {name[:80]!r} must be 1-63 lower-case letters, digits or _,"
            " not starting with a digit"
        )
    return name


_log = logging.getLogger(__name__)

_T = TypeVar("_T")

_INSTALL_HINT = "pip install 'ringline[postgres]'"

# What the dialect reads from this module each time it uses it (see StoreDialect), so
# a test may stand in the code of an older schema version: the migrations in PostgreSQL's
# DDL, the purge chunk and the planning of outbox rows.
_MIGRATIONS = migrations(POSTGRES_DDL)
PURGE_CHUNK = outbox.PURGE_CHUNK
plan_inserts = outbox.plan_inserts

_SQL_SAVE_LIVE = """
    INSERT INTO live_calls (call_id, snapshot, updated_at)
    SELECT $1::text, $2::text, $3::double precision
    WHERE NOT EXISTS (SELECT 1 FROM calls WHERE call_id = $1::text)
    ON CONFLICT (call_id) DO UPDATE
        SET snapshot = EXCLUDED.snapshot, updated_at = EXCLUDED.updated_at
"""
# One statement per FinishedCallWrite: insert the record unless it exists, index it for its
# users only if it was inserted now, and delete the live snapshot in any case.
_SQL_FINISH = """
    WITH inserted AS (
        INSERT INTO calls (call_id, sdk_app_id, caller, media_type, scene, call_type,
                           chat_group_id, start_time, accept_time, end_time, result,
                           end_reason, record)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
        ON CONFLICT (call_id) DO NOTHING
        RETURNING call_id, start_time
    ), indexed AS (
        INSERT INTO user_calls (user_id, call_id, start_time, result_type, hidden)
        SELECT u.user_id, i.call_id, i.start_time, u.result_type, FALSE
        FROM inserted AS i
        CROSS JOIN unnest($14::text[], $15::integer[]) AS u (user_id, result_type)
    )
    DELETE FROM live_calls WHERE call_id = $1
"""
_SQL_INSERT_MEMBERS = """
    INSERT INTO "groups" (group_id, user_id, position)
    SELECT $1::text, m.user_id, (m.ord - 1)::integer
    FROM unnest($2::text[]) WITH ORDINALITY AS m (user_id, ord)
"""
_SQL_HIDE = """
    UPDATE user_calls SET hidden = TRUE
    WHERE user_id = $1 AND call_id = ANY($2::text[]) AND NOT hidden
"""
_SQL_MARK_ALIVE = """
    INSERT INTO alive (id, at) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET at = GREATEST(alive.at, EXCLUDED.at)
"""
# -- the outbox (see .outbox for the head invariant)

_SQL_OUTBOX_INSERT = """
    INSERT INTO outbox (event_id, url, call_id, sequence, command, body, created_at,
                        window_start, state, head, next_at, last_error, finished_at, extra_query)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                         $6::bytea[], $7::float8[], $8::float8[], $9::text[], $10::boolean[],
                         $11::float8[], $12::text[], $13::float8[], $14::text[])
"""
_SQL_OUTBOX_IDS = "SELECT event_id FROM outbox WHERE event_id = ANY($1::text[])"
_SQL_OUTBOX_GROUPS = """
    SELECT g.url, g.call_id,
           (SELECT max(o.sequence) FROM outbox AS o WHERE o.url = g.url AND o.call_id = g.call_id),
           EXISTS (SELECT 1 FROM outbox AS o
                   WHERE o.url = g.url AND o.call_id = g.call_id AND o.state IN ('pending', 'in_flight'))
    FROM unnest($1::text[], $2::text[]) AS g (url, call_id)
"""
# The outbox lock of this schema (a transaction-level advisory lock): every round of
# outbox operations (claims, marks, releases) holds it shared, from its first statement
# to its commit; queueing a delivery behind an open head takes it exclusively (see
# .engine's _queue). So a server's insert and a deliverer's finishing of the same call's head
# never overlap, whichever process each runs in.
_OUTBOX_LOCK_KEY = "hashtext('ringline.outbox:' || coalesce(current_schema(), ''))"
_SQL_LOCK_OUTBOX = f"SELECT pg_advisory_xact_lock({_OUTBOX_LOCK_KEY})"
_SQL_LOCK_OUTBOX_SHARED = f"SELECT pg_advisory_xact_lock_shared({_OUTBOX_LOCK_KEY})"
_SQL_GONE_URLS = "SELECT url, gone_at FROM webhook_gone WHERE url = ANY($1::text[])"
_RETURNED = ", ".join(f"o.{c.strip()}" for c in OUTBOX_COLUMNS.split(","))
# Due heads in claim order and heads whose claim expired (few: at most what was in
# flight when a deliverer died), locked but skipping rows another claimer holds; the
# first `limit` of both in claim order become in flight.
_SQL_CLAIM = f"""
    WITH due AS (
        SELECT event_id, next_at, created_at, sequence FROM outbox
        WHERE head AND state = 'pending' AND next_at <= $1
        ORDER BY next_at, created_at, sequence LIMIT $2
        FOR UPDATE SKIP LOCKED
    ), expired AS (
        SELECT event_id, next_at, created_at, sequence FROM outbox
        WHERE head AND state = 'in_flight' AND leased_until <= $1
        FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT event_id FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) AS c
        ORDER BY next_at, created_at, sequence LIMIT $2
    )
    UPDATE outbox AS o SET state = 'in_flight', leased_until = $3, claimed_by = $4
    FROM picked WHERE o.event_id = picked.event_id
    RETURNING {_RETURNED}
"""
_SQL_STATE_OF = "SELECT state, url, call_id FROM outbox WHERE event_id = $1 FOR UPDATE"
# Restores the head invariant of one (url, call_id): flips `head` on the open rows
# where it is wrong (at most two: the old head and the new one).
_SQL_RECOMPUTE_HEAD = """
    UPDATE outbox SET head = NOT head
    WHERE url = $1 AND call_id = $2 AND state IN ('pending', 'in_flight')
      AND head <> (event_id IS NOT DISTINCT FROM (
          SELECT event_id FROM outbox
          WHERE url = $1 AND call_id = $2 AND state IN ('pending', 'in_flight')
          ORDER BY state = 'in_flight' DESC, sequence LIMIT 1))
"""


def _sql_transition(guard: str, stays_open: bool, assignments: str) -> str:
    """One statement that moves the delivery ``$1`` to a new state and keeps the head
    invariant of its (url, call_id), in one round trip: ``cur`` locks the row; ``nxt`` is
    the group's head once the row has its new state (only when ``guard`` holds and the
    row was open); ``done`` applies ``assignments`` (and the row's own head flag) if
    ``guard`` holds; ``promoted`` raises the flag of a new head. Returns the row's old
    state (no row: unknown id). Rows other than ``$1`` keep their flags: the only head
    that can change is ``$1``, or the one that takes over from it."""
    keep = "TRUE" if stays_open else "o.event_id <> cur.event_id"
    return f"""
    WITH cur AS (
        SELECT event_id, state, url, call_id FROM outbox WHERE event_id = $1 FOR UPDATE
    ), nxt AS (
        SELECT o.event_id FROM outbox AS o, cur
        WHERE ({guard}) AND cur.state IN ('pending', 'in_flight')
          AND o.url = cur.url AND o.call_id = cur.call_id
          AND o.state IN ('pending', 'in_flight') AND {keep}
        ORDER BY (o.event_id <> cur.event_id AND o.state = 'in_flight') DESC, o.sequence
        LIMIT 1
    ), done AS (
        UPDATE outbox AS o SET {assignments},
            head = {"o.event_id IN (SELECT event_id FROM nxt)" if stays_open else "FALSE"}
        FROM cur WHERE o.event_id = cur.event_id AND ({guard})
        RETURNING 1
    ), promoted AS (
        UPDATE outbox AS o SET head = TRUE
        FROM nxt, cur WHERE o.event_id = nxt.event_id AND o.event_id <> cur.event_id AND NOT o.head
        RETURNING 1
    )
    SELECT state FROM cur
"""


# $1 event id, $2 at, $3 status
_SQL_DELIVERED = _sql_transition(
    "cur.state <> 'delivered'",
    False,
    "state = 'delivered', attempts = o.attempts + 1, last_attempt_at = $2, last_status = $3,"
    " last_error = '', finished_at = $2, leased_until = 0",
)
# $1 event id, $2 at, $3 status, $4 error
_SQL_GIVEN_UP = _sql_transition(
    "cur.state = 'in_flight'",
    False,
    "state = 'given_up', attempts = o.attempts + 1, last_attempt_at = $2, last_status = $3,"
    " last_error = $4, finished_at = $2, leased_until = 0",
)
# $1 event id, $2 at, $3 status, $4 error, $5 next_at
_SQL_RETRY_LATER = _sql_transition(
    "cur.state = 'in_flight'",
    True,
    "state = 'pending', attempts = o.attempts + 1, last_attempt_at = $2, last_status = $3,"
    " last_error = $4, next_at = $5, leased_until = 0",
)
# $1 event id, $2 at, $3 status, $4 error, $5 url. The attempt that got the 410: counted
# and finished as gone if in flight to $5 (its group has no open row left once
# _SQL_DROP_GONE has run, so no head to promote). Returns the row's old state (no row:
# unknown id, nothing written) and whether it was recorded.
_SQL_GONE_ATTEMPT = """
    WITH cur AS (
        SELECT event_id, state, url FROM outbox WHERE event_id = $1 FOR UPDATE
    ), done AS (
        UPDATE outbox AS o SET state = 'gone', attempts = o.attempts + 1, last_attempt_at = $2,
            last_status = $3, last_error = $4, finished_at = $2, leased_until = 0, head = FALSE
        FROM cur WHERE o.event_id = cur.event_id AND cur.state = 'in_flight' AND cur.url = $5
        RETURNING 1
    )
    SELECT cur.state, EXISTS (SELECT 1 FROM done) FROM cur
"""
_SQL_DROP_GONE = """
    UPDATE outbox SET state = 'gone', finished_at = $1, leased_until = 0, head = FALSE, last_error = $2
    WHERE url = $3 AND state IN ('pending', 'in_flight')
"""
_SQL_RELEASE = """
    UPDATE outbox SET state = 'pending', leased_until = 0
    WHERE event_id = ANY($1::text[]) AND state = 'in_flight'
    RETURNING url, call_id
"""
# In-flight rows are heads: the partial index of in-flight heads holds every claim.
_SQL_RELEASE_OWNER = """
    UPDATE outbox SET state = 'pending', leased_until = 0
    WHERE head AND state = 'in_flight' AND claimed_by = $1
    RETURNING url, call_id
"""
_SQL_CLAIM_OWNERS = "SELECT event_id, claimed_by FROM outbox WHERE head AND state = 'in_flight'"
_SQL_DUE_NOW = "UPDATE outbox SET next_at = LEAST(next_at, $1) WHERE event_id = $2"
_SQL_REOPEN = """
    UPDATE outbox SET state = 'pending', next_at = $1, window_start = $1, finished_at = NULL,
        leased_until = 0, head = FALSE
    WHERE event_id = $2
"""
_SQL_PURGE = """
    DELETE FROM outbox WHERE event_id IN (
        SELECT event_id FROM outbox WHERE state = 'delivered' AND finished_at < $1 LIMIT $2)
"""


# --------------------------------------------------------------------------- the driver


def _rowcount(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3`` or ``DELETE 0`` (0 for a
    status without one, such as ``CREATE TABLE``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def run_async(conn: Any, op: Op[_T]) -> _T:
    """Run the operation ``op`` on the asyncpg connection ``conn`` to its end."""
    result: Any = None
    try:
        while True:
            query = op.send(result)
            if isinstance(query, Execute):
                result = _rowcount(await conn.execute(query.sql, *query.args))
            elif isinstance(query, ExecuteMany):
                await conn.executemany(query.sql, query.rows)
                result = None
            else:
                result = await conn.fetch(query.sql, *query.args)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        op.close()


# --------------------------------------------------------------------------- the dialect


class PostgresDialect(StoreDialect):
    """PostgreSQL's statements: lists bound as arrays, one-statement transitions and
    claims (``UPDATE … RETURNING``, rows locked ``FOR UPDATE [SKIP LOCKED]``), and the
    outbox lock that orders queueing against outbox rounds of other processes."""

    sql = POSTGRES
    real = "DOUBLE PRECISION"
    ops_lock = _SQL_LOCK_OUTBOX_SHARED
    queue_lock = _SQL_LOCK_OUTBOX

    def finish_calls(self, run: list[FinishedCallWrite]) -> Op[None]:
        yield ExecuteMany(
            _SQL_FINISH,
            [
                (*call_columns(w.record), [u for u, _ in w.user_results], [int(t) for _, t in w.user_results])
                for w in run
            ],
        )

    def insert_members(self, groups: dict[str, tuple[str, ...]]) -> ExecuteMany:
        return ExecuteMany(_SQL_INSERT_MEMBERS, [(g, list(m)) for g, m in groups.items() if m])

    def hide_calls(self, run: list[UserCallsHide]) -> ExecuteMany:
        return ExecuteMany(_SQL_HIDE, [(w.user_id, list(w.call_ids)) for w in run])

    def existing_ids(self, event_ids: list[str]) -> Op[set[str]]:
        rows = yield Fetch(_SQL_OUTBOX_IDS, (event_ids,))
        return {str(r[0]) for r in rows}

    def open_groups(self, keys: list[tuple[str, str]]) -> Op[dict[tuple[str, str], GroupInfo]]:
        rows = yield Fetch(_SQL_OUTBOX_GROUPS, ([k[0] for k in keys], [k[1] for k in keys]))
        return {
            (str(r[0]), str(r[1])): GroupInfo(None if r[2] is None else int(r[2]), bool(r[3])) for r in rows
        }

    def gone_urls(self, urls: list[str]) -> Op[dict[str, float]]:
        rows = yield Fetch(_SQL_GONE_URLS, (urls,))
        return {str(r[0]): float(r[1]) for r in rows}

    def insert_outbox(self, rows: list[NewRow]) -> Query:
        return Execute(_SQL_OUTBOX_INSERT, tuple(list(column) for column in zip(*rows, strict=True)))

    def claim(self, now: float, limit: int, until: float, owner: str) -> Op[list[Any]]:
        rows = yield Fetch(_SQL_CLAIM, (now, limit, until, owner))
        return sorted(rows, key=lambda r: (float(r[9]), float(r[6]), int(r[3])))

    def transition(
        self, to: Transition, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> Op[str | None]:
        if to == "delivered":
            state = yield from fetch_value(_SQL_DELIVERED, event_id, at, status)
        elif to == "given_up":
            state = yield from fetch_value(_SQL_GIVEN_UP, event_id, at, status, error)
        else:
            state = yield from fetch_value(_SQL_RETRY_LATER, event_id, at, status, error, next_at)
        return None if state is None else str(state)

    def gone_attempt(self, event_id: str, url: str, at: float, status: int, error: str) -> Op[bool | None]:
        row = yield from fetch_one(_SQL_GONE_ATTEMPT, event_id, at, status, error, url)
        return None if row is None else bool(row[1])

    def release_ids(self, event_ids: list[str]) -> Op[list[tuple[str, str]]]:
        rows = yield Fetch(_SQL_RELEASE, (event_ids,))
        return [(str(r[0]), str(r[1])) for r in rows]

    def release_owner(self, owner: str) -> Op[list[tuple[str, str]]]:
        rows = yield Fetch(_SQL_RELEASE_OWNER, (owner,))
        return [(str(r[0]), str(r[1])) for r in rows]

    def count_records(self, f: RecordFilter) -> list[Statement]:
        return [records_count(POSTGRES, f)]


# --------------------------------------------------------------------------- the store


class PostgresStore(SqlStore["PostgresOutbox"]):
    """:class:`~.base.Store` on PostgreSQL (asyncpg pool of ``min_size..max_size``).

    Construct, then ``await open()`` (connects, creates or migrates the schema under an
    advisory lock, so several servers may open the same database at once), and
    ``await close()`` at shutdown. Use one instance from one event loop. Write failures
    raise the asyncpg exception of the failing batch.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "",
        min_size: int = 1,
        max_size: int = 10,
        outbox_lease: float = DEFAULT_LEASE,
    ) -> None:
        """``schema``: the schema of the tables (default: the DSN's ``search_path``
        parameter, else :data:`DEFAULT_SCHEMA`); created by :meth:`open` if missing.
        ``outbox_lease``: the claim lease of :attr:`outbox` (seconds, > the deliverer's
        total timeout). Raises ValueError for a bad schema name, or two different ones."""
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ValueError(f"need 0 <= min_size <= max_size, max_size >= 1 (got {min_size}, {max_size})")
        self._dsn, in_dsn = _split_search_path(dsn)
        if schema and in_dsn and schema != in_dsn:
            raise ValueError(
                f"two schemas given: {schema!r} and search_path={in_dsn!r} in the URL; name it once"
            )
        self._schema = check_schema_name(schema or in_dsn or DEFAULT_SCHEMA)
        self._schema_named = bool(schema or in_dsn)
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None  # asyncpg.Pool; asyncpg ships no type information
        super().__init__(PostgresDialect(), lambda store: PostgresOutbox(store, outbox_lease))

    # ---------------------------------------------------------------- lifecycle

    @property
    def dsn(self) -> str:
        """The DSN handed to asyncpg (may contain a password: do not log it)."""
        return self._dsn

    @property
    def schema(self) -> str:
        """The schema the tables live in."""
        return self._schema

    async def open(self) -> None:
        """Connect and create or migrate the schema.

        Call once; afterwards the store is ready. Raises RuntimeError if asyncpg is not
        installed, the server is unreachable or refuses us, or the schema is newer than
        this code understands.
        """
        try:
            import asyncpg
        except ImportError as exc:
            raise RuntimeError(f"the PostgreSQL store needs asyncpg: {_INSTALL_HINT}") from exc
        self._begin_open()
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings={"search_path": self._schema},
            )
        except Exception as exc:
            self._state = "closed"
            raise RuntimeError(
                f"cannot connect to PostgreSQL at {_redact(self._dsn)}: {exc}; {_connect_hint(exc)}"
            ) from exc
        if self._state != "opening":  # close() ran meanwhile
            await pool.close()
            raise RuntimeError("PostgresStore was closed while it was opening")
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            self._state = "closed"
            self._pool = None
            await pool.close()
            raise
        self._opened()

    async def _release(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _migrate(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            # Serialise concurrent openers of the same schema (CREATE SCHEMA/TABLE IF
            # NOT EXISTS is not safe against a concurrent creator).
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('ringline.schema:' || $1::text))", self._schema
            )
            await self._create_schema(conn)
            exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
            if not exists and not self._schema_named and self._schema != "public":
                await self._refuse_tables_in_public(conn)
            await run_async(conn, migrate(self._d))

    async def _create_schema(self, conn: Any) -> None:
        """Create the schema if it is missing (checked first: CREATE SCHEMA needs the
        CREATE privilege on the database even when the schema exists)."""
        if await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", self._schema):
            return
        try:
            async with conn.transaction():
                await conn.execute(f'CREATE SCHEMA "{self._schema}"')
        except Exception as exc:
            user = await conn.fetchval("SELECT current_user")
            raise RuntimeError(
                f"cannot create schema {self._schema} in PostgreSQL at {_redact(self._dsn)}: {exc}; "
                f'create it as the database owner (CREATE SCHEMA {self._schema} AUTHORIZATION "{user}") '
                "or name an existing one with --db-schema"
            ) from exc
        # The search_path named a schema that did not exist; look it up again.
        await conn.execute("SELECT set_config('search_path', $1, true)", self._schema)

    async def _refuse_tables_in_public(self, conn: Any) -> None:
        """A Ringline before schemas kept its tables in ``public``: starting afresh in
        the default schema would hide every record, so say how to go on."""
        if await conn.fetchval("SELECT to_regclass('public.schema_version') IS NOT NULL"):
            raise RuntimeError(
                f"Ringline's tables are in schema public of this database, not in {self._schema}: "
                f"start with --db-schema public to keep using them there, or move them to {self._schema} "
                "(ALTER TABLE public.NAME SET SCHEMA for each table; docs/cli.md has the SQL)"
            )

    # ---------------------------------------------------------------- the driver

    async def _read(self, op: Op[_T]) -> _T:
        self._check_open()
        async with self._pool.acquire() as conn:
            return await run_async(conn, op)

    async def _snapshot(self, op: Op[_T]) -> _T:
        self._check_open()
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await run_async(conn, op)

    async def _round(
        self, items: list[Any], attempt: Callable[[Runner, list[Any]], Awaitable[list[Any]]]
    ) -> list[Any]:
        try:
            conn = await self._pool.acquire()
        except Exception as exc:  # no connection at all: every item fails with it
            return [exc] * len(items)
        try:
            return await in_rounds(_ConnectionRunner(conn), items, attempt)
        finally:
            try:
                await self._pool.release(conn)
            except Exception:  # the outcome is already known; the pool replaces the conn
                _log.warning("releasing a PostgreSQL connection failed", exc_info=True)


class _ConnectionRunner:
    """Runs the transactions of a round on one pooled connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def transaction(self, ops: list[Op[Any]]) -> list[Ok | BaseException]:
        results: list[Ok | BaseException] = []
        async with self._conn.transaction():
            for op in ops:
                try:
                    results.append(Ok(await run_async(self._conn, op)))
                except OpRefused as exc:  # refused before writing: the transaction is intact
                    results.append(exc.error)
        return results

    def lost(self, error: BaseException) -> bool:
        return bool(self._conn.is_closed())  # the connection, not the content


class PostgresOutbox(SqlOutbox):
    """The :class:`~.base.DurableOutbox` of a :class:`PostgresStore` (its ``outbox``).

    Claims, marks, releases, redeliveries and purges go in rounds of one transaction on
    one pooled connection (see the module doc); reads use the pool. See
    :class:`~.engine.SqlOutbox`.
    """


# --------------------------------------------------------------------------- connecting


def _split_search_path(dsn: str) -> tuple[str, str]:
    """The DSN without its ``search_path`` query parameter, and that parameter's first
    schema (``""`` if none)."""
    parts = urlsplit(dsn)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    given = [v for k, v in pairs if k == "search_path"]
    if not given:
        return dsn, ""
    rest = urlencode([(k, v) for k, v in pairs if k != "search_path"])
    first = given[-1].split(",")[0].strip().strip('"')
    return urlunsplit(parts._replace(query=rest)), first


def _connect_hint(exc: BaseException) -> str:
    """What to do about a failed connection, by the kind of failure."""
    name = type(exc).__name__
    if name == "InvalidCatalogNameError":
        return "create the database (createdb NAME) or fix its name at the end of --db"
    if name in ("InvalidAuthorizationSpecificationError", "InvalidPasswordError"):
        return "create the role (createuser NAME) or fix the user and password in --db"
    if isinstance(exc, OSError | TimeoutError):
        return "is PostgreSQL running and listening there? check the host and port in --db"
    return "check the --db URL"


def _redact(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable DSN>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = "&".join(
        "password=***" if q.lower().startswith("password=") else q for q in parts.query.split("&") if q
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
