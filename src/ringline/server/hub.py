"""The asyncio driver of the switchboard: sessions, timers, persistence, delivery.

Every input goes through :meth:`Hub.submit`. The core turns it into actions; the hub
queues them as one *batch* and a single flusher task performs batches strictly in
order::

    input ─► Switchboard.handle ─► batch(writes, response, actions)
                                        │
            flusher: store.apply(all writes of all queued batches)  ← one transaction
                     then for each batch, in order: response, pushes, timers, closes

So nothing is sent before what caused it is durable (records before terminal
events, docs/spec.md §6.8), a request's response precedes the pushes it caused, and pushes keep
their order per device. A batch without writes, with nothing queued ahead of it, is
performed at once.

A batch the store refuses (a *poison* batch: a value the database cannot hold, a
constraint it breaks) fails alone: the flusher retries the others, each batch in its
own transaction, and for the refused one never answers OK and holds its pushes back
(see :meth:`Hub._refuse_batch` for what the switchboard is made to forget). Only a
store that takes no write at all holds everything back until it is back.

Sessions: a session outlives its WebSocket for ``heartbeat_grace`` seconds so that a
device can ``resume`` and get every unacknowledged push again, in order. A session
silent for longer is *gone*: the core hears :class:`DeviceGone`, and from then on only
terminal events for that device are kept (its *mailbox*), delivered when it logs in
again with the same device id. A session itself (its pushes, its connection, the
answers it was given) is :class:`~.session.Session`; the hub never touches a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import machine as m
from ..core.errors import ErrorCode, LocalCallError
from ..core.protocol import OWED_EVENTS
from ..core.records import CallRecord
from ..core.transitions import MemberState
from .callbacks import (
    V4_RECORDING_FAILED,
    V4_RECORDING_READY,
    CallbackTargets,
    Origin,
    plan_deliveries,
    plan_recording_callback,
)
from .config import Settings
from .recording import Job, RecordingJobs
from .session import Cork, Session, dumps
from .sfu import JanusClient, RoomPlan, SfuRooms
from .store import base as st
from .webhooks.delivery import Delivery

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["Hub", "record_to_recent"]

log = logging.getLogger("ringline.server")

MAILBOX_MAX = 100
#: The recordings folder's sub-folder Janus writes the calls' ``.mjr`` files into.
MJR_FOLDER = "mjr"
#: Seconds between a recorded room's end and its conversion (Janus closes its files).
RECORDING_SETTLE = 2.0


#: Called, instead of the answer, when the store refused a request's writes: with a
#: message for the client that says what happened and what to do.
Refused = Callable[[str], None]


@dataclass(slots=True)
class _Batch:
    writes: list[st.Write]
    respond: Callable[[], None] | None
    actions: list[m.Action]
    refused: Refused | None = None
    #: puts back what the batch changed in memory outside the switchboard
    undo: Callable[[], None] | None = None
    #: the call this batch started (a ``calls`` request's new call)
    created: str | None = None
    #: the call facts it holds (counted in the metrics once durable)
    facts: list[m.CallFact] | None = None


class Hub:
    """Owns the switchboard, the sessions and the timers. Start with :meth:`start`,
    stop with :meth:`close` (idempotent)."""

    def __init__(self, settings: Settings, store: st.Store, *, sdk_app_id: int) -> None:
        self.settings = settings
        self.store = store
        self.sb = m.Switchboard(sdk_app_id=sdk_app_id, sig_grace=settings.sig_grace)
        self.sessions: dict[str, Session] = {}
        self.by_device: dict[str, Session] = {}
        self.mailbox: dict[str, list[tuple[float, str, dict[str, Any]]]] = {}
        self._timers: dict[tuple[str, ...], asyncio.TimerHandle] = {}
        self._pending: deque[_Batch] = deque()
        #: in while batches are performed: a connection writes its frames of the round
        #: at once, at its end (session.Cork)
        self.cork = Cork()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.stats = {"inputs": 0, "batches": 0, "writes": 0, "facts": 0, "callbacks_queued": 0}
        self.callback_configs: dict[str, dict[str, Any] | None] = {"v4": None, "v1": None}
        self.callback_targets = CallbackTargets()
        self.on_callbacks_queued: Callable[[], None] | None = None
        """Called after a batch that queued callbacks is durable (the server wakes its
        deliverer here)."""
        self.metrics: Metrics | None = None
        """Where to count calls and commits (``ringline serve --metrics``), or None."""
        self.sfu: SfuRooms | None = None
        """The calls' SFU rooms (``--sfu``, docs/sfu.md), or None: group calls are a mesh."""
        self.recordings: RecordingJobs | None = None
        """The recordings' conversions (with ``--sfu``, docs/recording.md); made and run by
        :meth:`start` (once the callback configuration is loaded: a job that failed for
        good while the server was stopped is reported then)."""
        if settings.sfu_urls:
            rec = settings.recordings_path
            self.sfu = SfuRooms(
                [JanusClient(url, settings.sfu_secret) for url in settings.sfu_urls],
                settings.sfu_secret,
                min_members=settings.sfu_min_members,
                plan=self._sfu_plan,
                push=self._sfu_push,
                push_feed=self._sfu_push_feed,
                rec_root=rec / MJR_FOLDER,
                on_recording=self._recording_changed,
                push_recording=self._push_recording,
                on_recorded=self._recorded,
                # a cluster node acts on rooms only while it owns the calls
                may_act=lambda: self.lease_ok is None or self.lease_ok(),
            )
        self.lease_ok: Callable[[], bool] | None = None
        """Set on a cluster node that owns the calls (docs/cluster.md): False once its
        lease may have run out, and from then on every input is refused, so that a node
        paused past its lease acts on nothing before it has stepped down."""

    def connections(self) -> int:
        """Sessions with a connection attached now."""
        return sum(1 for s in self.sessions.values() if s.link is not None)

    def queued_frames(self) -> int:
        """Frames waiting for their connection's writer, all sessions together."""
        return sum(s.queued() for s in self.sessions.values())

    # ------------------------------------------------------------------ lifecycle

    async def start(self, handover: dict[str, Any] | None = None) -> None:
        """Restore profiles, groups, live calls and sessions from the store, then start
        the background tasks (flusher, heartbeat sweeper, alive marker).

        ``handover``: what the node that owned the calls before handed over when it left
        (:meth:`handover`): the sessions' unacknowledged pushes and kept answers and the
        devices' mailboxes, so that devices resuming here lose and repeat nothing."""
        now = time.time()
        for kind in self.callback_configs:
            self.callback_configs[kind] = await self.store.get_callback_config(kind)
        self._retarget()
        for cid, group in (await self.store.load_groups()).items():
            self.sb.groups[cid] = frozenset(group)
        # Every saved profile, at once: one small entry (≤ 2.5 KB) per user with a
        # non-empty profile, which the switchboard keeps in memory anyway once set.
        self.sb.load_profiles(await self.store.load_profiles())
        rows = await self.store.load_sessions()
        live = await self.store.load_live_calls()
        last_alive = await self.store.last_alive()
        logins: list[m.Login] = []
        for r in rows:
            s = Session(
                token=r.token,
                device_id=r.device_id,
                user_id=r.user_id,
                multi_device=r.multi_device,
                sig_expires_at=r.sig_expires_at,
                created_at=r.created_at,
                # A second longer than the recovery deadline, so that calls nobody
                # came back to end as END_BY_SERVER, not as OFFLINE.
                last_seen=now + 1.0,
                restored=True,
            )
            self.sessions[s.token] = s
            self.by_device[s.device_id] = s
            logins.append(m.Login(r.device_id, r.user_id, r.multi_device, r.sig_expires_at))
        if handover:
            self._take_over(handover)
        snaps = [json.loads(snap) for _, snap, _ in live]
        actions = self.sb.restore(snaps, logins, now)
        self._perform(actions)
        if live:
            last_known = max([last_alive or 0.0, *(u for _, _, u in live)])
            log.warning(
                "restored %d live calls and %d sessions; calls whose devices do not "
                "come back within %.0f s end as END_BY_SERVER",
                len(live),
                len(rows),
                self.settings.heartbeat_grace,
            )
            self._arm(("recovery", str(last_known)), now + self.settings.heartbeat_grace)
        self._tasks.append(asyncio.create_task(self._flusher(), name="ringline-flusher"))
        self._tasks.append(asyncio.create_task(self._sweeper(), name="ringline-sweeper"))
        if self.sfu is not None:
            self.sfu.restored(list(self.sb.calls))
            self._tasks.append(asyncio.create_task(self._sfu_reap(), name="ringline-sfu-reap"))
        if self.sfu is not None:
            self.recordings = RecordingJobs(
                self.settings.recordings_path,
                on_ready=self._recording_ready,
                on_failed=self._recording_failed,
                delete_source=True,
            )
            self._leftover_recordings()
            self._tasks.append(asyncio.create_task(self.recordings.run(), name="ringline-recordings"))
            if self.settings.recording_retention_days > 0:
                self._tasks.append(
                    asyncio.create_task(self._retention(), name="ringline-recording-retention")
                )

    async def close(self) -> None:
        """Drain: perform every queued batch, mark the time, close every connection
        with 1001 (devices resume after a restart), stop the tasks."""
        if self._closing:
            return
        self._closing = True
        await self.drain()
        with contextlib.suppress(Exception):
            await self.store.apply([st.AliveWrite(time.time())])
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        for s in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await s.disconnect(1001, "server shutting down; resume later")
        if self.sfu is not None:
            await self.sfu.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def handover(self) -> dict[str, Any]:
        """What the next owner of the calls needs beyond the store (JSON-ready): per
        session its push numbering, unacknowledged pushes, kept answers, address and
        platform; the mailboxes. Call after :meth:`drain`, once no input comes in."""
        sessions: dict[str, Any] = {}
        for s in self.sessions.values():
            a = s.answers
            sessions[s.token] = {
                "seq": s.seq,
                "buffer": [list(p) for p in s.buffer],
                "answers": None
                if a is None
                else {"done": [[rid, *a.done[rid]] for rid in a.order], "floor": a.floor},
                "client_ip": s.client_ip,
                "platform": s.platform,
            }
        mailbox = {dev: [list(e) for e in box] for dev, box in self.mailbox.items()}
        return {"sessions": sessions, "mailbox": mailbox}

    def _take_over(self, handover: dict[str, Any]) -> None:
        """Apply a :meth:`handover` to the sessions just restored."""
        for token, h in (handover.get("sessions") or {}).items():
            s = self.sessions.get(token)
            if s is None:
                continue
            s.seq = int(h["seq"])
            s.buffer = [(int(q), str(n), dict(a)) for q, n, a in h["buffer"]]
            answers = h.get("answers")
            if answers is not None:
                kept = s.keep_answers()
                for rid, fingerprint, text in answers["done"]:
                    kept.keep(int(rid), int(fingerprint), str(text))
                if answers["floor"] is not None:
                    kept.floor = max(kept.floor or 0, int(answers["floor"]))
            s.client_ip, s.platform = str(h["client_ip"]), str(h["platform"])
            s.handed_over = True
        for dev, box in (handover.get("mailbox") or {}).items():
            self.mailbox[dev] = [(float(t), str(n), dict(a)) for t, n, a in box]

    async def abandon(self, code: int, message: str) -> None:
        """Stop at once without writing anything (the store would refuse it): a cluster
        node that lost its lease. Timers and tasks stop, every connection is closed with
        ``code`` (devices resume on the node that owns the calls now)."""
        self._closing = True
        self.lease_ok = lambda: False
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for s in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await s.disconnect(code, message)
        if self.sfu is not None:
            await self.sfu.close()

    async def drain(self) -> None:
        """Wait until every queued batch has been performed."""
        # Not only queued batches: the flusher may be mid-write with batches it took.
        while self._pending or not self._idle.is_set():
            self._wake.set()
            await self._idle.wait()

    # ------------------------------------------------------------------ inputs

    def submit(
        self,
        inp: m.Input,
        *,
        respond: Callable[[Any], None] | None = None,
        writes: list[st.Write] | None = None,
        before: Callable[[], None] | None = None,
        not_before: float = 0.0,
        refused: Refused | None = None,
        origin: Origin | None = None,
    ) -> Any:
        """Run one input through the core and queue what it causes.

        ``respond(value)`` is called with the request's value once the batch is
        durable, before its pushes; ``before()`` runs right after ``respond``.
        If the store refuses the batch, neither runs: ``refused(message)`` is called
        instead (answer the request with -1406 and that message), and its pushes are
        held back (see :meth:`_refuse_batch`).
        Raises :class:`LocalCallError` (nothing queued) if the core refuses.
        ``not_before``: a timer's due time (the loop may fire a hair early).
        ``origin``: who caused it, for the callbacks' ``ClientIP`` / ``OptPlatform``
        (default: the sending device's session, see :meth:`_origin`).
        """
        if self.lease_ok is not None and not self.lease_ok():
            raise LocalCallError(
                ErrorCode.SERVER_SHUTTING_DOWN,
                "this node no longer owns the calls (its cluster lease ran out); "
                "reconnect and resume: another node serves them",
            )
        now = max(time.time(), not_before)
        undo = self._profile_undo(inp) if isinstance(inp, m.SetSelfInfo) else None
        value, actions = self.sb.request(inp, now)
        if origin is None and any(isinstance(a, m.Notify) for a in actions):
            origin = self._origin(inp)
        self.stats["inputs"] += 1
        batch_writes = list(writes or ())
        rest: list[m.Action] = []
        facts: list[m.CallFact] | None = None
        for a in actions:
            if isinstance(a, m.Persist):
                w = self._write_for(a.what)
                if w is not None:
                    batch_writes.append(w)
            elif isinstance(a, m.Notify):
                # Callbacks go into the outbox in the same transaction as the change.
                self.stats["facts"] += 1
                if self.metrics is not None and a.fact.kind in ("start", "end"):
                    facts = [*(facts or ()), a.fact]
                deliveries = plan_deliveries(a.fact, self.callback_targets, origin=origin)
                if deliveries:
                    batch_writes.append(st.DeliveriesWrite(tuple(deliveries)))
                    self.stats["callbacks_queued"] += len(deliveries)
            else:
                rest.append(a)

        def do_respond() -> None:
            if respond is not None:
                respond(value)
            if before is not None:
                before()

        created = value if isinstance(inp, m.PlaceCall) and value == inp.new_call_id else None
        self._enqueue(_Batch(batch_writes, do_respond, rest, refused, undo, created, facts))
        return value

    def _origin(self, inp: m.Input) -> Origin:
        """Who caused what ``inp`` does, for the callbacks' ``ClientIP`` / ``OptPlatform``:
        the device that sent it (its address and platform), an admin command
        (``RESTAPI``; pass ``origin`` to :meth:`submit` for the admin's address), or the
        server itself (a timer, a recovery: no address, ``Unknown``)."""
        if isinstance(inp, m.AdminEndCall):
            return Origin("", "RESTAPI")
        device_id = getattr(inp, "device_id", None)
        s = self.by_device.get(device_id) if isinstance(device_id, str) else None
        if s is None:
            return Origin("", "Unknown")
        return Origin(s.client_ip, s.platform)

    def _profile_undo(self, inp: m.SetSelfInfo) -> Callable[[], None] | None:
        """What puts the user's profile back if the store refuses the new one."""
        dev = self.sb.devices.get(inp.device_id)
        if dev is None:
            return None  # the core refuses the request itself
        user, old = dev.user_id, self.sb.profiles.get(dev.user_id)

        def undo() -> None:
            if old is None:
                self.sb.profiles.pop(user, None)
            else:
                self.sb.profiles[user] = old

        return undo

    def enqueue_write(
        self, write: st.Write, respond: Callable[[], None], refused: Refused | None = None
    ) -> None:
        """Persist one write in order with everything else; then call ``respond``, or
        ``refused(message)`` if the store refuses it (the write did not happen).

        A :class:`~.store.CallbackConfigWrite` takes effect for every call event from
        now on (their callbacks are planned with it), and setting a url again makes a
        url that answered ``410 Gone`` receive callbacks again. If the store refuses
        it, the configuration before it comes back.
        """
        writes: list[st.Write] = [write]
        undo: Callable[[], None] | None = None
        if isinstance(write, st.CallbackConfigWrite):
            kind, old = write.kind, self.callback_configs.get(write.kind)

            def undo() -> None:
                if self.callback_configs.get(kind) is write.config:
                    self.callback_configs[kind] = old
                    self._retarget()

            self.callback_configs[write.kind] = write.config
            self._retarget()
            if write.config is not None:
                url = write.config.get("Url") or write.config.get("address")
                if url:
                    writes.append(st.EndpointRevive(str(url)))
        self._enqueue(_Batch(writes, respond, [], refused, undo))

    def _retarget(self) -> None:
        self.callback_targets = CallbackTargets.from_configs(
            self.callback_configs.get("v4"), self.callback_configs.get("v1")
        )

    def _write_for(self, what: m.SaveCall | m.FinishCall | m.SetGroup | m.SaveProfile) -> st.Write | None:
        if isinstance(what, m.SaveCall):
            if what.snapshot.get("ephemeral"):
                return None  # ephemeral calls leave no trace, not even a snapshot
            return st.LiveCallWrite(what.call_id, dumps(what.snapshot), what.at)
        if isinstance(what, m.FinishCall):
            if what.ephemeral:
                return None
            return st.FinishedCallWrite(what.record, what.user_results)
        if isinstance(what, m.SaveProfile):
            return st.ProfileWrite(what.user_id, what.nickname, what.avatar, what.at)
        return st.GroupMembersWrite(what.group_id, what.members)

    def _enqueue(self, batch: _Batch) -> None:
        if not batch.writes and not self._pending:
            with self.cork:
                self._run_batch(batch)
            return
        self._pending.append(batch)
        self._idle.clear()
        self._wake.set()

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                self._idle.set()
                continue
            batches = list(self._pending)
            self._pending.clear()
            outcomes = await self._persist(batches)
            self.stats["batches"] += 1
            if self.on_callbacks_queued is not None and any(
                isinstance(w, st.DeliveriesWrite) and err is None
                for b, err in zip(batches, outcomes, strict=True)
                for w in b.writes
            ):
                self.on_callbacks_queued()
            with self.cork:
                for b, err in zip(batches, outcomes, strict=True):
                    if err is None:
                        self._run_batch(b)
                    else:
                        self._refuse_batch(b, err)
            if not self._pending:
                self._idle.set()

    async def _persist(self, batches: list[_Batch]) -> list[BaseException | None]:
        """Make the writes of ``batches`` durable, in one transaction if possible;
        return per batch None (durable) or the error the store refused it with.

        If the merged transaction fails because of what it holds (the store refuses
        its values: :func:`~.store.base.refuses_values`), every batch is written again
        on its own (the store's group commit gives each its own transaction when they
        cannot share one): a refused batch fails alone and the others are kept. Any
        other failure is the store's own trouble: retry with backoff, holding every
        event back (durability first). A failure that persists three times while the
        store still takes a trivial write counts as a refusal, so that one batch cannot
        stall everyone.
        """
        outcomes: list[BaseException | None] = [None] * len(batches)
        todo = [i for i, b in enumerate(batches) if b.writes]
        committed: list[int] = []  # batches kept while others wait for another try
        delay = 0.05
        failures = 0
        while todo:
            writes = _coalesce([w for i in todo for w in self._writes_after(batches, i, committed)])
            t0 = time.perf_counter()
            try:
                await self.store.apply(writes)
                self.stats["writes"] += len(writes)
                if self.metrics is not None:
                    self.metrics.commit(time.perf_counter() - t0, len(writes), ok=True)
                return outcomes
            except Exception as exc:
                error: BaseException = exc
                if self.metrics is not None:
                    self.metrics.commit(time.perf_counter() - t0, len(writes), ok=False)
            failures += 1
            refused = st.refuses_values(error)
            stuck = not refused and failures >= 3 and await self._store_alive()
            if refused or stuck:
                if len(todo) == 1:
                    alone: list[BaseException | None] = [error]
                else:
                    each = [_coalesce(self._writes_after(batches, i, committed)) for i in todo]
                    alone = await asyncio.gather(*map(self.store.apply, each), return_exceptions=True)
                retry: list[int] = []
                for i, r in zip(todo, alone, strict=True):
                    if r is None:
                        committed.append(i)
                        self.stats["writes"] += len(batches[i].writes)
                    elif stuck or st.refuses_values(r):
                        outcomes[i] = r
                    else:
                        retry.append(i)
                todo = retry
                if not todo:
                    return outcomes
            log.error(
                "the store takes no writes (%d failures, last: %s); holding every event back, "
                "retrying in %.2f s",
                failures,
                _cause(error),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        return outcomes

    @staticmethod
    def _writes_after(batches: list[_Batch], i: int, committed: list[int]) -> list[st.Write]:
        """The writes of batch ``i``, written after the ``committed`` ones: without the
        snapshots of calls that a later committed batch saved or finished (an older
        snapshot must not replace a newer one)."""
        later = {
            w.call_id if isinstance(w, st.LiveCallWrite) else w.record.call_id
            for j in committed
            if j > i
            for w in batches[j].writes
            if isinstance(w, st.LiveCallWrite | st.FinishedCallWrite)
        }
        if not later:
            return batches[i].writes
        return [w for w in batches[i].writes if not (isinstance(w, st.LiveCallWrite) and w.call_id in later)]

    async def _store_alive(self) -> bool:
        try:
            await self.store.apply([st.AliveWrite(time.time())])
        except Exception:
            return False
        return True

    def _refuse_batch(self, batch: _Batch, error: BaseException) -> None:
        """The store refused ``batch``: it did not happen, and nothing says it did.

        - Its request is not answered OK: ``refused(message)`` answers it with the cause.
        - Its pushes are held back, except terminal events (a call the switchboard has
          already ended cannot go on; its members must hear that it is over, even
          though its record is lost).
        - Memory follows the store: values the batch changed outside the switchboard
          are put back (``undo``: a profile, a callback configuration). A call the
          batch started is forgotten without a trace (nobody was told of it, and the
          request that started it is refused: no events, no record, no callbacks).
          Any other live call whose snapshot the store refused is ended by the server
          (END_BY_SERVER, as an operator's end: its members hear it and it gets its
          record), since its new state could be neither kept nor told.
        - A refused request closes no other device (a login does not push out the
          user's other devices): the switchboard takes them back. Timers, and the
          closes of a refused batch that is no request (a timer's), are performed as
          usual: they follow the switchboard, which the call's end then cleans up.
        """
        cause = _cause(error)
        kinds = ", ".join(sorted({type(w).__name__ for w in batch.writes}))
        calls = sorted(
            {w.call_id for w in batch.writes if isinstance(w, st.LiveCallWrite)}
            | {w.record.call_id for w in batch.writes if isinstance(w, st.FinishedCallWrite)}
        )
        log.error(
            "the store refused a batch (%s; writes: %s; calls: %s): its request is refused "
            "and its pushes are held back",
            cause,
            kinds,
            ", ".join(calls) or "-",
        )
        if batch.refused is not None:
            try:
                batch.refused(
                    f"the server could not save this request, so it did not take effect "
                    f"(the store refused it: {cause}); check the values sent, or try again"
                )
            except Exception:  # pragma: no cover - a refused callback must not break delivery
                log.exception("refused callback failed")
        if batch.undo is not None:
            batch.undo()
        # A refused request closes nobody (a login does not push out the user's other
        # devices): the switchboard, which let them go, takes them back.
        kept: set[str] = set()
        if batch.refused is not None:
            kept = {a.device_id for a in batch.actions if isinstance(a, m.CloseDevice)}
        self._perform(
            [
                a
                for a in batch.actions
                if not (isinstance(a, m.Emit) and not a.terminal)
                and not (isinstance(a, m.CloseDevice) and a.device_id in kept)
            ]
        )
        for device_id in kept:
            s = self.by_device.get(device_id)
            if s is not None and not s.closed:
                try:
                    self.submit(m.Login(s.device_id, s.user_id, s.multi_device, s.sig_expires_at))
                except LocalCallError:  # pragma: no cover - a device that is online may log in
                    log.exception("device %s: taking it back failed", device_id)
        for call_id in calls:
            if call_id not in self.sb.calls:
                continue
            try:
                if call_id == batch.created:
                    log.warning("call %s: forgotten, the store refused its start", call_id)
                    _, actions = self.sb.request(m.AdminEndCall(call_id, ""), time.time())
                    self._perform([a for a in actions if isinstance(a, m.SetTimer | m.CancelTimer)])
                else:
                    log.warning("call %s: ended by the server, its state could not be saved", call_id)
                    self.submit(m.AdminEndCall(call_id, ""))
            except LocalCallError:  # pragma: no cover - the call is live
                log.exception("ending call %s failed", call_id)

    def _run_batch(self, batch: _Batch) -> None:
        if batch.facts and self.metrics is not None:
            for fact in batch.facts:
                self.metrics.call_fact(fact.kind, fact.data)
        if batch.respond is not None:
            try:
                batch.respond()
            except Exception:  # pragma: no cover - a respond callback must not break delivery
                log.exception("respond callback failed")
        self._perform(batch.actions)

    # ------------------------------------------------------------------ actions

    def _perform(self, actions: list[m.Action]) -> None:
        sfu = self.sfu
        for a in actions:
            if isinstance(a, m.Emit):
                self.deliver(a.device_id, a.name, a.args, a.terminal)
                if sfu is not None:
                    cid = a.args.get("call_id")
                    if isinstance(cid, str):
                        sfu.touch(cid)
            elif isinstance(a, m.SetTimer):
                self._arm(a.key, a.at)
            elif isinstance(a, m.CancelTimer):
                t = self._timers.pop(a.key, None)
                if t is not None:
                    t.cancel()
            elif isinstance(a, m.CloseDevice):
                s = self.by_device.get(a.device_id)
                if s is not None:
                    code = 4001 if a.code == ErrorCode.KICKED_OFFLINE else 4002
                    self.end_session(s, code, a.message)
            elif isinstance(a, m.Persist | m.Notify):
                pass  # only from restore(), which changes nothing to persist or call back

    def deliver(self, device_id: str, name: str, args: dict[str, Any], terminal: bool) -> None:
        s = self.by_device.get(device_id)
        if s is not None and not s.closed:
            s.push(name, args)
            if len(s.buffer) > self.settings.max_unacked:
                # Bounded memory: a device that never acknowledges is treated as gone
                # (what it is owed moves to its mailbox).
                log.warning("device %s: over %d unacknowledged pushes", device_id, len(s.buffer) - 1)
                self._drop(s, 4009, "too many unacknowledged pushes; send 'ack' in pings", gone=True)
                self.submit(m.DeviceGone(device_id), writes=[st.SessionDelete(s.token)])
        elif terminal:
            box = self.mailbox.setdefault(device_id, [])
            box.append((time.time(), name, args))
            del box[:-MAILBOX_MAX]

    def _arm(self, key: tuple[str, ...], at: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - time.time())
        self._timers[key] = loop.call_at(loop.time() + delay, self._fire, key, at)

    def _fire(self, key: tuple[str, ...], at: float) -> None:
        self._timers.pop(key, None)
        if self._closing:
            return
        try:
            if key[0] == "recovery":
                self.submit(m.RecoveryDeadline(float(key[1])))
            else:
                self.submit(m.TimerFired(key), not_before=at)
        except LocalCallError:  # pragma: no cover - timers are never refused
            log.exception("timer %s refused", key)

    # ------------------------------------------------------------------ SFU

    def _sfu_plan(self, call_id: str) -> RoomPlan | None:
        call = self.sb.calls.get(call_id)
        if call is None or call.phase is m.CallPhase.ENDED:
            return None
        connected = {
            mb.user_id: mb.active
            for mb in call.members.values()
            if mb.state is MemberState.CONNECTED and mb.active
        }
        capable = all(
            (sess := self.by_device.get(device)) is None or sess.sfu is not False
            for device in connected.values()
        )
        return RoomPlan(
            live=True,
            size=len(call.active_members()),
            connected=connected,
            capable=capable,
            record=call.recording,
        )

    def _sfu_push(self, device_id: str, call_id: str, info: dict[str, Any] | None) -> None:
        if not self._closing:
            self.deliver(device_id, "on_sfu", {"call_id": call_id, "sfu": info}, False)

    def _sfu_push_feed(self, device_id: str, call_id: str, user_id: str) -> None:
        if not self._closing:
            self.deliver(device_id, "on_sfu_feed", {"call_id": call_id, "user_id": user_id}, False)

    # ------------------------------------------------------------------ recording

    def set_recording(self, call_id: str, on: bool) -> bool:
        """Record a live call from now on (``on``) or stop recording it (admin REST,
        docs/recording.md); the call moves to the SFU if it was not in a room. False when
        it was already so. Raises :class:`LocalCallError` for a call that is not live or a
        server without an SFU. The change is saved with the call's snapshot."""
        call = self.sb.calls.get(call_id)
        if call is None or call.phase is m.CallPhase.ENDED:
            raise LocalCallError(ErrorCode.PARAM_INVALID, f"no live call {call_id!r}: check the call id")
        if self.sfu is None:
            raise LocalCallError(
                ErrorCode.REQUEST_REFUSED,
                "this server cannot record calls: recording needs an SFU (ringline serve --sfu)",
            )
        if call.recording == on:
            return False
        call.recording = on
        if not call.ephemeral:
            self._enqueue(
                _Batch([st.LiveCallWrite(call_id, dumps(call.to_snapshot()), time.time())], None, [])
            )
        self.sfu.touch(call_id)
        return True

    def _recording_changed(self, call_id: str, on: bool) -> set[str]:
        """Janus started or stopped recording the call: every connected device of every
        member hears ``on_recording``; the devices told."""
        told: set[str] = set()
        if self._closing:
            return told
        call = self.sb.calls.get(call_id)
        users = {mb.user_id for mb in call.active_members()} if call is not None else set()
        for s in list(self.sessions.values()):
            if s.user_id in users and not s.closed:
                self.deliver(s.device_id, "on_recording", {"call_id": call_id, "recording": on}, False)
                told.add(s.device_id)
        return told

    def _push_recording(self, device_id: str, call_id: str, on: bool) -> None:
        if not self._closing:
            self.deliver(device_id, "on_recording", {"call_id": call_id, "recording": on}, False)

    def _recorded(self, call_id: str, folder: Path) -> None:
        """A recorded call's room is gone: its ``.mjr`` files are converted (after a few
        seconds, for Janus to close them)."""
        if self.recordings is None:
            return
        if not any(folder.glob("*.mjr")):
            if any(folder.iterdir()):
                log.warning(
                    "call %s was to be recorded but Janus wrote nothing (no member published)", call_id
                )
            shutil.rmtree(folder, ignore_errors=True)
            return
        self.recordings.submit(call_id, folder, delay=RECORDING_SETTLE)
        log.info("call %s: recording queued for conversion", call_id)

    def _leftover_recordings(self) -> None:
        """At start: the ``.mjr`` folders of calls that are no longer live and have no job
        (the server stopped between a recorded call's end and its hand-over) are handed
        over now; empty ones go."""
        assert self.recordings is not None
        root = self.settings.recordings_path / MJR_FOLDER
        if not root.is_dir():
            return
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            call_id = folder.name
            if call_id in self.sb.calls:
                continue
            try:
                known = self.recordings.get(call_id) is not None
            except ValueError:  # not a name of this server's
                continue
            if not known:
                log.info("call %s: a recording left unconverted by a stop is handed over now", call_id)
                self._recorded(call_id, folder)

    def _recording_ready(self, job: Job) -> None:
        self._recording_callback(job, V4_RECORDING_READY)

    def _recording_failed(self, job: Job) -> None:
        self._recording_callback(job, V4_RECORDING_FAILED)

    def _recording_callback(self, job: Job, command: str) -> None:
        delivery = plan_recording_callback(job, command, self.callback_targets, time.time())
        if delivery is not None and not self._closing:
            self.stats["callbacks_queued"] += 1
            self._enqueue(_Batch([st.DeliveriesWrite((delivery,))], None, []))

    async def _retention(self) -> None:
        assert self.recordings is not None
        keep = self.settings.recording_retention_days * 86400
        while True:
            try:
                await asyncio.to_thread(self.recordings.purge, time.time() - keep)
            except OSError as exc:  # pragma: no cover - a folder that went away
                log.error("recording retention: %s", exc)
            await asyncio.sleep(min(3600.0, keep / 2))

    async def _sfu_reap(self) -> None:
        assert self.sfu is not None
        gone = await self.sfu.reap(lambda cid: cid in self.sb.calls)
        if gone:
            log.info("destroyed %d SFU rooms of calls that ended while the server was down", gone)

    # ------------------------------------------------------------------ sessions

    def new_session(self, device_id: str, user_id: str, multi: bool, sig_expires_at: float) -> Session:
        now = time.time()
        return Session(
            token="s_" + secrets.token_urlsafe(18),
            device_id=device_id,
            user_id=user_id,
            multi_device=multi,
            sig_expires_at=sig_expires_at,
            created_at=now,
            last_seen=now,
        )

    def attach(self, s: Session) -> list[tuple[str, dict[str, Any]]]:
        """Register a fresh session (replacing any old one of the same device) and
        return the device's mailbox (terminal events of calls that ended while away)."""
        old = self.by_device.get(s.device_id)
        if old is not None and old is not s:
            # Same device: what it is owed carries over to the new session.
            self._drop(old, 4000, "replaced by a new login of the same device", gone=True)
        self.sessions[s.token] = s
        self.by_device[s.device_id] = s
        cutoff = time.time() - self.settings.mailbox_ttl
        return [(n, a) for t, n, a in self.mailbox.pop(s.device_id, []) if t >= cutoff]

    def _drop(self, s: Session, code: int, message: str, *, gone: bool = False) -> None:
        s.closed = True
        if gone:
            # Unacknowledged terminal events are still owed to this device (I1).
            now = time.time()
            box = self.mailbox.setdefault(s.device_id, [])
            box.extend((now, n, a) for _, n, a in s.buffer if n in OWED_EVENTS)
            del box[:-MAILBOX_MAX]
            if not box:
                del self.mailbox[s.device_id]
            s.buffer.clear()
        self.sessions.pop(s.token, None)
        if self.by_device.get(s.device_id) is s:
            del self.by_device[s.device_id]
        s.end(code, message)

    def end_session(self, s: Session, code: int, message: str, *, gone: bool = False) -> None:
        """Close the session for good (after its queued frames) and forget it.
        ``gone``: its unacknowledged terminal events move to the device's mailbox."""
        if s.closed:
            return
        self._drop(s, code, message, gone=gone)
        self._enqueue(_Batch([st.SessionDelete(s.token)], None, []))

    async def _sweeper(self) -> None:
        """Every second: sessions silent past the grace period are gone; the store
        hears that the server is alive; stale mailboxes are dropped.

        If the sweeper itself wakes up more than one period late, the server was not
        running (stopped, a long GC pause, a stuck disk): devices could not be heard
        then, so every session gets a fresh grace from the wake-up instead of being
        swept as silent (:meth:`_stalled`)."""
        interval = min(1.0, self.settings.heartbeat_grace / 4)
        last_mark = 0.0
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            now = time.time()
            late = loop.time() - due  # monotonic: a stopped process's clock runs on
            if late > interval:
                self._stalled(late, now)
            limit = now - self.settings.heartbeat_grace
            for s in [s for s in self.sessions.values() if s.last_seen < limit]:
                log.info(
                    "device %s of %s: silent for %.1f s, gone", s.device_id, s.user_id, now - s.last_seen
                )
                self._drop(s, 4000, "heartbeat lost", gone=True)
                self.submit(m.DeviceGone(s.device_id), writes=[st.SessionDelete(s.token)])
            if now - last_mark >= 1.0:
                last_mark = now
                self._enqueue(_Batch([st.AliveWrite(now)], None, []))
            if self.mailbox and int(now) % 60 == 0:
                cutoff = now - self.settings.mailbox_ttl
                for dev in [d for d, box in self.mailbox.items() if box[-1][0] < cutoff]:
                    del self.mailbox[dev]

    def _stalled(self, late: float, now: float) -> None:
        """The server did not run for ``late`` seconds: give every session a fresh
        heartbeat grace from ``now`` (their pings of that time are still unread)."""
        log.warning(
            "the server did not run for %.1f s (stopped, paused or blocked); every device gets a "
            "fresh heartbeat grace of %g s instead of being swept as silent",
            late,
            self.settings.heartbeat_grace,
        )
        for s in self.sessions.values():
            s.last_seen = max(s.last_seen, now)


def _cause(error: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters), for a client or a
    log line: the store's own words, without the values of the batch."""
    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _coalesce(writes: list[st.Write]) -> list[st.Write]:
    """Keep only the last snapshot of each call, and none of a call finished in the
    same flush (its FinishedCallWrite deletes the snapshot anyway); merge the flush's queued
    callbacks into one write (same transaction, same order)."""
    finished = {w.record.call_id for w in writes if isinstance(w, st.FinishedCallWrite)}
    last: dict[str, int] = {}
    for i, w in enumerate(writes):
        if isinstance(w, st.LiveCallWrite):
            last[w.call_id] = i
    # Callbacks: one DeliveriesWrite for the whole flush (one insert round instead of
    # one per event), in their order, unless an EndpointRevive between them must come first.
    merge = not any(isinstance(w, st.EndpointRevive) for w in writes)
    deliveries: list[Delivery] = []
    out: list[st.Write] = []
    for i, w in enumerate(writes):
        if isinstance(w, st.LiveCallWrite) and (w.call_id in finished or last[w.call_id] != i):
            continue
        if merge and isinstance(w, st.DeliveriesWrite):
            deliveries.extend(w.deliveries)
            continue
        out.append(w)
    if deliveries:
        out.append(st.DeliveriesWrite(tuple(deliveries)))
    return out


def record_to_recent(record: CallRecord, user_id: str, result_type: int) -> dict[str, Any]:
    """A record as the ``CallRecords`` dict of ``query_recent_calls``."""
    stints = [x for x in record.members if x.user_id == user_id]
    total = sum(x.billable_seconds for x in stints)
    role = 1 if user_id == record.caller else 2
    return {
        "call_id": record.call_id,
        "inviter": record.caller,
        "invite_list": list(record.callees),
        "scene": int(record.scene),
        "media_type": int(record.media_type),
        "group_id": record.chat_group_id,
        "role": role,
        "result": result_type,
        "begin_time": int(record.start_time * 1000),
        "total_time": round(total),
    }
