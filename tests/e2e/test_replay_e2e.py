"""An outbox replayed over a real Mosquitto: in order, at the station's time, each id once,
every conflict on the ledger topic and as an alert, and the same replies after a restart."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import func, select

from protocol import CheckoutArgs, Op, topics
from server import db
from server.app import start_server
from server.models import Alert, LedgerEntry

from e2e_library import VN

STATION = "kiosk-2"
# Friday 20 November 2026: the day before the suite's "now", when the kiosk was offline.
FRIDAY = dt.datetime(2026, 11, 20, 16, 0, tzinfo=VN)

# The kiosk's outbox, in the order it accepted them.
OUTBOX: list[tuple[str, str, dict[str, str], dt.datetime]] = [
    ("ob-1", "loan.checkout", {"patron": "HS-2025-0001", "item": "TN00002"}, FRIDAY),
    ("ob-2", "loan.checkout", {"patron": "HS-2025-0001", "item": "TN00001"}, FRIDAY),
    ("ob-3", "loan.checkout", {"patron": "HS-2025-0003", "item": "TN00003"},
     FRIDAY + dt.timedelta(minutes=5)),
    ("ob-4", "loan.return", {"item": "TN00004"}, FRIDAY + dt.timedelta(minutes=10)),
    ("ob-5", "loan.return", {"item": "TN00002"}, FRIDAY + dt.timedelta(hours=1)),
]


def offline_request(request_id: str, op: str, args: dict[str, str], at: dt.datetime) -> bytes:
    return json.dumps({"v": 1, "id": request_id, "op": op, "at": at.isoformat(),
                       "offline": True, "args": args}).encode()


def count(library: Any, model: type[Any]) -> int:
    with db.session_factory(library.server.engine)() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def replay(client: Any, site: str) -> list[dict[str, Any]]:
    """Publish the outbox one request at a time, each after the last one's reply, as a
    station's outbox does."""
    replies = []
    for request_id, op, args, at in OUTBOX:
        client.publish(topics.station_topic(site, STATION, "request"),
                       offline_request(request_id, op, args, at))
        reply = json.loads(client.next()[1])
        assert reply["id"] == request_id
        replies.append(reply)
    return replies


def test_outbox_replay_applies_in_order_with_conflicts_and_alerts(library: Any, raw: Any,
                                                                  alerts: Any) -> None:
    site = library.config.site
    # While the kiosk was offline, Bình borrowed TN00001 at another kiosk.
    bình = library.station("kiosk-1").request(
        Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2025-0002", item="TN00001"))
    assert bình.ok
    ledger = raw("ledger-watch")
    ledger.subscribe(topics.ledger(site))
    kiosk = raw("kiosk-2-outbox")
    kiosk.subscribe(topics.station_topic(site, STATION, "reply"))

    replies = replay(kiosk, site)

    assert [(r["ok"], (r.get("error") or {}).get("code")) for r in replies] == [
        (True, None), (False, "item_on_loan"), (True, None), (False, "item_not_on_loan"),
        (True, None)]
    # Due 8 days from Friday (the station's day), not from Saturday (the server's).
    assert replies[0]["result"]["due"] == "2026-11-28"
    assert replies[4]["result"]["days_late"] == 0

    entries = [json.loads(ledger.next()[1]) for _ in range(4)]
    assert [(e["id"], e["op"], e["patron"], e.get("conflict")) for e in entries] == [
        ("ob-1", "checkout", "HS-2025-0001", None),
        ("ob-2", "checkout", "HS-2025-0001", "on_loan_to_other"),
        ("ob-3", "checkout", "HS-2025-0003", "reader_blocked"),
        ("ob-5", "return", "HS-2025-0001", None),
    ]
    assert all(e["offline"] and e["station"] == STATION for e in entries)
    assert entries[0]["station_at"] == FRIDAY.isoformat()
    assert entries[0]["server_at"].startswith("2026-11-21T09:00:00")
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)

    raised = [alerts.next_alert("offline.conflict") for _ in range(3)]
    assert [(a.data["request_id"], a.data["conflict"]) for a in raised] == [
        ("ob-2", "on_loan_to_other"), ("ob-3", "reader_blocked"), ("ob-4", "not_on_loan")]
    assert "Trần Thị Bình" in raised[0].message and "Nguyễn Văn An" in raised[0].message
    assert "Lê Minh Châu" in raised[1].message and "TN.00004" in raised[2].message
    assert all(STATION in a.message for a in raised)
    assert count(library, Alert) == 3
    before = library.ledger_count()
    assert before == 5  # Bình's loan and the four entries above

    # The link dropped before the replies arrived: the outbox replays it all again.
    assert replay(kiosk, site) == replies
    assert library.ledger_count() == before and count(library, Alert) == 3

    # After a server restart, a retried id still gets its first reply.
    library.server.stop()
    library.server = start_server(library.config, clock=library.clock)
    assert library.server.service.connected.wait(10)
    kiosk.publish(topics.station_topic(site, STATION, "request"), offline_request(*OUTBOX[1]))
    assert json.loads(kiosk.next(timeout=10)[1]) == replies[1]
    assert library.ledger_count() == before and count(library, Alert) == 3
    with db.session_factory(library.server.engine)() as session:
        marks = session.scalars(select(LedgerEntry.conflict).order_by(LedgerEntry.seq)).all()
    assert marks == [None, None, "on_loan_to_other", "reader_blocked", None]
