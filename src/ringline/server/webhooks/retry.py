"""When to try a failed callback again. Pure: no clock, no I/O; randomness is passed in.

Schedule: after the n-th failed attempt the next one waits a random time drawn
uniformly from ``[0, cap(n)]`` (**full jitter**, as in AWS's "Exponential Backoff and
Jitter"), where the caps are, by default::

    after attempt   1    2     3      4      5       6       7      8, 9, …
    cap             1 s  5 s   30 s   2 min  5 min   15 min  30 min 1 h each

so the first retries come within seconds (a receiver that blinked loses seconds, not
minutes) and later ones spread out to at most one per hour. Full jitter keeps many
senders from retrying in lockstep after an outage; its mean delay is ``cap / 2``,
which never decreases from one attempt to the next.

Retries stop ``give_up_after`` (default 24 h) after the delivery was *created* (not
after its first attempt: a delivery held back behind an earlier one of the same call
does not get a fresh 24 h). The last retry is placed exactly at that deadline, so an
endpoint is tried right up to it; no retry is ever scheduled beyond it.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

__all__ = ["DEFAULT_DELAYS", "DEFAULT_SCHEDULE", "RetrySchedule", "next_attempt"]

DEFAULT_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 300.0, 900.0, 1800.0)


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Retry caps and the give-up horizon. Tests inject a fast one, e.g.
    ``RetrySchedule(delays=(0.01, 0.02), then_every=0.05, give_up_after=5)``."""

    delays: tuple[float, ...] = DEFAULT_DELAYS
    """Cap of the wait after attempt 1, 2, …; must not decrease."""
    then_every: float = 3600.0
    """Cap of every wait after the listed ones (≥ the last listed one)."""
    give_up_after: float = 24 * 3600.0
    """Seconds after the delivery's creation past which nothing is retried."""

    def __post_init__(self) -> None:
        if any(d < 0 for d in self.delays) or self.then_every <= 0:
            raise ValueError("retry delays must be ≥ 0 and then_every > 0")
        caps = (*self.delays, self.then_every)
        if any(b < a for a, b in itertools.pairwise(caps)):
            raise ValueError(f"retry delays must not decrease: {caps}")
        if self.give_up_after <= 0:
            raise ValueError("give_up_after must be > 0 seconds")

    def cap(self, attempt: int) -> float:
        """The longest wait after ``attempt`` (≥ 1) attempts have failed."""
        if attempt < 1:
            raise ValueError(f"attempt counts attempts made, so it is ≥ 1, not {attempt}")
        return self.delays[attempt - 1] if attempt <= len(self.delays) else self.then_every

    def expected_delay(self, attempt: int) -> float:
        """The mean wait after ``attempt`` failures (full jitter: ``cap / 2``)."""
        return self.cap(attempt) / 2

    def next_attempt(
        self,
        attempt: int,
        now: float,
        rng: random.Random,
        *,
        created_at: float,
        not_before: float | None = None,
    ) -> float | None:
        """When to try again after ``attempt`` attempts failed, the last one ending at
        ``now``; None = give up (the deadline ``created_at + give_up_after`` has come).

        ``not_before`` (e.g. from a ``Retry-After`` header) pushes the time later, still
        never past the deadline. Pass the result to ``Outbox.mark_failed(next_at=…)``.
        """
        deadline = created_at + self.give_up_after
        if now >= deadline:
            return None
        at = now + rng.uniform(0.0, self.cap(attempt))
        if not_before is not None:
            at = max(at, not_before)
        return min(at, deadline)


DEFAULT_SCHEDULE = RetrySchedule()


def next_attempt(
    attempt: int,
    now: float,
    rng: random.Random,
    *,
    created_at: float,
    schedule: RetrySchedule = DEFAULT_SCHEDULE,
    not_before: float | None = None,
) -> float | None:
    """:meth:`RetrySchedule.next_attempt` of ``schedule`` (the default one unless given)."""
    return schedule.next_attempt(attempt, now, rng, created_at=created_at, not_before=not_before)
