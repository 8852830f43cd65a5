"""Any `Report` as an Excel workbook (openpyxl): one sheet, tables one under another,
values kept as numbers and dates (not text) so a librarian can sum and filter them;
charts as native Excel charts beside their data. Written in openpyxl's streaming
(write-only) mode, top to bottom."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any, BinaryIO

from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Border, Font, NamedStyle, PatternFill, Side
from openpyxl.cell import WriteOnlyCell
from openpyxl.utils import get_column_letter

from server.reports.document import Chart, Column, Fields, Language, Paragraph, Report, Table, Text

__all__ = ["render_xlsx", "render_xlsx_bytes"]

_THIN = Side(style="thin", color="808080")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_HEAD_FILL = PatternFill("solid", fgColor="E8E8E8")
_FORMATS = {"int": "#,##0", "money": "#,##0", "decimal": "#,##0.00", "date": "DD/MM/YYYY"}
_CHAR_WIDTH = 9.0  # Excel column width units for a relative width of 1


def _cell_value(value: Any, language: Language) -> Any:
    if isinstance(value, Text):
        return value(language)
    if isinstance(value, dt.datetime):
        # Excel has no time zones: the local wall time, as the paper shows it.
        return value.astimezone().replace(tzinfo=None) if value.tzinfo else value
    return value


class _Sheet:
    """One write-only sheet, written top to bottom (openpyxl's streaming mode: a
    100,000-line register in a fraction of the normal mode's time and memory). Styles are
    made once per kind of cell and shared."""

    def __init__(self, workbook: Workbook, title: str, language: Language) -> None:
        self.workbook = workbook
        self.sheet = workbook.create_sheet(title)
        self.language = language
        self._styles: dict[tuple[Any, ...], str] = {}
        self._keep: list[Any] = []
        self.row = 0  # rows written so far
        self.bold = Font(bold=True)
        self._column_styles: dict[Column, tuple[Alignment, str | None]] = {}

    def widths(self, report: Report) -> None:
        # Only before the first row, in streaming mode: the widest use of each column.
        widest: dict[int, float] = {}
        for table in report.tables():
            for index, column in enumerate(table.columns, start=1):
                widest[index] = max(widest.get(index, 0.0), max(column.width * _CHAR_WIDTH, 6.0))
        for index, width in widest.items():
            self.sheet.column_dimensions[get_column_letter(index)].width = width

    def cell(self, value: Any, *, font: Font | None = None, fill: PatternFill | None = None,
             border: Border | None = None, alignment: Alignment | None = None,
             number_format: str | None = None) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.sheet, value=_cell_value(value, self.language))
        if font or fill or border or alignment or number_format:
            # A named style per look, made once: openpyxl hashes every style object set on
            # a cell, which cost 80% of the time of a long register.
            cell.style = self._named(font, fill, border, alignment, number_format)
        return cell

    def _named(self, font: Font | None, fill: PatternFill | None, border: Border | None,
               alignment: Alignment | None, number_format: str | None) -> str:
        key = (id(font), id(fill), id(border), id(alignment), number_format)
        name = self._styles.get(key)
        if name is None:
            name = f"thuvien-{len(self._styles) + 1}"
            style = NamedStyle(name=name)
            if font is not None:
                style.font = font
            if fill is not None:
                style.fill = fill
            if border is not None:
                style.border = border
            if alignment is not None:
                style.alignment = alignment
            if number_format is not None:
                style.number_format = number_format
            self.workbook.add_named_style(style)
            self._styles[key] = name
            self._keep.extend([font, fill, border, alignment])  # ids stay unique while kept
        return name

    def append(self, cells: list[Any]) -> int:
        self.sheet.append(cells)
        self.row += 1
        return self.row

    def blank(self, count: int = 1) -> None:
        for _ in range(count):
            self.append([])

    def column_style(self, column: Column) -> tuple[Alignment, str | None]:
        if column not in self._column_styles:
            self._column_styles[column] = (
                Alignment(horizontal=column.align, vertical="top", wrap_text=column.kind == "text"),
                _FORMATS.get(column.kind))
        return self._column_styles[column]


def _write_table(out: _Sheet, table: Table) -> None:
    language = out.language
    if table.heading is not None:
        out.append([out.cell(table.heading(language), font=Font(bold=True, size=12))])
    if not table.rows:
        out.append([table.empty(language)])
        out.blank()
        return
    head = Alignment(horizontal="center", vertical="center", wrap_text=True)
    out.append([out.cell(column.header(language), font=out.bold, fill=_HEAD_FILL, border=_BOX, alignment=head)
                for column in table.columns])
    styles = [out.column_style(column) for column in table.columns]
    for values in table.rows:
        out.append([out.cell(value, border=_BOX, alignment=alignment, number_format=number_format)
                    for value, (alignment, number_format) in zip(values, styles, strict=True)])
    if table.totals is not None:
        out.append([out.cell(value, border=_BOX, alignment=alignment, number_format=number_format, font=out.bold)
                    for value, (alignment, number_format) in zip(table.totals, styles, strict=True)])
    out.blank()


def _write_chart(out: _Sheet, chart: Chart) -> None:
    language = out.language
    out.append([out.cell(chart.heading(language), font=Font(bold=True, size=12))])
    first = out.append([""] + [out.cell(name, font=out.bold) for name in chart.series])
    for label_index, label in enumerate(chart.labels):
        out.append([label] + [values[label_index] for values in chart.series.values()])
    last = out.row
    if chart.labels and chart.series:
        plot: Any = BarChart() if chart.kind == "bar" else LineChart()
        plot.title = chart.heading(language)
        plot.height, plot.width = 7.5, 16
        data = Reference(out.sheet, min_col=2, max_col=1 + len(chart.series), min_row=first, max_row=last)
        plot.add_data(data, titles_from_data=True)
        plot.set_categories(Reference(out.sheet, min_col=1, min_row=first + 1, max_row=last))
        out.sheet.add_chart(plot, f"{get_column_letter(3 + len(chart.series))}{first}")
        # The chart floats beside its data: leave it room before the next section.
        out.blank(max(0, first + 15 - last))
    out.blank(2)


def _write_fields(out: _Sheet, fields: Fields) -> None:
    language = out.language
    if fields.heading is not None:
        out.append([out.cell(fields.heading(language), font=Font(bold=True, size=12))])
    wrap = Alignment(wrap_text=True, vertical="top")
    for label, value in fields.items:
        out.append([out.cell(label(language), alignment=wrap), out.cell(value)])
    out.blank()


def render_xlsx(report: Report, out: Path | str | BinaryIO, language: Language = "vi") -> None:
    workbook = Workbook(write_only=True)
    # Sheet names: at most 31 characters, none of []:*?/\
    title = "".join(c for c in report.name if c not in "[]:*?/\\")[:31] or "report"
    sheet = _Sheet(workbook, title, language)
    sheet.widths(report)
    sheet.append([report.school])
    sheet.append([sheet.cell(report.title(language), font=Font(bold=True, size=14))])
    if report.subtitle is not None:
        sheet.append([report.subtitle(language)])
    sheet.blank()
    for section in report.sections:
        if isinstance(section, Table):
            _write_table(sheet, section)
        elif isinstance(section, Chart):
            _write_chart(sheet, section)
        elif isinstance(section, Fields):
            _write_fields(sheet, section)
        elif isinstance(section, Paragraph):
            sheet.append([section.text(language)])
            sheet.blank()
    workbook.properties.creator = "thuvien"
    workbook.properties.title = report.title(language)
    workbook.save(out if not isinstance(out, Path) else str(out))


def render_xlsx_bytes(report: Report, language: Language = "vi") -> bytes:
    buffer = io.BytesIO()
    render_xlsx(report, buffer, language)
    return buffer.getvalue()
