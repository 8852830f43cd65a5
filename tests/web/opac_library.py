"""The web tests' library plus what the catalogue tests need: titles with đ, two readers
with PINs, and loans (written as the circulation writes them: a ledger entry, the loan,
the copy marked on loan)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from e2e_library import START
from server import db
from server.models import Copy, CopyStatus, LedgerEntry, LedgerOp, Loan, Reader, Title
from server.pins import hash_pin

from web_fixtures import make_library

# card -> PIN; HS-2025-0003 keeps no PIN (the sign-in must send them to the librarian).
PINS = {"HS-2025-0001": "1357", "HS-2025-0002": "2468"}
# card -> (accession number, title, due date) of their loans.
LOANS = {
    "HS-2025-0001": [("TN.00001", "Dế Mèn phiêu lưu ký", dt.date(2026, 12, 1))],
    "HS-2025-0002": [("TN.00020", "Đường xưa mây trắng", dt.date(2026, 11, 19))],
}
EXTRA_TITLES = [
    ("Đường Kách Mệnh", "Hồ Chí Minh", "Chính trị - Xã hội", [("TK.00020", "TK")]),
    ("Đường xưa mây trắng", "Thích Nhất Hạnh", "Văn học Việt Nam", [("TN.00020", "TN"), ("TN.00021", "TN")]),
    ("Con đường xưa em đi", "Nhiều tác giả", "Văn học Việt Nam", [("TK.00021", "TK")]),
]


def make_opac_library(tmp_path: Path, site: str = "web-test", port: int = 1883):  # type: ignore[no-untyped-def]
    config = make_library(tmp_path, site, port)
    engine = db.make_engine(config.database.url)
    now = START.astimezone(dt.timezone.utc)
    with db.session_factory(engine).begin() as session:
        for title, author, subject, copies in EXTRA_TITLES:
            row = Title(title=title, author=author, subject=subject, year=2019, call_number="895.9 Đ")
            session.add(row)
            session.flush()
            for number, kind in copies:
                session.add(Copy(title_id=row.id, kind=kind, accession_number=number,
                                 barcode=number.replace(".", ""), location="Kệ 2"))
        session.flush()
        for card, pin in PINS.items():
            session.query(Reader).filter_by(code=card).one().pin_hash = hash_pin(pin)
        for n, (card, loans) in enumerate(LOANS.items()):
            reader = session.query(Reader).filter_by(code=card).one()
            for number, _title, due in loans:
                copy = session.query(Copy).filter_by(accession_number=number).one()
                entry = LedgerEntry(request_id=f"opac-test-{n}-{number}", op=LedgerOp.CHECKOUT,
                                    copy_id=copy.id, reader_id=reader.id, station="kiosk-1",
                                    station_at=now, server_at=now, due_on=due)
                session.add(entry)
                session.flush()
                session.add(Loan(copy_id=copy.id, reader_id=reader.id, loaned_at=now, due_on=due,
                                 checkout_seq=entry.seq))
                copy.status = CopyStatus.ON_LOAN
    engine.dispose()
    return config
