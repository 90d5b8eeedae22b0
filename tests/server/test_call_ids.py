"""Call ids: version 7 UUIDs (RFC 9562), time first, so new keys land at the end of the
indexes that hold calls."""

from __future__ import annotations

import time
import uuid

from ringline.server.ws import _uuid


def test_call_id_is_a_version_7_uuid() -> None:
    before = time.time_ns() // 1_000_000
    cid = _uuid()
    after = time.time_ns() // 1_000_000
    u = uuid.UUID(cid)
    assert str(u) == cid  # the canonical lower-case form, 36 characters
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert before <= u.int >> 80 <= after  # the first 48 bits: the Unix time in ms


def test_call_ids_sort_by_time_and_are_unique() -> None:
    ids = []
    for _ in range(3):
        ms = time.time_ns() // 1_000_000
        while time.time_ns() // 1_000_000 == ms:
            ids.append(_uuid())
    assert len(set(ids)) == len(ids)
    stamps = [uuid.UUID(i).int >> 80 for i in ids]
    assert stamps == sorted(stamps)
    # Ids of different milliseconds sort as text in time order (what an index sees).
    firsts: dict[int, str] = {}
    for i, ms in zip(ids, stamps, strict=True):
        firsts.setdefault(ms, i)
    assert list(firsts.values()) == sorted(firsts.values())


def test_call_ids_are_random_within_a_millisecond() -> None:
    ids = [uuid.UUID(_uuid()).int & ((1 << 74) - 1) for _ in range(200)]
    # the low 74 bits hold 72 random ones (10 after the version, 62 after the variant)
    assert len(set(ids)) == 200
