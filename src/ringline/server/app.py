"""The Ringline server: one aiohttp application with the WebSocket, REST and health.

:func:`build_app` assembles it; :func:`serve` runs it until SIGINT/SIGTERM and then
drains (queued writes land, connections close with 1001, the store closes).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiohttp import web

from .config import AppIdentity, Settings
from .hub import Hub
from .rest import AdminApi
from .store import open_store
from .ws import WsHandler

__all__ = ["build_app", "serve"]

log = logging.getLogger("ringline.server")

HUB_KEY = web.AppKey("hub", Hub)


async def build_app(settings: Settings, identity: AppIdentity) -> web.Application:
    """Open the store, restore state, and return the application (not yet listening)."""
    store = open_store(settings.db_url)
    await store.open()
    hub = Hub(settings, store, sdk_app_id=identity.sdk_app_id)
    await hub.start()
    app = web.Application(client_max_size=1 << 20)
    app[HUB_KEY] = hub
    ws = WsHandler(hub, secret_key=identity.secret_key, sdk_app_id=identity.sdk_app_id)
    admin = AdminApi(
        hub,
        sdk_app_id=identity.sdk_app_id,
        secret_key=identity.secret_key,
        admin_identifier=settings.admin_identifier,
    )
    started = time.time()

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "uptime_s": round(time.time() - started, 3),
                "sessions": len(hub.sessions),
                "live_calls": len(hub.sb.calls),
            }
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/ws", ws.handle)
    app.router.add_routes(admin.routes())

    async def on_shutdown(_app: web.Application) -> None:
        await hub.close()

    async def on_cleanup(_app: web.Application) -> None:
        await store.close()

    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve(settings: Settings, identity: AppIdentity) -> None:
    """Run until SIGINT/SIGTERM, then drain and return."""
    app = await build_app(settings, identity)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=4096)
    await site.start()
    log.info("ringline serving on http://%s:%d (app %d)", settings.host, settings.port, identity.sdk_app_id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining")
    await runner.cleanup()
    log.info("stopped")
