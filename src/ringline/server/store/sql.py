"""The SQL that the SQLite and PostgreSQL stores share, in either placeholder style.

Every function here is pure: it takes filter values and returns :class:`Statement`
values (SQL text and its arguments, in placeholder order) without touching a database.
The store executes them. What differs between the backends is a :class:`Dialect`:
:data:`SQLITE` writes ``?`` placeholders and ``col IN (?, ?)`` for a list of values;
:data:`POSTGRES` writes ``$1``, ``$2``... and ``col = ANY($n::text[])`` with the list as
one argument.

The texts are those the stores have always sent, to the character: the SQLite query
plans (which index serves each kind of ``get_record_by_filter``) depend on them, so
check ``EXPLAIN QUERY PLAN`` before changing one.

Also here: the JSON codecs of stored records and callback configurations, the column
values of a ``calls`` row and the reading of a ``sessions`` row, alike in both stores.

This module is internal to the store package.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ...core.enums import CallResultType
from ...core.records import CallRecord
from ..jsonenc import dumps as _dumps
from .base import ProfileWrite, SessionRow
from .outbox import OUTBOX_COLUMNS, check_page

__all__ = [
    "DAY",
    "LOAD_SESSIONS",
    "POSTGRES",
    "SQLITE",
    "Dialect",
    "Params",
    "RecordFilter",
    "Statement",
    "call_columns",
    "config_from_json",
    "config_json",
    "deliveries_count",
    "deliveries_page",
    "last_profiles",
    "page_offset",
    "record_from_json",
    "record_json",
    "records_count",
    "records_count_by_day",
    "records_page",
    "session_from_row",
    "user_calls",
]

#: Seconds in a UTC day: the unit of the SQLite ``call_counts`` table.
DAY = 86400


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one backend writes what the shared statements need.

    ``numbered``: placeholders are ``$1``, ``$2``... (PostgreSQL) rather than ``?``.
    ``visible``: the predicate on ``user_calls AS u`` of a call the user did not hide.
    """

    name: str
    numbered: bool
    visible: str


#: SQLite through :mod:`sqlite3` (``?`` placeholders; booleans are 0/1 integers).
SQLITE = Dialect(name="sqlite", numbered=False, visible="u.hidden = 0")
#: PostgreSQL through asyncpg (``$n`` placeholders; lists bind as arrays).
POSTGRES = Dialect(name="postgres", numbered=True, visible="NOT u.hidden")


class Statement(NamedTuple):
    """One statement to execute: its SQL text and its arguments, in placeholder order."""

    sql: str
    args: tuple[Any, ...]


class Params:
    """The arguments of one statement, collected while its text is written.

    Create one per statement; each call adds an argument and returns the placeholder to
    put in the text at that point, so text and arguments cannot get out of step.
    """

    __slots__ = ("args", "dialect")

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.args: list[Any] = []

    def __call__(self, value: Any) -> str:
        """Add ``value``; returns its placeholder (``?`` or ``$n``)."""
        self.args.append(value)
        return f"${len(self.args)}" if self.dialect.numbered else "?"

    def one_of(self, column: str, values: Sequence[str]) -> str:
        """The condition ``column`` is one of ``values`` (text, at least one): ``column IN
        (?, ...)`` with one argument each, or ``column = ANY($n::text[])`` with one list."""
        if self.dialect.numbered:
            self.args.append(list(values))
            return f"{column} = ANY(${len(self.args)}::text[])"
        self.args.extend(values)
        return f"{column} IN ({', '.join('?' * len(values))})"

    def statement(self, sql: str) -> Statement:
        """``sql`` (written with this object's placeholders) with the arguments so far."""
        return Statement(sql, tuple(self.args))


def _where(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def page_offset(page: int, per_page: int) -> int:
    """The row offset of ``page`` (1-based) of ``per_page`` rows. Raises ValueError if
    either is below 1, so call it before anything else of a paged query."""
    check_page(page, per_page)
    return (page - 1) * per_page


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """The filters of :meth:`~.base.Store.query_records`; build it with :meth:`of`.

    ``start_time``/``end_time`` bound the start time (inclusive), None = unbounded, and
    are bound as given (the caller converts them if its driver needs floats);
    ``results``: distinct v4 ``CallResult`` strings, empty = every result;
    ``call_type``: ``SingleCall``, ``MultiCall`` or None = both; ``user_id``: only the
    calls this user was a member of (caller or callee), None = everyone's.
    """

    start_time: Any
    end_time: Any
    results: tuple[str, ...]
    call_type: str | None
    user_id: str | None = None

    @classmethod
    def of(
        cls,
        *,
        start_time: Any,
        end_time: Any,
        results: Sequence[str] | None,
        call_type: str | None,
        user_id: str | None = None,
    ) -> RecordFilter:
        """The filter of ``query_records``' arguments: ``results`` None or empty = every
        result; duplicates are dropped, first occurrence kept."""
        results_ = tuple(dict.fromkeys(str(r) for r in results or ()))
        return cls(start_time, end_time, results_, call_type, user_id)

    def _user(self, p: Params) -> list[str]:
        """The filter on a member (``user_calls`` has a row per user of every call)."""
        if self.user_id is None:
            return []
        return [f"call_id IN (SELECT call_id FROM user_calls WHERE user_id = {p(self.user_id)})"]

    def _time(self, p: Params) -> list[str]:
        where: list[str] = []
        if self.start_time is not None:
            where.append(f"start_time >= {p(self.start_time)}")
        if self.end_time is not None:
            where.append(f"start_time <= {p(self.end_time)}")
        return where

    def _kind(self, p: Params) -> list[str]:
        """The filters on type and result (those ``call_counts`` can apply too)."""
        kind: list[str] = []
        if self.results:
            kind.append(p.one_of("result", self.results))
        if self.call_type is not None:
            kind.append(f"call_type = {p(self.call_type)}")
        return kind


def records_count(d: Dialect, f: RecordFilter) -> Statement:
    """``SELECT count(*)`` of the calls ``f`` selects, straight from ``calls``."""
    p = Params(d)
    where = f._time(p) + f._kind(p) + f._user(p)
    return p.statement(f"SELECT count(*) FROM calls{_where(where)}")


def records_page(d: Dialect, f: RecordFilter, *, limit: int, offset: int) -> Statement:
    """The ``record`` JSON texts of one page of the calls ``f`` selects, newest start
    time first, ties by call id descending (so pages never overlap). Get ``offset`` from
    :func:`page_offset`."""
    p = Params(d)
    where = _where(f._time(p) + f._kind(p) + f._user(p))
    return p.statement(
        f"SELECT record FROM calls{where}"
        f" ORDER BY start_time DESC, call_id DESC LIMIT {p(limit)} OFFSET {p(offset)}"
    )


def records_count_by_day(d: Dialect, f: RecordFilter) -> list[Statement]:
    """Statements whose single values (each a number, run in one snapshot) add up to the
    exact number of calls ``f`` selects, using the per-UTC-day ``call_counts`` table
    (kept by triggers; only the SQLite schema has it): whole days are summed from
    ``call_counts``, and only the partial days at the ends of the window are counted in
    ``calls``. Costs a few thousand index entries at most, however many calls match.
    ``call_counts`` knows no members: a filter on a user is counted in ``calls``."""
    if f.user_id is not None:
        return [records_count(d, f)]
    start, end = f.start_time, f.end_time
    first = None if start is None else int(start // DAY) + (0 if start % DAY == 0 else 1)
    last = None if end is None else int(end // DAY) - 1  # whole days end before `end`

    def calls_between(lo: Any, hi: Any, hi_op: str) -> Statement:
        p = Params(d)
        where = [f"start_time >= {p(lo)}", f"start_time {hi_op} {p(hi)}", *f._kind(p)]
        return p.statement(f"SELECT count(*) FROM calls{_where(where)}")

    if first is not None and last is not None and first > last:  # no whole day inside
        return [calls_between(start, end, "<=")]
    p = Params(d)
    days: list[str] = []
    if first is not None:
        days.append(f"day >= {p(first)}")
    if last is not None:
        days.append(f"day <= {p(last)}")
    statements = [p.statement(f"SELECT COALESCE(SUM(n), 0) FROM call_counts{_where(days + f._kind(p))}")]
    if first is not None:  # the partial day before the whole ones
        statements.append(calls_between(start, first * DAY, "<"))
    if last is not None:  # and after them
        statements.append(calls_between((last + 1) * DAY, end, "<="))
    return statements


def user_calls(
    d: Dialect,
    user_id: str,
    *,
    begin: Any,
    end: Any,
    result_type: CallResultType,
    limit: int,
) -> Statement:
    """``(record JSON, result_type)`` of the user's own, non-hidden calls, newest first
    (ties: call id descending), at most ``limit`` (the caller answers ``limit`` <= 0
    itself). ``begin``/``end`` bound the start time (inclusive), None = unbounded, and
    are bound as given; ``result_type`` UNKNOWN = all."""
    p = Params(d)
    where = [f"u.user_id = {p(user_id)}", d.visible]
    if begin is not None:
        where.append(f"u.start_time >= {p(begin)}")
    if end is not None:
        where.append(f"u.start_time <= {p(end)}")
    if result_type is not CallResultType.UNKNOWN:
        where.append(f"u.result_type = {p(int(result_type))}")
    return p.statement(
        "SELECT c.record, u.result_type FROM user_calls AS u"
        " JOIN calls AS c ON c.call_id = u.call_id"
        f"{_where(where)}"
        f" ORDER BY u.start_time DESC, u.call_id DESC LIMIT {p(limit)}"
    )


# --------------------------------------------------------------------------- outbox


def _deliveries_where(p: Params, states: Sequence[str], call_id: str | None, url: str | None) -> str:
    where: list[str] = []
    if states:
        where.append(p.one_of("state", states))
    if call_id is not None:
        where.append(f"call_id = {p(call_id)}")
    if url is not None:
        where.append(f"url = {p(url)}")
    return _where(where)


def deliveries_count(d: Dialect, states: Sequence[str], *, call_id: str | None, url: str | None) -> Statement:
    """``SELECT count(*)`` of the outbox rows in ``states`` (state strings, empty = every
    state), of one call and/or one url when given."""
    p = Params(d)
    return p.statement(f"SELECT count(*) FROM outbox{_deliveries_where(p, states, call_id, url)}")


def deliveries_page(
    d: Dialect,
    states: Sequence[str],
    *,
    call_id: str | None,
    url: str | None,
    limit: int,
    offset: int,
) -> Statement:
    """One page of the rows :func:`deliveries_count` counts, as ``OUTBOX_COLUMNS``
    (read them with ``entry_from_row``), oldest created first, ties by call id, sequence,
    url. Get ``offset`` from :func:`page_offset`."""
    p = Params(d)
    where = _deliveries_where(p, states, call_id, url)
    return p.statement(
        f"SELECT {OUTBOX_COLUMNS} FROM outbox{where}"
        f" ORDER BY created_at, call_id, sequence, url LIMIT {p(limit)} OFFSET {p(offset)}"
    )


# --------------------------------------------------------------------------- values


def record_json(record: CallRecord) -> str:
    """The ``calls.record`` text of ``record`` (compact JSON)."""
    return _dumps(record.to_dict())


def record_from_json(text: str) -> CallRecord:
    """The record stored as ``text`` by :func:`record_json`."""
    return CallRecord.from_dict(json.loads(text))


def config_json(config: dict[str, Any]) -> str:
    """The ``callback_config.config`` text of ``config`` (compact JSON)."""
    return json.dumps(config, separators=(",", ":"), ensure_ascii=False)


def config_from_json(text: str) -> dict[str, Any]:
    """The configuration stored as ``text``; ValueError unless it is a JSON object."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"callback_config holds {type(value).__name__}, not a JSON object")
    return value


def call_columns(record: CallRecord) -> tuple[Any, ...]:
    """The values of a ``calls`` row, in the column order ``call_id, sdk_app_id, caller,
    media_type, scene, call_type, chat_group_id, start_time, accept_time, end_time,
    result, end_reason, record``."""
    return (
        record.call_id,
        record.sdk_app_id,
        record.caller,
        int(record.media_type),
        int(record.scene),
        record.call_type,
        record.chat_group_id,
        record.start_time,
        record.accept_time,
        record.end_time,
        record.result.value,
        int(record.end_reason),
        record_json(record),
    )


#: Every saved session, oldest created first (ties by token); read each row with
#: :func:`session_from_row`. No arguments.
LOAD_SESSIONS = (
    "SELECT token, device_id, user_id, multi_device, sig_expires_at, created_at,"
    " last_seen FROM sessions ORDER BY created_at, token"
)


def session_from_row(r: Sequence[Any]) -> SessionRow:
    """The session of a row of :data:`LOAD_SESSIONS` (``multi_device``: 0/1 or a bool)."""
    return SessionRow(
        token=str(r[0]),
        device_id=str(r[1]),
        user_id=str(r[2]),
        multi_device=bool(r[3]),
        sig_expires_at=float(r[4]),
        created_at=float(r[5]),
        last_seen=float(r[6]),
    )


def last_profiles(run: list[ProfileWrite]) -> tuple[list[tuple[str, str, str, float]], list[str]]:
    """What a run of profile saves leaves, the last one per user winning: ``(rows to
    upsert, user ids to delete)``; a profile saved with an empty nickname and avatar is
    deleted. NUL characters become U+FFFD, in every store alike, since PostgreSQL text
    cannot hold them."""
    last = {w.user_id: w for w in run}
    upserts = [
        (w.user_id, w.nickname.replace("\x00", "\ufffd"), w.avatar.replace("\x00", "\ufffd"), w.updated_at)
        for w in last.values()
        if w.nickname or w.avatar
    ]
    deletes = [u for u, w in last.items() if not (w.nickname or w.avatar)]
    return upserts, deletes
