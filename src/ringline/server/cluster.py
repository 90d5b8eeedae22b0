"""Several nodes, one app: ``ringline serve --db postgresql://… --cluster nats://…``.

The design (docs/cluster.md argues it): **one node owns every live call at a time**, by
a lease with an epoch in PostgreSQL; every other node is an *edge* that relays its
clients' WebSockets and REST requests to the owner and delivers callbacks from the
shared outbox. So every per-user invariant (one call at a time, first action wins,
busy, glare) keeps its single authority, the switchboard, and the single-node
semantics hold whichever node a device connects to.

- ``cluster_leader`` (one row): the owner's node id, its ``epoch`` and ``lease_until``
  (PostgreSQL's clock). The owner renews it every ``lease / 3`` seconds; a node takes it
  over once it has run out (``epoch + 1``), then restores the calls and sessions from
  the store (the restart path of a single node) and re-arms their timers.
- **Fencing**: every group commit of the owner first checks, in the same transaction,
  that it still holds the lease with its epoch (:func:`fence_op`); a node paused past
  its lease finds its writes refused, and its hub refuses every input once its own
  monotonic clock says the lease may have run out (:attr:`Hub.lease_ok`). It then
  steps down: closes its clients' connections with 1012 and forgets the calls.
- ``cluster_nodes``: one row per node (address, since, lease, devices, live calls,
  its outbox claim owner), renewed with the lease; ``get_nodes`` lists it. A node
  whose row ran out is gone: its outbox claims are handed back at once.
- NATS carries hints, never state: who owns the calls now (edges re-point at once
  instead of at their next poll), and "callbacks queued" (edges' deliverers wake). With
  NATS down, polling keeps everything correct, a little slower.
- SIGTERM drains: an edge closes its clients with 1012 (they resume on another node);
  the owner commits what is queued, closes its clients, writes a *handover* (unacked
  pushes, kept answers, mailboxes) and gives up the lease, so the next owner continues
  every session without losing or repeating a push.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from .. import __version__
from ..core.protocol import CLOSE_NODE_LEAVING, CLOSE_TRY_AGAIN_LATER
from .config import AppIdentity, Settings
from .inbound import PEER_HEADER
from .store.ops import Fetch, Op

__all__ = [
    "ClusterNode",
    "Fenced",
    "peer_token",
]

log = logging.getLogger("ringline.server")


_SUBJECT = "ringline.{app}.{what}"


class Fenced(RuntimeError):
    """A write of a node that no longer holds the cluster lease (refused)."""


def peer_token(identity: AppIdentity) -> str:
    """The value by which nodes of one app recognise each other's relayed requests
    (:data:`~.inbound.PEER_HEADER`): derived from the app's secret key, so every node
    started with the same app has it and nobody else does."""
    return hmac.new(
        identity.secret_key.encode(), f"ringline-peer:{identity.sdk_app_id}".encode(), hashlib.sha256
    ).hexdigest()


_DDL = [
    """CREATE TABLE IF NOT EXISTS cluster_leader (
        id integer PRIMARY KEY CHECK (id = 1),
        node_id text NOT NULL,
        epoch bigint NOT NULL,
        since timestamptz NOT NULL,
        lease_until timestamptz NOT NULL)""",
    """INSERT INTO cluster_leader VALUES (1, '', 0, clock_timestamp(), '-infinity')
        ON CONFLICT (id) DO NOTHING""",
    """CREATE TABLE IF NOT EXISTS cluster_nodes (
        node_id text PRIMARY KEY,
        address text NOT NULL,
        fingerprint text NOT NULL,
        version text NOT NULL,
        since timestamptz NOT NULL,
        lease_until timestamptz NOT NULL,
        role text NOT NULL,
        devices integer NOT NULL DEFAULT 0,
        sessions integer NOT NULL DEFAULT 0,
        live_calls integer NOT NULL DEFAULT 0,
        connections integer NOT NULL DEFAULT 0,
        claim_owner text NOT NULL DEFAULT '')""",
    """CREATE TABLE IF NOT EXISTS cluster_secrets (
        id integer PRIMARY KEY CHECK (id = 1),
        callback_token text NOT NULL,
        webhook_secrets text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cluster_handover (
        epoch bigint PRIMARY KEY,
        data text NOT NULL)""",
]


def fence_op(node_id: str, epoch: int, on_fenced: Callable[[], None]) -> Callable[[], Op[None]]:
    """The store's :attr:`~.store.engine.SqlStore.fence` for ``node_id`` holding
    ``epoch``: locks the lease row for share (a takeover waits for the commit) and
    raises :class:`Fenced` unless the lease is this node's and has not run out."""
    sql = (
        "SELECT 1 FROM cluster_leader WHERE id = 1 AND node_id = $1 AND epoch = $2 "
        "AND lease_until > clock_timestamp() FOR SHARE"
    )

    def op() -> Op[None]:
        rows = yield Fetch(sql, (node_id, epoch))
        if not rows:
            on_fenced()
            raise Fenced(f"node {node_id} no longer holds the cluster lease of epoch {epoch}")

    return op


@dataclasses.dataclass(slots=True)
class Leader:
    node_id: str
    epoch: int
    address: str


class ClusterNode:
    """One node of a cluster: its lease loop, its role and its relays.

    ``become_owner(handover)`` builds and starts the call-owning part (store fence, hub,
    ...) and returns an object with ``async abandon()`` and ``async leave() -> dict``;
    the node calls it when it wins the lease. See :func:`.app.serve`.
    """

    def __init__(
        self,
        settings: Settings,
        identity: AppIdentity,
        *,
        pool: Any,
        address: str,
        claim_owner: str,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.node_id = settings.node_id
        self.address = address.rstrip("/")
        self.lease = settings.cluster_lease
        self.pool = pool
        self.claim_owner = claim_owner
        self.token = peer_token(identity)
        self.fingerprint = hmac.new(
            identity.secret_key.encode(), f"fingerprint:{identity.sdk_app_id}".encode(), hashlib.sha256
        ).hexdigest()[:16]
        self.epoch = 0
        self.owner: Any = None  # the call-owning part while this node owns the calls
        self.leader: Leader | None = None
        self._leader_known = asyncio.Event()
        self._valid_until = 0.0  # monotonic: the lease surely holds until then
        self._nats: Any = None
        self._nats_closing = False  # close() lets go of NATS: its disconnect is no loss
        self._tasks: list[asyncio.Task[None]] = []
        self._relays: set[asyncio.Task[Any]] = set()
        self._relay_ws: set[web.WebSocketResponse] = set()
        self._http: aiohttp.ClientSession | None = None
        self._leaving = False
        self._step_down_task: asyncio.Task[None] | None = None
        self.since = time.time()
        self.become_owner: Callable[[dict[str, Any] | None], Awaitable[Any]] | None = None
        self.on_callbacks: Callable[[], None] | None = None
        """Called when another node says callbacks were queued (wake the deliverer)."""
        self.stats: Callable[[], dict[str, int]] = lambda: {}

    # ------------------------------------------------------------------ start / stop

    @staticmethod
    async def prepare(pool: Any) -> None:
        """Create the cluster's tables (idempotent, serialised between nodes)."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('ringline.cluster'))")
            for ddl in _DDL:
                await conn.execute(ddl)

    @staticmethod
    async def shared_secrets(
        pool: Any, token: str, webhook_secrets: tuple[str, ...]
    ) -> tuple[str, tuple[str, ...]]:
        """The callback signing secrets every node of the cluster uses: those of the
        first node that started (kept in the database), so that a receiver checks one
        token and one set of webhook secrets whichever node delivers."""
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO cluster_secrets VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
                token,
                json.dumps(list(webhook_secrets)),
            )
            row = await conn.fetchrow(
                "SELECT callback_token, webhook_secrets FROM cluster_secrets WHERE id = 1"
            )
        shared = (str(row["callback_token"]), tuple(json.loads(row["webhook_secrets"])))
        if shared != (token, webhook_secrets):
            log.warning(
                "cluster: this node signs callbacks with the cluster's callback token and webhook "
                "secrets (set by the first node), not with its own; `ringline callback-secrets` of "
                "this node's data folder does not show them"
            )
        return shared

    async def join(self) -> None:
        """Register this node (refusing a node id a live node uses, or another app's
        secret), connect NATS, start the lease loop. Raises RuntimeError with the fix."""
        await self._connect_nats()
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT address, fingerprint, lease_until > clock_timestamp() AS live FROM cluster_nodes "
                "WHERE node_id = $1",
                self.node_id,
            )
            if row is not None and row["live"] and row["address"] != self.address:
                raise RuntimeError(
                    f"node id {self.node_id!r} is in use by a live node at {row['address']}; "
                    "give every node its own --node-id"
                )
            other = await conn.fetchrow(
                "SELECT node_id, fingerprint FROM cluster_nodes WHERE lease_until > clock_timestamp() "
                "AND fingerprint <> $1 LIMIT 1",
                self.fingerprint,
            )
            if other is not None:
                raise RuntimeError(
                    f"node {other['node_id']} of this cluster runs with another --sdk-app-id or "
                    "--secret-key: start every node with the same app"
                )
            await conn.execute(
                "INSERT INTO cluster_nodes (node_id, address, fingerprint, version, since, lease_until, "
                "role, claim_owner) VALUES ($1, $2, $3, $4, to_timestamp($5), clock_timestamp() + "
                "make_interval(secs => $6), 'edge', $7) ON CONFLICT (node_id) DO UPDATE SET "
                "address = EXCLUDED.address, fingerprint = EXCLUDED.fingerprint, version = "
                "EXCLUDED.version, since = EXCLUDED.since, lease_until = EXCLUDED.lease_until, "
                "role = 'edge', claim_owner = EXCLUDED.claim_owner",
                self.node_id,
                self.address,
                self.fingerprint,
                __version__,
                self.since,
                self.lease,
                self.claim_owner,
            )
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=2.0),
            auto_decompress=False,
        )
        await self._tick()
        self._tasks.append(asyncio.create_task(self._lease_loop(), name="ringline-cluster-lease"))

    async def _connect_nats(self) -> None:
        try:
            import nats
        except ImportError as exc:
            raise RuntimeError("--cluster needs nats-py: pip install 'ringline[cluster]'") from exc

        connected = False

        async def error_cb(exc: Exception) -> None:
            if connected:  # before the first connection, the one-line start-up error says it
                log.warning("cluster: NATS: %s", exc)

        async def disconnected_cb() -> None:
            if self._nats_closing:  # nats-py reports its own close() as a disconnect too
                return
            log.warning("cluster: NATS connection lost; reconnecting (nodes poll PostgreSQL meanwhile)")

        async def reconnected_cb() -> None:
            log.info("cluster: NATS connection back")

        from urllib.parse import urlsplit

        where = urlsplit(self.settings.cluster)
        try:  # nats-py keeps retrying a first connection that fails: ask the port first
            _, probe = await asyncio.wait_for(
                asyncio.open_connection(where.hostname, where.port or 4222), timeout=3.0
            )
            probe.close()
        except (TimeoutError, OSError) as exc:
            raise RuntimeError(
                f"cannot reach NATS at {self.settings.cluster}: {exc or type(exc).__name__}; "
                "start nats-server or fix --cluster"
            ) from None
        try:
            self._nats = await asyncio.wait_for(
                nats.connect(
                    self.settings.cluster,
                    name=f"ringline {self.node_id}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    error_cb=error_cb,
                    disconnected_cb=disconnected_cb,
                    reconnected_cb=reconnected_cb,
                ),
                timeout=5.0,
            )
        except Exception as exc:
            raise RuntimeError(
                f"cannot reach NATS at {self.settings.cluster}: {exc or type(exc).__name__}; "
                "start nats-server or fix --cluster"
            ) from None
        if not self._nats.is_connected:
            with contextlib.suppress(Exception):
                await self._nats.close()
            self._nats = None
            raise RuntimeError(
                f"cannot reach NATS at {self.settings.cluster}; start nats-server or fix --cluster"
            )
        connected = True
        app = self.identity.sdk_app_id
        await self._nats.subscribe(_SUBJECT.format(app=app, what="leader"), cb=self._on_leader_msg)
        await self._nats.subscribe(_SUBJECT.format(app=app, what="callbacks"), cb=self._on_callbacks_msg)

    async def _publish(self, what: str, data: dict[str, Any]) -> None:
        if self._nats is None:
            return
        with contextlib.suppress(Exception):
            await self._nats.publish(
                _SUBJECT.format(app=self.identity.sdk_app_id, what=what), json.dumps(data).encode()
            )

    def callbacks_queued(self) -> None:
        """The owner queued callbacks: tell the other nodes' deliverers (a hint)."""
        task = asyncio.get_running_loop().create_task(self._publish("callbacks", {"from": self.node_id}))
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)

    async def _on_callbacks_msg(self, msg: Any) -> None:
        if self.on_callbacks is not None and self.owner is None:
            self.on_callbacks()

    async def _on_leader_msg(self, msg: Any) -> None:
        with contextlib.suppress(Exception):
            data = json.loads(msg.data)
            if data.get("node_id") == self.node_id:
                return
            if data.get("released"):
                await self._tick()  # take it over now, not at the next poll
            else:
                self._set_leader(Leader(str(data["node_id"]), int(data["epoch"]), str(data["address"])))

    async def leave(self) -> None:
        """SIGTERM: drain. Clients are moved, the calls handed over, the lease given up."""
        self._leaving = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for ws in list(self._relay_ws):
            with contextlib.suppress(Exception):
                await ws.close(code=CLOSE_NODE_LEAVING, message=b"node leaving; resume on another node")
        if self.owner is not None:
            owner, self.owner = self.owner, None
            handover = await owner.leave()
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        "INSERT INTO cluster_handover (epoch, data) VALUES ($1, $2) "
                        "ON CONFLICT (epoch) DO UPDATE SET data = EXCLUDED.data",
                        self.epoch,
                        json.dumps(handover),
                    )
                    await conn.execute(
                        "UPDATE cluster_leader SET lease_until = '-infinity' WHERE id = 1 AND node_id = $1 "
                        "AND epoch = $2",
                        self.node_id,
                        self.epoch,
                    )
                log.info("cluster: handed the calls over (epoch %d) and gave up the lease", self.epoch)
            except Exception:
                log.exception("cluster: could not hand over; the next owner restores from the store")
            await self._publish("leader", {"node_id": self.node_id, "released": True})
        with contextlib.suppress(Exception):
            async with self.pool.acquire() as conn:
                await conn.execute("DELETE FROM cluster_nodes WHERE node_id = $1", self.node_id)
        if self._relays:
            await asyncio.gather(*list(self._relays), return_exceptions=True)

    async def close(self) -> None:
        """After :meth:`leave`: let go of NATS and the HTTP client."""
        if self._nats is not None:
            self._nats_closing = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nats.close(), 2.0)
        if self._http is not None:
            await self._http.close()

    # ------------------------------------------------------------------ the lease

    def lease_ok(self) -> bool:
        """False once this node's lease may have run out (its own monotonic clock)."""
        if time.monotonic() < self._valid_until:
            return True
        self._lost("its lease ran out before it could renew it")
        return False

    def _lost(self, why: str) -> None:
        """Step down (once): the calls belong to another node now, or may."""
        if self.owner is None or self._step_down_task is not None:
            return
        log.error("cluster: node %s stops owning the calls: %s", self.node_id, why)
        self._step_down_task = asyncio.get_running_loop().create_task(self._step_down())

    async def _step_down(self) -> None:
        owner, self.owner = self.owner, None
        self.leader = None
        self._leader_known.clear()
        try:
            if owner is not None:
                await owner.abandon()
        finally:
            self._step_down_task = None

    async def _lease_loop(self) -> None:
        period = self.lease / 3
        while True:
            await asyncio.sleep(period)
            if self.owner is not None and time.monotonic() >= self._valid_until:
                # Not renewed in time (PostgreSQL unreachable, or this process was
                # paused): another node may own the calls by now.
                self._lost("its lease ran out before it could renew it")
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster: lease round failed: %s", exc)

    async def _tick(self) -> None:
        """One round: renew (or take) the lease, renew this node's row, learn the owner,
        hand back the claims of nodes that are gone."""
        if self._leaving or self._step_down_task is not None:
            return
        sent = time.monotonic()
        async with self.pool.acquire() as conn:
            if self.owner is not None:
                ok = await conn.fetchval(
                    "UPDATE cluster_leader SET lease_until = clock_timestamp() + make_interval(secs => $3) "
                    "WHERE id = 1 AND node_id = $1 AND epoch = $2 AND lease_until > clock_timestamp() "
                    "RETURNING epoch",
                    self.node_id,
                    self.epoch,
                    self.lease,
                )
                if ok is None:
                    self._lost("another node holds the lease now")
                else:
                    self._valid_until = sent + self.lease
            else:
                won = await conn.fetchval(
                    "UPDATE cluster_leader SET node_id = $1, epoch = epoch + 1, since = clock_timestamp(), "
                    "lease_until = clock_timestamp() + make_interval(secs => $2) "
                    "WHERE id = 1 AND lease_until < clock_timestamp() RETURNING epoch",
                    self.node_id,
                    self.lease,
                )
                if won is not None:
                    self._valid_until = sent + self.lease
                    await self._take_over(int(won))
            stats = self.stats()
            await conn.execute(
                "UPDATE cluster_nodes SET lease_until = clock_timestamp() + make_interval(secs => $2), "
                "role = $3, devices = $4, sessions = $5, live_calls = $6, connections = $7, address = $8 "
                "WHERE node_id = $1",
                self.node_id,
                self.lease,
                "owner" if self.owner is not None else "edge",
                stats.get("devices", 0),
                stats.get("sessions", 0),
                stats.get("live_calls", 0),
                stats.get("connections", 0) + len(self._relay_ws),
                self.address,
            )
            if self.owner is None:
                row = await conn.fetchrow(
                    "SELECT l.node_id, l.epoch, n.address FROM cluster_leader l JOIN cluster_nodes n "
                    "ON n.node_id = l.node_id WHERE l.id = 1 AND l.lease_until > clock_timestamp()"
                )
                if row is not None:
                    self._set_leader(Leader(str(row["node_id"]), int(row["epoch"]), str(row["address"])))
                else:
                    self.leader = None
                    self._leader_known.clear()
            else:
                gone = await conn.fetch(
                    "DELETE FROM cluster_nodes WHERE lease_until < clock_timestamp() - "
                    "make_interval(secs => $1) RETURNING node_id, claim_owner",
                    self.lease,
                )
                for r in gone:
                    log.warning("cluster: node %s is gone (its lease ran out)", r["node_id"])
                    if r["claim_owner"] and self.owner is not None:
                        with contextlib.suppress(Exception):
                            n = await self.owner.release_claims(str(r["claim_owner"]))
                            if n:
                                log.warning("cluster: sending %d callbacks of node %s again", n, r["node_id"])

    async def _take_over(self, epoch: int) -> None:
        assert self.become_owner is not None
        self.epoch = epoch
        handover: dict[str, Any] | None = None
        async with self.pool.acquire() as conn:
            text = await conn.fetchval("SELECT data FROM cluster_handover WHERE epoch = $1", epoch - 1)
            await conn.execute("DELETE FROM cluster_handover WHERE epoch < $1", epoch)
        if text is not None:
            handover = json.loads(text)
        t0 = time.monotonic()
        try:
            self.owner = await self.become_owner(handover)
        except Exception:
            log.exception("cluster: taking over the calls failed; giving the lease up")
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "UPDATE cluster_leader SET lease_until = '-infinity' WHERE id = 1 AND node_id = $1 "
                    "AND epoch = $2",
                    self.node_id,
                    epoch,
                )
            return
        log.warning(
            "cluster: node %s owns the calls now (epoch %d, restored in %.2f s%s)",
            self.node_id,
            epoch,
            time.monotonic() - t0,
            ", with the previous owner's handover" if handover else "",
        )
        self._set_leader(Leader(self.node_id, epoch, self.address))
        await self._publish("leader", {"node_id": self.node_id, "epoch": epoch, "address": self.address})

    def _set_leader(self, leader: Leader) -> None:
        if self.leader is not None and leader.epoch < self.leader.epoch:
            return
        self.leader = leader
        self._leader_known.set()

    async def wait_leader(self) -> Leader | None:
        """The node that owns the calls (waiting up to lease + 2 s during a failover)."""
        if self.leader is not None:
            return self.leader
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._leader_known.wait(), self.lease + 2.0)
        return self.leader

    # ------------------------------------------------------------------ relays

    def is_owner(self) -> bool:
        return self.owner is not None

    def _forward_headers(self, request: web.Request) -> dict[str, str]:
        fwd = request.headers.get("X-Forwarded-For", "")
        remote = request.remote or ""
        return {
            PEER_HEADER: self.token,
            "X-Forwarded-For": f"{fwd}, {remote}" if fwd and remote else (fwd or remote),
        }

    async def relay_ws(self, request: web.Request) -> web.StreamResponse:
        """A client's WebSocket on an edge: relay it, frame for frame, to the owner."""
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=1 << 22, compress=False)
        await ws.prepare(request)
        if self._leaving:
            await ws.close(code=CLOSE_NODE_LEAVING, message=b"node leaving; resume on another node")
            return ws
        up = await self._connect_owner(request)
        if up is None:
            await ws.close(code=CLOSE_TRY_AGAIN_LATER, message=b"no node can take the session yet; try again")
            return ws
        self._relay_ws.add(ws)
        try:
            await self._pump(ws, up)
        finally:
            self._relay_ws.discard(ws)
            if not up.closed:
                await up.close()
        return ws

    async def _connect_owner(self, request: web.Request) -> aiohttp.ClientWebSocketResponse | None:
        """A WebSocket to the node that owns the calls, for one client; None if no node
        could take it within lease + 2 s (a failover under way)."""
        assert self._http is not None
        deadline = time.monotonic() + self.lease + 2.0
        while not self._leaving and time.monotonic() < deadline:
            leader = await self.wait_leader()
            if leader is None:
                return None
            if leader.node_id == self.node_id:
                return None  # we own the calls again: the client reconnects and is served here
            try:
                return await self._http.ws_connect(
                    f"{leader.address}/v1/ws",
                    headers=self._forward_headers(request),
                    heartbeat=None,
                    max_msg_size=1 << 22,
                    compress=0,
                    autoclose=False,
                    autoping=True,
                )
            except Exception as exc:
                log.info(
                    "cluster: the owner %s at %s takes no WebSocket (%s); waiting for the next one",
                    leader.node_id,
                    leader.address,
                    exc,
                )
                if self.leader is leader:
                    self.leader = None
                    self._leader_known.clear()
                await asyncio.sleep(0.2)  # bounded by the deadline; the next owner is polled for
        return None

    async def _pump(self, ws: web.WebSocketResponse, up: aiohttp.ClientWebSocketResponse) -> None:
        async def downstream() -> None:
            async for msg in up:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
            code = up.close_code
            if code is None or code in (1006, 1011):
                code, reason = CLOSE_NODE_LEAVING, "the owning node went away; resume on another node"
            else:
                reason = str(up._close_message or "") if hasattr(up, "_close_message") else ""
            if not ws.closed:
                await ws.close(code=code, message=reason[:120].encode())

        async def upstream() -> None:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await up.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await up.send_bytes(msg.data)
                else:
                    break
            if not up.closed:
                await up.close(code=ws.close_code or 1000)

        down = asyncio.create_task(downstream())
        upt = asyncio.create_task(upstream())
        _, pending = await asyncio.wait({down, upt}, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        for t in (down, upt):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if not ws.closed:
            await ws.close(code=CLOSE_NODE_LEAVING, message=b"node leaving; resume on another node")

    async def relay_http(self, request: web.Request) -> web.StreamResponse:
        """A REST request on an edge: the owner answers it."""
        leader = await self.wait_leader()
        if leader is None or self._http is None or leader.node_id == self.node_id:
            return _unavailable()
        body = await request.read()
        headers = self._forward_headers(request)
        if "Content-Type" in request.headers:
            headers["Content-Type"] = request.headers["Content-Type"]
        try:
            async with self._http.request(
                request.method,
                f"{leader.address}{request.path_qs}",
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as r:
                data = await r.read()
                out = {
                    k: v
                    for k, v in r.headers.items()
                    if k.lower() in ("content-type", "allow", "retry-after")
                }
                return web.Response(status=r.status, body=data, headers=out)
        except Exception as exc:
            log.warning("cluster: relaying %s to %s failed: %s", request.path, leader.address, exc)
            return _unavailable()

    async def nodes(self) -> dict[str, Any]:
        """``get_nodes`` in a cluster: every node with a row, the owner first."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT n.*, extract(epoch FROM n.since) AS since_s, "
                "extract(epoch FROM n.lease_until) AS lease_s, n.lease_until > clock_timestamp() AS live, "
                "l.node_id = n.node_id AND l.lease_until > clock_timestamp() AS owner, l.epoch "
                "FROM cluster_nodes n, cluster_leader l WHERE l.id = 1 ORDER BY owner DESC, n.node_id"
            )
        now = time.time()
        out = []
        for r in rows:
            out.append(
                {
                    "NodeId": r["node_id"],
                    "Address": r["address"],
                    "Version": r["version"],
                    "Since": int(r["since_s"]),
                    "UptimeSeconds": round(now - float(r["since_s"]), 3),
                    "Role": "Owner" if r["owner"] else "Edge",
                    "Epoch": int(r["epoch"]) if r["owner"] else 0,
                    "Devices": int(r["devices"]),
                    "Sessions": int(r["sessions"]),
                    "LiveCalls": int(r["live_calls"]),
                    "Connections": int(r["connections"]),
                    "Lease": "Held" if r["live"] else "Expired",
                    "LeaseUntil": round(float(r["lease_s"]), 3),
                }
            )
        return {"Mode": "Cluster", "NodeList": out}


def _unavailable() -> web.Response:
    return web.json_response(
        {
            "ActionStatus": "FAIL",
            "ErrorCode": 90503,
            "ErrorInfo": "no node of the cluster owns the calls right now (a failover is under way); "
            "send the request again in a few seconds",
        },
        status=503,
        headers={"Retry-After": "2"},
    )


def default_address(host: str, port: int) -> str:
    """The address other nodes reach this one at, without ``--public-url``."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
