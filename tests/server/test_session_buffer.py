"""A session's unacknowledged pushes: numbered one after the other, forgotten by ack
(a prefix), sent again on resume, renumbered after a restart."""

from __future__ import annotations

from ringline.server.session import Close, Frame, Link, Session


class _Sent(Link):
    """A link that only remembers what was put on it."""

    def queued(self) -> None:
        pass

    async def close(self, code: int, message: str) -> None:
        self.frames.append(Close(code, message))

    def write_held(self) -> None:
        pass  # never holds frames


def _session() -> tuple[Session, _Sent]:
    s = Session(
        token="t",
        device_id="alice/d1",
        user_id="alice",
        multi_device=False,
        sig_expires_at=2e9,
        created_at=1.0,
        last_seen=1.0,
    )
    link = _Sent()
    s.attach(link)
    return s, link


def _seqs(s: Session) -> list[int]:
    return [seq for seq, _, _ in s.buffer]


def test_ack_forgets_exactly_the_pushes_up_to_its_number() -> None:
    s, _ = _session()
    for i in range(10):
        s.push("on_x", {"i": i})
    assert _seqs(s) == list(range(1, 11))
    s.ack(0)  # nothing yet
    assert _seqs(s) == list(range(1, 11))
    s.ack(4)
    assert _seqs(s) == list(range(5, 11))
    s.ack(4)  # again: nothing more
    assert _seqs(s) == list(range(5, 11))
    s.ack(9)
    assert _seqs(s) == [10]
    s.ack(99)  # past the end: everything
    assert s.buffer == []
    s.push("on_x", {"i": 10})
    assert _seqs(s) == [11]


def test_a_resume_sends_the_unacknowledged_ones_again_in_order() -> None:
    s, link = _session()
    for i in range(5):
        s.push("on_x", {"i": i})
    link.take()
    assert s.replay_after(2) == 3
    sent: list[Frame] = link.take()
    assert [f for f in sent if isinstance(f, str) and '"seq":3' in f]
    assert len(sent) == 3 and all(isinstance(f, str) for f in sent)
    assert _seqs(s) == [3, 4, 5]


def test_after_a_restart_the_numbering_continues_from_the_clients_ack() -> None:
    s, link = _session()
    s.restored = True
    for i in range(3):
        s.push("on_x", {"i": i})
    link.take()
    assert s.replay_after(40) == 3
    assert _seqs(s) == [41, 42, 43] and s.seq == 43
    s.ack(42)
    assert _seqs(s) == [43]
