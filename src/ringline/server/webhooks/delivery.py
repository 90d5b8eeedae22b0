"""Callback delivery: an asyncio :class:`Deliverer` drains an :class:`Outbox`.

The caller (the server, once wired) turns each call event into a :class:`Delivery`
with :func:`new_delivery` and puts it in a durable outbox *in the same transaction*
as the state change that caused it; then it calls :meth:`Deliverer.wake`. The
deliverer claims what is due, POSTs it, and records the outcome in the outbox. So a
receiver that is down, or a server restart, loses nothing (at-least-once delivery).

Life of one delivery::

          new_delivery() -> outbox (same transaction as the event)
                 |
                 v
          +-----------+   claim_due(): due, and the lowest undone
    +---->|  pending  |   sequence of its (url, call_id)
    |     +-----------+-----------------------------+
    |           ^                                   v
    |           | release() on close,         +-----------+
    |           +-- or the claim's lease -----| in flight |---- POST, signed twice,
    |               expired (crash)           +-----------+     no redirects followed
    |                                               |
    |      2xx ------------------------------------>+--> [delivered]
    |                                               |
    |      3xx, other status, timeout,              |
    |      connection error: schedule gives t       |
    |     +------------+                            |
    +-----| retry-wait |<---------------------------+
     at t +------------+                            |
                 schedule gives None (deadline) ----+--> [given up]
                                                    |
           410 Gone --------------------------------+--> [gone]: this delivery (its
                                                         attempt counted) and every
                                                         pending one to that url, in
                                                         one step

**Per-call order.** Deliveries are ordered per *(url, call_id)* by ``sequence``: one
is sent only when every earlier one of the same call to the same url is delivered,
given up or gone. The deliverer relies on the outbox for this: ``claim_due`` must
return, per (url, call_id), at most the lowest-sequence delivery that is not finished,
and only if it is not in flight already. Different calls (and different urls) go in
parallel, up to ``max_in_flight`` requests.

**Bodies.** The caller builds the JSON body; :func:`new_delivery` adds ``EventId`` (the
stable id that is also the ``webhook-id`` header; the same on every retry, so
receivers drop duplicates by it) and ``Sequence`` (per call, strictly increasing in
the order the events happened; gaps are allowed, e.g. for commands a url did not
subscribe to).

**Requests.** ``POST url?<Tencent query>`` with the body as is, ``Content-Type:
application/json`` and the Standard Webhooks headers; see :mod:`.signing`. Timeouts:
connect 3 s, total 10 s. Any 2xx is success (the response body is ignored); a 3xx is
a failure (redirects are not followed); ``410 Gone`` counts the attempt and drops that
delivery and every pending one to that url, in one step
(:meth:`Outbox.mark_endpoint_gone` with the ``event_id``); anything else is retried on the
:class:`~.retry.RetrySchedule`, honouring ``Retry-After`` (seconds or an HTTP date) on 429/503.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import enum
import heapq
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from ... import __version__
from .. import jsonenc as _json
from .http import HttpClient
from .retry import DEFAULT_SCHEDULE, RetrySchedule
from .signing import decode_secret, standard_headers, tencent_query

__all__ = [
    "Deliverer",
    "DelivererStats",
    "Delivery",
    "DeliveryState",
    "Outbox",
    "OutboxEntry",
    "WebhookCredentials",
    "encode_body",
    "new_claim_owner",
    "new_delivery",
    "new_event_id",
]

log = logging.getLogger("ringline.webhooks")

#: Seconds a busy deliverer waits before claiming again (claims in batches).
_CLAIM_BATCH_WAIT = 0.005

_dumps = _json.dumps


@dataclass(frozen=True, slots=True)
class Delivery:
    """One callback to one url, as claimed from the outbox.

    ``event_id`` is the stable id (``webhook-id``, ``EventId`` in the body) and the
    outbox's key. ``sequence`` orders the deliveries of ``call_id`` to ``url``.
    ``attempts`` counts attempts already made; ``created_at`` (unix s) starts the
    give-up clock. ``query``: more query parameters for the request, URL-encoded
    (``ClientIP=…&OptPlatform=…``: who caused the event), sent after ``contenttype``.
    """

    event_id: str
    call_id: str
    sequence: int
    url: str
    command: str
    body: bytes
    created_at: float
    attempts: int = 0
    query: str = ""


class DeliveryState(enum.StrEnum):
    """Where a delivery is in its life (see the diagram in this module)."""

    PENDING = "pending"
    """Waiting for its ``next_at`` (a first attempt or a retry) or for an earlier one."""
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    GIVEN_UP = "given_up"
    """Every retry failed until the deadline; listed for operators."""
    GONE = "gone"
    """Dropped because its url answered ``410 Gone``."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """What an outbox knows about one delivery: the operator's view (e.g. a listing of
    failed deliveries)."""

    delivery: Delivery
    state: DeliveryState
    next_at: float
    last_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str = ""
    finished_at: float | None = None


class Outbox(Protocol):
    """The deliverer's view of a durable outbox. :class:`~.memory.MemoryOutbox` is the
    reference implementation; a SQL one must behave the same (same tests).

    Rules every implementation keeps:

    * ``claim_due(now, limit)`` returns at most ``limit`` deliveries, each *pending*
      with ``next_at <= now`` (or *in flight* with an expired claim lease, after a
      crash), and each the lowest-sequence unfinished delivery of its (url, call_id):
      while sequence n of a call is pending or in flight, n+1 is not claimable. It
      marks them in flight under a lease longer than the deliverer's total timeout
      (e.g. 60 s), atomically: two deliverers never claim the same delivery. The
      returned ``attempts`` is the number of attempts recorded so far.
    * ``mark_delivered`` finishes the delivery (also if it was marked gone or given up
      meanwhile: the receiver has it). ``mark_failed`` counts an attempt and either
      schedules the next one (``next_at``) or, with ``next_at=None``, gives up; it is
      ignored unless the delivery is in flight. Either frees the next sequence of the
      call.
    * ``mark_endpoint_gone(url, at, event_id=…, status=410, error=…)`` finishes every
      pending or in-flight delivery to ``url`` as *gone*, and returns how many (the
      ``event_id`` one included). Deliveries added to a gone url later are gone at once,
      until the url is configured again. With ``event_id`` (the delivery that got the
      410) the same step records that attempt, if it is in flight to ``url``:
      ``attempts + 1``, ``last_attempt_at = at``, ``last_status = status``,
      ``last_error = error`` (the others get a generic "dropped" error), then *gone*
      like the others. Not in flight, or to another url: its attempt is not recorded
      (as ``mark_failed`` ignores it). Unknown ``event_id``: KeyError, and nothing
      changes. It is one operation (one transaction): no one sees that delivery as a
      pending retry.
    * ``release(ids)`` puts claimed deliveries back to pending without counting an
      attempt (the deliverer was closed mid-request); ids not in flight are ignored.
    """

    async def claim_due(self, now: float, limit: int) -> list[Delivery]: ...

    async def mark_delivered(self, event_id: str, at: float, status: int) -> None: ...

    async def mark_failed(
        self, event_id: str, at: float, status: int | None, error: str, next_at: float | None
    ) -> None: ...

    async def mark_endpoint_gone(
        self, url: str, at: float, *, event_id: str | None = None, status: int = 410, error: str = ""
    ) -> int: ...

    async def release(self, event_ids: Sequence[str]) -> None: ...


# -- building deliveries -----------------------------------------------------------------


class _EventIds:
    """Event ids without a system call each: a random 64-bit prefix per process (new
    after a fork) and a counter that starts at a random point. Unique within a process
    by construction, and across processes and restarts with the odds of 128 random bits."""

    __slots__ = ("counter", "prefix")

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(8), "big") >> 1)

    def next(self) -> str:
        return f"evt_{self.prefix}{next(self.counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


_event_ids = _EventIds()
os.register_at_fork(after_in_child=_event_ids.reseed)


def new_event_id() -> str:
    """A fresh event id, ``evt_<32 hex>``: unique, not secret (do not use it as a token)."""
    return _event_ids.next()


def new_claim_owner(label: str = "deliverer") -> str:
    """A fresh claim owner, ``<label>-<pid>-<16 hex>``: what a durable outbox records
    with each claim, so the claims of one deliverer (one process run) can be handed back
    with ``release_owner`` once it is known dead. Unique even when a pid is reused (the
    random part); set it as the outbox's ``owner`` before the deliverer starts."""
    return f"{label}-{os.getpid()}-{os.urandom(8).hex()}"


def encode_body(payload: Mapping[str, Any], *, event_id: str, sequence: int) -> bytes:
    """The JSON body (compact UTF-8) of ``payload`` plus ``EventId`` and ``Sequence``.

    ``payload`` is the callback as the vendor documents it (for v4, including
    ``CallbackCommand`` and ``EventTime`` in ms). A payload that already holds a
    different ``EventId`` or ``Sequence`` is a bug and raises ValueError.
    """
    body = dict(payload)
    for key, value in (("EventId", event_id), ("Sequence", sequence)):
        if key in body and body[key] != value:
            raise ValueError(f"payload has {key}={body[key]!r}, but the delivery's is {value!r}")
        body[key] = value
    return _dumps(body).encode("utf-8")


def new_delivery(
    *,
    url: str,
    command: str,
    call_id: str,
    sequence: int,
    payload: Mapping[str, Any],
    created_at: float,
    event_id: str | None = None,
    query: str = "",
) -> Delivery:
    """A delivery ready for the outbox: the body is ``payload`` with ``EventId`` and
    ``Sequence`` added (see :func:`encode_body`); ``event_id`` is new unless given;
    ``query`` (URL-encoded) goes into the request's query after ``contenttype``.
    Build one per (event, configured url) and store it with the event's transaction."""
    if sequence < 0:
        raise ValueError(f"sequence must be ≥ 0, not {sequence}")
    eid = event_id or new_event_id()
    body = encode_body(payload, event_id=eid, sequence=sequence)
    return Delivery(eid, call_id, sequence, url, command, body, created_at, query=query)


# -- the deliverer -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookCredentials:
    """How requests are signed: the app id and Tencent token for the query signature,
    the ``whsec_`` secret(s) for the Standard Webhooks one. Give two secrets while
    rotating (new first): each request then carries both signatures."""

    sdk_app_id: int
    token: str
    secrets: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.token or len(self.token) > 128:
            raise ValueError("the callback token must be 1-128 characters")
        if not self.secrets:
            raise ValueError("give at least one whsec_ secret (see generate_secret())")
        for s in self.secrets:
            decode_secret(s)  # raises ValueError on a malformed secret


@dataclass(slots=True)
class DelivererStats:
    """Counters since start (attempts, not deliveries: a retry counts again)."""

    attempts: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    endpoints_gone: int = 0


@dataclass(frozen=True, slots=True)
class _Result:
    status: int | None
    error: str = ""
    retry_after: float | None = None


class Deliverer:
    """Sends what an :class:`Outbox` has due; one instance per process and outbox.

    Use ``async with Deliverer(outbox, creds) as d:`` or :meth:`start` / :meth:`close`.
    After putting new deliveries in the outbox call :meth:`wake`; otherwise they go out
    at the next poll (``poll_interval``). Retries the deliverer scheduled itself wake it
    on time without polling.

    ``clock`` is wall time (``time.time``): outbox times are unix seconds. Requests go
    out on kept-alive HTTP/1.1 connections of a small client of its own
    (:class:`~.http.HttpClient`: no proxies, cookies or redirects).
    """

    def __init__(
        self,
        outbox: Outbox,
        credentials: WebhookCredentials,
        *,
        schedule: RetrySchedule = DEFAULT_SCHEDULE,
        connect_timeout: float = 3.0,
        total_timeout: float = 10.0,
        max_in_flight: int = 32,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be ≥ 1")
        if not 0 < connect_timeout <= total_timeout:
            raise ValueError("timeouts must satisfy 0 < connect_timeout <= total_timeout")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        lease = getattr(outbox, "lease", None)
        if isinstance(lease, int | float) and lease <= total_timeout:
            raise ValueError(
                f"the outbox's claim lease ({lease} s) must exceed total_timeout ({total_timeout} s), "
                "or a delivery could be sent twice at once and out of order"
            )
        self._outbox = outbox
        self._credentials = credentials
        self._schedule = schedule
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_in_flight = max_in_flight
        self._poll_interval = poll_interval
        self._clock = clock
        self._rng = rng or random.Random()
        self._http: HttpClient | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._retry_times: list[float] = []  # heap of next_at values this deliverer set
        self._runner: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.stats = DelivererStats()
        #: Called after each attempt with the receiver's status (None: no answer), the
        #: request's duration in seconds and, when delivered, the lag from the event
        #: (``ringline serve --metrics`` sets it). It must not raise.
        self.on_attempt: Callable[[int | None, float, float | None], None] | None = None

    # -- lifecycle

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`close`."""
        return self._runner is not None and self._close_task is None

    @property
    def in_flight(self) -> int:
        """Requests under way now."""
        return len(self._inflight)

    async def start(self) -> None:
        """Start the delivery loop (idempotent). A closed deliverer cannot restart."""
        if self._close_task is not None:
            raise RuntimeError("this Deliverer is closed; make a new one")
        if self._runner is not None:
            return
        if self._http is None:
            self._http = HttpClient(
                user_agent=f"Ringline-Webhooks/{__version__}",
                connect_timeout=self._connect_timeout,
                max_idle=self._max_in_flight,
            )
        self._runner = asyncio.create_task(self._run(), name="ringline-webhooks")

    async def close(self, grace: float = 0.0) -> None:
        """Stop: claim nothing more, give in-flight requests ``grace`` seconds to end,
        cancel the rest and :meth:`Outbox.release` them (they go out again later, with
        the same event id). Idempotent; concurrent calls all wait for the one close."""
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._close(grace), name="ringline-webhooks-close")
        await asyncio.shield(self._close_task)

    async def _close(self, grace: float) -> None:
        self._stopping = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        claimed = dict(self._inflight)
        if claimed and grace > 0:
            await asyncio.wait(claimed.values(), timeout=grace)
        for task in claimed.values():
            task.cancel()
        if claimed:
            await asyncio.gather(*claimed.values(), return_exceptions=True)
            try:
                await self._outbox.release(list(claimed))
            except Exception:
                log.exception(
                    "webhooks: releasing %d claimed deliveries failed; their lease will expire", len(claimed)
                )
        if self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def wake(self) -> None:
        """Look for due deliveries now (call after adding some to the outbox)."""
        self._wake.set()

    def set_credentials(self, credentials: WebhookCredentials) -> None:
        """Sign from the next request on with ``credentials`` (token or secret change)."""
        self._credentials = credentials

    # -- the loop

    async def _run(self) -> None:
        while not self._stopping:
            if len(self._inflight) > self._max_in_flight // 2:
                # Busy: let a few more requests finish, so one claim fills several
                # slots (each claim is a store round trip).
                await asyncio.sleep(_CLAIM_BATCH_WAIT)
            self._wake.clear()
            now = self._clock()
            free = self._max_in_flight - len(self._inflight)
            if free > 0:
                try:
                    batch = await self._outbox.claim_due(now, free)
                except Exception:
                    log.exception("webhooks: claiming due deliveries failed; trying again shortly")
                    batch = []
                for delivery in batch:
                    self._spawn(delivery)
            await self._idle(now)

    async def _idle(self, now: float) -> None:
        timeout = self._poll_interval
        while self._retry_times and self._retry_times[0] <= now:
            heapq.heappop(self._retry_times)
        if self._retry_times:
            timeout = min(timeout, self._retry_times[0] - now)
        # Not asyncio.wait_for: on 3.11 it can swallow a cancel that races the wake-up.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._wake.wait()

    def _spawn(self, delivery: Delivery) -> None:
        if delivery.event_id in self._inflight:
            log.warning(
                "webhooks: %s claimed again while in flight (outbox lease too short?)", delivery.event_id
            )
            return
        task = asyncio.create_task(self._attempt(delivery), name=f"webhook {delivery.event_id}")
        self._inflight[delivery.event_id] = task

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            t0 = time.perf_counter()
            result = await self._post(delivery)
            if self.on_attempt is not None:
                ok = result.status is not None and 200 <= result.status < 300
                lag = self._clock() - delivery.created_at if ok else None
                self.on_attempt(result.status, time.perf_counter() - t0, lag)
            await self._record(delivery, result)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "webhooks: recording the outcome of %s failed; it goes out again when its claim expires",
                delivery.event_id,
            )
        finally:
            # Here, not in a done callback: once the outcome is recorded the outbox may
            # hand this delivery out again, and the loop must not see it as in flight.
            if self._inflight.get(delivery.event_id) is asyncio.current_task():
                del self._inflight[delivery.event_id]
            self._wake.set()  # a slot is free, and the call's next sequence may be claimable

    async def _post(self, d: Delivery) -> _Result:
        http = self._http
        assert http is not None, "start() makes the client"
        creds = self._credentials
        stamp = int(self._clock())
        params = tencent_query(
            sdk_app_id=creds.sdk_app_id,
            command=d.command,
            token=creds.token,
            request_time=stamp,
            extra=parse_qsl(d.query, keep_blank_values=True),
        )
        headers = {"Content-Type": "application/json"}
        headers.update(standard_headers(creds.secrets, d.event_id, stamp, d.body))
        url = d.url + ("&" if urlsplit(d.url).query else "?") + urlencode(params, quote_via=quote)
        self.stats.attempts += 1
        try:
            async with asyncio.timeout(self._total_timeout):
                resp = await http.post(url, d.body, headers)
        except TimeoutError:
            return _Result(
                None,
                f"timed out (connect {self._connect_timeout:g} s, total {self._total_timeout:g} s)",
            )
        except (OSError, ValueError) as exc:
            return _Result(None, f"{type(exc).__name__}: {exc}")
        status = resp.status
        if 200 <= status < 300:
            return _Result(status)
        if 300 <= status < 400:
            where = resp.headers.get("location", "?")
            error = f"HTTP {status} redirect to {where} not followed; configure the final url"
            return _Result(status, error)
        snippet = resp.body[:200].decode("utf-8", "replace").strip()
        parts = (f"HTTP {status}", resp.reason, snippet and f"({snippet})")
        error = " ".join(part for part in parts if part)
        retry_after = (
            _retry_after(resp.headers.get("retry-after"), self._clock()) if status in (429, 503) else None
        )
        return _Result(status, error, retry_after)

    async def _record(self, d: Delivery, result: _Result) -> None:
        now = self._clock()
        status = result.status
        if status is not None and 200 <= status < 300:
            self.stats.delivered += 1
            log.debug(
                "webhooks: %s (%s, call %s #%d) delivered", d.event_id, d.command, d.call_id, d.sequence
            )
            await self._outbox.mark_delivered(d.event_id, now, status)
            return
        if status == 410:
            self.stats.endpoints_gone += 1
            # One step: count this attempt (its status and error stay for operators),
            # finish it as gone, and drop everything pending there.
            dropped = await self._outbox.mark_endpoint_gone(
                d.url, now, event_id=d.event_id, status=status, error=result.error
            )
            log.warning(
                "webhooks: %s answered 410 Gone: dropped %d pending deliveries to it; nothing more is "
                "sent there until the callback url is set again",
                d.url,
                dropped,
            )
            return
        self.stats.failed_attempts += 1
        not_before = now + result.retry_after if result.retry_after is not None else None
        next_at = self._schedule.next_attempt(
            d.attempts + 1, now, self._rng, created_at=d.created_at, not_before=not_before
        )
        await self._outbox.mark_failed(d.event_id, now, status, result.error, next_at)
        if next_at is None:
            self.stats.given_up += 1
            log.warning(
                "webhooks: gave up on %s (%s, call %s #%d) to %s after %d attempts: %s",
                d.event_id,
                d.command,
                d.call_id,
                d.sequence,
                d.url,
                d.attempts + 1,
                result.error,
            )
        else:
            heapq.heappush(self._retry_times, next_at)
            log.info(
                "webhooks: %s to %s failed (attempt %d: %s); retry in %.1f s",
                d.event_id,
                d.url,
                d.attempts + 1,
                result.error,
                next_at - now,
            )


def _retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds, or an HTTP date
    (RFC 9110) counted from ``now`` (unix s; default the current time). None when
    absent or unreadable; never negative."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
