"""The catalogue exported to Excel, read back with openpyxl and imported into an empty library."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from server.db import make_engine, session_factory, upgrade
from server.importers.catalogue import import_catalogue
from server.importers.catalogue_xlsx import export_catalogue_xlsx
from server.models import Copy, CopyStatus, Title
from server.seed import seed_demo

TITLE_FIELDS = ("title", "author", "publisher", "year", "isbn", "subject", "call_number",
                "language")


@pytest.fixture(scope="module")
def _images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """An empty migrated database and one holding the demo school (300+ titles)."""
    directory = tmp_path_factory.mktemp("catalogue-xlsx")
    images: dict[str, bytes] = {}
    for name in ("empty", "demo"):
        path = directory / f"{name}.db"
        upgrade(f"sqlite:///{path}")
        engine = make_engine(f"sqlite:///{path}")
        if name == "demo":
            seed_demo(session_factory(engine), school_year_start=dt.date(2026, 9, 5))
        engine.dispose()
        images[name] = path.read_bytes()
    return images


def _open(directory: Path, name: str, image: bytes) -> sessionmaker[Session]:
    path = directory / f"{name}.db"
    path.write_bytes(image)
    return session_factory(make_engine(f"sqlite:///{path}"))


@pytest.fixture
def demo(tmp_path: Path, _images: dict[str, bytes]) -> Iterator[sessionmaker[Session]]:
    sessions = _open(tmp_path, "demo", _images["demo"])
    yield sessions
    sessions.kw["bind"].dispose()


@pytest.fixture
def empty(tmp_path: Path, _images: dict[str, bytes]) -> Iterator[sessionmaker[Session]]:
    sessions = _open(tmp_path, "empty", _images["empty"])
    yield sessions
    sessions.kw["bind"].dispose()


def _titles(sessions: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with sessions() as session:
        return sorted((tuple(getattr(t, name) for name in TITLE_FIELDS)
                       for t in session.scalars(select(Title))), key=repr)


def _sheet(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    book = load_workbook(path)
    rows = list(book.active.iter_rows(values_only=True))
    index = next(i for i, row in enumerate(rows) if row and row[1] == "Nhan đề")
    header = list(rows[index])
    return header, [dict(zip(header, row)) for row in rows[index + 1:]]


def test_round_trip_into_an_empty_library(tmp_path: Path, demo: sessionmaker[Session],
                                          empty: sessionmaker[Session]) -> None:
    path = tmp_path / "danh-muc.xlsx"
    written = export_catalogue_xlsx(demo, path, school_name="Trường THCS Nhựt Tảo")
    originals = _titles(demo)
    assert written == len(originals) > 300

    report = import_catalogue(empty, path)
    assert (report.format, report.read, report.created, report.merged) == (
        "xlsx", written, written, 0)
    assert report.problems == []
    assert _titles(empty) == originals


def test_copies_and_their_accession_ranges(tmp_path: Path, demo: sessionmaker[Session]) -> None:
    with demo.begin() as session:
        title = session.scalars(select(Title).join(Copy).group_by(Title.id)
                                .having(func.count(Copy.id) >= 4).order_by(Title.id)).first()
        assert title is not None
        numbers = sorted(session.scalars(select(Copy.accession_number)
                                         .where(Copy.title_id == title.id)))
        # Weed the second copy: it leaves the count and splits the range.
        session.execute(update(Copy).where(Copy.accession_number == numbers[1])
                        .values(status=CopyStatus.WITHDRAWN))
        title_name, isbn = title.title, title.isbn
        total_titles = session.scalar(select(func.count()).select_from(Title))
    path = tmp_path / "danh-muc.xlsx"
    export_catalogue_xlsx(demo, path)
    header, rows = _sheet(path)
    assert header == ["STT", "Nhan đề", "Tác giả", "Nhà xuất bản", "Năm xuất bản", "ISBN",
                      "Môn loại", "Ký hiệu xếp giá", "Ngôn ngữ", "Dạng tài liệu", "Số bản",
                      "Số ĐKCB"]
    assert len(rows) == total_titles and [r["STT"] for r in rows[:3]] == [1, 2, 3]
    row = next(r for r in rows if r["Nhan đề"] == title_name)
    assert row["Số bản"] == len(numbers) - 1
    listed = [part.strip() for part in row["Số ĐKCB"].split(",")]
    assert numbers[0] in listed[0] and numbers[1] not in row["Số ĐKCB"]
    expanded: list[str] = []
    for part in listed:
        first, _, last = part.partition("–")
        prefix, digits = first.split(".")
        end = int(last.split(".")[1]) if last else int(digits)
        expanded += [f"{prefix}.{n:05d}" for n in range(int(digits), end + 1)]
    assert sorted(expanded) == [n for n in numbers if n != numbers[1]]
    if isbn:
        # Kept as text, not as a number Excel would print as 9.78604E+12.
        assert row["ISBN"] == isbn and isinstance(row["ISBN"], str)


def test_empty_catalogue_still_gives_an_importable_file(tmp_path: Path,
                                                        empty: sessionmaker[Session]) -> None:
    path = tmp_path / "empty.xlsx"
    assert export_catalogue_xlsx(empty, path) == 0
    header, rows = _sheet(path)
    assert rows == [] and header[1] == "Nhan đề"
    assert not path.with_name("empty.xlsx.part").exists()
