"""Registered stations: the API behind `thuvien station`, the server's in-memory registry,
who may ask what, and the clock skew alert."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from sqlalchemy import event, select, update

import protocol
from protocol import ErrorCode, Op
from server import stations
from server.circulation import Circulation
from server.config import ServerConfig, StationsConfig
from server.events import CLOCK_SKEW, StationEvents
from server.models import Alert, Station, StationKind
from server.service import LibraryService
from server.stations import ALLOWED_OPS, StationRegistry

from circulation_sample import TN, WallClock, Library, local, make_config, make_request

ARGS: dict[Op, dict[str, str]] = {
    Op.PATRON_IDENTIFY: {"card": "HS-2024-0153"},
    Op.LOAN_CHECKOUT: {"patron": "HS-2024-0153", "item": TN[0]},
    Op.LOAN_RETURN: {"item": TN[0]},
    Op.LOAN_RENEW: {"patron": "HS-2024-0153", "item": TN[0]},
    Op.ITEM_INFO: {"item": TN[0]},
    Op.GATE_SYNC: {},
    Op.STOCKTAKE_SCAN: {"items": [TN[0]]},
}
MAY = {
    "kiosk": set(Op), "desk": set(Op),
    "returnbox": {Op.LOAN_RETURN, Op.ITEM_INFO},
    "gate": {Op.GATE_SYNC, Op.ITEM_INFO},
}


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def count_selects(library: Library) -> list[str]:
    """The registry's reads of the stations table, as they happen."""
    seen: list[str] = []

    @event.listens_for(library.engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM stations" in statement and "stations.active IS" in statement:
            seen.append(statement)

    return seen


# --- the API of `thuvien station` -------------------------------------------------------

def test_register_list_deactivate(library: Library) -> None:
    at = local(2026, 9, 1)
    gate = stations.register(library.sessions, "gate-1", "gate", now=at)
    assert gate == stations.StationRecord("gate-1", StationKind.GATE, at, True)
    stations.register(library.engine, "kiosk-1", StationKind.KIOSK)
    assert [(s.name, s.kind, s.active) for s in stations.list_stations(library.sessions)] == \
        [("gate-1", "gate", True), ("kiosk-1", "kiosk", True)]
    assert stations.deactivate(library.sessions, "gate-1") is True
    assert stations.deactivate(library.sessions, "gate-9") is False
    assert [s.name for s in stations.list_stations(library.engine, include_inactive=False)] \
        == ["kiosk-1"]
    assert stations.get(library.sessions, "gate-1").active is False  # type: ignore[union-attr]
    # Registering again reactivates it and may change its kind; registered_at stays.
    again = stations.register(library.sessions, "gate-1", "returnbox")
    assert (again.kind, again.active, again.registered_at) == ("returnbox", True, at)
    assert stations.list is stations.list_stations


@pytest.mark.parametrize(("name", "kind", "words"), [
    ("Kiosk 1", "kiosk", "station 'Kiosk 1'"),
    ("", "kiosk", "station ''"),
    ("kiosk-1", "printer", "unknown station kind 'printer'"),
])
def test_register_refuses_bad_names_and_kinds(library: Library, name: str, kind: str,
                                              words: str) -> None:
    with pytest.raises(ValueError, match=words):
        stations.register(library.sessions, name, kind)
    assert stations.list_stations(library.sessions) == []


# --- who may ask what ---------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "op"), list(itertools.product(MAY, Op)))
def test_each_kind_may_do_its_operations_only(library: Library, kind: str, op: Op) -> None:
    stations.register(library.sessions, "station-1", kind)
    registry = StationRegistry(library.engine)
    assert registry.may("station-1", op) is (op in MAY[kind])
    assert (op in ALLOWED_OPS[StationKind(kind)]) is (op in MAY[kind])


def test_unregistered_and_deactivated_stations_may_do_nothing(library: Library) -> None:
    stations.register(library.sessions, "kiosk-1", "kiosk")
    stations.register(library.sessions, "kiosk-2", "kiosk")
    stations.deactivate(library.sessions, "kiosk-2")
    registry = StationRegistry(library.engine)
    assert registry.kind("kiosk-1") == StationKind.KIOSK
    assert registry.kind("kiosk-2") is None and registry.kind("kiosk-3") is None
    assert not any(registry.may(name, op) for name in ("kiosk-2", "kiosk-3") for op in Op)


def test_the_registry_reads_the_table_only_when_due(library: Library) -> None:
    stations.register(library.sessions, "kiosk-1", "kiosk")
    ticks = Ticks()
    registry = StationRegistry(library.engine, refresh_seconds=10, monotonic=ticks)
    reads = count_selects(library)
    for _ in range(1000):
        assert registry.may("kiosk-1", Op.LOAN_CHECKOUT)
    assert len(reads) == 1
    # Removed elsewhere (the CLI): still served until the refresh is due.
    stations.deactivate(library.sessions, "kiosk-1")
    ticks.now += 9
    assert registry.kind("kiosk-1") == StationKind.KIOSK and len(reads) == 1
    ticks.now += 1
    assert registry.kind("kiosk-1") is None and len(reads) == 2


def test_an_unknown_name_reloads_at_most_once_a_second(library: Library) -> None:
    ticks = Ticks()
    registry = StationRegistry(library.engine, refresh_seconds=60, monotonic=ticks)
    reads = count_selects(library)
    assert registry.kind("kiosk-1") is None and len(reads) == 1
    stations.register(library.sessions, "kiosk-1", "kiosk")
    for _ in range(100):  # a flood from a station not registered yet
        assert registry.kind("kiosk-1") is None
    assert len(reads) == 1
    ticks.now += 1
    assert registry.kind("kiosk-1") == StationKind.KIOSK and len(reads) == 2


def test_invalidate_reloads_at_once(library: Library) -> None:
    registry = StationRegistry(library.engine, refresh_seconds=60, monotonic=Ticks())
    assert registry.kind("gate-1") is None
    stations.register(library.sessions, "gate-1", "gate")
    registry.invalidate()
    assert registry.kind("gate-1") == StationKind.GATE


def test_a_row_of_an_unknown_kind_is_not_served(library: Library) -> None:
    stations.register(library.sessions, "kiosk-1", "kiosk")
    with library.sessions.begin() as session:
        session.execute(update(Station).values(kind="toaster"))
    registry = StationRegistry(library.engine)
    assert registry.kind("kiosk-1") is None


def test_a_failed_reload_keeps_the_last_copy(library: Library) -> None:
    stations.register(library.sessions, "kiosk-1", "kiosk")
    ticks = Ticks()
    registry = StationRegistry(library.engine, refresh_seconds=1, monotonic=ticks)
    assert registry.kind("kiosk-1") == StationKind.KIOSK
    with library.engine.begin() as db:
        db.exec_driver_sql("ALTER TABLE stations RENAME TO stations_gone")
    ticks.now += 5
    assert registry.kind("kiosk-1") == StationKind.KIOSK


# --- the service's answer -----------------------------------------------------------------

def service_for(library: Library, clock: WallClock, config: ServerConfig | None = None,
                wall_clock: Any = None) -> LibraryService:
    config = config or make_config()
    circulation = Circulation(library.sessions, config, clock)
    return LibraryService(config, circulation, wall_clock=wall_clock or clock)


def test_a_gate_may_not_lend(library: Library, clock: WallClock) -> None:
    stations.register(library.sessions, "gate-1", "gate")
    service = service_for(library, clock)
    request = make_request(Op.LOAN_CHECKOUT, clock.now, **ARGS[Op.LOAN_CHECKOUT])
    reply = service.authorize("gate-1", request)
    assert reply is not None and not reply.ok and reply.error is not None
    assert reply.error.code == ErrorCode.UNAUTHORIZED and reply.id == request.id
    assert reply.error.message == "Trạm gate-1 (gate) không được phép thực hiện thao tác " \
                                  "loan.checkout."
    assert service.authorize("gate-1", make_request(Op.GATE_SYNC, clock.now)) is None


def test_an_unregistered_station_is_not_served(library: Library, clock: WallClock) -> None:
    service = service_for(library, clock, make_config("en"))
    for op in Op:
        reply = service.authorize("kiosk-7", make_request(op, clock.now, **ARGS[op]))
        assert reply is not None and reply.error is not None
        assert reply.error.code == ErrorCode.UNAUTHORIZED
        assert reply.error.message.startswith("Station kiosk-7 is not registered")


def test_registration_can_be_switched_off(library: Library, clock: WallClock) -> None:
    config = make_config().model_copy(
        update={"stations": StationsConfig(require_registration=False)})
    service = service_for(library, clock, config)
    request = make_request(Op.LOAN_CHECKOUT, clock.now, **ARGS[Op.LOAN_CHECKOUT])
    assert service.authorize("anything-1", request) is None


def test_stations_config_is_checked() -> None:
    assert StationsConfig().require_registration is True
    assert StationsConfig().clock_skew_alert_seconds == 120
    with pytest.raises(ValueError, match="extra"):
        StationsConfig.model_validate({"require_registraton": False})
    with pytest.raises(ValueError, match="greater than 0"):
        StationsConfig(refresh_seconds=0)


# --- clock skew ---------------------------------------------------------------------------

def skew_alerts(library: Library) -> list[Alert]:
    with library.sessions() as session:
        return list(session.scalars(select(Alert).where(Alert.type == CLOCK_SKEW)))


def test_clock_skew_raises_one_alert_per_station_while_open(library: Library,
                                                           clock: WallClock) -> None:
    events = StationEvents(library.engine, make_config(), clock)
    first = events.clock_skew("kiosk-1", 305.4, clock.now + dt.timedelta(seconds=305))
    assert first.outcome == "new"
    [alert] = first.alerts
    assert alert.type == CLOCK_SKEW and alert.data["skew_seconds"] == 305
    assert alert.message == "Trạm kiosk-1: đồng hồ nhanh 5 min 05 s so với máy chủ. " \
                            "Vui lòng chỉnh lại giờ của trạm."
    assert events.clock_skew("kiosk-1", 400, clock.now).outcome == "duplicate"
    behind = events.clock_skew("kiosk-2", -7300, clock.now)
    assert "chậm 2 h 01 min" in behind.alerts[0].message
    assert len(skew_alerts(library)) == 2
    # Acknowledged, and still wrong: a new alert.
    with library.sessions.begin() as session:
        session.execute(update(Alert).values(acknowledged_at=clock(), acknowledged_by="CB-0001"))
    assert events.clock_skew("kiosk-1", 300, clock.now).outcome == "new"


def test_the_service_reports_skew_once_and_serves_the_request(library: Library,
                                                              clock: WallClock) -> None:
    stations.register(library.sessions, "kiosk-1", "kiosk")
    service = service_for(library, clock)
    published: list[protocol.Alert] = []
    service.events._publish = published.append  # the broker is not what is tested here
    service.events.start()
    try:
        ahead = clock.now + dt.timedelta(minutes=3)
        for _ in range(5):
            service.check_clock("kiosk-1", make_request(Op.ITEM_INFO, ahead, item=TN[0]))
        service.check_clock("kiosk-1", make_request(Op.ITEM_INFO, clock.now + dt.timedelta(
            seconds=119), item=TN[0]))
    finally:
        service.events.stop()
    [alert] = published
    assert alert.data == {"station": "kiosk-1", "skew_seconds": 180,
                          "station_at": ahead.isoformat(),
                          "server_at": clock.now.isoformat()}
    assert [row.alert_id for row in skew_alerts(library)] == [alert.id]
