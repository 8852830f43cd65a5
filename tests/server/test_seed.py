"""The demo library (`thuvien seed-demo`), seeded into a real SQLite file."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from server import db
from server.models import Copy, Loan, Reader, Title
from server.seed import SeedError, SeedSummary, seed_demo

START = dt.date(2026, 9, 5)
ACCESSION = re.compile(r"^(GK|TK|NV|TN)\.\d{5}$")


def _migrated(path: Path) -> Engine:
    url = f"sqlite:///{path}"
    db.upgrade(url)
    return db.make_engine(url)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = _migrated(tmp_path / "library.db")
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return db.session_factory(engine)


@pytest.fixture
def summary(sessions: sessionmaker[Session]) -> SeedSummary:
    return seed_demo(sessions, school_year_start=START)


def _isbn13_valid(isbn: str) -> bool:
    # Computed here rather than with the seeder's helper, so a wrong helper cannot pass.
    if not re.fullmatch(r"\d{13}", isbn):
        return False
    total = sum(int(d) * w for d, w in zip(isbn, [1, 3] * 7))
    return total % 10 == 0


def test_counts(sessions: sessionmaker[Session], summary: SeedSummary) -> None:
    with sessions() as session:
        titles = session.scalar(select(func.count()).select_from(Title))
        copies = session.scalar(select(func.count()).select_from(Copy))
        kinds = Counter(session.scalars(select(Reader.kind)).all())
        per_class = Counter(session.scalars(
            select(Reader.class_name).where(Reader.kind == "student")).all())
        loans = session.scalar(select(func.count()).select_from(Loan))
    assert titles == summary.titles and titles >= 300
    assert copies == summary.copies and copies >= 1500
    assert kinds["student"] == summary.students == 400
    assert kinds["teacher"] == summary.teachers == 30
    assert set(per_class) == {f"{g}A{n}" for g in range(6, 10) for n in range(1, 6)}
    assert set(per_class.values()) == {20}
    assert loans == 0  # circulation starts through the protocol, never from the seed


def test_students_are_consistent(sessions: sessionmaker[Session], summary: SeedSummary) -> None:
    with sessions() as session:
        students = session.scalars(select(Reader).where(Reader.kind == "student")).all()
        others = session.scalars(select(Reader).where(Reader.kind != "student")).all()
    codes = [r.code for r in students]
    assert len(set(codes)) == len(codes)
    moet_ids = [r.moet_id for r in students]
    assert all(m is not None and re.fullmatch(r"\d{10}", m) for m in moet_ids)
    assert len(set(moet_ids)) == len(moet_ids)
    uids = [r.card_uid for r in students if r.card_uid]
    assert 0.2 * len(students) < len(uids) < 0.4 * len(students)
    assert all(re.fullmatch(r"[0-9A-F]{8}", uid) for uid in uids)
    for reader in students:
        assert reader.class_name is not None and reader.grade == int(reader.class_name[0])
        entry_year = START.year - (reader.grade - 6)
        assert re.fullmatch(rf"HS-{entry_year}-\d{{4}}", reader.code)
        assert reader.birth_date is not None and reader.birth_date.year == entry_year - 11
        assert reader.gender in ("Nam", "Nữ")
        assert len(reader.name.split()) >= 3
        assert reader.created_at.tzinfo is not None and reader.created_at.utcoffset() == dt.timedelta(0)
    blocked = [r for r in students if r.status == "blocked"]
    assert len(blocked) == 2 and all(r.block_reason for r in blocked)
    assert {r.status for r in students} == {"active", "blocked"}
    teachers = [r for r in others if r.kind == "teacher"]
    assert all(re.fullmatch(r"GV-\d{4}", t.code) and t.moet_id is None and t.class_name is None
               for t in teachers)
    assert all(re.fullmatch(r"CB-\d{4}", r.code) for r in others if r.kind == "staff")


def test_catalogue_is_well_formed(sessions: sessionmaker[Session], summary: SeedSummary) -> None:
    with sessions() as session:
        titles = session.scalars(select(Title)).all()
        copies = session.scalars(select(Copy)).all()
    isbns = [t.isbn for t in titles]
    assert all(isbn is not None and isbn.startswith("978604") and _isbn13_valid(isbn)
               for isbn in isbns)
    assert len(set(isbns)) == len(isbns)
    assert {t.language for t in titles} == {"vie", "eng"}
    assert all(t.publisher and t.subject and t.call_number and t.year for t in titles)

    accessions = [c.accession_number for c in copies]
    assert all(ACCESSION.match(a) for a in accessions)
    assert len(set(accessions)) == len(accessions)
    assert all(c.barcode == c.accession_number.replace(".", "") for c in copies)
    assert all(c.kind == c.accession_number[:2] for c in copies)
    # Running numbers per kind start at 1 and leave no gaps: the register is complete.
    for kind, n in Counter(c.kind for c in copies).items():
        numbers = sorted(int(c.accession_number[3:]) for c in copies if c.kind == kind)
        assert numbers == list(range(1, n + 1))
    assert set(Counter(c.kind for c in copies)) == {"GK", "TK", "NV", "TN"}

    statuses = Counter(c.status for c in copies)
    assert set(statuses) == {"available", "reference", "lost"}
    assert statuses["lost"] == 2
    assert 0.01 * len(copies) <= statuses["reference"] <= 0.03 * len(copies)
    rfids = [c.rfid_item_id for c in copies if c.rfid_item_id]
    assert 0.05 * len(copies) < len(rfids) < 0.15 * len(copies)
    assert all(re.fullmatch(r"[0-9A-F]{16}", r) for r in rfids) and len(set(rfids)) == len(rfids)
    assert all(c.price is not None and 10_000 <= c.price <= 500_000 and c.price % 1000 == 0
               for c in copies)
    assert all(c.acquired_on is not None and c.acquired_on < START for c in copies)


def test_vietnamese_titles_and_search_words(sessions: sessionmaker[Session],
                                            summary: SeedSummary) -> None:
    with sessions() as session:
        by_title = {t.title: t for t in session.scalars(select(Title)).all()}
    assert by_title["Dế Mèn phiêu lưu ký"].author == "Tô Hoài"
    assert by_title["Tắt đèn"].author == "Ngô Tất Tố"
    assert by_title["Hoàng tử bé"].author == "Antoine de Saint-Exupéry"
    assert "Toán 6 – Tập một (Kết nối tri thức với cuộc sống)" in by_title
    assert "Ngữ văn 7 – Tập hai (Cánh Diều)" in by_title
    assert "Khoa học tự nhiên 8 (Chân trời sáng tạo)" in by_title
    assert sum("đường" in t.lower() for t in by_title) >= 3
    assert any(t.startswith("Đường") for t in by_title)


def test_sample_codes_exist_with_the_right_kinds(sessions: sessionmaker[Session],
                                                 summary: SeedSummary) -> None:
    with sessions() as session:
        def reader(code: str) -> Reader:
            return session.scalars(select(Reader).where(Reader.code == code)).one()

        def copy(barcode: str) -> Copy:
            return session.scalars(select(Copy).where(Copy.barcode == barcode)).one()

        assert len(summary.student_cards) == 3
        assert summary.student_cards[0].card_uid is not None
        for sample in summary.student_cards:
            row = reader(sample.code)
            assert (row.kind, row.status, row.card_uid) == ("student", "active", sample.card_uid)
        assert reader(summary.teacher.code).kind == "teacher"
        blocked = reader(summary.blocked_student.code)
        assert (blocked.kind, blocked.status) == ("student", "blocked")
        assert blocked.block_reason == summary.blocked_student.block_reason

        assert len(summary.loanable_items) == 5
        assert len({item.title for item in summary.loanable_items}) == 5
        for item in summary.loanable_items:
            row = copy(item.barcode)
            assert row.kind in ("TN", "TK") and row.status == "available"
            assert session.get(Title, row.title_id).title == item.title  # type: ignore[union-attr]
        textbook = copy(summary.textbook.barcode)
        assert (textbook.kind, textbook.status) == ("GK", "available")
        reference = copy(summary.reference_only.barcode)
        assert reference.status == "reference"
    assert any("Dế Mèn" in line for line in summary.lines())


def test_same_seed_same_library(tmp_path: Path) -> None:
    def first_rows(path: Path, rng_seed: int) -> tuple[list[str], list[str], list[str]]:
        engine = _migrated(path)
        try:
            sessions = db.session_factory(engine)
            seed_demo(sessions, school_year_start=START, rng_seed=rng_seed)
            with sessions() as session:
                names = session.scalars(select(Reader.name).order_by(Reader.id).limit(20)).all()
                accessions = session.scalars(
                    select(Copy.accession_number).order_by(Copy.id).limit(20)).all()
                isbns = session.scalars(select(Title.isbn).order_by(Title.id).limit(20)).all()
            return list(names), list(accessions), [i or "" for i in isbns]
        finally:
            engine.dispose()

    first = first_rows(tmp_path / "a.db", 7)
    assert first == first_rows(tmp_path / "b.db", 7)
    assert first[0] != first_rows(tmp_path / "c.db", 8)[0]


def test_refuses_a_database_that_is_not_empty(sessions: sessionmaker[Session],
                                              summary: SeedSummary) -> None:
    with pytest.raises(SeedError, match="empty"):
        seed_demo(sessions, school_year_start=START)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Reader)) == summary.students + \
            summary.teachers + summary.staff


def test_refuses_when_only_readers_exist(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add(Reader(code="HS-2026-9999", name="Nguyễn Văn An", kind="student",
                           status="active", created_at=dt.datetime(2026, 9, 1, tzinfo=dt.timezone.utc)))
    with pytest.raises(SeedError, match="1 readers"):
        seed_demo(sessions, school_year_start=START)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Copy)) == 0
