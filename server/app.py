"""Start the library server from a configuration: database, circulation, MQTT."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from server import db
from server.circulation import Circulation
from server.config import ServerConfig
from server.service import LibraryService
from server.sip2.server import Sip2Server, mqtt_publisher
from server.upward import UpwardPublisher
from server.web.run import WebHandle, start_web

log = logging.getLogger("thuvien.server")


class DatabaseNotReady(Exception):
    pass


@dataclass
class RunningServer:
    config: ServerConfig
    engine: Engine
    service: LibraryService
    web: WebHandle | None = None
    upward: UpwardPublisher | None = None
    sip2: Sip2Server | None = None

    def stop(self) -> None:
        if self.sip2 is not None:
            self.sip2.stop()
        if self.web is not None:
            self.web.stop()
        if self.upward is not None:
            self.upward.stop()
        self.service.stop()
        self.engine.dispose()


def start_server(config: ServerConfig, *, wait: float = 10.0,
                 clock: Callable | None = None) -> RunningServer:
    url = config.database.url
    head = db.head_revision()
    current = db.current_revision(url)
    if current != head:
        raise DatabaseNotReady(
            f"the database {url} is at schema {current or 'none'}, the server needs {head}: "
            f"run `thuvien db upgrade --config FILE` first")
    engine = db.make_engine(url, config.database.sqlite_synchronous)
    kwargs = {"clock": clock} if clock is not None else {}
    circulation = Circulation(db.session_factory(engine), config, **kwargs)
    service = LibraryService(config, circulation)
    service.start(wait=wait)
    upward = None
    if config.upward.enabled:
        # Reporting to the commune office and the province, by the broker's bridge.
        upward = UpwardPublisher(config, engine, **kwargs)
        upward.start()
    sip2 = None
    if config.sip2.enabled:
        # Other self-check machines (and our kiosk on its SIP2 backend) on the same core.
        sip2 = Sip2Server(config.sip2, circulation, site=config.site, library_name=config.school_name,
                          language=config.language, stations=service.stations,
                          publish=mqtt_publisher(service))
        sip2.start()
    web = None
    if config.web.enabled:
        # The staff pages and the public catalogue, in this process: one program on a Pi.
        try:
            web = start_web(config, engine, mqtt=config.mqtt,
                            **({"clock": clock} if clock is not None else {}))
        except Exception:
            if sip2 is not None:
                sip2.stop()
            if upward is not None:
                upward.stop()
            service.stop()
            engine.dispose()
            raise
    return RunningServer(config=config, engine=engine, service=service, web=web, upward=upward,
                         sip2=sip2)


def run_server(config: ServerConfig, stop: threading.Event) -> None:
    """Serve until `stop` is set (by SIGTERM or Ctrl-C in the CLI)."""
    running = start_server(config)
    log.info("library server for %s (%s) running", config.site, config.school_name)
    try:
        stop.wait()
    finally:
        running.stop()
