"""The SQL the two stores share (:mod:`ringline.server.store.sql`): statement texts and
arguments in both placeholder styles, for every filter combination and paging.

The texts are pinned to the character: the SQLite query plans of ``get_record_by_filter``
(which index serves which filter) depend on them. The day-split count is also checked
against a plain ``count(*)`` on a real SQLite store.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_store_conformance import finish, make_record

from ringline.core.enums import CallResultType
from ringline.server.store import FinishedCallWrite, SessionRow, SqliteStore
from ringline.server.store.outbox import OUTBOX_COLUMNS
from ringline.server.store.sql import (
    DAY,
    LOAD_SESSIONS,
    POSTGRES,
    SQLITE,
    Dialect,
    Params,
    RecordFilter,
    Statement,
    call_columns,
    config_from_json,
    config_json,
    deliveries_count,
    deliveries_page,
    page_offset,
    record_from_json,
    record_json,
    records_count,
    records_count_by_day,
    records_page,
    session_from_row,
    user_calls,
)

T0 = 1_700_000_000.0
RECORDS_ORDER = " ORDER BY start_time DESC, call_id DESC"
OUTBOX_ORDER = " ORDER BY created_at, call_id, sequence, url"


def f_of(
    start: float | None = None,
    end: float | None = None,
    results: list[str] | None = None,
    call_type: str | None = None,
) -> RecordFilter:
    return RecordFilter.of(start_time=start, end_time=end, results=results, call_type=call_type)


# --------------------------------------------------------------------------- Params


def test_params_sqlite_writes_question_marks_and_in_lists() -> None:
    p = Params(SQLITE)
    assert p("a") == "?"
    assert p(2) == "?"
    assert p.one_of("state", ["x", "y", "z"]) == "state IN (?, ?, ?)"
    assert p.statement("S") == Statement("S", ("a", 2, "x", "y", "z"))


def test_params_postgres_numbers_placeholders_and_binds_a_list_as_one_array() -> None:
    p = Params(POSTGRES)
    assert p("a") == "$1"
    assert p.one_of("state", ("x", "y")) == "state = ANY($2::text[])"
    assert p(3) == "$3"
    assert p.statement("S") == Statement("S", ("a", ["x", "y"], 3))


def test_a_statement_unpacks_as_sql_and_args() -> None:
    sql, args = Params(SQLITE).statement("SELECT 1")
    assert (sql, args) == ("SELECT 1", ())


# --------------------------------------------------------------------------- paging


@pytest.mark.parametrize(
    ("page", "per_page", "offset"), [(1, 1, 0), (1, 10, 0), (2, 10, 10), (1000, 100, 99_900)]
)
def test_page_offset(page: int, per_page: int, offset: int) -> None:
    assert page_offset(page, per_page) == offset


@pytest.mark.parametrize(("page", "per_page"), [(0, 10), (1, 0), (-1, 5), (0, 0)])
def test_page_offset_refuses_a_page_or_size_below_1(page: int, per_page: int) -> None:
    with pytest.raises(ValueError, match=rf"page and per_page must be >= 1 \(got {page}, {per_page}\)"):
        page_offset(page, per_page)


# --------------------------------------------------------------------------- records


def test_record_filter_of_drops_duplicate_results_keeping_the_first_order() -> None:
    f = f_of(results=["NotAnswer", "CallBusy", "NotAnswer"])
    assert f.results == ("NotAnswer", "CallBusy")
    assert f_of(results=None).results == ()
    assert f_of(results=[]).results == ()


def test_record_filter_binds_times_as_given() -> None:
    f = f_of(start=5, end=7.5)
    assert records_count(SQLITE, f).args == (5, 7.5)
    assert type(records_count(SQLITE, f).args[0]) is int


# Every combination of the four filters: (start, end, results, call_type), with the
# SQLite and the PostgreSQL WHERE clause and arguments they give.
_COMBOS = list(
    itertools.product(
        (None, T0), (None, T0 + 3 * DAY), (None, ["Reject"], ["NotAnswer", "CallBusy"]), (None, "MultiCall")
    )
)


def _expected_where(d: Dialect, start: Any, end: Any, results: Any, call_type: Any) -> tuple[str, list[Any]]:
    conds: list[str] = []
    args: list[Any] = []

    def ph() -> str:
        return f"${len(args)}" if d is POSTGRES else "?"

    if start is not None:
        args.append(start)
        conds.append(f"start_time >= {ph()}")
    if end is not None:
        args.append(end)
        conds.append(f"start_time <= {ph()}")
    if results:
        if d is POSTGRES:
            args.append(list(results))
            conds.append(f"result = ANY(${len(args)}::text[])")
        else:
            args.extend(results)
            conds.append(f"result IN ({', '.join(['?'] * len(results))})")
    if call_type is not None:
        args.append(call_type)
        conds.append(f"call_type = {ph()}")
    return (f" WHERE {' AND '.join(conds)}" if conds else ""), args


@pytest.mark.parametrize("d", [SQLITE, POSTGRES], ids=lambda d: d.name)
@pytest.mark.parametrize(("start", "end", "results", "call_type"), _COMBOS)
def test_records_count_and_page_for_every_filter_combination(
    d: Dialect, start: Any, end: Any, results: Any, call_type: Any
) -> None:
    f = f_of(start, end, results, call_type)
    where, args = _expected_where(d, start, end, results, call_type)
    assert records_count(d, f) == Statement(f"SELECT count(*) FROM calls{where}", tuple(args))
    n = len(args)
    limit, offset = ("?", "?") if d is SQLITE else (f"${n + 1}", f"${n + 2}")
    assert records_page(d, f, limit=100, offset=9_900) == Statement(
        f"SELECT record FROM calls{where}{RECORDS_ORDER} LIMIT {limit} OFFSET {offset}",
        (*args, 100, 9_900),
    )


def test_records_page_texts_pinned() -> None:
    """The exact texts the SQLite plans were measured with (bench/callbacks.py part 2)."""
    assert records_page(SQLITE, f_of(), limit=10, offset=0) == Statement(
        "SELECT record FROM calls ORDER BY start_time DESC, call_id DESC LIMIT ? OFFSET ?", (10, 0)
    )
    assert records_page(
        SQLITE, f_of(T0, T0 + 7 * DAY, ["NotAnswer", "CallBusy"], "SingleCall"), limit=10, offset=20
    ) == Statement(
        "SELECT record FROM calls WHERE start_time >= ? AND start_time <= ?"
        " AND result IN (?, ?) AND call_type = ?"
        " ORDER BY start_time DESC, call_id DESC LIMIT ? OFFSET ?",
        (T0, T0 + 7 * DAY, "NotAnswer", "CallBusy", "SingleCall", 10, 20),
    )
    assert records_page(POSTGRES, f_of(T0, None, ["Reject"], "MultiCall"), limit=10, offset=0) == Statement(
        "SELECT record FROM calls WHERE start_time >= $1 AND result = ANY($2::text[]) AND call_type = $3"
        " ORDER BY start_time DESC, call_id DESC LIMIT $4 OFFSET $5",
        (T0, ["Reject"], "MultiCall", 10, 0),
    )


# -- the SQLite count by day

D0 = 19_675 * DAY  # midnight UTC (2023-11-14)


def test_count_by_day_without_a_time_bound_sums_call_counts_only() -> None:
    assert records_count_by_day(SQLITE, f_of()) == [
        Statement("SELECT COALESCE(SUM(n), 0) FROM call_counts", ())
    ]
    assert records_count_by_day(SQLITE, f_of(results=["Reject", "Cancel"], call_type="SingleCall")) == [
        Statement(
            "SELECT COALESCE(SUM(n), 0) FROM call_counts WHERE result IN (?, ?) AND call_type = ?",
            ("Reject", "Cancel", "SingleCall"),
        )
    ]


def test_count_by_day_within_one_day_counts_calls() -> None:
    f = f_of(D0 + 100, D0 + 5000, ["Reject"])
    assert records_count_by_day(SQLITE, f) == [
        Statement(
            "SELECT count(*) FROM calls WHERE start_time >= ? AND start_time <= ? AND result IN (?)",
            (D0 + 100, D0 + 5000, "Reject"),
        )
    ]


def test_count_by_day_splits_a_window_into_partial_and_whole_days() -> None:
    # 12:00 on day 0 .. 06:00 on day 3: whole days 1 and 2, partial days 0 and 3.
    start, end = D0 + DAY / 2, D0 + 3 * DAY + DAY / 4
    assert records_count_by_day(SQLITE, f_of(start, end, call_type="MultiCall")) == [
        Statement(
            "SELECT COALESCE(SUM(n), 0) FROM call_counts WHERE day >= ? AND day <= ? AND call_type = ?",
            (D0 // DAY + 1, D0 // DAY + 2, "MultiCall"),
        ),
        Statement(
            "SELECT count(*) FROM calls WHERE start_time >= ? AND start_time < ? AND call_type = ?",
            (start, D0 + DAY, "MultiCall"),
        ),
        Statement(
            "SELECT count(*) FROM calls WHERE start_time >= ? AND start_time <= ? AND call_type = ?",
            (D0 + 3 * DAY, end, "MultiCall"),
        ),
    ]


def test_count_by_day_a_start_at_midnight_begins_a_whole_day() -> None:
    statements = records_count_by_day(SQLITE, f_of(start=D0))
    assert statements == [
        Statement("SELECT COALESCE(SUM(n), 0) FROM call_counts WHERE day >= ?", (D0 // DAY,)),
        Statement("SELECT count(*) FROM calls WHERE start_time >= ? AND start_time < ?", (D0, D0)),
    ]


def test_count_by_day_with_only_an_end() -> None:
    end = D0 + 10
    assert records_count_by_day(SQLITE, f_of(end=end)) == [
        Statement("SELECT COALESCE(SUM(n), 0) FROM call_counts WHERE day <= ?", (D0 // DAY - 1,)),
        Statement("SELECT count(*) FROM calls WHERE start_time >= ? AND start_time <= ?", (D0, end)),
    ]


def test_count_by_day_numbers_postgres_placeholders_per_statement() -> None:
    s = records_count_by_day(POSTGRES, f_of(D0 + 1, D0 + 2 * DAY + 1, ["Reject"]))
    assert [x.sql for x in s] == [
        "SELECT COALESCE(SUM(n), 0) FROM call_counts WHERE day >= $1 AND day <= $2"
        " AND result = ANY($3::text[])",
        "SELECT count(*) FROM calls WHERE start_time >= $1 AND start_time < $2 AND result = ANY($3::text[])",
        "SELECT count(*) FROM calls WHERE start_time >= $1 AND start_time <= $2 AND result = ANY($3::text[])",
    ]


async def test_count_by_day_equals_a_plain_count_on_a_real_sqlite_store(tmp_path: Path) -> None:
    path = tmp_path / "counts.db"
    store = SqliteStore(str(path))
    await store.open()
    outcomes = ("answered", "rejected", "no_answer", "canceled", "busy")
    writes: list[FinishedCallWrite] = []
    for i in range(600):  # about 5 days, a call every 719 s, some at midnight exactly
        start = float(D0 + i * 719) if i % 50 else float(D0 + (i // 50) * DAY)
        callees = ("bob",) if i % 3 else ("bob", "carol")
        writes.append(
            finish(make_record(f"call-{i:04d}", start=start, callees=callees, outcome=outcomes[i % 5]))
        )
    await store.apply(writes)
    await store.close()
    conn = sqlite3.connect(path)
    try:
        bounds = (None, D0, D0 + 0.5, D0 + DAY - 1, D0 + DAY, D0 + 2.5 * DAY, D0 + 5 * DAY, D0 + 9 * DAY)
        kinds = (
            (None, None),
            (["Reject"], None),
            (["NotAnswer", "Cancel"], "SingleCall"),
            (None, "MultiCall"),
        )
        checked = 0
        for lo, hi in itertools.product(bounds, bounds):
            for results, call_type in kinds:
                f = f_of(lo, hi, results, call_type)
                want = conn.execute(*records_count(SQLITE, f)).fetchone()[0]
                got = sum(conn.execute(*s).fetchone()[0] for s in records_count_by_day(SQLITE, f))
                assert got == want, (lo, hi, results, call_type)
                checked += want > 0
        assert checked > 50  # most windows select something
    finally:
        conn.close()


# --------------------------------------------------------------------------- user calls

_USER_SELECT = "SELECT c.record, u.result_type FROM user_calls AS u JOIN calls AS c ON c.call_id = u.call_id"
_USER_ORDER = " ORDER BY u.start_time DESC, u.call_id DESC"


@pytest.mark.parametrize("d", [SQLITE, POSTGRES], ids=lambda d: d.name)
@pytest.mark.parametrize("begin", [None, 5])
@pytest.mark.parametrize("end", [None, 7.5])
@pytest.mark.parametrize("result_type", list(CallResultType))
def test_user_calls_for_every_filter_combination(
    d: Dialect, begin: Any, end: Any, result_type: CallResultType
) -> None:
    args: list[Any] = ["alice"]

    def ph() -> str:
        return f"${len(args)}" if d is POSTGRES else "?"

    conds = [f"u.user_id = {ph()}", "u.hidden = 0" if d is SQLITE else "NOT u.hidden"]
    if begin is not None:
        args.append(begin)
        conds.append(f"u.start_time >= {ph()}")
    if end is not None:
        args.append(end)
        conds.append(f"u.start_time <= {ph()}")
    if result_type is not CallResultType.UNKNOWN:
        args.append(int(result_type))
        conds.append(f"u.result_type = {ph()}")
    args.append(20)
    want = f"{_USER_SELECT} WHERE {' AND '.join(conds)}{_USER_ORDER} LIMIT {ph()}"
    got = user_calls(d, "alice", begin=begin, end=end, result_type=result_type, limit=20)
    assert got == Statement(want, tuple(args))


def test_user_calls_texts_pinned() -> None:
    assert user_calls(
        SQLITE, "alice", begin=None, end=None, result_type=CallResultType.UNKNOWN, limit=50
    ) == (
        Statement(f"{_USER_SELECT} WHERE u.user_id = ? AND u.hidden = 0{_USER_ORDER} LIMIT ?", ("alice", 50))
    )
    got = user_calls(POSTGRES, "bob", begin=1.0, end=2.0, result_type=CallResultType.MISSED, limit=3)
    assert got == Statement(
        f"{_USER_SELECT} WHERE u.user_id = $1 AND NOT u.hidden AND u.start_time >= $2"
        f" AND u.start_time <= $3 AND u.result_type = $4{_USER_ORDER} LIMIT $5",
        ("bob", 1.0, 2.0, int(CallResultType.MISSED), 3),
    )


# --------------------------------------------------------------------------- outbox


@pytest.mark.parametrize("d", [SQLITE, POSTGRES], ids=lambda d: d.name)
@pytest.mark.parametrize("states", [[], ["gone"], ["given_up", "gone"]])
@pytest.mark.parametrize("call_id", [None, "call-1"])
@pytest.mark.parametrize("url", [None, "http://hooks.example/cb"])
def test_deliveries_count_and_page_for_every_filter_combination(
    d: Dialect, states: list[str], call_id: str | None, url: str | None
) -> None:
    args: list[Any] = []
    conds: list[str] = []

    def ph() -> str:
        return f"${len(args)}" if d is POSTGRES else "?"

    if states:
        if d is POSTGRES:
            args.append(list(states))
            conds.append(f"state = ANY(${len(args)}::text[])")
        else:
            args.extend(states)
            conds.append(f"state IN ({', '.join(['?'] * len(states))})")
    if call_id is not None:
        args.append(call_id)
        conds.append(f"call_id = {ph()}")
    if url is not None:
        args.append(url)
        conds.append(f"url = {ph()}")
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    assert deliveries_count(d, states, call_id=call_id, url=url) == Statement(
        f"SELECT count(*) FROM outbox{where}", tuple(args)
    )
    n = len(args)
    limit, offset = ("?", "?") if d is SQLITE else (f"${n + 1}", f"${n + 2}")
    assert deliveries_page(d, states, call_id=call_id, url=url, limit=50, offset=100) == Statement(
        f"SELECT {OUTBOX_COLUMNS} FROM outbox{where}{OUTBOX_ORDER} LIMIT {limit} OFFSET {offset}",
        (*args, 50, 100),
    )


def test_deliveries_texts_pinned() -> None:
    assert deliveries_count(SQLITE, ["given_up", "gone"], call_id=None, url=None) == Statement(
        "SELECT count(*) FROM outbox WHERE state IN (?, ?)", ("given_up", "gone")
    )
    assert deliveries_page(POSTGRES, [], call_id="c", url=None, limit=5, offset=0) == Statement(
        f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE call_id = $1"
        " ORDER BY created_at, call_id, sequence, url LIMIT $2 OFFSET $3",
        ("c", 5, 0),
    )


# --------------------------------------------------------------------------- values


def test_record_json_round_trips_and_is_compact() -> None:
    record = make_record("call-1", start=T0, callees=("bob", "carol"), outcome="rejected")
    text = record_json(record)
    assert ", " not in text and ": " not in text
    assert record_from_json(text) == record


def test_call_columns_follow_the_calls_table() -> None:
    record = make_record("call-2", start=T0, outcome="answered")
    cols = call_columns(record)
    assert cols[:3] == ("call-2", record.sdk_app_id, "alice")
    assert cols[5] == record.call_type
    assert cols[7:10] == (T0, record.accept_time, record.end_time)
    assert cols[10] == record.result.value
    assert record_from_json(cols[12]) == record
    assert len(cols) == 13


def test_config_json_round_trips_and_refuses_a_non_object() -> None:
    config = {"Url": "https://hooks.example/ü", "CallbackCommandList": ["a", "b"]}
    assert config_json(config) == '{"Url":"https://hooks.example/ü","CallbackCommandList":["a","b"]}'
    assert config_from_json(config_json(config)) == config
    with pytest.raises(ValueError, match="callback_config holds list, not a JSON object"):
        config_from_json("[1]")


def test_session_from_row_reads_a_load_sessions_row() -> None:
    assert LOAD_SESSIONS == (
        "SELECT token, device_id, user_id, multi_device, sig_expires_at, created_at,"
        " last_seen FROM sessions ORDER BY created_at, token"
    )
    row = ("tok", "dev", "alice", 1, 10, 1.5, 2.5)  # SQLite: 0/1 and whatever number it kept
    assert session_from_row(row) == SessionRow("tok", "dev", "alice", True, 10.0, 1.5, 2.5)
    assert session_from_row(("t", "d", "u", False, 1.0, 2.0, 3.0)).multi_device is False
