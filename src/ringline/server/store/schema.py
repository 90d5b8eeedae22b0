"""The stores' schema: ONE version number and ONE list of migrations, in either dialect.

Each migration is written once, with the column types and the few clauses that differ
between SQLite and PostgreSQL taken from a :class:`Ddl` (:data:`SQLITE_DDL`,
:data:`POSTGRES_DDL`); :func:`migrations` renders the list for one of them. Steps that
only one dialect has say so (``if d.sqlite``): SQLite keeps per-day record counts
(``call_counts``, kept by triggers) and re-keyed an outbox index in version 4.

A database records the versions it went through in ``schema_version``; a store applies
the missing ones on open (see :func:`~.engine.migrate`), and refuses a database of a
newer version. Add a migration at the end, never change one that shipped.

Internal to the store package.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POSTGRES_DDL", "SCHEMA_VERSION", "SQLITE_DDL", "Ddl", "Migration", "migrations"]

#: The schema version this code creates and understands (``schema_version`` table).
SCHEMA_VERSION = 7

#: One migration: its version and its statements, in order.
Migration = tuple[int, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Ddl:
    """How one dialect writes what the migrations need.

    ``int64``: a 64-bit integer column; ``real``: a float column; ``blob``: bytes;
    ``keyed``: after a table whose rows are found by their primary key (SQLite's
    ``WITHOUT ROWID``); ``add_column``: the start of ``ALTER TABLE … ADD COLUMN``.
    """

    sqlite: bool
    int64: str
    real: str
    blob: str
    keyed: str
    add_column: str

    def flag(self, column: str, *, default: bool = False) -> str:
        """The type and constraints of the boolean ``column`` (SQLite: 0/1 integers)."""
        if self.sqlite:
            dflt = " DEFAULT 0" if default else ""
            return f"INTEGER NOT NULL{dflt} CHECK ({column} IN (0, 1))"
        return "BOOLEAN NOT NULL DEFAULT FALSE" if default else "BOOLEAN NOT NULL"

    def true(self, column: str) -> str:
        """The condition that the boolean ``column`` is set, as the partial indexes say it."""
        return f"{column} = 1" if self.sqlite else column


SQLITE_DDL = Ddl(
    sqlite=True, int64="INTEGER", real="REAL", blob="BLOB", keyed=" WITHOUT ROWID", add_column="ADD COLUMN"
)
POSTGRES_DDL = Ddl(
    sqlite=False,
    int64="BIGINT",
    real="DOUBLE PRECISION",
    blob="BYTEA",
    keyed="",
    add_column="ADD COLUMN IF NOT EXISTS",
)


def migrations(d: Ddl) -> tuple[Migration, ...]:
    """Every migration, oldest first, in dialect ``d``; the last is :data:`SCHEMA_VERSION`."""
    real = d.real
    steps: list[Migration] = [
        (
            1,
            (
                f"""
                CREATE TABLE calls (
                    call_id       TEXT    NOT NULL PRIMARY KEY,
                    sdk_app_id    {d.int64} NOT NULL,
                    caller        TEXT    NOT NULL,
                    media_type    INTEGER NOT NULL,
                    scene         INTEGER NOT NULL,
                    call_type     TEXT    NOT NULL CHECK (call_type IN ('SingleCall', 'MultiCall')),
                    chat_group_id TEXT    NOT NULL,
                    start_time    {real} NOT NULL,
                    accept_time   {real} NOT NULL,
                    end_time      {real} NOT NULL,
                    result        TEXT    NOT NULL,
                    end_reason    INTEGER NOT NULL,
                    record        TEXT    NOT NULL
                )
                """,
                "CREATE INDEX calls_by_start ON calls (start_time DESC, call_id DESC)",
                "CREATE INDEX calls_by_result ON calls (result, start_time DESC, call_id DESC)",
                "CREATE INDEX calls_by_type ON calls (call_type, start_time DESC, call_id DESC)",
                f"""
                CREATE TABLE user_calls (
                    user_id     TEXT    NOT NULL,
                    call_id     TEXT    NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
                    start_time  {real} NOT NULL,
                    result_type INTEGER NOT NULL,
                    hidden      {d.flag("hidden", default=True)},
                    PRIMARY KEY (user_id, call_id)
                ){d.keyed}
                """,
                "CREATE INDEX user_calls_by_start ON user_calls (user_id, start_time DESC, call_id DESC)",
                "CREATE INDEX user_calls_by_call ON user_calls (call_id)",
                f"""
                CREATE TABLE live_calls (
                    call_id    TEXT NOT NULL PRIMARY KEY,
                    snapshot   TEXT NOT NULL,
                    updated_at {real} NOT NULL
                )
                """,
                f"""
                CREATE TABLE sessions (
                    token          TEXT    NOT NULL PRIMARY KEY,
                    device_id      TEXT    NOT NULL,
                    user_id        TEXT    NOT NULL,
                    multi_device   {d.flag("multi_device")},
                    sig_expires_at {real} NOT NULL,
                    created_at     {real} NOT NULL,
                    last_seen      {real} NOT NULL
                )
                """,
                f"""
                CREATE TABLE "groups" (
                    group_id TEXT    NOT NULL,
                    user_id  TEXT    NOT NULL,
                    position INTEGER NOT NULL,
                    PRIMARY KEY (group_id, user_id)
                ){d.keyed}
                """,
                f"""
                CREATE TABLE alive (
                    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
                    at {real} NOT NULL
                )
                """,
            ),
        ),
        (
            2,
            (
                # One callback configuration per kind ("v4", "v1"), as JSON text.
                f"""
                CREATE TABLE callback_config (
                    kind   TEXT NOT NULL PRIMARY KEY,
                    config TEXT NOT NULL
                ){d.keyed}
                """,
            ),
        ),
        (
            3,
            (
                # The callback outbox: one row per delivery (see .outbox for the columns and
                # the head invariant), and the urls that answered 410 Gone.
                f"""
                CREATE TABLE IF NOT EXISTS outbox (
                    event_id        TEXT    NOT NULL PRIMARY KEY,
                    url             TEXT    NOT NULL,
                    call_id         TEXT    NOT NULL,
                    sequence        {d.int64} NOT NULL,
                    command         TEXT    NOT NULL,
                    body            {d.blob} NOT NULL,
                    created_at      {real} NOT NULL,
                    window_start    {real} NOT NULL,
                    state           TEXT    NOT NULL CHECK (state IN
                                    ('pending', 'in_flight', 'delivered', 'given_up', 'gone')),
                    head            {d.flag("head", default=True)},
                    next_at         {real} NOT NULL,
                    attempts        INTEGER NOT NULL DEFAULT 0,
                    leased_until    {real} NOT NULL DEFAULT 0,
                    last_attempt_at {real},
                    last_status     INTEGER,
                    last_error      TEXT    NOT NULL DEFAULT '',
                    finished_at     {real}
                )
                """,
                "CREATE UNIQUE INDEX IF NOT EXISTS outbox_by_call ON outbox (url, call_id, sequence)",
                "CREATE INDEX IF NOT EXISTS outbox_open ON outbox (url, call_id, sequence)"
                " WHERE state IN ('pending', 'in_flight')",
                "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at, created_at, sequence)"
                f" WHERE {d.true('head')} AND state = 'pending'",
                "CREATE INDEX IF NOT EXISTS outbox_expired ON outbox (leased_until)"
                f" WHERE {d.true('head')} AND state = 'in_flight'",
                "CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, created_at, call_id, sequence)",
                "CREATE INDEX IF NOT EXISTS outbox_by_call_id ON outbox (call_id, created_at, sequence)",
                "CREATE INDEX IF NOT EXISTS outbox_delivered ON outbox (finished_at)"
                " WHERE state = 'delivered'",
                f"""
                CREATE TABLE IF NOT EXISTS webhook_gone (
                    url     TEXT NOT NULL PRIMARY KEY,
                    gone_at {real} NOT NULL
                ){d.keyed}
                """,
            ),
        ),
        (
            4,
            (
                # Records by type and result together (get_record_by_filter with both).
                "CREATE INDEX IF NOT EXISTS calls_by_type_result"
                " ON calls (call_type, result, start_time DESC, call_id DESC)",
                *(_SQLITE_4 if d.sqlite else ()),
            ),
        ),
        (
            5,
            (
                # Profiles (set_self_info), so invitations still show the inviter's nickname
                # and avatar after a restart. A rowid table in SQLite: rows may be a few KB.
                f"""
                CREATE TABLE IF NOT EXISTS profiles (
                    user_id    TEXT NOT NULL PRIMARY KEY,
                    nickname   TEXT NOT NULL,
                    avatar     TEXT NOT NULL,
                    updated_at {real} NOT NULL
                )
                """,
            ),
        ),
        (
            6,
            (
                # Who holds each claim (the deliverer's claim owner), so the claims of a
                # crashed callback worker are handed back at once (release_owner).
                f"ALTER TABLE outbox {d.add_column} claimed_by TEXT NOT NULL DEFAULT ''",
            ),
        ),
        (
            7,
            (
                # Each delivery's extra query parameters (ClientIP / OptPlatform: who caused
                # the event); '' for deliveries queued before.
                f"ALTER TABLE outbox {d.add_column} extra_query TEXT NOT NULL DEFAULT ''",
            ),
        ),
    ]
    assert steps[-1][0] == SCHEMA_VERSION
    return tuple(steps)


# SQLite only, in version 4.
_SQLITE_4 = (
    # One outbox index less to keep up per callback: the unique one, led by the call id,
    # also serves listings by call.
    "DROP INDEX IF EXISTS outbox_by_call_id",
    "DROP INDEX IF EXISTS outbox_by_call",
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_by_call ON outbox (call_id, url, sequence)",
    # Records per UTC day, type and result, kept by triggers in the record's own
    # transaction: an exact TotalNum adds whole days and counts only the partial days at
    # the ends of a time window (see .sql.records_count_by_day).
    """
    CREATE TABLE IF NOT EXISTS call_counts (
        day       INTEGER NOT NULL,
        call_type TEXT    NOT NULL,
        result    TEXT    NOT NULL,
        n         INTEGER NOT NULL,
        PRIMARY KEY (day, call_type, result)
    ) WITHOUT ROWID
    """,
    """
    CREATE TRIGGER IF NOT EXISTS calls_counted AFTER INSERT ON calls BEGIN
        INSERT INTO call_counts (day, call_type, result, n)
        VALUES (CAST(NEW.start_time / 86400 AS INTEGER), NEW.call_type, NEW.result, 1)
        ON CONFLICT (day, call_type, result) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS calls_uncounted AFTER DELETE ON calls BEGIN
        UPDATE call_counts SET n = n - 1
        WHERE day = CAST(OLD.start_time / 86400 AS INTEGER)
          AND call_type = OLD.call_type AND result = OLD.result;
    END
    """,
    "DELETE FROM call_counts",
    "INSERT INTO call_counts (day, call_type, result, n)"
    " SELECT CAST(start_time / 86400 AS INTEGER), call_type, result, count(*)"
    " FROM calls GROUP BY 1, 2, 3",
)
