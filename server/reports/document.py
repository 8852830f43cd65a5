"""What every register and report is made of, before it becomes paper or a spreadsheet.

A report builder (a register, the statistics, the self-assessment) returns a `Report`:
a title and a list of sections (tables, charts, labelled fields). `server.reports.pdf`
and `server.reports.xlsx` render any `Report`, so the CLI, the staff web and the tests
all get the same content in both formats. Every visible text is given in Vietnamese and
in English; the renderer picks one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Language = Literal["vi", "en"]
Align = Literal["left", "right", "center"]
ValueKind = Literal["text", "int", "money", "date", "decimal"]


@dataclass(frozen=True)
class Text:
    """A visible text in both languages."""

    vi: str
    en: str

    def __call__(self, language: Language) -> str:
        return self.vi if language == "vi" else self.en


@dataclass(frozen=True)
class Column:
    key: str
    header: Text
    width: float = 1.0          # relative to the other columns of its table
    align: Align = "left"
    kind: ValueKind = "text"


@dataclass
class Table:
    heading: Text | None
    columns: Sequence[Column]
    rows: Sequence[Sequence[Any]]          # values in column order; None prints empty
    totals: Sequence[Any] | None = None    # a last, bold line (a label in the first cell)
    empty: Text = field(default_factory=lambda: Text("Không có dữ liệu.", "Nothing to show."))


@dataclass
class Chart:
    heading: Text
    labels: Sequence[str]                  # along the x axis
    series: dict[str, Sequence[float]]     # legend name -> one value per label
    kind: Literal["bar", "line"] = "bar"


@dataclass
class Fields:
    """Labelled values, e.g. the self-assessment's criteria with their levels; a value of
    None is a blank line for the librarian to fill in by hand."""

    heading: Text | None
    items: Sequence[tuple[Text, Any]]


@dataclass
class Paragraph:
    text: Text


Section = Table | Chart | Fields | Paragraph


@dataclass
class Report:
    name: str                   # a file-name-safe identifier, e.g. "register-individual"
    title: Text                 # "SỔ ĐĂNG KÝ CÁ BIỆT"
    school: str
    subtitle: Text | None = None   # "Năm học 2025-2026", a date range, ...
    sections: list[Section] = field(default_factory=list)
    landscape: bool = True
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    # Signature lines at the end of the paper form ("Người lập sổ", "Hiệu trưởng").
    signatures: Sequence[Text] = ()

    def tables(self) -> list[Table]:
        return [section for section in self.sections if isinstance(section, Table)]


def format_value(value: Any, kind: ValueKind, language: Language) -> str:
    """How a value prints on paper: Vietnamese groups thousands with '.', dates d/m/Y."""
    if value is None:
        return ""
    if isinstance(value, Text):
        return value(language)
    if kind in ("int", "money") and isinstance(value, int | float):
        text = f"{round(value):,}"
        return text.replace(",", ".") if language == "vi" else text
    if kind == "decimal" and isinstance(value, int | float):
        text = f"{value:,.2f}"
        if language == "vi":
            text = text.replace(",", " ").replace(".", ",").replace(" ", ".")
        return text
    if isinstance(value, dt.datetime):
        return value.strftime("%d/%m/%Y %H:%M")
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    return str(value)
