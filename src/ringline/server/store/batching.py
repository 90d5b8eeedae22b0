"""Rounds: the stores' group commit (:class:`GroupCommitter`), and what it shares with
the batching of outbox operations (:class:`.outbox.OpBatcher`).

A :class:`RoundBatcher` runs one *round* at a time; everything submitted while a round
runs goes into the next one, and a round is one call of the store's ``run_round`` (one
transaction). Under load, many callers share each transaction; with nothing else
waiting, a caller's round starts at once.

Internal to the store package.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .base import Write

__all__ = ["CommitGroup", "CommitStats", "GroupCommitter", "Ok", "RoundBatcher", "RunRound"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Ok:
    """The result of an item that succeeded with a value."""

    value: Any


#: Runs a round; returns per item, in order: ``None`` (done, no value), :class:`Ok`
#: (done, with a value) or the exception that item's caller gets. Must not raise for a
#: per-item failure.
RunRound = Callable[[list[_T]], Awaitable[Sequence[Ok | BaseException | None]]]


class RoundBatcher(Generic[_T]):
    """Runs submitted items in rounds, one round at a time (see the module docstring).

    Usage: ``await submit(item)`` from tasks of ONE event loop; ``await close()`` at
    shutdown. Cancelling a waiting caller does not withdraw its item: it runs anyway
    with the rest of its round.
    """

    __slots__ = ("_closed", "_closed_error", "_items", "_name", "_pending", "_rounds", "_run_round", "_task")

    def __init__(self, run_round: RunRound[_T], *, name: str, closed_error: str) -> None:
        self._run_round = run_round
        self._name = name
        self._closed_error = closed_error
        self._pending: list[tuple[_T, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._rounds = 0
        self._items = 0

    @property
    def rounds(self) -> int:
        """Rounds run so far."""
        return self._rounds

    @property
    def items(self) -> int:
        """Items resolved so far (``items / rounds`` is the average merge factor)."""
        return self._items

    async def submit(self, item: _T) -> Any:
        """Run ``item`` in the next round; return its value (None without one) or raise
        its error. RuntimeError after :meth:`close`."""
        if self._closed:
            raise RuntimeError(self._closed_error)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((item, fut))
        if self._task is None:
            self._task = loop.create_task(self._run(), name=self._name)
        return await fut

    async def close(self) -> None:
        """Refuse new items and wait until every queued one is resolved. Idempotent."""
        self._closed = True
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def _run(self) -> None:
        group: list[tuple[_T, asyncio.Future[Any]]] = []
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    results = await self._run_round([item for item, _ in group])
                    if len(results) != len(group):
                        raise RuntimeError(
                            f"{self._name}: a round returned {len(results)} results for {len(group)} items"
                        )
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # run_round broke its contract
                    results = [exc] * len(group)
                self._rounds += 1
                self._items += len(group)
                for (_, fut), outcome in zip(group, results, strict=True):
                    if fut.done():  # the waiting task was cancelled
                        continue
                    if isinstance(outcome, BaseException):
                        fut.set_exception(outcome)
                    else:
                        fut.set_result(outcome.value if isinstance(outcome, Ok) else None)
                group = []
        except asyncio.CancelledError:
            for _, fut in itertools.chain(group, self._pending):
                fut.cancel()
            self._pending = []
            raise
        finally:
            self._task = None


# --------------------------------------------------------------------------- group commit

#: Commits a list of batches; returns, per batch and in order, ``None`` (committed) or
#: the exception that made that batch fail. Must not raise for a per-batch failure.
CommitGroup = Callable[[list[tuple[Write, ...]]], Awaitable[list[BaseException | None]]]


@dataclass(frozen=True, slots=True)
class CommitStats:
    """Counters of a :class:`GroupCommitter`.

    ``batches``: ``apply`` calls handed to the committer and resolved.
    ``groups``: merged commit rounds (one transaction each, unless a round fell back to
    per-batch transactions). ``batches / groups`` is the average merge factor.
    """

    batches: int
    groups: int


class GroupCommitter(RoundBatcher[tuple[Write, ...]]):
    """Merges concurrent batches of writes into one transaction (group commit).

    Usage: create it with a ``commit`` coroutine function (see :data:`CommitGroup`),
    ``await submit(writes)`` from any task of ONE event loop, ``await close()`` at
    shutdown. At most one commit round runs at a time; batches submitted meanwhile wait
    and are all committed by the next round. ``submit`` returns once its batch is
    committed, or raises the exception that made that batch fail.

    Cancelling a task waiting in ``submit`` does not withdraw its batch: the batch is
    committed anyway (or fails) with the rest of its round.
    """

    __slots__ = ()

    def __init__(self, commit: CommitGroup) -> None:
        super().__init__(
            commit,
            name="ringline-store-group-commit",
            closed_error="the store is closed; open a new one to write again",
        )

    @property
    def stats(self) -> CommitStats:
        """Counters so far (cheap; for metrics and tests)."""
        return CommitStats(batches=self.items, groups=self.rounds)
