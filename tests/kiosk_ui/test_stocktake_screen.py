"""The stocktake screen, driven like a librarian would, against the real server and
Mosquitto; the counts are read back from the server's database."""

from __future__ import annotations

from sqlalchemy import select, update

from server import db, stocktake
from server.models import Copy, StocktakeScan


def open_stocktake(ui_library) -> int:  # type: ignore[no-untyped-def]
    sessions = db.session_factory(ui_library.server.engine)
    with sessions.begin() as session:
        session.execute(update(Copy).where(Copy.kind == "TN").values(location="Kệ 1"))
        session.execute(update(Copy).where(Copy.kind != "TN").values(location="Kệ 2"))
    return stocktake.start(sessions, "Kiểm kê học kỳ I", by="CB-0001").id


def counted(ui_library, number: int) -> list[tuple[str, str | None, str | None]]:  # type: ignore[no-untyped-def]
    with db.session_factory(ui_library.server.engine)() as session:
        rows = session.execute(select(Copy.accession_number, StocktakeScan.shelf, StocktakeScan.station)
                               .join(Copy, Copy.id == StocktakeScan.copy_id)
                               .where(StocktakeScan.stocktake_id == number)
                               .order_by(Copy.accession_number)).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_a_librarian_counts_a_shelf_from_the_staff_menu(ui_library, run_kiosk_scenario) -> None:
    number = open_stocktake(ui_library)
    report = run_kiosk_scenario("stocktake", ui_library)
    assert report["rows"] == 3
    assert counted(ui_library, number) == [("TK.00001", "Kệ 1", "kiosk-1"),
                                           ("TN.00001", "Kệ 1", "kiosk-1")]
    assert ui_library.ledger_count() == 0  # counting lends nothing


def test_a_stocktake_station_opens_on_its_screen(ui_library, run_kiosk_scenario) -> None:
    number = open_stocktake(ui_library)
    run_kiosk_scenario("stocktake_station", ui_library, session={"mode": "stocktake"})
    assert counted(ui_library, number) == [("TN.00002", None, "kiosk-1")]
