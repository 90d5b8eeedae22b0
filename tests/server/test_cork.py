"""The hub's cork: while a round of batches is performed, a connection holds the text
frames it would write at once and writes them together when the round ends (one
``send()`` for a reply and the pushes it caused), in the order they were put."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from ringline.server.session import Close, Cork
from ringline.server.ws import _Conn


class _Out:
    """A connection's writer that records each write (one list per ``send()``)."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.fail: Exception | None = None
        self.pause = False

    def write(self, texts: Sequence[str]) -> None:
        if self.fail is not None:
            raise self.fail
        self.writes.append(list(texts))

    def paused(self) -> bool:
        return self.pause

    async def drain(self) -> None:
        self.pause = False


class _Ws:
    closed = False
    close_code = None

    async def close(self, code: int, message: bytes) -> None:
        self.closed = True


class _Handler:
    """What a connection needs of the WebSocket handler."""

    def __init__(self) -> None:
        self.cork = Cork()
        self.failed: list[Exception] = []
        self.queued: list[Any] = []

    def _write_failed(self, conn: _Conn, exc: Exception) -> None:
        self.failed.append(exc)

    async def _writer(self, conn: _Conn) -> None:
        self.queued.append(conn.take())
        conn.task = None


def _conn() -> tuple[_Conn, _Out, _Handler]:
    h = _Handler()
    out = _Out()
    conn = _Conn(_Ws(), 100.0, h)  # type: ignore[arg-type]
    conn.out = out  # type: ignore[assignment]
    conn.ready = True
    return conn, out, h


def test_without_the_cork_each_frame_is_written_at_once() -> None:
    conn, out, _ = _conn()
    conn.put("a")
    conn.put("b")
    assert out.writes == [["a"], ["b"]]


def test_frames_put_under_the_cork_go_out_in_one_write_when_it_ends() -> None:
    conn, out, h = _conn()
    other, other_out, _ = _conn()
    other.handler = h  # type: ignore[assignment]
    with h.cork:
        conn.put("reply")
        other.put("push to the other")
        conn.put("push 1")
        with h.cork:  # rounds nest: only the outermost end writes
            conn.put("push 2")
        assert out.writes == [] and other_out.writes == []
    assert out.writes == [["reply", "push 1", "push 2"]]
    assert other_out.writes == [["push to the other"]]
    conn.put("after")
    assert out.writes[-1] == ["after"]
    assert h.cork.held == []


def test_a_close_under_the_cork_comes_after_the_frames_held_before_it() -> None:
    async def main() -> None:
        conn, out, h = _conn()
        with h.cork:
            conn.put("a")
            conn.put("b")
            conn.put(Close(4001, "kicked"))
            conn.put("c")  # queued behind the close: the writer does not send it
        await asyncio.sleep(0)  # the writer task runs
        assert out.writes == []
        assert h.queued == [["a", "b", Close(4001, "kicked"), "c"]]

    asyncio.run(main())


def test_frames_held_on_a_connection_closed_meanwhile_are_dropped() -> None:
    conn, out, h = _conn()
    with h.cork:
        conn.put("a")
        conn.ws.closed = True  # type: ignore[misc]
    assert out.writes == []


def test_a_failed_write_at_the_end_of_the_round_is_reported_once() -> None:
    conn, out, h = _conn()
    out.fail = OSError("boom")
    with h.cork:
        conn.put("a")
        conn.put("b")
    assert [str(e) for e in h.failed] == ["boom"]
    out.fail = ConnectionResetError("going")
    with h.cork:
        conn.put("c")
    assert len(h.failed) == 1  # a connection going away is not a failure


def test_a_write_that_fills_the_socket_hands_over_to_the_writer() -> None:
    async def main() -> None:
        conn, out, h = _conn()
        out.pause = True
        with h.cork:
            conn.put("a")
            conn.put("b")
        assert out.writes == [["a", "b"]]
        assert conn.task is not None  # waits for the socket to drain
        conn.put("c")  # after the writer's queue, not written at once
        await asyncio.sleep(0)
        assert h.queued == [["c"]]

    asyncio.run(main())


@pytest.mark.parametrize("depth", [1, 3])
def test_the_cork_is_out_after_an_error_inside_the_round(depth: int) -> None:
    conn, out, h = _conn()

    def round_(n: int) -> None:
        with h.cork:
            conn.put(f"f{n}")
            if n == 1:
                raise RuntimeError("a bug in a round")
            round_(n - 1)

    with pytest.raises(RuntimeError):
        round_(depth)
    assert h.cork.depth == 0
    assert out.writes == [[f"f{n}" for n in range(depth, 0, -1)]]
