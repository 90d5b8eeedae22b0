"""The Ringline server: one aiohttp application with the WebSocket, REST and health.

:func:`build_app` assembles it; :func:`serve` runs it until SIGINT/SIGTERM and then
drains (queued writes land, connections close with 1001, the store closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import hmac
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from .. import __version__
from ..core.protocol import CLOSE_NODE_LEAVING
from . import gcpolicy
from .cluster import ClusterNode, default_address, fence_op
from .config import AppIdentity, Settings, load_callback_secrets
from .hub import Hub
from .inbound import PEER_HEADER
from .logs import set_node_id
from .metrics import CONTENT_TYPE, Metrics, Reading
from .openapi import openapi_handler
from .rest import AdminApi
from .sfu_turn import add_sfu_turn_route
from .store import Store, open_store
from .store.postgres import PostgresStore
from .web import add_web_routes
from .webhooks import Deliverer, DeliveryState
from .worker import STOP_GRACE, WorkerConfig, WorkerPool, make_deliverer
from .ws import WsHandler
from .wsserver import FrontDoor

__all__ = [
    "PURGE_INTERVAL",
    "StartupError",
    "bind_sockets",
    "build_app",
    "build_cluster_app",
    "purge_interval",
    "serve",
]

log = logging.getLogger("ringline.server")


class StartupError(RuntimeError):
    """The server cannot start. ``str(exc)`` is one line for the operator that says what
    is wrong and what to do; nothing of the server is left running."""


HUB_KEY = web.AppKey("hub", Hub)
DELIVERER_KEY = web.AppKey("deliverer", Deliverer)  # only without callback workers
WORKERS_KEY = web.AppKey("callback_workers", WorkerPool)  # only with them
#: the app's WebSocket handler (one node only): ``serve`` puts Ringline's own WebSocket
#: (wsserver.py) in front of aiohttp with it
WS_KEY = web.AppKey("ws", WsHandler)

#: How often delivered callbacks older than ``Settings.callback_retention`` are purged
#: (more often when the retention is shorter, see :func:`purge_interval`).
PURGE_INTERVAL = 600.0


def purge_interval(retention: float) -> float:
    """Seconds between two purges of delivered callbacks for a retention of ``retention``
    seconds: every :data:`PURGE_INTERVAL`, or every half retention when that is shorter
    (at most once a second), so that nothing delivered stays listed much past it."""
    return min(PURGE_INTERVAL, max(1.0, retention / 2))


def _worker_config(settings: Settings, identity: AppIdentity) -> WorkerConfig:
    """How this server's callbacks are signed and retried, for its own deliverer or its
    worker processes."""
    return WorkerConfig(
        db_url=settings.db_url,
        sdk_app_id=identity.sdk_app_id,
        callback_token=settings.callback_token,
        webhook_secrets=settings.webhook_secrets,
        retry_delays=settings.callback_retry_delays,
        give_up_after=settings.callback_give_up_after,
        log_level=settings.log_level,
        db_schema=settings.db_schema,
    )


async def _start_on_demand(settings: Settings, store: Store) -> bool:
    """Whether the callback workers may wait for the first queued callbacks: only with
    ``--callback-workers auto`` and an outbox with nothing left to send (what a previous
    run left goes out at once)."""
    if not settings.callback_workers_on_demand:
        return False
    counts = await store.outbox.counts()
    return not any(counts.get(state, 0) for state in (DeliveryState.PENDING, DeliveryState.IN_FLIGHT))


async def _release_stale_claims(store: Store) -> int:
    """Hand back the claims of a previous run of this server (killed mid-delivery), so
    they go out now instead of when their lease expires. Call it once at start, before
    any deliverer or worker of this run claims: one server process per store, so no
    live deliverer holds any then. (A crashed worker's claims are handed back by its
    :class:`WorkerPool`, by owner.)"""
    released = 0
    for _ in range(1000):  # bounded: each round releases a page
        _, entries = await store.outbox.list_deliveries([DeliveryState.IN_FLIGHT], page=1, per_page=100)
        if not entries:
            break
        await store.outbox.release([e.delivery.event_id for e in entries])
        released += len(entries)
    if released:
        log.warning("callbacks: %d were being sent when the server stopped; sending them again", released)
    return released


async def _purge_delivered(settings: Settings, store: Store) -> None:
    """Keep the outbox small: drop delivered callbacks after the retention time."""
    while True:
        try:
            purged = await store.outbox.purge_finished(time.time() - settings.callback_retention)
            if purged:
                log.info("callbacks: purged %d delivered callbacks older than the retention time", purged)
        except Exception:
            log.exception("callbacks: purging delivered callbacks failed; trying again later")
        await asyncio.sleep(purge_interval(settings.callback_retention))


async def build_app(settings: Settings, identity: AppIdentity) -> web.Application:
    """Open the store, restore state, start the callback deliverer, and return the
    application (not yet listening). Without a callback token or webhook secret in
    ``settings`` those kept in the data folder are used (generated on first use)."""
    if not settings.callback_token or not settings.webhook_secrets:
        cb = load_callback_secrets(settings.data_dir, settings.callback_token, settings.webhook_secrets)
        settings = dataclasses.replace(settings, callback_token=cb.token, webhook_secrets=cb.webhook_secrets)
    try:
        store = open_store(settings.db_url, pg_schema=settings.db_schema)
    except ValueError as exc:
        raise StartupError(f"--db: {exc}") from exc
    try:
        await store.open()
    except RuntimeError as exc:
        raise StartupError(str(exc)) from exc
    hub = Hub(settings, store, sdk_app_id=identity.sdk_app_id)
    metrics = Metrics(settings.node_id) if settings.metrics else None
    hub.metrics = metrics
    config = _worker_config(settings, identity)
    deliverer: Deliverer | None = None
    workers: WorkerPool | None = None
    if settings.callback_workers:
        workers = WorkerPool(
            config,
            settings.callback_workers,
            release_owner=store.outbox.release_owner,
            on_attempt=metrics.callback_attempt if metrics is not None else None,
        )
        hub.on_callbacks_queued = workers.wake
    else:
        deliverer = make_deliverer(store.outbox, config)
        hub.on_callbacks_queued = deliverer.wake
        if metrics is not None:
            deliverer.on_attempt = metrics.callback_attempt
    # Whatever fails from here on, stop what already runs: no half-started server.
    async with contextlib.AsyncExitStack() as undo:
        undo.push_async_callback(store.close)
        await hub.start()
        undo.push_async_callback(hub.close)
        await _release_stale_claims(store)
        # Either also sends what a previous run left in the outbox.
        if workers is not None:
            undo.push_async_callback(workers.close)
            await workers.start(on_demand=await _start_on_demand(settings, store))
        elif deliverer is not None:
            undo.push_async_callback(deliverer.close)
            await deliverer.start()
        undo.pop_all()
    purger = asyncio.create_task(_purge_delivered(settings, store), name="ringline-outbox-purge")
    app = web.Application(client_max_size=1 << 20)
    app[HUB_KEY] = hub
    if deliverer is not None:
        app[DELIVERER_KEY] = deliverer
    if workers is not None:
        app[WORKERS_KEY] = workers
    ws = WsHandler(hub, secret_key=identity.secret_key, sdk_app_id=identity.sdk_app_id)
    app[WS_KEY] = ws
    if metrics is not None:
        metrics.read_with(_reader(hub, store, workers))
    admin = AdminApi(
        hub,
        sdk_app_id=identity.sdk_app_id,
        secret_key=identity.secret_key,
        admin_identifier=settings.admin_identifier,
    )
    started = time.time()

    def status() -> dict[str, Any]:
        return {
            "status": "ok",
            "node_id": settings.node_id,
            "version": __version__,
            "uptime_s": round(time.time() - started, 3),
            "sessions": len(hub.sessions),
            "live_calls": len(hub.sb.calls),
            "callback_workers": {
                "configured": settings.callback_workers,
                "on_demand": settings.callback_workers_on_demand,
                "running": workers.running if workers else 0,
                "restarts": workers.restarts if workers else 0,
            },
        }

    admin.node_status = status

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response(status())

    app.router.add_get("/healthz", healthz)
    if metrics is not None:
        app.router.add_get("/metrics", _metrics_handler(metrics, settings.metrics_token))
    app.router.add_get("/v1/ws", ws.handle)
    app.router.add_routes(admin.routes())
    add_web_routes(app, settings, identity)
    add_sfu_turn_route(app, settings)

    async def on_shutdown(_app: web.Application) -> None:
        await hub.close()  # everything queued is in the outbox now
        await ws.close()
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
        # Requests under way get a moment; the rest go out after the next start.
        if deliverer is not None:
            await deliverer.close(grace=STOP_GRACE)
        if workers is not None:
            await workers.close()

    async def on_cleanup(_app: web.Application) -> None:
        await store.close()

    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


class _Owner:
    """The call-owning part of a cluster node (while it holds the lease): the hub on
    the shared store, its WebSocket handler, its REST API, the outbox purger."""

    def __init__(
        self, hub: Hub, ws: WsHandler, admin: AdminApi, store: PostgresStore, purger: asyncio.Task[None]
    ) -> None:
        self.hub, self.ws, self.admin, self.store, self.purger = hub, ws, admin, store, purger

    async def _stop_side_tasks(self) -> None:
        self.purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.purger
        await self.ws.close()

    async def abandon(self) -> None:
        """The lease is lost: stop without writing (the fence refuses it anyway)."""
        await self.hub.abandon(
            CLOSE_NODE_LEAVING, "this node no longer serves the calls; resume on another node"
        )
        await self._stop_side_tasks()
        self.store.fence = None

    async def leave(self) -> dict[str, Any]:
        """Drain (SIGTERM): close the clients' connections (no more input), commit
        what is queued, return the handover for the next owner."""
        for sess in list(self.hub.sessions.values()):
            with contextlib.suppress(Exception):
                await sess.disconnect(CLOSE_NODE_LEAVING, "node leaving; resume on another node")
        await self.hub.close()
        await self._stop_side_tasks()
        return self.hub.handover()

    async def release_claims(self, owner: str) -> int:
        """Hand back the outbox claims of a node that is gone."""
        return await self.store.outbox.release_owner(owner)


async def build_cluster_app(settings: Settings, identity: AppIdentity) -> tuple[web.Application, ClusterNode]:
    """A cluster node (``--cluster``, docs/cluster.md): opens the shared PostgreSQL
    store, joins the cluster (taking the lease if nobody holds it), starts the
    callback deliverer on the shared outbox, and returns the application (not yet
    listening) with the node. Raises StartupError with the fix."""
    if not settings.callback_token or not settings.webhook_secrets:
        cb = load_callback_secrets(settings.data_dir, settings.callback_token, settings.webhook_secrets)
        settings = dataclasses.replace(settings, callback_token=cb.token, webhook_secrets=cb.webhook_secrets)
    try:
        store = open_store(settings.db_url, pg_schema=settings.db_schema)
    except ValueError as exc:
        raise StartupError(f"--db: {exc}") from exc
    if not isinstance(store, PostgresStore):
        raise StartupError("--cluster needs --db postgresql://…: every node shares one PostgreSQL database")
    try:
        await store.open()
    except RuntimeError as exc:
        raise StartupError(str(exc)) from exc
    import asyncpg

    metrics = Metrics(settings.node_id) if settings.metrics else None
    deliverer: Deliverer | None = None
    workers: WorkerPool | None = None
    async with contextlib.AsyncExitStack() as undo:
        undo.push_async_callback(store.close)
        try:
            pool = await asyncpg.create_pool(
                store.dsn, min_size=1, max_size=4, server_settings={"search_path": store.schema}
            )
        except Exception as exc:
            raise StartupError(f"cannot connect to PostgreSQL: {exc}") from exc
        undo.push_async_callback(pool.close)
        await ClusterNode.prepare(pool)
        token, whsecs = await ClusterNode.shared_secrets(
            pool, settings.callback_token, settings.webhook_secrets
        )
        settings = dataclasses.replace(settings, callback_token=token, webhook_secrets=whsecs)
        config = _worker_config(settings, identity)
        if settings.callback_workers:
            workers = WorkerPool(
                config,
                settings.callback_workers,
                release_owner=store.outbox.release_owner,
                on_attempt=metrics.callback_attempt if metrics is not None else None,
            )
            claim_owner = ""
        else:
            deliverer = make_deliverer(store.outbox, config)
            claim_owner = store.outbox.owner
            if metrics is not None:
                deliverer.on_attempt = metrics.callback_attempt
        node = ClusterNode(
            settings,
            identity,
            pool=pool,
            address=settings.public_url or default_address(settings.host, settings.port),
            claim_owner=claim_owner,
        )
        wake = workers.wake if workers is not None else deliverer.wake if deliverer is not None else None
        node.on_callbacks = wake

        async def become_owner(handover: dict[str, Any] | None) -> _Owner:
            hub = Hub(settings, store, sdk_app_id=identity.sdk_app_id)
            hub.metrics = metrics
            hub.lease_ok = node.lease_ok
            store.fence = fence_op(node.node_id, node.epoch, lambda: node._lost("its write was fenced"))

            def queued() -> None:
                if wake is not None:
                    wake()
                node.callbacks_queued()

            hub.on_callbacks_queued = queued
            try:
                await hub.start(handover)
            except BaseException:
                await hub.abandon(CLOSE_NODE_LEAVING, "node leaving")
                store.fence = None
                raise
            ws = WsHandler(hub, secret_key=identity.secret_key, sdk_app_id=identity.sdk_app_id)
            ws.peer_token = node.token
            admin = AdminApi(
                hub,
                sdk_app_id=identity.sdk_app_id,
                secret_key=identity.secret_key,
                admin_identifier=settings.admin_identifier,
            )
            admin.peer_token = node.token
            admin.cluster_nodes = node.nodes
            purger = asyncio.create_task(_purge_delivered(settings, store), name="ringline-outbox-purge")
            return _Owner(hub, ws, admin, store, purger)

        def stats() -> dict[str, int]:
            o: _Owner | None = node.owner
            if o is None:
                return {}
            return {
                "devices": len(o.hub.sb.devices),
                "sessions": len(o.hub.sessions),
                "live_calls": len(o.hub.sb.calls),
                "connections": o.hub.connections(),
            }

        node.become_owner = become_owner
        node.stats = stats
        if workers is not None:
            undo.push_async_callback(workers.close)
            await workers.start(on_demand=await _start_on_demand(settings, store))
        elif deliverer is not None:
            undo.push_async_callback(deliverer.close)
            await deliverer.start()
        try:
            await node.join()
        except RuntimeError as exc:
            await node.close()
            raise StartupError(str(exc)) from None
        undo.pop_all()

    app = web.Application(client_max_size=1 << 20)
    token = node.token
    started = time.time()

    def relayed(request: web.Request) -> bool:
        return hmac.compare_digest(request.headers.get(PEER_HEADER, "").encode(), token.encode())

    def status() -> dict[str, Any]:
        o: _Owner | None = node.owner
        leader = node.leader
        return {
            "status": "leaving" if node._leaving else "ok",
            "node_id": settings.node_id,
            "version": __version__,
            "uptime_s": round(time.time() - started, 3),
            "cluster": {
                "role": "owner" if o is not None else "edge",
                "epoch": node.epoch if o is not None else (leader.epoch if leader else 0),
                "owner": leader.node_id if leader else None,
                "address": node.address,
            },
            "sessions": len(o.hub.sessions) if o else 0,
            "live_calls": len(o.hub.sb.calls) if o else 0,
            "relayed_connections": len(node._relay_ws),
        }

    async def healthz(_request: web.Request) -> web.Response:
        st_ = status()
        return web.json_response(st_, status=503 if node._leaving else 200)

    async def ws_route(request: web.Request) -> web.StreamResponse:
        o: _Owner | None = node.owner
        if o is not None and not node._leaving:
            return await o.ws.handle(request)
        if relayed(request) or node._leaving:
            # Relayed by a node that thinks we own the calls: we do not (any more).
            return web.Response(status=503, text="this node does not own the calls; ask the cluster again\n")
        return await node.relay_ws(request)

    def rest_route(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            o: _Owner | None = node.owner
            if o is not None and not node._leaving:
                return cast(web.StreamResponse, await getattr(o.admin, name)(request))
            if relayed(request):
                return web.Response(
                    status=503, text="this node does not own the calls; ask the cluster again\n"
                )
            return await node.relay_http(request)

        return handler

    app.router.add_get("/healthz", healthz)
    if metrics is not None:
        base = _reader(lambda: node.owner.hub if node.owner is not None else None, store, workers)

        async def read_cluster() -> Reading:
            r = await base()
            r.owner = 1 if node.owner is not None else 0
            r.epoch = node.epoch if node.owner is not None else (node.leader.epoch if node.leader else 0)
            r.relayed = len(node._relay_ws)
            return r

        metrics.read_with(read_cluster)
        app.router.add_get("/metrics", _metrics_handler(metrics, settings.metrics_token))
    app.router.add_get("/v1/ws", ws_route)
    for api in ("v4", "v1"):
        app.router.add_post(f"/{api}/{{service}}/{{command}}", rest_route(f"handle_{api}"))
        app.router.add_route("*", f"/{api}/{{service}}/{{command}}", rest_route("wrong_method"))
        app.router.add_route("*", f"/{api}/{{tail:.*}}", rest_route("unknown_path"))
    app.router.add_get("/openapi.json", openapi_handler)
    add_web_routes(app, settings, identity)
    add_sfu_turn_route(app, settings)

    async def on_shutdown(_app: web.Application) -> None:
        await node.leave()
        if deliverer is not None:
            await deliverer.close(grace=STOP_GRACE)
        if workers is not None:
            await workers.close()

    async def on_cleanup(_app: web.Application) -> None:
        await node.close()
        await pool.close()
        await store.close()

    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app, node


def _reader(
    hub: Hub | Callable[[], Hub | None], store: Store, workers: WorkerPool | None
) -> Callable[[], Awaitable[Reading]]:
    """How ``/metrics`` reads the present: the hub's state and the outbox's counts
    (``hub`` may be a function giving the hub of the moment: a cluster node's, or None
    while another node owns the calls)."""

    async def read() -> Reading:
        h = hub() if callable(hub) else hub
        if h is None:
            counts0 = await store.outbox.counts()
            return Reading(
                live_calls=0,
                devices=0,
                sessions=0,
                connections=0,
                push_queue=0,
                outbox={str(state): n for state, n in counts0.items()},
                oldest_pending_age=0.0,
                callback_workers=workers.running if workers is not None else 0,
            )
        hub_ = h
        counts = await store.outbox.counts()
        _, oldest = await store.outbox.list_deliveries(
            [DeliveryState.PENDING, DeliveryState.IN_FLIGHT], page=1, per_page=1
        )
        waited = time.time() - oldest[0].delivery.created_at if oldest else 0.0
        return Reading(
            live_calls=len(hub_.sb.calls),
            devices=len(hub_.sb.devices),
            sessions=len(hub_.sessions),
            connections=hub_.connections(),
            push_queue=hub_.queued_frames(),
            outbox={str(state): n for state, n in counts.items()},
            oldest_pending_age=max(0.0, waited),
            callback_workers=workers.running if workers is not None else 0,
        )

    return read


def _metrics_handler(metrics: Metrics, token: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /metrics``: the Prometheus text format; with a token, only for
    ``Authorization: Bearer <token>`` (compared in constant time)."""
    expected = f"Bearer {token}".encode()

    async def handler(request: web.Request) -> web.Response:
        if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return web.Response(
                status=401,
                text="metrics need the header 'Authorization: Bearer <token>' with the --metrics-token\n",
                headers={"WWW-Authenticate": 'Bearer realm="ringline-metrics"'},
            )
        body = await metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return handler


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Bind (not yet listen on) ``host``:``port`` for every address ``host`` names.
    Raises StartupError naming the address and the fix, e.g. when the port is taken."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StartupError(f"--host {host!r} is not an address of this machine ({exc})") from None
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:  # one free port for every address
                addr = (addr[0], socks[0].getsockname()[1], *addr[2:])
            try:
                sock.bind(addr)
            except OSError as exc:
                h, p = str(addr[0]), str(addr[1])
                where = f"[{h}]:{p}" if family == socket.AF_INET6 else f"{h}:{p}"
                if exc.errno == errno.EADDRINUSE:
                    raise StartupError(
                        f"{where} is already in use: stop the program that listens there "
                        "(another Ringline?) or pick another --port"
                    ) from None
                if exc.errno == errno.EACCES:
                    raise StartupError(
                        f"no permission to listen on {where}: ports below 1024 need root;"
                        " pick --port 1024 or above"
                    ) from None
                raise StartupError(
                    f"cannot listen on {where}: {exc.strerror}; check --host and --port"
                ) from None
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def serve(
    settings: Settings,
    identity: AppIdentity,
    *,
    on_listening: Callable[[list[tuple[str, int]]], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM, then drain and return.

    The address is bound first, then the store opens and the server starts; once it
    listens, ``on_listening`` gets the bound (host, port) pairs (say so to the operator
    there, not before). Raises StartupError, with nothing left running, if it cannot start.
    """
    socks = bind_sockets(settings.host, settings.port)
    if not settings.node_id:
        # The default node id names the port bound (the one picked, with port 0).
        node_id = f"{socket.gethostname()}:{socks[0].getsockname()[1]}"
        settings = dataclasses.replace(settings, node_id=node_id)
        set_node_id(node_id)
    if settings.cluster and not settings.public_url:
        port = socks[0].getsockname()[1]
        settings = dataclasses.replace(settings, public_url=default_address(settings.host, port))
    try:
        if settings.cluster:
            app, _node = await build_cluster_app(settings, identity)
        else:
            app = await build_app(settings, identity)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    # keepalive_timeout closes a connection whose request line and headers have not all
    # arrived that long after it opened (or after its previous response): slow headers
    # cannot hold sockets. A WebSocket, once upgraded, is not affected.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=5.0,
        keepalive_timeout=settings.header_timeout,
    )
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    try:
        await runner.setup()
        # One node: device WebSockets are served by Ringline's own WebSocket
        # (wsserver.py); every other request goes to aiohttp as before.
        ws_handler, aio = app.get(WS_KEY), runner.server
        front = (
            functools.partial(FrontDoor, aio, ws_handler, header_timeout=settings.header_timeout)
            if ws_handler is not None and aio is not None
            else None
        )
        for sock in socks:
            try:
                if front is not None:
                    servers.append(await loop.create_server(front, sock=sock, backlog=4096))
                else:
                    await web.SockSite(runner, sock, backlog=4096).start()
            except OSError as exc:  # another process bound it too and listened first
                h, p = sock.getsockname()[:2]
                raise StartupError(f"cannot listen on {h}:{p}: {exc.strerror}; pick another --port") from None
    except BaseException:
        for server in servers:
            server.close()
        await runner.cleanup()
        for sock in socks:
            sock.close()
        raise
    bound = [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in socks]
    log.info("ringline serving on %s (app %d)", ", ".join(f"{h}:{p}" for h, p in bound), identity.sdk_app_id)
    gcpolicy.settle()  # started: what is alive now is never scanned again
    if on_listening is not None:
        on_listening(bound)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining")
    for server in servers:
        server.close()  # no new connections (aiohttp stops its own sites in cleanup)
    await runner.cleanup()
    log.info("stopped")
