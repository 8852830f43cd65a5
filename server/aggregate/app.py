"""Start the aggregate server from its config: database, ingest from the upper broker, web."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from server.aggregate import schema
from server.aggregate.config import AggregateConfig
from server.aggregate.ingest import Ingest, utc_now
from server.aggregate.listener import UpwardListener
from server.web.run import WebHandle

log = logging.getLogger("thuvien.aggregate")

__all__ = ["AggregateDatabaseNotReady", "RunningAggregate", "run_aggregate", "start_aggregate"]


class AggregateDatabaseNotReady(Exception):
    pass


@dataclass
class RunningAggregate:
    config: AggregateConfig
    engine: Engine
    ingest: Ingest
    listener: UpwardListener
    web: WebHandle | None = None

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
        self.listener.stop()
        self.engine.dispose()


def check_schema(url: str) -> None:
    head, current = schema.head_revision(), schema.current_revision(url)
    if current != head:
        raise AggregateDatabaseNotReady(
            f"the aggregate database is at schema {current or 'none'}, the server needs {head}: "
            "run `thuvien aggregate db upgrade --config FILE` first")


def start_aggregate(config: AggregateConfig, *, wait: float = 10.0, web_port: int | None = None,
                    clock: Callable[[], dt.datetime] = utc_now) -> RunningAggregate:
    check_schema(config.database.url)
    engine = schema.make_engine(config.database.url)
    ingest = Ingest(engine, config, clock)
    listed = ingest.sync_schools()
    listener = UpwardListener(config, ingest)
    listener.start(wait=wait)
    web = None
    if config.web.enabled:
        from server.aggregate.web import start_aggregate_web

        try:
            web = start_aggregate_web(config, engine, port=web_port, clock=clock)
        except Exception:
            listener.stop()
            engine.dispose()
            raise
    log.info("aggregate server for %s (%s, %d schools listed) running", config.name, config.level, listed)
    return RunningAggregate(config, engine, ingest, listener, web)


def run_aggregate(config: AggregateConfig, stop: threading.Event) -> None:
    """Serve until `stop` is set (SIGTERM or Ctrl-C in the CLI)."""
    running = start_aggregate(config)
    try:
        stop.wait()
    finally:
        running.stop()
