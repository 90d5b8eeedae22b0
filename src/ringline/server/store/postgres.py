"""The PostgreSQL store, on an :mod:`asyncpg` connection pool.

Needs the optional extra: ``pip install 'ringline[postgres]'`` (asyncpg is imported
only by :meth:`PostgresStore.open`, so this module imports without it).

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

import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...core.enums import CallResultType
from ...core.records import CallRecord
from ..webhooks.delivery import Delivery, DeliveryState, OutboxEntry, new_claim_owner
from .base import (
    AliveWrite,
    CallbackConfigWrite,
    DeliveriesWrite,
    EndpointRevive,
    FinishedCallWrite,
    GroupMembersWrite,
    LiveCallWrite,
    ProfileWrite,
    SessionDelete,
    SessionRow,
    SessionWrite,
    UserCallRow,
    UserCallsHide,
    Write,
)
from .batching import CommitStats, GroupCommitter
from .outbox import (
    DEFAULT_LEASE,
    DROPPED_GONE,
    OUTBOX_COLUMNS,
    PURGE_CHUNK,
    GroupInfo,
    Ok,
    OpBatcher,
    OpRefused,
    check_lease,
    claimed_from_row,
    entry_from_row,
    in_flight_now,
    no_such_delivery,
    plan_inserts,
    state_values,
    url_still_gone,
)
from .sql import (
    LOAD_SESSIONS,
    POSTGRES,
    RecordFilter,
    call_columns,
    config_from_json,
    config_json,
    deliveries_count,
    deliveries_page,
    last_profiles,
    page_offset,
    record_from_json,
    records_count,
    records_page,
    session_from_row,
    user_calls,
)

__all__ = ["DEFAULT_SCHEMA", "SCHEMA_VERSION", "PostgresOutbox", "PostgresStore", "check_schema_name"]

#: The schema version this code creates and understands (``schema_version`` table).
SCHEMA_VERSION = 7
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

_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE calls (
                call_id       TEXT             NOT NULL PRIMARY KEY,
                sdk_app_id    BIGINT           NOT NULL,
                caller        TEXT             NOT NULL,
                media_type    INTEGER          NOT NULL,
                scene         INTEGER          NOT NULL,
                call_type     TEXT             NOT NULL
                              CHECK (call_type IN ('SingleCall', 'MultiCall')),
                chat_group_id TEXT             NOT NULL,
                start_time    DOUBLE PRECISION NOT NULL,
                accept_time   DOUBLE PRECISION NOT NULL,
                end_time      DOUBLE PRECISION NOT NULL,
                result        TEXT             NOT NULL,
                end_reason    INTEGER          NOT NULL,
                record        TEXT             NOT NULL
            )
            """,
            "CREATE INDEX calls_by_start ON calls (start_time DESC, call_id DESC)",
            "CREATE INDEX calls_by_result ON calls (result, start_time DESC, call_id DESC)",
            "CREATE INDEX calls_by_type ON calls (call_type, start_time DESC, call_id DESC)",
            """
            CREATE TABLE user_calls (
                user_id     TEXT             NOT NULL,
                call_id     TEXT             NOT NULL
                            REFERENCES calls (call_id) ON DELETE CASCADE,
                start_time  DOUBLE PRECISION NOT NULL,
                result_type INTEGER          NOT NULL,
                hidden      BOOLEAN          NOT NULL DEFAULT FALSE,
                PRIMARY KEY (user_id, call_id)
            )
            """,
            "CREATE INDEX user_calls_by_start ON user_calls (user_id, start_time DESC, call_id DESC)",
            "CREATE INDEX user_calls_by_call ON user_calls (call_id)",
            """
            CREATE TABLE live_calls (
                call_id    TEXT             NOT NULL PRIMARY KEY,
                snapshot   TEXT             NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE sessions (
                token          TEXT             NOT NULL PRIMARY KEY,
                device_id      TEXT             NOT NULL,
                user_id        TEXT             NOT NULL,
                multi_device   BOOLEAN          NOT NULL,
                sig_expires_at DOUBLE PRECISION NOT NULL,
                created_at     DOUBLE PRECISION NOT NULL,
                last_seen      DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE "groups" (
                group_id TEXT    NOT NULL,
                user_id  TEXT    NOT NULL,
                position INTEGER NOT NULL,
                PRIMARY KEY (group_id, user_id)
            )
            """,
            """
            CREATE TABLE alive (
                id INTEGER          NOT NULL PRIMARY KEY CHECK (id = 1),
                at DOUBLE PRECISION NOT NULL
            )
            """,
        ),
    ),
    (
        2,
        (
            # One callback configuration per kind ("v4", "v1"), as JSON text.
            """
            CREATE TABLE callback_config (
                kind   TEXT NOT NULL PRIMARY KEY,
                config TEXT NOT NULL
            )
            """,
        ),
    ),
    (
        3,
        (
            # The callback outbox: one row per delivery (see .outbox for the columns and
            # the head invariant), and the urls that answered 410 Gone.
            """
            CREATE TABLE IF NOT EXISTS outbox (
                event_id        TEXT             NOT NULL PRIMARY KEY,
                url             TEXT             NOT NULL,
                call_id         TEXT             NOT NULL,
                sequence        BIGINT           NOT NULL,
                command         TEXT             NOT NULL,
                body            BYTEA            NOT NULL,
                created_at      DOUBLE PRECISION NOT NULL,
                window_start    DOUBLE PRECISION NOT NULL,
                state           TEXT             NOT NULL CHECK (state IN
                                ('pending', 'in_flight', 'delivered', 'given_up', 'gone')),
                head            BOOLEAN          NOT NULL DEFAULT FALSE,
                next_at         DOUBLE PRECISION NOT NULL,
                attempts        INTEGER          NOT NULL DEFAULT 0,
                leased_until    DOUBLE PRECISION NOT NULL DEFAULT 0,
                last_attempt_at DOUBLE PRECISION,
                last_status     INTEGER,
                last_error      TEXT             NOT NULL DEFAULT '',
                finished_at     DOUBLE PRECISION
            )
            """,
            "CREATE UNIQUE INDEX IF NOT EXISTS outbox_by_call ON outbox (url, call_id, sequence)",
            "CREATE INDEX IF NOT EXISTS outbox_open ON outbox (url, call_id, sequence)"
            " WHERE state IN ('pending', 'in_flight')",
            "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at, created_at, sequence)"
            " WHERE head AND state = 'pending'",
            "CREATE INDEX IF NOT EXISTS outbox_expired ON outbox (leased_until)"
            " WHERE head AND state = 'in_flight'",
            "CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, created_at, call_id, sequence)",
            "CREATE INDEX IF NOT EXISTS outbox_by_call_id ON outbox (call_id, created_at, sequence)",
            "CREATE INDEX IF NOT EXISTS outbox_delivered ON outbox (finished_at) WHERE state = 'delivered'",
            """
            CREATE TABLE IF NOT EXISTS webhook_gone (
                url     TEXT             NOT NULL PRIMARY KEY,
                gone_at DOUBLE PRECISION NOT NULL
            )
            """,
        ),
    ),
    (
        4,
        (
            # Records by type and result together (get_record_by_filter with both).
            "CREATE INDEX IF NOT EXISTS calls_by_type_result"
            " ON calls (call_type, result, start_time DESC, call_id DESC)",
        ),
    ),
    (
        5,
        (
            # Profiles (set_self_info), so invitations still show the inviter's nickname
            # and avatar after a restart.
            """
            CREATE TABLE IF NOT EXISTS profiles (
                user_id    TEXT             NOT NULL PRIMARY KEY,
                nickname   TEXT             NOT NULL,
                avatar     TEXT             NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
        ),
    ),
    (
        6,
        (
            # Who holds each claim (the deliverer's claim owner), so the claims of a
            # crashed callback worker are handed back at once (release_owner).
            "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claimed_by TEXT NOT NULL DEFAULT ''",
        ),
    ),
    (
        7,
        (
            # Each delivery's extra query parameters (ClientIP / OptPlatform: who caused
            # the event); '' for deliveries queued before.
            "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS extra_query TEXT NOT NULL DEFAULT ''",
        ),
    ),
)
assert _MIGRATIONS[-1][0] == SCHEMA_VERSION

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
_SQL_SAVE_SESSION = """
    INSERT INTO sessions (token, device_id, user_id, multi_device, sig_expires_at,
                          created_at, last_seen)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (token) DO UPDATE SET
        device_id = EXCLUDED.device_id, user_id = EXCLUDED.user_id,
        multi_device = EXCLUDED.multi_device, sig_expires_at = EXCLUDED.sig_expires_at,
        created_at = EXCLUDED.created_at, last_seen = EXCLUDED.last_seen
"""
_SQL_DELETE_SESSION = "DELETE FROM sessions WHERE token = $1"
_SQL_DELETE_GROUP = 'DELETE FROM "groups" WHERE group_id = $1'
_SQL_INSERT_MEMBERS = """
    INSERT INTO "groups" (group_id, user_id, position)
    SELECT $1::text, m.user_id, (m.ord - 1)::integer
    FROM unnest($2::text[]) WITH ORDINALITY AS m (user_id, ord)
"""
_SQL_SAVE_PROFILE = """
    INSERT INTO profiles (user_id, nickname, avatar, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (user_id) DO UPDATE SET
        nickname = EXCLUDED.nickname, avatar = EXCLUDED.avatar, updated_at = EXCLUDED.updated_at
"""
_SQL_DELETE_PROFILE = "DELETE FROM profiles WHERE user_id = $1"
_SQL_HIDE = """
    UPDATE user_calls SET hidden = TRUE
    WHERE user_id = $1 AND call_id = ANY($2::text[]) AND NOT hidden
"""
_SQL_MARK_ALIVE = """
    INSERT INTO alive (id, at) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET at = GREATEST(alive.at, EXCLUDED.at)
"""
_SQL_SET_CALLBACK = """
    INSERT INTO callback_config (kind, config) VALUES ($1, $2)
    ON CONFLICT (kind) DO UPDATE SET config = EXCLUDED.config
"""
_SQL_DELETE_CALLBACK = "DELETE FROM callback_config WHERE kind = $1"

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
# _queue). So a server's insert and a deliverer's finishing of the same call's head
# never overlap, whichever process each runs in.
_OUTBOX_LOCK_KEY = "hashtext('ringline.outbox:' || coalesce(current_schema(), ''))"
_SQL_LOCK_OUTBOX = f"SELECT pg_advisory_xact_lock({_OUTBOX_LOCK_KEY})"
_SQL_LOCK_OUTBOX_SHARED = f"SELECT pg_advisory_xact_lock_shared({_OUTBOX_LOCK_KEY})"
_SQL_GONE_URLS = "SELECT url, gone_at FROM webhook_gone WHERE url = ANY($1::text[])"
_SQL_REVIVE = "DELETE FROM webhook_gone WHERE url = $1"
_SQL_SET_GONE = """
    INSERT INTO webhook_gone (url, gone_at) VALUES ($1, $2)
    ON CONFLICT (url) DO UPDATE SET gone_at = EXCLUDED.gone_at
"""
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
_SQL_ENTRY = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE event_id = $1"
_OPEN = (DeliveryState.PENDING.value, DeliveryState.IN_FLIGHT.value)


def _rowcount(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3`` or ``DELETE 0``."""
    return int(status.rsplit(" ", 1)[-1])


async def _queue(conn: Any, deliveries: list[Delivery]) -> None:
    """Insert ``deliveries`` as DeliveriesWrite says (pending, or gone at once)."""
    if not deliveries:
        return
    rows = await conn.fetch(_SQL_OUTBOX_IDS, [d.event_id for d in deliveries])
    existing = {str(r[0]) for r in rows}
    keys = list(dict.fromkeys((d.url, d.call_id) for d in deliveries))
    groups = await _groups(conn, keys)
    if any(g.has_open for g in groups.values()):
        # A new row behind an open head waits for that head to finish. A deliverer on
        # another connection may be finishing it right now: its statement cannot see
        # our uncommitted row, so it would promote nothing, and our row, decided
        # against an old snapshot, would wait forever. The exclusive outbox lock waits
        # for every ops round under way and keeps new ones out until we commit; the
        # groups are then read again, so a head finished meanwhile is seen finished.
        await conn.execute(_SQL_LOCK_OUTBOX)
        groups = await _groups(conn, keys)
    rows = await conn.fetch(_SQL_GONE_URLS, list(dict.fromkeys(d.url for d in deliveries)))
    gone = {str(r[0]): float(r[1]) for r in rows}
    new = plan_inserts(deliveries, existing_ids=existing, groups=groups, gone=gone)
    await conn.execute(_SQL_OUTBOX_INSERT, *(list(column) for column in zip(*new, strict=True)))


async def _groups(conn: Any, keys: list[tuple[str, str]]) -> dict[tuple[str, str], GroupInfo]:
    rows = await conn.fetch(_SQL_OUTBOX_GROUPS, [k[0] for k in keys], [k[1] for k in keys])
    return {(str(r[0]), str(r[1])): GroupInfo(None if r[2] is None else int(r[2]), bool(r[3])) for r in rows}


async def _recompute_head(conn: Any, url: str, call_id: str) -> None:
    await conn.execute(_SQL_RECOMPUTE_HEAD, url, call_id)


async def _state_of(conn: Any, event_id: str) -> tuple[str, str, str]:
    row = await conn.fetchrow(_SQL_STATE_OF, event_id)
    if row is None:
        raise OpRefused(no_such_delivery(event_id))
    return str(row[0]), str(row[1]), str(row[2])


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


def _finish_args(w: FinishedCallWrite) -> tuple[Any, ...]:
    return (
        *call_columns(w.record),
        [u for u, _ in w.user_results],
        [int(t) for _, t in w.user_results],
    )


class PostgresStore:
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
        self._committer = GroupCommitter(self._commit_group)
        self._ops = OpBatcher(self._ops_round)
        self._outbox = PostgresOutbox(self, outbox_lease)
        self._state = "new"

    # ---------------------------------------------------------------- lifecycle

    @property
    def dsn(self) -> str:
        """The DSN handed to asyncpg (may contain a password: do not log it)."""
        return self._dsn

    @property
    def schema(self) -> str:
        """The schema the tables live in."""
        return self._schema

    @property
    def commit_stats(self) -> CommitStats:
        """Group-commit counters: how many ``apply`` batches shared how many commits."""
        return self._committer.stats

    @property
    def outbox(self) -> PostgresOutbox:
        """The durable callback outbox in this database (usable while the store is open)."""
        return self._outbox

    async def open(self) -> None:
        """Connect and create or migrate the schema.

        Call once; afterwards the store is ready. Raises RuntimeError if asyncpg is not
        installed, the server is unreachable or refuses us, or the schema is newer than
        this code understands.
        """
        if self._state != "new":
            raise RuntimeError(f"PostgresStore.open() called on a {self._state} store")
        try:
            import asyncpg
        except ImportError as exc:
            raise RuntimeError(f"the PostgreSQL store needs asyncpg: {_INSTALL_HINT}") from exc
        self._state = "opening"
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
        if self._state != "opening":
            raise RuntimeError("PostgresStore was closed while it was opening")
        self._state = "open"

    async def close(self) -> None:
        """Commit every queued batch, then close the pool. Idempotent."""
        if self._state in ("closed", "closing"):
            return
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closing"
        try:
            await self._committer.close()
            await self._ops.close()
        finally:
            pool, self._pool = self._pool, None
            self._state = "closed"
            if pool is not None:
                await pool.close()

    async def schema_version(self) -> int:
        """The schema version recorded in the database (``SCHEMA_VERSION`` once open)."""
        self._check_open()
        return int(await self._pool.fetchval("SELECT max(version) FROM schema_version"))

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
            if not exists:
                await conn.execute(
                    "CREATE TABLE schema_version ("
                    " version INTEGER NOT NULL PRIMARY KEY,"
                    " applied_at DOUBLE PRECISION NOT NULL)"
                )
            current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the database schema is version {current}, newer than this Ringline"
                    f" understands ({SCHEMA_VERSION}); upgrade Ringline"
                )
            for version, statements in _MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                    version,
                    time.time(),
                )

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

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(
                f"PostgresStore is {self._state}: await open() first, and do not use it after close()"
            )

    # ---------------------------------------------------------------- writes

    async def apply(self, writes: Sequence[Write]) -> None:
        """Apply every write in one transaction; return when committed.

        Concurrent calls are merged into one commit (see module doc). On failure
        nothing of this batch is applied and the error is raised; other batches are
        unaffected. The events that depend on the batch may be sent once this returns.
        """
        self._check_open()
        batch = tuple(writes)
        if not batch:
            return
        await self._committer.submit(batch)

    async def _commit_group(self, batches: list[tuple[Write, ...]]) -> list[BaseException | None]:
        try:
            conn = await self._pool.acquire()
        except Exception as exc:  # no connection at all: every batch fails with it
            return [exc] * len(batches)
        try:
            return await self._commit_on(conn, batches)
        finally:
            try:
                await self._pool.release(conn)
            except Exception:  # the outcome is already known; the pool replaces the conn
                _log.warning("releasing a PostgreSQL connection failed", exc_info=True)

    async def _commit_on(self, conn: Any, batches: list[tuple[Write, ...]]) -> list[BaseException | None]:
        if len(batches) > 1:
            try:
                async with conn.transaction():
                    await self._apply_writes(conn, itertools.chain.from_iterable(batches))
            except Exception as exc:
                if conn.is_closed():  # the connection, not the content: no point retrying
                    return [exc] * len(batches)
                # otherwise retried batch by batch just below
            else:
                return [None] * len(batches)
        results: list[BaseException | None] = []
        for batch in batches:
            try:
                async with conn.transaction():
                    await self._apply_writes(conn, batch)
            except Exception as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    @staticmethod
    async def _apply_writes(conn: Any, writes: Any) -> None:
        for kind, group in itertools.groupby(writes, key=type):
            run: list[Write] = list(group)
            if kind is LiveCallWrite:
                lives = cast(list[LiveCallWrite], run)
                await conn.executemany(_SQL_SAVE_LIVE, [(w.call_id, w.snapshot, w.updated_at) for w in lives])
            elif kind is FinishedCallWrite:
                await conn.executemany(
                    _SQL_FINISH, [_finish_args(w) for w in cast(list[FinishedCallWrite], run)]
                )
            elif kind is SessionWrite:
                await conn.executemany(
                    _SQL_SAVE_SESSION,
                    [
                        (
                            s.token,
                            s.device_id,
                            s.user_id,
                            bool(s.multi_device),
                            s.sig_expires_at,
                            s.created_at,
                            s.last_seen,
                        )
                        for s in (w.session for w in cast(list[SessionWrite], run))
                    ],
                )
            elif kind is SessionDelete:
                await conn.executemany(
                    _SQL_DELETE_SESSION, [(w.token,) for w in cast(list[SessionDelete], run)]
                )
            elif kind is GroupMembersWrite:
                # Only the last replace of each group in a run matters.
                groups = {
                    w.group_id: list(dict.fromkeys(w.members)) for w in cast(list[GroupMembersWrite], run)
                }
                await conn.executemany(_SQL_DELETE_GROUP, [(g,) for g in groups])
                await conn.executemany(_SQL_INSERT_MEMBERS, [(g, m) for g, m in groups.items() if m])
            elif kind is ProfileWrite:
                upserts, deletes = last_profiles(cast(list[ProfileWrite], run))
                await conn.executemany(_SQL_DELETE_PROFILE, [(u,) for u in deletes])
                await conn.executemany(_SQL_SAVE_PROFILE, upserts)
            elif kind is UserCallsHide:
                await conn.executemany(
                    _SQL_HIDE,
                    [(w.user_id, list(w.call_ids)) for w in cast(list[UserCallsHide], run)],
                )
            elif kind is AliveWrite:
                await conn.execute(_SQL_MARK_ALIVE, max(w.at for w in cast(list[AliveWrite], run)))
            elif kind is CallbackConfigWrite:
                for c in cast(list[CallbackConfigWrite], run):  # in order: the last one of a kind wins
                    if c.config is None:
                        await conn.execute(_SQL_DELETE_CALLBACK, c.kind)
                    else:
                        await conn.execute(_SQL_SET_CALLBACK, c.kind, config_json(c.config))
            elif kind is DeliveriesWrite:
                await _queue(conn, [d for w in cast(list[DeliveriesWrite], run) for d in w.deliveries])
            elif kind is EndpointRevive:
                await conn.executemany(_SQL_REVIVE, [(w.url,) for w in cast(list[EndpointRevive], run)])
            else:
                raise TypeError(f"not a store write: {run[0]!r}")

    # ---------------------------------------------------------------- outbox rounds

    async def _op(self, op: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run the outbox operation ``op`` (a coroutine function of a connection, run
        inside a transaction) in the next round."""
        self._check_open()
        return cast(_T, await self._ops.submit(op))

    async def _ops_round(self, ops: list[Any]) -> list[Ok | BaseException]:
        try:
            conn = await self._pool.acquire()
        except Exception as exc:  # no connection at all: every op fails with it
            return [exc] * len(ops)
        try:
            if len(ops) > 1:
                try:
                    async with conn.transaction():
                        return await self._run_ops(conn, ops)
                except Exception as exc:
                    if conn.is_closed():  # the connection, not one op
                        return [exc] * len(ops)
                    # otherwise rerun one by one just below
            results: list[Ok | BaseException] = []
            for op in ops:
                try:
                    async with conn.transaction():
                        results.extend(await self._run_ops(conn, [op]))
                except Exception as exc:
                    results.append(exc)
            return results
        finally:
            try:
                await self._pool.release(conn)
            except Exception:
                _log.warning("releasing a PostgreSQL connection failed", exc_info=True)

    @staticmethod
    async def _run_ops(conn: Any, ops: list[Any]) -> list[Ok | BaseException]:
        # Before any row lock: a queueing server holding the lock exclusively waits
        # for nothing of ours (no deadlock), and our statements see its rows.
        await conn.execute(_SQL_LOCK_OUTBOX_SHARED)
        results: list[Ok | BaseException] = []
        for op in ops:
            try:
                results.append(Ok(await op(conn)))
            except OpRefused as exc:  # refused before writing: the transaction is intact
                results.append(exc.error)
        return results

    # ---------------------------------------------------------------- reads

    async def load_live_calls(self) -> list[tuple[str, str, float]]:
        """``(call_id, snapshot, updated_at)`` of every live call, oldest update first."""
        self._check_open()
        rows = await self._pool.fetch(
            "SELECT call_id, snapshot, updated_at FROM live_calls ORDER BY updated_at, call_id"
        )
        return [(str(r[0]), str(r[1]), float(r[2])) for r in rows]

    async def load_sessions(self) -> list[SessionRow]:
        """Every saved session (ordered by creation time)."""
        self._check_open()
        rows = await self._pool.fetch(LOAD_SESSIONS)
        return [session_from_row(r) for r in rows]

    async def load_groups(self) -> dict[str, tuple[str, ...]]:
        """Every chat group with its members, in the order they were set."""
        self._check_open()
        rows = await self._pool.fetch('SELECT group_id, user_id FROM "groups" ORDER BY group_id, position')
        groups: dict[str, list[str]] = {}
        for r in rows:
            groups.setdefault(str(r[0]), []).append(str(r[1]))
        return {g: tuple(m) for g, m in groups.items()}

    async def load_profiles(self) -> dict[str, tuple[str, str]]:
        """Every saved profile: ``user_id -> (nickname, avatar)``."""
        self._check_open()
        rows = await self._pool.fetch("SELECT user_id, nickname, avatar FROM profiles")
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}

    async def last_alive(self) -> float | None:
        """The latest :class:`~.base.AliveWrite` time, or None on a fresh store."""
        self._check_open()
        at = await self._pool.fetchval("SELECT at FROM alive WHERE id = 1")
        return None if at is None else float(at)

    async def get_record(self, call_id: str) -> CallRecord | None:
        """The finished record of ``call_id``, or None."""
        self._check_open()
        text = await self._pool.fetchval("SELECT record FROM calls WHERE call_id = $1", call_id)
        return None if text is None else record_from_json(str(text))

    async def get_callback_config(self, kind: str) -> dict[str, Any] | None:
        """The callback configuration of ``kind``, or None if unset."""
        self._check_open()
        text = await self._pool.fetchval("SELECT config FROM callback_config WHERE kind = $1", kind)
        return None if text is None else config_from_json(str(text))

    async def query_user_calls(
        self,
        user_id: str,
        *,
        begin: float | None,
        end: float | None,
        result_type: CallResultType,
        limit: int,
    ) -> list[UserCallRow]:
        """The user's own, non-hidden calls, newest first (ties: call id descending).

        ``begin``/``end`` bound the start time (inclusive); ``result_type`` UNKNOWN = all;
        ``limit`` <= 0 returns an empty list.
        """
        self._check_open()
        if limit <= 0:
            return []
        sql, args = user_calls(
            POSTGRES,
            user_id,
            begin=None if begin is None else float(begin),  # asyncpg binds floats to float8
            end=None if end is None else float(end),
            result_type=result_type,
            limit=limit,
        )
        rows = await self._pool.fetch(sql, *args)
        return [
            UserCallRow(record=record_from_json(str(r[0])), result_type=CallResultType(int(r[1])))
            for r in rows
        ]

    async def query_records(
        self,
        *,
        start_time: float | None,
        end_time: float | None,
        results: Sequence[str] | None,
        call_type: str | None,
        page: int,
        per_page: int,
        user_id: str | None = None,
    ) -> tuple[int, list[CallRecord]]:
        """Exact total count and one page (1-based) of records, newest start time first.

        ``results`` None or empty = every result. Ties on start time are ordered by call
        id (descending) so pages never overlap. Raises ValueError if ``page`` or
        ``per_page`` is below 1.
        """
        self._check_open()
        offset = page_offset(page, per_page)
        f = RecordFilter.of(
            start_time=None if start_time is None else float(start_time),
            end_time=None if end_time is None else float(end_time),
            results=results,
            call_type=call_type,
            user_id=user_id,
        )
        count_sql, count_args = records_count(POSTGRES, f)
        page_sql, page_args = records_page(POSTGRES, f, limit=per_page, offset=offset)
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            total = int(await conn.fetchval(count_sql, *count_args))
            rows: list[Any] = []
            if offset < total:
                rows = await conn.fetch(page_sql, *page_args)
        return total, [record_from_json(str(r[0])) for r in rows]


class PostgresOutbox:
    """The :class:`~.base.DurableOutbox` of a :class:`PostgresStore` (its ``outbox``).

    Usable while the store is open. Claims, marks, releases, redeliveries and purges go
    in rounds of one transaction on one pooled connection (see the module doc); reads
    use the pool. Semantics: those of :class:`~ringline.server.webhooks.MemoryOutbox`;
    see :class:`~.base.DurableOutbox`. ``lease`` (seconds) and ``owner`` (recorded with
    each claim, see :meth:`release_owner`) may be changed at any time; they apply to
    later claims.
    """

    def __init__(self, store: PostgresStore, lease: float = DEFAULT_LEASE) -> None:
        self._store = store
        self.lease = check_lease(lease)
        self.owner = new_claim_owner()

    def _pool(self) -> Any:
        self._store._check_open()
        return self._store._pool

    # -- the deliverer's protocol

    async def claim_due(self, now: float, limit: int) -> list[Delivery]:
        """Claim up to ``limit`` due deliveries (per (url, call) only the head), as
        :attr:`owner`."""
        lease, owner = self.lease, self.owner

        async def op(conn: Any) -> list[Delivery]:
            rows = await conn.fetch(_SQL_CLAIM, now, limit, now + lease, owner)
            rows = sorted(rows, key=lambda r: (float(r[9]), float(r[6]), int(r[3])))
            return [claimed_from_row(r) for r in rows]

        if limit <= 0:
            self._store._check_open()
            return []
        return await self._store._op(op)

    async def mark_delivered(self, event_id: str, at: float, status: int) -> None:
        """Record a 2xx (also for a delivery marked gone or given up meanwhile)."""

        async def op(conn: Any) -> None:
            if await conn.fetchval(_SQL_DELIVERED, event_id, at, status) is None:
                raise OpRefused(no_such_delivery(event_id))

        await self._store._op(op)

    async def mark_failed(
        self, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> None:
        """Record a failed attempt: retry at ``next_at``, or give up (None)."""

        async def op(conn: Any) -> None:
            if next_at is None:
                state = await conn.fetchval(_SQL_GIVEN_UP, event_id, at, status, error)
            else:
                state = await conn.fetchval(_SQL_RETRY_LATER, event_id, at, status, error, next_at)
            if state is None:
                raise OpRefused(no_such_delivery(event_id))

        await self._store._op(op)

    async def mark_endpoint_gone(
        self, url: str, at: float, *, event_id: str | None = None, status: int = 410, error: str = ""
    ) -> int:
        """Finish every open delivery to ``url`` as gone, recording the attempt of
        ``event_id`` (in flight to ``url``) that got the 410; later ones are gone at once."""

        async def op(conn: Any) -> int:
            finished = 0
            if event_id is not None:
                row = await conn.fetchrow(_SQL_GONE_ATTEMPT, event_id, at, status, error, url)
                if row is None:
                    raise OpRefused(no_such_delivery(event_id))
                finished = int(bool(row[1]))
            await conn.execute(_SQL_SET_GONE, url, at)
            return finished + _rowcount(await conn.execute(_SQL_DROP_GONE, at, DROPPED_GONE, url))

        return await self._store._op(op)

    async def release(self, event_ids: Sequence[str]) -> None:
        """Put claimed deliveries back to pending (no attempt counted)."""
        ids = list(dict.fromkeys(event_ids))

        async def op(conn: Any) -> None:
            rows = await conn.fetch(_SQL_RELEASE, ids)
            for url, call_id in dict.fromkeys((str(r[0]), str(r[1])) for r in rows):
                await _recompute_head(conn, url, call_id)

        if ids:
            await self._store._op(op)
        else:
            self._store._check_open()

    async def release_owner(self, owner: str) -> int:
        """Put every in-flight delivery claimed by ``owner`` back to pending (see
        DurableOutbox.release_owner); returns how many. Then wake the deliverers."""

        async def op(conn: Any) -> int:
            rows = await conn.fetch(_SQL_RELEASE_OWNER, owner)
            for url, call_id in dict.fromkeys((str(r[0]), str(r[1])) for r in rows):
                await _recompute_head(conn, url, call_id)
            return len(rows)

        return await self._store._op(op)

    async def claim_owners(self) -> dict[str, str]:
        """Event id -> owner of every in-flight delivery."""
        rows = await self._pool().fetch(_SQL_CLAIM_OWNERS)
        return {str(r[0]): str(r[1]) for r in rows}

    # -- operators

    async def get_delivery(self, event_id: str) -> OutboxEntry | None:
        """The entry of ``event_id``, or None."""
        row = await self._pool().fetchrow(_SQL_ENTRY, event_id)
        return None if row is None else entry_from_row(row)

    async def list_deliveries(
        self,
        states: Sequence[DeliveryState],
        *,
        call_id: str | None = None,
        url: str | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> tuple[int, list[OutboxEntry]]:
        """Exact total and one page, oldest created first (see DurableOutbox)."""
        pool = self._pool()
        offset = page_offset(page, per_page)
        values = state_values(states)
        count_sql, count_args = deliveries_count(POSTGRES, values, call_id=call_id, url=url)
        page_sql, page_args = deliveries_page(
            POSTGRES, values, call_id=call_id, url=url, limit=per_page, offset=offset
        )
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            total = int(await conn.fetchval(count_sql, *count_args))
            rows: list[Any] = []
            if offset < total:
                rows = await conn.fetch(page_sql, *page_args)
        return total, [entry_from_row(r) for r in rows]

    async def counts(self) -> dict[DeliveryState, int]:
        """How many deliveries are in each state (all states present)."""
        rows = await self._pool().fetch("SELECT state, count(*) FROM outbox GROUP BY state")
        found = dict.fromkeys(DeliveryState, 0)
        for r in rows:
            found[DeliveryState(r[0])] = int(r[1])
        return found

    async def gone_endpoints(self) -> dict[str, float]:
        """Urls that answered 410 Gone and were not revived, with when."""
        rows = await self._pool().fetch("SELECT url, gone_at FROM webhook_gone")
        return {str(r[0]): float(r[1]) for r in rows}

    async def redeliver(self, event_id: str, now: float) -> OutboxEntry:
        """Send ``event_id`` again (see DurableOutbox.redeliver); then wake the deliverer."""

        async def op(conn: Any) -> OutboxEntry:
            state, url, call_id = await _state_of(conn, event_id)
            if state == DeliveryState.IN_FLIGHT:
                raise OpRefused(in_flight_now(event_id))
            if await conn.fetchval("SELECT 1 FROM webhook_gone WHERE url = $1", url) is not None:
                raise OpRefused(url_still_gone(event_id, url))
            if state == DeliveryState.PENDING:
                await conn.execute(_SQL_DUE_NOW, now, event_id)
            else:
                await conn.execute(_SQL_REOPEN, now, event_id)
                await _recompute_head(conn, url, call_id)
            return entry_from_row(await conn.fetchrow(_SQL_ENTRY, event_id))

        return await self._store._op(op)

    async def purge_finished(self, before: float) -> int:
        """Delete delivered deliveries finished before ``before``; returns how many.
        Deletes in chunks, one transaction each."""

        async def op(conn: Any) -> int:
            return _rowcount(await conn.execute(_SQL_PURGE, before, PURGE_CHUNK))

        total = 0
        while True:
            n = await self._store._op(op)
            total += n
            if n < PURGE_CHUNK:
                return total
