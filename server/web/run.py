"""Serve the web from the server process: uvicorn on a thread, and the station monitor.

    handle = start_web(config, engine, host="0.0.0.0", port=8080, mqtt=config.mqtt)
    ...
    handle.stop()

`port=0` picks a free port (tests); `handle.url` says where it listens. `mqtt=None`
serves the pages without the live station grid (no broker).
"""

from __future__ import annotations

from typing import Any

import asyncio
import datetime as dt
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from sqlalchemy import Engine

from protocol.configfile import MqttConfig
from server import db
from server.config import ServerConfig
from server.web.app import build_app
from server.web.config import WebConfig
from server.web.context import WebContext, utc_now
from server.web.live import StationMonitor
from server.web.staff import seed_board

log = logging.getLogger("thuvien.web")


class WebStartError(Exception):
    pass


@dataclass
class WebHandle:
    context: WebContext
    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        monitor = self.context.monitor
        if monitor is not None:
            monitor.stop()  # ends every live stream, so uvicorn has nothing left to wait for
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("web: the server thread did not stop within %.0f s", timeout)


def web_config(config: ServerConfig) -> WebConfig:
    return getattr(config, "web", None) or WebConfig()


def start_web(config: ServerConfig, engine: Engine, *, host: str | None = None,
              port: int | None = None, mqtt: MqttConfig | None = None,
              clock: Callable[[], dt.datetime] = utc_now, wait: float = 10.0) -> WebHandle:
    web = web_config(config)
    host = web.host if host is None else host
    port = web.port if port is None else port
    sessions = db.session_factory(engine)
    monitor = None
    if mqtt is not None:
        monitor = StationMonitor(config.site, mqtt)
        with sessions() as session:
            seed_board(session, monitor.board)
        monitor.start(wait=wait)
    ctx = WebContext(config=config, web=web, sessions=sessions, engine=engine, clock=clock,
                     monitor=monitor)
    try:
        handle = serve_app(build_app(ctx), ctx, host, port, name="thuvien-web", wait=wait)
    except WebStartError:
        if monitor is not None:
            monitor.stop()
        raise
    log.info("staff web on http://%s:%d/staff", host, handle.port)
    return handle


def serve_app(app: Any, ctx: Any, host: str, port: int, *, name: str, wait: float = 10.0) -> WebHandle:
    """Serve `app` with uvicorn on a thread of its own; `port=0` picks a free port. The
    school's web and the aggregate's both start this way."""
    # We bind the socket ourselves: a busy port fails here, clearly, not in the thread.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise WebStartError(f"the web cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    bound_port = sock.getsockname()[1]

    server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off",
        timeout_graceful_shutdown=2, proxy_headers=True))
    ready = threading.Event()

    def serve() -> None:
        async def main() -> None:
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            ready.set()
            await task
        try:
            asyncio.run(main())
        except Exception:
            log.exception("web: the server stopped with an error")
        finally:
            ready.set()
            sock.close()

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    if not ready.wait(wait) or not server.started:
        server.should_exit = True
        raise WebStartError(f"the web did not start on {host}:{bound_port}")
    return WebHandle(context=ctx, server=server, thread=thread, host=host, port=bound_port)
