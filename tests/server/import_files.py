"""What the importer tests share: an empty migrated SQLite library, and spreadsheets
written as a school's office would export them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
from sqlalchemy.orm import Session, sessionmaker

from server.db import make_engine, session_factory, upgrade


def empty_library(folder: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on a new, migrated, empty library in `folder` (for a fixture to yield from)."""
    url = f"sqlite:///{folder / 'thuvien.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def write_xlsx(path: Path, rows: list[list[Any]], sheet_title: str) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = sheet_title
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path
