"""The Ringline server: one aiohttp application with the WebSocket, REST and health.

:func:`build_app` assembles it; :func:`serve` runs it until SIGINT/SIGTERM and then
drains (queued writes land, connections close with 1001, the store closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hmac
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import __version__
from .config import AppIdentity, Settings, load_callback_secrets
from .hub import Hub
from .logs import set_node_id
from .metrics import CONTENT_TYPE, Metrics, Reading
from .rest import AdminApi
from .store import Store, open_store
from .web import add_web_routes
from .webhooks import Deliverer, DeliveryState
from .worker import STOP_GRACE, WorkerConfig, WorkerPool, make_deliverer
from .ws import WsHandler

__all__ = ["PURGE_INTERVAL", "StartupError", "bind_sockets", "build_app", "purge_interval", "serve"]

log = logging.getLogger("ringline.server")


class StartupError(RuntimeError):
    """The server cannot start. ``str(exc)`` is one line for the operator that says what
    is wrong and what to do; nothing of the server is left running."""


HUB_KEY = web.AppKey("hub", Hub)
DELIVERER_KEY = web.AppKey("deliverer", Deliverer)  # only without callback workers
WORKERS_KEY = web.AppKey("callback_workers", WorkerPool)  # only with them

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
        workers = WorkerPool(config, settings.callback_workers, release_owner=store.outbox.release_owner)
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
            await workers.start()
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


def _reader(hub: Hub, store: Store, workers: WorkerPool | None) -> Callable[[], Awaitable[Reading]]:
    """How ``/metrics`` reads the present: the hub's state and the outbox's counts."""

    async def read() -> Reading:
        counts = await store.outbox.counts()
        _, oldest = await store.outbox.list_deliveries(
            [DeliveryState.PENDING, DeliveryState.IN_FLIGHT], page=1, per_page=1
        )
        waited = time.time() - oldest[0].delivery.created_at if oldest else 0.0
        return Reading(
            live_calls=len(hub.sb.calls),
            devices=len(hub.sb.devices),
            sessions=len(hub.sessions),
            connections=hub.connections(),
            push_queue=hub.queued_frames(),
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
    try:
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
    try:
        await runner.setup()
        for sock in socks:
            try:
                await web.SockSite(runner, sock, backlog=4096).start()
            except OSError as exc:  # another process bound it too and listened first
                h, p = sock.getsockname()[:2]
                raise StartupError(f"cannot listen on {h}:{p}: {exc.strerror}; pick another --port") from None
    except BaseException:
        await runner.cleanup()
        for sock in socks:
            sock.close()
        raise
    bound = [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in socks]
    log.info("ringline serving on %s (app %d)", ", ".join(f"{h}:{p}" for h, p in bound), identity.sdk_app_id)
    if on_listening is not None:
        on_listening(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining")
    await runner.cleanup()
    log.info("stopped")
