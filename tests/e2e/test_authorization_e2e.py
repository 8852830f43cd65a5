"""Only registered stations are served, each with what its kind may do; a station whose
clock is off raises one alert. Over a real Mosquitto, against the real server."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from sqlalchemy import func, select

from protocol import CheckoutArgs, ErrorCode, GateSyncArgs, Op, ReturnArgs, topics
from server import db
from server import stations as registry
from server.models import Alert, ProcessedRequest


def request_bytes(op: str, args: dict[str, str], *, at: dt.datetime | None = None,
                  offline: bool = False, request_id: str | None = None) -> bytes:
    at = at or dt.datetime.now(dt.timezone.utc)
    return json.dumps({"v": 1, "id": request_id or str(uuid.uuid4()), "op": op,
                       "at": at.isoformat(), "offline": offline, "args": args}).encode()


def event_bytes(type_: str, data: dict[str, Any], event_id: str) -> bytes:
    return json.dumps({"v": 1, "id": event_id, "type": type_,
                       "at": dt.datetime.now(dt.timezone.utc).isoformat(), "data": data}).encode()


class Station:
    """A raw MQTT client speaking as `name`: what a station with a borrowed identity or a
    hand-made client could send."""

    def __init__(self, raw: Any, site: str, name: str) -> None:
        self.site, self.name = site, name
        self.client = raw(f"as-{name}")
        self.client.subscribe(topics.station_topic(site, name, "reply"))

    def ask(self, payload: bytes) -> dict[str, Any]:
        self.client.publish(topics.station_topic(self.site, self.name, "request"), payload)
        return json.loads(self.client.next()[1])

    def send_event(self, payload: bytes) -> None:
        self.client.publish(topics.station_topic(self.site, self.name, "event"), payload)


def alert_rows(library: Any, type_: str) -> list[Alert]:
    with db.session_factory(library.server.engine)() as session:
        return list(session.scalars(select(Alert).where(Alert.type == type_)))


def processed(library: Any) -> int:
    with db.session_factory(library.server.engine)() as session:
        return session.scalar(select(func.count()).select_from(ProcessedRequest)) or 0


def test_a_gate_cannot_lend(library: Any) -> None:
    gate = library.station("gate-1", "gate")
    reply = gate.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2025-0001", item="TN00001"))
    assert not reply.ok and reply.error is not None
    assert reply.error.code == ErrorCode.UNAUTHORIZED
    assert "gate-1" in reply.error.message and "loan.checkout" in reply.error.message
    assert library.ledger_count() == 0 and processed(library) == 0
    # What a gate may do, it does.
    assert gate.request(Op.GATE_SYNC, GateSyncArgs()).ok


def test_a_return_box_only_returns(library: Any) -> None:
    library.lend("TN00002")
    box = library.station("returnbox-1", "returnbox")
    refused = box.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2025-0001", item="TN00003"))
    assert refused.error is not None and refused.error.code == ErrorCode.UNAUTHORIZED
    assert box.request(Op.LOAN_RETURN, ReturnArgs(item="TN00002")).ok
    assert library.ledger_count() == 2


def test_an_unregistered_station_is_not_served(library: Any, raw: Any, alerts: Any) -> None:
    site = library.config.site
    intruder = Station(raw, site, "intruder-1")
    checkout = request_bytes("loan.checkout", {"patron": "HS-2025-0001", "item": "TN00001"},
                             request_id="intruder-req-1")
    reply = intruder.ask(checkout)
    assert reply["ok"] is False and reply["error"]["code"] == "unauthorized"
    assert "intruder-1" in reply["error"]["message"] and "đăng ký" in reply["error"]["message"]
    assert intruder.ask(request_bytes("patron.identify", {"card": "HS-2025-0001"}))["error"][
        "code"] == "unauthorized"  # not even a reader's name
    # Its events are dropped: the next alert is the registered kiosk's.
    intruder.send_event(event_bytes("device.fault", {"device": "rfid", "state": "fault"}, "ev-1"))
    Station(raw, site, "kiosk-1").send_event(
        event_bytes("device.fault", {"device": "scanner", "state": "fault"}, "ev-2"))
    assert alerts.next_alert("device.fault").data["station"] == "kiosk-1"
    assert [row.station for row in alert_rows(library, "device.fault")] == ["kiosk-1"]
    assert library.ledger_count() == 0 and processed(library) == 0

    # Once registered, the same request id is served: unauthorized answers are not stored.
    library.register("intruder-1", "kiosk")
    reply = intruder.ask(checkout)
    assert reply["ok"] is True and library.ledger_count() == 1

    # Removed again: refused within the registry's refresh (invalidated here at once).
    registry.deactivate(library.server.engine, "intruder-1")
    library.server.service.stations.invalidate()
    again = intruder.ask(request_bytes("loan.return", {"item": "TN00001"}))
    assert again["error"]["code"] == "unauthorized" and library.ledger_count() == 1


def test_a_station_registered_elsewhere_is_served_at_once(library: Any, raw: Any) -> None:
    # `thuvien station add` runs in another process: no invalidate(), the registry
    # reads the table again on a name it does not know (at most once a second).
    newcomer = Station(raw, library.config.site, "kiosk-new")
    assert newcomer.ask(request_bytes("item.info", {"item": "TN00001"}))["ok"] is False
    registry.register(library.server.engine, "kiosk-new", "kiosk")
    deadline = dt.datetime.now() + dt.timedelta(seconds=5)
    while dt.datetime.now() < deadline:
        if newcomer.ask(request_bytes("item.info", {"item": "TN00001"}))["ok"]:
            break
    else:
        raise AssertionError("a newly registered station was not served within 5 s")


def test_clock_skew_raises_one_alert_and_the_request_is_served(library: Any, raw: Any,
                                                               alerts: Any) -> None:
    kiosk = Station(raw, library.config.site, "kiosk-3")
    ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
    for _ in range(3):
        reply = kiosk.ask(request_bytes("item.info", {"item": "TN00001"}, at=ahead))
        assert reply["ok"] is True
    alert = alerts.next_alert("station.clock_skew")
    assert alert.data["station"] == "kiosk-3" and 590 <= alert.data["skew_seconds"] <= 600
    assert "kiosk-3" in alert.message and "nhanh" in alert.message
    # An offline replay's old time is not skew; another station's skew is its own alert.
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)
    assert kiosk.ask(request_bytes("item.info", {"item": "TN00001"}, at=old, offline=True))["ok"]
    behind = Station(raw, library.config.site, "kiosk-4")
    assert behind.ask(request_bytes("item.info", {"item": "TN00001"}, at=old))["ok"]
    other = alerts.next_alert("station.clock_skew")
    assert other.data["station"] == "kiosk-4" and other.data["skew_seconds"] < -10_700
    assert sorted(row.station for row in alert_rows(library, "station.clock_skew")) == \
        ["kiosk-3", "kiosk-4"]
