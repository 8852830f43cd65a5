"""The site's registered stations: who may speak to the server, and what each kind may do.

`register`, `list_stations` and `deactivate` are the small API behind
`thuvien station add|list|remove`; they take the server's sessionmaker (or an Engine)
and commit on their own. `StationRegistry` is the server's in-memory copy of the table:
each request is checked against a dict, and the table is read again only when it is
older than `refresh_seconds` or when `invalidate()` says it changed, so authorization
adds no database round trip to a request.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from protocol import Op
from protocol.topics import check_name
from server.models import Station, StationKind

log = logging.getLogger("thuvien.server.stations")

# What each kind of station may ask. A gate cannot lend; a return box only returns.
ALLOWED_OPS: dict[StationKind, frozenset[Op]] = {
    StationKind.KIOSK: frozenset(Op),
    StationKind.DESK: frozenset(Op),
    StationKind.RETURNBOX: frozenset({Op.LOAN_RETURN, Op.ITEM_INFO}),
    StationKind.GATE: frozenset({Op.GATE_SYNC, Op.ITEM_INFO}),
}

Sessions = sessionmaker[Session] | Engine


@dataclass(frozen=True, slots=True)
class StationRecord:
    name: str
    kind: StationKind
    registered_at: dt.datetime
    active: bool


def _session(sessions: Sessions) -> Session:
    if isinstance(sessions, Engine):
        return Session(sessions, expire_on_commit=False)
    return sessions()


def _record(row: Station) -> StationRecord:
    return StationRecord(name=row.name, kind=StationKind(row.kind),
                         registered_at=row.registered_at, active=row.active)


def parse_kind(kind: str | StationKind) -> StationKind:
    try:
        return StationKind(kind)
    except ValueError:
        choices = ", ".join(member.value for member in StationKind)
        raise ValueError(f"unknown station kind {kind!r}: one of {choices}") from None


def register(sessions: Sessions, name: str, kind: str | StationKind,
             now: dt.datetime | None = None) -> StationRecord:
    """Register `name` as a station of `kind`, or update and reactivate it if known.

    Raises ValueError for a name that cannot appear in a topic or an unknown kind.
    """
    check_name(name, "station")
    station_kind = parse_kind(kind)
    with _session(sessions) as session, session.begin():
        row = session.scalars(select(Station).where(Station.name == name)).first()
        if row is None:
            row = Station(name=name, kind=station_kind.value, active=True,
                          registered_at=now or dt.datetime.now(dt.timezone.utc))
            session.add(row)
            log.info("registered station %s (%s)", name, station_kind.value)
        else:
            if row.kind != station_kind.value or not row.active:
                log.info("station %s is now an active %s (was %s%s)", name,
                         station_kind.value, row.kind, "" if row.active else ", inactive")
            row.kind = station_kind.value
            row.active = True
        session.flush()
        return _record(row)


def list_stations(sessions: Sessions, *, include_inactive: bool = True) -> builtins.list[StationRecord]:
    """Every registered station, by name."""
    with _session(sessions) as session:
        query = select(Station).order_by(Station.name)
        if not include_inactive:
            query = query.where(Station.active.is_(True))
        return [_record(row) for row in session.scalars(query)]


def deactivate(sessions: Sessions, name: str) -> bool:
    """Stop serving `name` (kept for the ledger's history). False if it is not registered."""
    with _session(sessions) as session, session.begin():
        changed = session.execute(update(Station).where(Station.name == name)
                                  .values(active=False)).rowcount
    if changed:
        log.info("deactivated station %s", name)
    return bool(changed)


def get(sessions: Sessions, name: str) -> StationRecord | None:
    with _session(sessions) as session:
        row = session.scalars(select(Station).where(Station.name == name)).first()
        return None if row is None else _record(row)


# `list` is the name the brief's API used; the module keeps the builtin usable as `builtins.list`.
list = list_stations  # noqa: A001


class StationRegistry:
    """The active stations and their kinds, read from the table every `refresh_seconds`,
    at once after `invalidate()`, and on a name it does not know (at most every
    `miss_seconds`: a station registered a moment ago is served at once, while a flood
    from an unknown one costs one read a second)."""

    def __init__(self, engine: Engine, refresh_seconds: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 miss_seconds: float = 1.0) -> None:
        self._engine = engine
        self._refresh = refresh_seconds
        self._miss = min(miss_seconds, refresh_seconds)
        self._monotonic = monotonic
        self._kinds: dict[str, StationKind] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        self._loaded_at = None

    def kind(self, station: str) -> StationKind | None:
        """The kind of an active registered station, None for any other."""
        now = self._monotonic()
        loaded = self._loaded_at
        if loaded is None or now - loaded >= self._refresh:
            self._reload(now)
        kind = self._kinds.get(station)
        if kind is None and self._loaded_at is not None and now - self._loaded_at >= self._miss:
            self._reload(now)
            kind = self._kinds.get(station)
        return kind

    def may(self, station: str, op: Op) -> bool:
        kind = self.kind(station)
        return kind is not None and op in ALLOWED_OPS[kind]

    @property
    def stations(self) -> dict[str, StationKind]:
        """The copy in use (for the logs and tests)."""
        return dict(self._kinds)

    def _reload(self, now: float) -> None:
        with self._lock:
            try:
                with self._engine.connect() as db:
                    rows = db.execute(select(Station.name, Station.kind)
                                      .where(Station.active.is_(True))).all()
            except Exception:
                if self._loaded_at is None and not self._kinds:
                    raise
                # Keep serving from the last copy; the next request tries again.
                log.exception("could not reload the station registry; using the last copy")
                return
            kinds: dict[str, StationKind] = {}
            for name, kind in rows:
                try:
                    kinds[name] = StationKind(kind)
                except ValueError:
                    log.error("station %s has an unknown kind %r in the database; not served",
                              name, kind)
            self._kinds = kinds
            self._loaded_at = now


__all__ = ["ALLOWED_OPS", "StationRecord", "StationRegistry", "deactivate", "get",
           "list_stations", "parse_kind", "register"]
