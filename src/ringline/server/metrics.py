"""Prometheus metrics: ``ringline serve --metrics`` serves them at ``GET /metrics``.

One :class:`Metrics` per server process, on a registry of its own (never the global
one, so several servers in one process never mix). The server's parts report to it
through plain method calls (:meth:`Metrics.call_fact`, :meth:`Metrics.request_done`,
:meth:`Metrics.commit` …), so the hub, the WebSocket handler and the deliverer do not
import ``prometheus_client`` themselves. Values that are a reading of the present (live
calls, devices, queued pushes, the outbox by state) are read when Prometheus scrapes,
not kept up to date on every change: :meth:`Metrics.render` takes a fresh reading.

Every metric is listed, with its labels and meaning, in docs/operations.md; the Grafana
dashboard in ``contrib/grafana/ringline.json`` only queries metrics named here (a test
checks it).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .. import __version__

__all__ = ["CONTENT_TYPE", "Metrics", "Reading"]

#: The ``Content-Type`` of :meth:`Metrics.render`'s text.
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Request handling is sub-millisecond when the store keeps up; commits are milliseconds.
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Callback lag: from the event to the receiver's answer (retries included).
_LAG = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(slots=True)
class Reading:
    """The present, as read at a scrape (see :meth:`Metrics.render`)."""

    live_calls: int = 0
    devices: int = 0
    sessions: int = 0
    connections: int = 0
    push_queue: int = 0
    outbox: Mapping[str, int] = field(default_factory=dict)
    """Callbacks in the durable outbox by state (``pending``, ``in_flight``, …)."""
    oldest_pending_age: float = 0.0
    """Seconds the oldest undelivered callback has waited (0: none waits)."""
    callback_workers: int = 0
    owner: int = 1
    """1 if this node owns the calls (always on a single node), 0 on a cluster's edge."""
    epoch: int = 0
    """The cluster lease epoch of the node that owns the calls (0: a single node)."""
    relayed: int = 0
    """Client WebSockets this cluster edge relays to the owner now."""


class _Present(Collector):
    """Gauges of :class:`Reading`, taken fresh at every scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        r = self._metrics.reading
        yield GaugeMetricFamily(
            "ringline_live_calls", "Calls in progress (ringing or connected) now.", r.live_calls
        )
        yield GaugeMetricFamily(
            "ringline_devices", "Devices logged in now (connected or within heartbeat grace).", r.devices
        )
        yield GaugeMetricFamily("ringline_sessions", "Sessions the server holds now (resumable).", r.sessions)
        yield GaugeMetricFamily(
            "ringline_connections", "WebSocket connections with a logged-in session now.", r.connections
        )
        yield GaugeMetricFamily(
            "ringline_push_queue_depth", "Frames queued for sending, all connections together.", r.push_queue
        )
        outbox = GaugeMetricFamily(
            "ringline_outbox_callbacks", "Callbacks in the durable outbox, by state.", labels=["state"]
        )
        for state, n in sorted(r.outbox.items()):
            outbox.add_metric([state], n)
        yield outbox
        yield GaugeMetricFamily(
            "ringline_callback_oldest_pending_seconds",
            "How long the oldest undelivered callback has waited (0: none waits).",
            r.oldest_pending_age,
        )
        yield GaugeMetricFamily(
            "ringline_callback_workers",
            "Callback worker processes running (0: the server delivers itself).",
            r.callback_workers,
        )
        yield GaugeMetricFamily(
            "ringline_cluster_owner",
            "1 if this node owns the calls (a single node always does), 0 on a cluster's edge.",
            r.owner,
        )
        yield GaugeMetricFamily(
            "ringline_cluster_epoch",
            "The lease epoch of the node owning the calls (0: a single node).",
            r.epoch,
        )
        yield GaugeMetricFamily(
            "ringline_cluster_relayed_connections",
            "Client WebSockets this cluster edge relays to the owning node now.",
            r.relayed,
        )

    def describe(self) -> Iterable[Metric]:
        return []


class Metrics:
    """The metrics of one server process. ``node_id`` labels ``ringline_node_info``."""

    def __init__(self, node_id: str = "") -> None:
        self.registry = r = CollectorRegistry()
        self.reading = Reading()
        self._read: Callable[[], Awaitable[Reading]] | None = None
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, …
        info = Gauge(
            "ringline_node_info",
            "This server: its version and node id (value 1).",
            ["version", "node_id"],
            registry=r,
        )
        info.labels(__version__, node_id).set(1)
        self.started = Gauge("ringline_start_time_seconds", "Unix time the server started.", registry=r)
        self.started.set(time.time())
        self.calls_started = Counter(
            "ringline_calls_started", "Calls placed (each call once).", ["media_type", "kind"], registry=r
        )
        self.calls_ended = Counter(
            "ringline_calls_ended",
            "Calls ended, by end reason (CallEndReason) and result (the record's CallResult).",
            ["reason", "result"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "ringline_request_duration_seconds",
            "WebSocket requests: from the frame's arrival to its answer (durable first), by op.",
            ["op"],
            buckets=_FAST,
            registry=r,
        )
        self.refused = Counter(
            "ringline_requests_refused",
            "Requests answered with an error, by op and error code.",
            ["op", "code"],
            registry=r,
        )
        self.rest_seconds = Histogram(
            "ringline_rest_request_duration_seconds",
            "Admin REST requests, by command and HTTP status.",
            ["command", "status"],
            buckets=_FAST,
            registry=r,
        )
        self.closed = Counter(
            "ringline_connections_closed", "WebSocket connections ended, by close code.", ["code"], registry=r
        )
        self.resumes = Counter(
            "ringline_resumes", "Resume requests, by outcome (resumed, or refused).", ["outcome"], registry=r
        )
        self.replayed = Counter(
            "ringline_replayed_events",
            "Events sent again to a resumed session (it had not acknowledged them).",
            registry=r,
        )
        self.commit_seconds = Histogram(
            "ringline_store_commit_seconds",
            "Group commits of the store: time per transaction.",
            buckets=_FAST,
            registry=r,
        )
        self.batch_writes = Histogram(
            "ringline_store_batch_writes",
            "Group commits of the store: writes per transaction.",
            buckets=_SIZES,
            registry=r,
        )
        self.commit_failures = Counter(
            "ringline_store_commit_failures", "Transactions the store failed or refused.", registry=r
        )
        self.callback_seconds = Histogram(
            "ringline_callback_delivery_seconds",
            "Callback HTTP requests: time to the receiver's answer.",
            buckets=_FAST,
            registry=r,
        )
        self.callback_lag = Histogram(
            "ringline_callback_lag_seconds",
            "Callbacks delivered: from the event to the receiver's 2xx (retries included).",
            buckets=_LAG,
            registry=r,
        )
        self.callback_responses = Counter(
            "ringline_callback_responses",
            'Callback attempts, by the receiver\'s HTTP status ("error": no answer: timeout, refused).',
            ["status"],
            registry=r,
        )
        r.register(_Present(self))

    # -- what the server reports

    def call_fact(self, kind: str, data: Mapping[str, object]) -> None:
        """A call started (``kind == "start"``) or ended (``"end"``; ``data["record"]``
        is its :class:`~ringline.core.records.CallRecord`)."""
        if kind == "start":
            call = data.get("call")
            media, group = "audio", False
            if isinstance(call, Mapping):
                media = "video" if int(str(call.get("media_type", 1))) == 2 else "audio"
                group = bool(call.get("chat_group_id")) or int(str(call.get("user_count", 2))) > 2
            self.calls_started.labels(media, "group" if group else "1v1").inc()
        elif kind == "end":
            record = data.get("record")
            reason = getattr(getattr(record, "end_reason", None), "name", "UNKNOWN")
            result = getattr(getattr(record, "result", None), "value", "Unknown")
            self.calls_ended.labels(str(reason), str(result)).inc()

    def request_done(self, op: str, seconds: float, code: int = 0) -> None:
        """A WebSocket request was answered after ``seconds``; ``code`` ≠ 0: refused with it."""
        self.request_seconds.labels(op).observe(seconds)
        if code:
            self.refused.labels(op, str(code)).inc()

    def commit(self, seconds: float, writes: int, ok: bool) -> None:
        """The store committed (or failed) one transaction of ``writes`` writes."""
        self.commit_seconds.observe(seconds)
        self.batch_writes.observe(writes)
        if not ok:
            self.commit_failures.inc()

    def callback_attempt(self, status: int | None, seconds: float, lag: float | None) -> None:
        """One callback request: the receiver's ``status`` (None: no answer) after
        ``seconds``; ``lag`` (event → now) when it was delivered."""
        self.callback_responses.labels("error" if status is None else str(status)).inc()
        self.callback_seconds.observe(seconds)
        if lag is not None:
            self.callback_lag.observe(max(0.0, lag))

    # -- the scrape

    def read_with(self, read: Callable[[], Awaitable[Reading]]) -> None:
        """How to take a :class:`Reading` of the present at each scrape."""
        self._read = read

    async def render(self) -> bytes:
        """The text exposition of every metric, with a fresh reading of the present."""
        if self._read is not None:
            self.reading = await self._read()
        return generate_latest(self.registry)
