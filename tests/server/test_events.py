"""gate.sync, and station events turned into stored events, alerts and visits."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

import protocol
from protocol import encode, parse_model
from server import db
from server.circulation import Circulation
from server.events import QUEUE_SIZE, EventWorker, Handled, StationEvents
from server.models import Alert as AlertRow
from server.models import Base, Copy, LedgerEntry, Loan, Reader, StationEvent, Title, Visit

from circulation_sample import (
    AN,
    HOA,
    TN,
    TN1_BARCODE,
    TN2_RFID,
    Library,
    local,
    make_config,
    make_request,
)

AT = "2026-10-05T09:00:00+07:00"


def event_bytes(type_: str, data: dict[str, Any], event_id: str | None = None,
                at: str = AT, **extra: Any) -> bytes:
    return json.dumps({"v": 1, "id": event_id or str(uuid.uuid4()), "type": type_, "at": at,
                       "data": data, **extra}).encode()


def alarm(item: str | None = None, reason: str = "not_on_loan", **more: Any) -> bytes:
    data: dict[str, Any] = {"reason": reason, **more}
    if item is not None:
        data["item"] = item
    return event_bytes("gate.alarm", data)


@pytest.fixture
def events(library: Library, clock: Any) -> StationEvents:
    return StationEvents(library.engine, make_config(), clock)


def alert_rows(library: Library) -> list[AlertRow]:
    with library.sessions() as session:
        return list(session.scalars(select(AlertRow).order_by(AlertRow.id)))


def only_alert(handled: Handled) -> protocol.Alert:
    assert handled.outcome == "new", handled.detail
    assert len(handled.alerts) == 1
    alert = handled.alerts[0]
    # What the server publishes parses back as the protocol's Alert.
    assert parse_model(protocol.Alert, encode(alert)) == alert
    return alert


# --- gate.sync ---------------------------------------------------------------------

def test_gate_sync_lists_every_identifier_of_the_copies_on_loan_with_the_last_seq(
        ask: Any, library: Library) -> None:
    reply, _ = ask("gate.sync")
    assert reply.ok and reply.result == {"items": [], "seq": 0}

    assert ask("loan.checkout", patron=AN, item=TN[0])[0].ok
    assert ask("loan.checkout", patron=AN, item=TN[1])[0].ok
    assert ask("loan.checkout", patron=HOA, item=TN[2])[0].ok
    reply, entries = ask("gate.sync")
    result = reply.result_as(protocol.GateSyncResult)
    assert entries == []  # a read: nothing for the ledger
    assert result.seq == library.ledger()[-1].seq == 3
    assert result.items == sorted([TN[0], TN1_BARCODE, TN[1], TN2_RFID, TN[2]])

    assert ask("loan.return", item=TN1_BARCODE)[0].ok
    result = ask("gate.sync")[0].result_as(protocol.GateSyncResult)
    assert result.items == sorted([TN[1], TN2_RFID, TN[2]])
    assert result.seq == 4
    assert library.count(LedgerEntry) == 4


def test_gate_sync_is_answered_once_per_request_id(ask: Any) -> None:
    first = ask("gate.sync", request_id="sync-1")[0]
    assert ask("loan.checkout", patron=AN, item=TN[0])[0].ok
    # A repeated id hears what it heard the first time, as every read does.
    assert ask("gate.sync", request_id="sync-1")[0] == first
    assert ask("gate.sync", request_id="sync-2")[0].result["items"] != first.result["items"]


def test_gate_sync_too_big_for_one_reply_keeps_the_accession_numbers(
        ask: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ask("loan.checkout", patron=AN, item=TN[0])[0].ok
    assert ask("loan.checkout", patron=AN, item=TN[1])[0].ok
    monkeypatch.setattr(protocol, "MAX_PAYLOAD_BYTES", 1024 + 60)
    result = ask("gate.sync")[0].result_as(protocol.GateSyncResult)
    assert result.items == [TN[0], TN[1]]


def test_gate_sync_over_a_school_sized_loan_table(library: Library, config: Any,
                                                   clock: Any) -> None:
    # 10,000 copies, 2,000 on loan: one statement, every identifier, the reply under 64 KiB.
    with library.sessions.begin() as session:
        title = Title(title="Sách mẫu")
        session.add(title)
        session.flush()
        reader_id = session.scalars(select(Reader.id).where(Reader.code == HOA)).one()
        copies = [Copy(title_id=title.id, kind="TN", accession_number=f"TN.{n:05d}",
                       barcode=f"TN{n:05d}") for n in range(100, 10100)]
        session.add_all(copies)
        session.flush()
        session.add(LedgerEntry(request_id="seed", op="checkout", copy_id=copies[0].id,
                                reader_id=reader_id, station="desk", station_at=clock(),
                                server_at=clock(), offline=False))
        session.flush()
        seq = session.scalar(select(LedgerEntry.seq))
        session.add_all([Loan(copy_id=copy.id, reader_id=reader_id, loaned_at=clock(),
                              due_on=dt.date(2026, 10, 12), checkout_seq=seq)
                         for copy in copies[::5]])
    circulation = Circulation(library.sessions, config, clock)
    reply, _ = circulation.handle(make_request("gate.sync", clock.now), "gate-1")
    result = reply.result_as(protocol.GateSyncResult)
    assert len(result.items) == 4000 and "TN00100" in result.items and "TN.00100" in result.items
    assert result.seq == seq
    assert len(encode(reply)) < protocol.MAX_PAYLOAD_BYTES


# --- gate.alarm ----------------------------------------------------------------------

def test_gate_alarm_names_the_station_the_title_and_the_item(events: StationEvents,
                                                              library: Library) -> None:
    alert = only_alert(events.handle("gate-1", alarm(TN1_BARCODE, uid="E004015012345678",
                                                     afi=7, reason="afi")))
    assert alert.type == "gate.alarm"
    assert alert.message == ("Cổng gate-1: «Dế Mèn phiêu lưu ký» (TN.00001) chưa được mượn "
                             "đi qua cổng.")
    assert alert.data == {"station": "gate-1", "item": TN1_BARCODE,
                          "title": "Dế Mèn phiêu lưu ký", "reason": "afi",
                          "uid": "E004015012345678", "afi": 7, "accession_number": TN[0],
                          "on_loan": False}
    assert alert.at == dt.datetime.fromisoformat(AT)
    rows = alert_rows(library)
    assert [(row.alert_id, row.type, row.station, row.message, row.data) for row in rows] == \
        [(alert.id, "gate.alarm", "gate-1", alert.message, alert.data)]
    assert rows[0].acknowledged_by is None and rows[0].acknowledged_at is None
    assert library.count(StationEvent) == 1


def test_gate_alarm_for_an_item_on_loan_says_to_check_its_tag(
        events: StationEvents, ask: Any) -> None:
    assert ask("loan.checkout", patron=AN, item=TN2_RFID.lower())[0].ok
    alert = only_alert(events.handle("gate-1", alarm(TN2_RFID.lower())))
    assert alert.data["on_loan"] is True and alert.data["title"] == "Dế Mèn phiêu lưu ký"
    assert "đang được mượn" in alert.message and "(TN.00002)" in alert.message


def test_gate_alarm_for_an_unknown_or_unreadable_tag_is_still_an_alert(
        events: StationEvents, library: Library) -> None:
    unknown = only_alert(events.handle("gate-1", alarm("XX-404")))
    assert unknown.message == ("Cổng gate-1: một tem mã XX-404 không có trong thư viện "
                               "đi qua cổng.")
    assert unknown.data["title"] is None and unknown.data["item"] == "XX-404"
    unreadable = only_alert(events.handle("gate-2", alarm(reason="unreadable", uid="E0A1")))
    assert unreadable.message == ("Cổng gate-2: một sách có tem RFID không đọc được "
                                  "đi qua cổng (UID E0A1).")
    assert len(alert_rows(library)) == 2


def test_alert_messages_follow_the_site_language(library: Library, clock: Any) -> None:
    english = StationEvents(library.engine, make_config(language="en"), clock)
    alert = only_alert(english.handle("gate-1", alarm(TN[3])))
    assert alert.message == ("Gate gate-1: «Dế Mèn phiêu lưu ký» (TN.00004) went through the "
                             "gate without being checked out.")


# --- dedupe and junk -------------------------------------------------------------------

def test_an_event_id_is_handled_once_per_station(events: StationEvents,
                                                  library: Library) -> None:
    payload = alarm(TN[0])
    assert events.handle("gate-1", payload).outcome == "new"
    again = events.handle("gate-1", payload)
    assert again.outcome == "duplicate" and again.alerts == []
    # Another station's id space is its own: it cannot silence gate-1 by reusing ids.
    assert events.handle("gate-2", payload).outcome == "new"
    assert len(alert_rows(library)) == 2
    visits = event_bytes("gate.visitors", {"count": 5, "since": "2026-10-05T08:00:00+07:00"})
    assert events.handle("gate-1", visits).outcome == "new"
    assert events.handle("gate-1", visits).outcome == "duplicate"
    assert library.count(Visit) == 1


JUNK = [
    pytest.param(b"", id="empty"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"\xff\xfe\x00\x81", id="not-utf8"),
    pytest.param(b"[1, 2]", id="array"),
    pytest.param(b"null", id="null"),
    pytest.param(event_bytes("gate.alarm", {"reason": "x"}), id="unknown-alarm-reason"),
    pytest.param(event_bytes("gate.alarm", {"reason": "afi", "afi": 999}), id="afi-out-of-range"),
    pytest.param(event_bytes("gate.alarm", {"reason": "afi", "colour": "red"}), id="extra-data"),
    pytest.param(event_bytes("gate.visitors", {"count": -1, "since": AT}), id="negative-count"),
    pytest.param(event_bytes("gate.visitors", {"count": 1, "since": "2026-10-05T08:00:00"}),
                 id="naive-since"),
    pytest.param(event_bytes("device.fault", {"device": "rfid", "state": "broken"}),
                 id="unknown-device-state"),
    pytest.param(event_bytes("returnbox.full", {}), id="missing-data"),
    pytest.param(event_bytes("gate.alarm", {"reason": "afi"}, at="yesterday"), id="bad-at"),
    pytest.param(event_bytes("Gate Alarm!", {}), id="bad-type"),
    pytest.param(event_bytes("gate." + "x" * 80, {}), id="type-too-long"),
    pytest.param(event_bytes("gate.alarm", {"reason": "afi"}, event_id="a b"), id="bad-id"),
    pytest.param(event_bytes("gate.alarm", {"reason": "afi"}, v=2), id="unknown-v"),
    pytest.param(event_bytes("gate.alarm", {"reason": "afi"}, station="x"), id="extra-field"),
    pytest.param(json.dumps({"v": 1, "id": "e", "type": "gate.alarm", "at": AT,
                             "data": "afi"}).encode(), id="data-not-object"),
    pytest.param(event_bytes("gate.pass", {"pad": "x" * 70_000}), id="over-64KiB"),
]


@pytest.mark.parametrize("payload", JUNK)
def test_junk_is_dropped_with_nothing_stored(events: StationEvents, library: Library,
                                             payload: bytes,
                                             caplog: pytest.LogCaptureFixture) -> None:
    handled = events.handle("gate-1", payload)
    assert handled.outcome == "dropped" and handled.alerts == [] and handled.detail
    assert library.count(StationEvent) == 0 and library.count(AlertRow) == 0
    assert any("dropped an event from gate-1" in r.getMessage() for r in caplog.records)


def test_an_unknown_type_is_stored_without_an_alert(events: StationEvents,
                                                     library: Library) -> None:
    handled = events.handle("gate-1", event_bytes("gate.pass", {"item": TN[0]}))
    assert handled.outcome == "new" and handled.alerts == []
    with library.sessions() as session:
        stored = session.scalars(select(StationEvent)).one()
    assert (stored.station, stored.type, stored.data) == ("gate-1", "gate.pass", {"item": TN[0]})
    assert stored.at == dt.datetime.fromisoformat(AT)
    assert library.count(AlertRow) == 0


# --- visitors, return box, devices ------------------------------------------------------

def test_visitors_become_a_visit_row(events: StationEvents, library: Library) -> None:
    handled = events.handle("gate-1", event_bytes(
        "gate.visitors", {"count": 17, "since": "2026-10-05T08:00:00+07:00"}))
    assert handled.outcome == "new" and handled.alerts == []
    with library.sessions() as session:
        visit = session.scalars(select(Visit)).one()
    assert (visit.station, visit.count) == ("gate-1", 17)
    assert visit.since == local(2026, 10, 5, 8) and visit.until == local(2026, 10, 5, 9)
    assert library.count(AlertRow) == 0


def test_return_box_full_raises_one_alert_until_emptied(events: StationEvents,
                                                        library: Library) -> None:
    full = only_alert(events.handle("hop-1", event_bytes("returnbox.full", {"full": True})))
    assert full.message == "Hộp trả sách hop-1 đã đầy: cần lấy sách ra."
    assert full.data == {"station": "hop-1"}
    # Reported again while still open (a restart, a bouncing sensor): no second alert.
    assert events.handle("hop-1", event_bytes("returnbox.full", {"full": True})).alerts == []
    emptied = events.handle("hop-1", event_bytes("returnbox.full", {"full": False}))
    assert emptied.outcome == "new" and emptied.alerts == []
    row = alert_rows(library)[0]
    assert row.acknowledged_by == "returnbox.full" and row.acknowledged_at is not None
    assert len(only_alert(events.handle(
        "hop-1", event_bytes("returnbox.full", {"full": True}))).message) > 0
    assert len(alert_rows(library)) == 2


def test_unreturned_items_name_the_title_when_known(events: StationEvents) -> None:
    known = only_alert(events.handle("hop-1", event_bytes("returnbox.unreturned", {
        "item": TN1_BARCODE, "code": "item_not_on_loan", "message": "Sách này chưa được mượn."})))
    assert known.message == ("Hộp trả sách hop-1: «Dế Mèn phiêu lưu ký» (TN.00001) chưa được "
                             "trả (Sách này chưa được mượn). Sách đang nằm trong hộp.")
    assert known.data["title"] == "Dế Mèn phiêu lưu ký" and known.data["item"] == TN1_BARCODE
    unknown = only_alert(events.handle("hop-1", event_bytes("returnbox.unreturned", {
        "item": "ZZ-1", "code": "unreadable"})))
    assert unknown.message == ("Hộp trả sách hop-1: sách mã ZZ-1 chưa được trả (unreadable). "
                               "Sách đang nằm trong hộp.")
    assert unknown.data["title"] is None


def test_device_ok_acknowledges_the_open_fault_of_that_device(events: StationEvents,
                                                              library: Library) -> None:
    def device(type_: str, name: str, station: str = "kiosk-1") -> Handled:
        state = "ok" if type_ == "device.ok" else "fault"
        return events.handle(station, event_bytes(type_, {
            "device": name, "state": state, "detail": "unplugged" if state == "fault" else ""}))

    fault = only_alert(device("device.fault", "rfid"))
    assert fault.message == "Trạm kiosk-1: thiết bị rfid bị lỗi: unplugged."
    assert fault.data == {"station": "kiosk-1", "device": "rfid", "state": "fault",
                          "detail": "unplugged"}
    assert device("device.fault", "rfid").alerts == []        # still open: not twice
    assert len(device("device.fault", "printer").alerts) == 1
    assert len(device("device.fault", "rfid", station="kiosk-2").alerts) == 1
    assert device("device.ok", "rfid").alerts == []
    rows = {(row.station, row.data["device"]): row for row in alert_rows(library)}
    assert rows["kiosk-1", "rfid"].acknowledged_by == "device.ok"
    assert rows["kiosk-1", "printer"].acknowledged_by is None
    assert rows["kiosk-2", "rfid"].acknowledged_by is None
    assert len(device("device.fault", "rfid").alerts) == 1   # a new fault after recovery


# --- the worker ---------------------------------------------------------------------------

def test_worker_publishes_committed_alerts_and_survives_junk(events: StationEvents) -> None:
    published: list[protocol.Alert] = []
    worker = EventWorker(events, published.append)
    worker.start()
    for payload in (b"\x00junk", alarm(TN[0]), b"{}", alarm("XX-1")):
        assert worker.submit("gate-1", payload)
    worker.stop()
    assert worker.handled == 4
    assert [alert.data["item"] for alert in published] == [TN[0], "XX-1"]


def test_worker_survives_a_failing_publisher(events: StationEvents, library: Library) -> None:
    calls = threading.Event()

    def broken(_alert: protocol.Alert) -> None:
        calls.set()
        raise RuntimeError("broker gone")

    worker = EventWorker(events, broken)
    worker.start()
    worker.submit("gate-1", alarm(TN[0]))
    worker.submit("gate-1", alarm(TN[1]))
    worker.stop()
    assert calls.is_set() and worker.handled == 2
    assert len(alert_rows(library)) == 2  # stored before publishing: the staff web has them


def test_a_full_queue_drops_events_instead_of_growing(events: StationEvents) -> None:
    worker = EventWorker(events, lambda _alert: None)  # not started: nothing drains it
    assert all(worker.submit("gate-1", b"x") for _ in range(QUEUE_SIZE))
    assert worker.submit("gate-1", b"x") is False


# --- the schema ---------------------------------------------------------------------------

def test_migrations_match_the_models_and_go_down_and_up(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            # The catalogue's FTS5 index (migration 0005) is SQLite's own virtual table and
            # its shadow tables: derived data, not in the models.
            context = MigrationContext.configure(connection, opts={"include_name": _not_fts})
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
        db_command("downgrade", url, "0001")
        assert {"alerts", "visits", "station_events"}.isdisjoint(
            inspect(engine).get_table_names())
        db.upgrade(url)
        assert {"alerts", "visits", "station_events"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _not_fts(name: str | None, type_: str, _parent: Any) -> bool:
    return not (type_ == "table" and name is not None and name.startswith("catalogue_fts"))


def db_command(name: str, url: str, revision: str) -> None:
    from alembic import command
    getattr(command, name)(db.alembic_config(url), revision)
