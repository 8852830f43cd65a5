"""gate.sync and station events through a real Mosquitto and the real server."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

import protocol
from protocol import (
    CheckoutArgs,
    GateAlarmData,
    GateSyncArgs,
    GateSyncResult,
    GateVisitorsData,
    Op,
    ReturnArgs,
    parse_model,
    topics,
)
from server import db
from server.models import Alert as AlertRow
from server.models import Visit


def rows(library: Any, model: type[Any]) -> list[Any]:
    with db.session_factory(library.server.engine)() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def alerts_of(client: Any, timeout: float = 5.0) -> protocol.Alert:
    topic, payload, _retain = client.next(timeout)
    assert topic.endswith("/alert")
    return parse_model(protocol.Alert, payload)


def event_bytes(type_: str, data: dict[str, Any], event_id: str) -> bytes:
    return json.dumps({"v": 1, "id": event_id, "type": type_,
                       "at": "2026-11-21T09:30:00+07:00", "data": data}).encode()


def test_gate_sync_follows_a_checkout_and_a_return(library: Any) -> None:
    gate, kiosk = library.station("gate-1"), library.station("kiosk-1")
    first = gate.request(Op.GATE_SYNC, GateSyncArgs()).result_as(GateSyncResult)
    assert first == GateSyncResult(items=[], seq=0)

    assert kiosk.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2025-0001", item="TN00002")).ok
    lent = gate.request(Op.GATE_SYNC, GateSyncArgs()).result_as(GateSyncResult)
    assert lent.items == ["TN.00002", "TN00002"] and lent.seq == 1

    assert kiosk.request(Op.LOAN_RETURN, ReturnArgs(item="TN.00002")).ok
    back = gate.request(Op.GATE_SYNC, GateSyncArgs()).result_as(GateSyncResult)
    assert back == GateSyncResult(items=[], seq=2)
    assert library.ledger_count() == 2  # syncs are not in the ledger


def test_gate_alarm_reaches_the_staff_as_an_alert_with_the_title(library: Any, raw: Any) -> None:
    staff = raw("staff-web")
    staff.subscribe(topics.alert(library.config.site))
    gate = library.station("gate-1")
    assert gate.publish_event("gate.alarm", GateAlarmData(reason="afi", item="TN00003",
                                                          uid="E0040150AABBCCDD", afi=0x07))
    alert = alerts_of(staff)
    assert alert.type == "gate.alarm"
    assert alert.message == ("Cổng gate-1: «Dế Mèn phiêu lưu ký» (TN.00003) chưa được mượn "
                             "đi qua cổng.")
    assert {key: alert.data[key] for key in ("station", "item", "title", "reason", "uid")} == {
        "station": "gate-1", "item": "TN00003", "title": "Dế Mèn phiêu lưu ký", "reason": "afi",
        "uid": "E0040150AABBCCDD"}
    stored = wait_for(lambda: rows(library, AlertRow))
    assert [(row.alert_id, row.message, row.acknowledged_at) for row in stored] == \
        [(alert.id, alert.message, None)]


def test_junk_on_the_event_topic_does_not_stop_the_server(library: Any, raw: Any) -> None:
    site = library.config.site
    staff = raw("staff-web")
    staff.subscribe(topics.alert(site))
    vandal = raw("vandal")
    event_topic = topics.station_topic(site, "gate-9", "event")
    junk = [b"", b"\xff\xfe garbage", b"[]", b'{"v":1}', b"x" * 70_000,
            event_bytes("gate.alarm", {"reason": "bogus"}, "junk-1"),
            event_bytes("gate.visitors", {"count": -5, "since": "2026-11-21T09:00:00+07:00"},
                        "junk-2")]
    for payload in junk * 20:
        vandal.publish(event_topic, payload)
    # The same event twice: one alert. The next alert to arrive is the marker's.
    duplicate = event_bytes("gate.alarm", {"reason": "not_on_loan", "item": "TN00004"}, "dup-1")
    vandal.publish(event_topic, duplicate)
    vandal.publish(event_topic, duplicate)
    vandal.publish(event_topic, event_bytes("device.fault", {"device": "rfid", "state": "fault"},
                                            "marker-1"))

    kiosk = library.station("kiosk-1")
    assert kiosk.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="GV-0001", item="TN00001")).ok
    assert [alerts_of(staff).type, alerts_of(staff).type] == ["gate.alarm", "device.fault"]
    assert library.server.service.connected.is_set()
    assert wait_for(lambda: library.server.service.events.handled == len(junk) * 20 + 3)


def test_gate_visitors_are_stored_for_the_statistics(library: Any, raw: Any) -> None:
    staff = raw("staff-web")
    staff.subscribe(topics.alert(library.config.site))
    gate = library.station("gate-1")
    # The station stamps the event with its own clock: `since` an hour before that.
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).replace(microsecond=0)
    assert gate.publish_event("gate.visitors", GateVisitorsData(count=42, since=since))
    visits = wait_for(lambda: rows(library, Visit))
    assert [(visit.station, visit.count, visit.since) for visit in visits] == \
        [("gate-1", 42, since)]
    assert visits[0].until > since
    assert staff.messages.empty()  # visitors are statistics, not alerts
