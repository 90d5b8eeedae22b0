"""docs/spec.md says what the code does: its enums, event names and scenario rows cannot drift.

* §2: every enum row lists exactly the members and ordinals of ``ringline.core.enums``;
* §4: every observer method of the Python SDK has a row, with its arguments in the
  order the SDK passes them, and every row names a real method;
* §5: every scenario row has its test in tests/core/test_machine.py (``test_row8_…``,
  ``test_G3_…``), and every such test has its row;
* §8: the web event table is the browser engine's ``TUICallEvent``, constant for constant.
"""

from __future__ import annotations

import re
from enum import IntEnum
from pathlib import Path

from ringline.client._codec import EVENT_ARGS
from ringline.client.observer import EVENT_NAMES
from ringline.core import enums

ROOT = Path(__file__).resolve().parents[2]
SPEC = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")


def section(number: str) -> str:
    """The text of ``## N.`` up to the next ``## `` heading."""
    m = re.search(rf"^## {re.escape(number)}\. .*?(?=^## |\Z)", SPEC, re.M | re.S)
    assert m, f"docs/spec.md has no section {number}"
    return m.group(0)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every table row in ``text`` (header and separator rows included)."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]


def test_enum_rows_match_the_code() -> None:
    rows = {r[0].strip("`"): r[1] for r in table_rows(section("2")) if r and r[0].startswith("`")}
    for name in enums.__all__:
        cls = getattr(enums, name)
        assert issubclass(cls, IntEnum)
        assert name in rows, f"docs/spec.md §2 has no row for {name}"
        listed = re.findall(r"(\d+) ([A-Z_]+)", rows[name])
        want = [(str(int(v)), v.name) for v in cls]
        assert listed == want, f"§2 {name}: the page lists {listed}, the code has {want}"


def test_event_rows_match_the_python_observer() -> None:
    rows = [r for r in table_rows(section("4")) if r and r[0].startswith("`on_")]
    documented = {}
    for r in rows:
        m = re.match(r"`(on_\w+)\(([^)]*)\)", r[0])
        assert m, f"§4 row does not start with `method(args)`: {r[0]}"
        documented[m.group(1)] = [a.strip() for a in m.group(2).split(",") if a.strip()]
    assert list(documented) == list(EVENT_NAMES), "§4 lists the observer methods, in the SDK's order"
    for name, args in documented.items():
        want = [a for a, _ in EVENT_ARGS[name]]
        assert args == want, (
            f"§4 {name}: the page says ({', '.join(args)}), the SDK passes ({', '.join(want)})"
        )


def test_every_scenario_row_has_its_core_test() -> None:
    rows = [r[0] for r in table_rows(section("5")) if r and re.fullmatch(r"G?\d+", r[0])]
    assert rows[:12] == [str(i) for i in range(1, 13)] and rows[12:] == [f"G{i}" for i in range(1, 10)], rows
    tests = (ROOT / "tests" / "core" / "test_machine.py").read_text(encoding="utf-8")
    tested = set(re.findall(r"^def test_(?:row(\d+)|(G\d+))_", tests, re.M))
    tested_rows = {a or b for a, b in tested}
    missing = [r for r in rows if r not in tested_rows]
    assert not missing, (
        f"scenario rows of docs/spec.md §5 without a test in tests/core/test_machine.py: {missing}"
    )
    extra = sorted(tested_rows - set(rows))
    assert not extra, f"tests/core/test_machine.py tests rows docs/spec.md §5 does not have: {extra}"


def test_web_event_table_is_the_engine_s_tuicallevent() -> None:
    dts = (ROOT / "src" / "ringline" / "web" / "sdk" / "ringline.d.ts").read_text(encoding="utf-8")
    block = re.search(r"export declare const TUICallEvent: \{(.*?)\};", dts, re.S)
    assert block, "ringline.d.ts declares TUICallEvent"
    engine = re.findall(r"readonly (\w+): \"(\w+)\";", block.group(1))
    rows = [r for r in table_rows(section("8")) if len(r) == 3 and r[0].startswith("`")]
    documented = [(r[0].strip("`"), r[1].strip("`")) for r in rows]
    assert documented == engine, "docs/spec.md §8 lists TUICallEvent as the engine declares it"
    python = [r[2].strip("`") for r in rows]
    assert sorted(python) == sorted(EVENT_NAMES), "each web event has its Python counterpart, once"
