"""RoundBatcher: the rounds under the stores' group commit and outbox operations."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ringline.server.store.batching import Ok, RoundBatcher


class Rounds:
    """A run_round that records its rounds and can be held open."""

    def __init__(self) -> None:
        self.rounds: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()

    async def __call__(self, items: list[int]) -> Sequence[Ok | BaseException | None]:
        self.rounds.append(list(items))
        self.started.set()
        await self.gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else (None if i == 0 else Ok(i * 10)) for i in items]


async def test_items_submitted_during_a_round_share_the_next_one() -> None:
    run = Rounds()
    b: RoundBatcher[int] = RoundBatcher(run, name="t", closed_error="closed")
    run.gate.clear()
    first = asyncio.create_task(b.submit(2))
    await run.started.wait()
    later = [asyncio.create_task(b.submit(i)) for i in (4, 6, 0)]
    await asyncio.sleep(0)  # let them queue behind the running round
    run.gate.set()
    assert await first == 20
    assert [await t for t in later] == [40, 60, None]
    assert run.rounds == [[2], [4, 6, 0]]
    assert (b.rounds, b.items) == (2, 4)


async def test_a_failed_item_fails_only_its_caller() -> None:
    b: RoundBatcher[int] = RoundBatcher(Rounds(), name="t", closed_error="closed")
    results = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
    assert isinstance(results[0], ValueError) and results[1] == 20


async def test_a_cancelled_caller_does_not_withdraw_its_item() -> None:
    run = Rounds()
    b: RoundBatcher[int] = RoundBatcher(run, name="t", closed_error="closed")
    run.gate.clear()
    blocker = asyncio.create_task(b.submit(2))
    await run.started.wait()
    gone = asyncio.create_task(b.submit(8))
    await asyncio.sleep(0)
    gone.cancel()
    run.gate.set()
    assert await blocker == 20
    await b.close()
    assert run.rounds == [[2], [8]]  # 8 still ran


async def test_a_round_that_breaks_its_contract_fails_every_item_of_it() -> None:
    async def short(items: list[int]) -> Sequence[Ok | BaseException | None]:
        return [None]

    b: RoundBatcher[int] = RoundBatcher(short, name="t", closed_error="closed")
    results = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "1 results for 2 items" in str(r) for r in results)


async def test_closed_refuses_new_items_after_the_queued_ones_ran() -> None:
    run = Rounds()
    b: RoundBatcher[int] = RoundBatcher(run, name="t", closed_error="the store is closed")
    pending = asyncio.create_task(b.submit(2))
    await asyncio.sleep(0)
    await b.close()
    assert await pending == 20
    with pytest.raises(RuntimeError, match="the store is closed"):
        await b.submit(4)
