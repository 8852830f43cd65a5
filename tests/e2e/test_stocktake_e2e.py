"""Stocktake end to end: a stocktake started on the server, a kiosk in stocktake mode
counting over a real Mosquitto, and the counts read back from the server's database."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from kiosk.config import SessionConfig, StocktakeConfig
from kiosk.session import Outcome, Session, ShelfChosen, StocktakeCounted, StocktakeStarted
from protocol import ErrorCode, Op, StocktakeScanArgs, topics
from server import db, stocktake
from server.models import Copy, StocktakeScan


def request_bytes(request_id: str, op: str, args: dict[str, Any]) -> bytes:
    return json.dumps({"v": 1, "id": request_id, "op": op, "at": "2026-11-21T09:00:00+07:00",
                       "args": args}).encode()


@dataclass
class Screen:
    outcomes: list[Outcome] = field(default_factory=list)

    def on_outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def test_a_kiosk_counts_three_codes_one_unknown_and_the_server_has_the_counts(library: Any) -> None:
    sessions = db.session_factory(library.server.engine)
    number = stocktake.start(sessions, "Kiểm kê học kỳ I", by="CB-0001").id
    with sessions.begin() as session:
        session.execute(Copy.__table__.update().where(Copy.kind == "TN").values(location="Kệ 1"))

    screen = Screen()
    kiosk = Session(library.station("kiosk-1"), SessionConfig(mode="stocktake"), screen,
                    stocktake=StocktakeConfig(batch_wait_s=0.3))
    kiosk.scan("SHELF:Kệ 1")
    for code in ("TN00001", "TN00002", "KHONG-CO-MA"):
        kiosk.scan(code)
    deadline = time.monotonic() + 5
    while not any(isinstance(o, StocktakeCounted) for o in screen.outcomes):
        assert time.monotonic() < deadline, screen.outcomes
        time.sleep(0.05)
        kiosk.tick()
    started, chosen, counted = screen.outcomes
    assert started == StocktakeStarted(fixed=True, recent=())
    assert chosen == ShelfChosen("Kệ 1", ("Kệ 1",))
    assert isinstance(counted, StocktakeCounted)
    assert [(line.code, line.outcome, line.item) for line in counted.lines] == [
        ("TN00001", "counted", "TN.00001"), ("TN00002", "counted", "TN.00002"),
        ("KHONG-CO-MA", "unknown", None)]
    assert counted.lines[0].title == "Dế Mèn phiêu lưu ký"
    assert (counted.stocktake, counted.counted) == (1, 2)
    assert counted.progress is not None and (counted.progress.expected, counted.progress.seen) == (4, 2)

    # Server-side: two copies counted, on Kệ 1, by kiosk-1; the shelf's progress agrees.
    with sessions() as session:
        rows = session.execute(select(Copy.accession_number, StocktakeScan.shelf, StocktakeScan.station)
                               .join(Copy, Copy.id == StocktakeScan.copy_id)
                               .where(StocktakeScan.stocktake_id == number)
                               .order_by(Copy.accession_number)).all()
    assert [tuple(r) for r in rows] == [("TN.00001", "Kệ 1", "kiosk-1"), ("TN.00002", "Kệ 1", "kiosk-1")]
    shelf = next(p for p in stocktake.progress(sessions, number) if p.location == "Kệ 1")
    assert (shelf.expected, shelf.seen) == (4, 2)
    result = stocktake.close(sessions, number, by="CB-0001")
    assert result["present"] == 2
    assert library.ledger_count() == 0  # counting lends nothing


def test_a_gate_may_not_count_and_a_desk_may(library: Any) -> None:
    stocktake.start(db.session_factory(library.server.engine), "Kiểm kê", by=None)
    refused = library.station("gate-1", "gate").request(
        Op.STOCKTAKE_SCAN, StocktakeScanArgs(items=["TN00001"]))
    assert not refused.ok and refused.error.code == ErrorCode.UNAUTHORIZED
    answered = library.station("desk-1", "desk").request(
        Op.STOCKTAKE_SCAN, StocktakeScanArgs(items=["TN00001"]))
    assert answered.ok and answered.result["items"][0]["outcome"] == "counted"


JUNK = [
    pytest.param({"items": []}, id="no-items"),
    pytest.param({"items": ["TN00001"] * 201}, id="too-many"),
    pytest.param({"items": "TN00001"}, id="not-a-list"),
    pytest.param({"items": [12, None]}, id="not-codes"),
    pytest.param({"items": ["TN00001"], "shelf": "x" * 101}, id="shelf-too-long"),
    pytest.param({"items": ["TN00001"], "count": True}, id="unknown-argument"),
]


@pytest.mark.parametrize("args", JUNK)
def test_junk_stocktake_payloads_are_refused_and_change_nothing(library: Any, raw: Any,
                                                                args: dict[str, Any]) -> None:
    sessions = db.session_factory(library.server.engine)
    number = stocktake.start(sessions, "Kiểm kê", by=None).id
    site = library.config.site
    client = raw("station-junk")
    client.subscribe(topics.station_topic(site, "junk", "reply"))
    client.publish(topics.station_topic(site, "junk", "request"),
                   request_bytes("junk-1", "stocktake.scan", args))
    reply = json.loads(client.next()[1])
    assert (reply["id"], reply["ok"], reply["error"]["code"]) == ("junk-1", False, "bad_request")
    assert reply["error"]["message"].startswith("Yêu cầu không hợp lệ.")
    # The server still counts, and the junk counted nothing.
    client.publish(topics.station_topic(site, "junk", "request"),
                   request_bytes("junk-2", "stocktake.scan", {"items": ["TN00003"]}))
    good = json.loads(client.next()[1])
    assert good["id"] == "junk-2" and good["ok"] is True
    assert [p.seen for p in stocktake.progress(sessions, number)] == [1]
