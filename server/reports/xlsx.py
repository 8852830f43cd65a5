"""Any `Report` as an Excel workbook (openpyxl): one sheet, tables one under another,
values kept as numbers and dates (not text) so a librarian can sum and filter them;
charts as native Excel charts beside their data."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any, BinaryIO

from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
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


def _write_table(sheet: Any, row: int, table: Table, language: Language) -> int:
    if table.heading is not None:
        sheet.cell(row=row, column=1, value=table.heading(language)).font = Font(bold=True, size=12)
        row += 1
    if not table.rows:
        sheet.cell(row=row, column=1, value=table.empty(language))
        return row + 2
    for index, column in enumerate(table.columns, start=1):
        cell = sheet.cell(row=row, column=index, value=column.header(language))
        cell.font, cell.fill, cell.border = Font(bold=True), _HEAD_FILL, _BOX
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        letter = get_column_letter(index)
        width = max(column.width * _CHAR_WIDTH, 6.0)
        if (sheet.column_dimensions[letter].width or 0) < width:
            sheet.column_dimensions[letter].width = width
    row += 1
    lines = list(table.rows) + ([table.totals] if table.totals is not None else [])
    for line_index, values in enumerate(lines):
        is_total = table.totals is not None and line_index == len(lines) - 1
        for index, (value, column) in enumerate(zip(values, table.columns, strict=True), start=1):
            cell = sheet.cell(row=row, column=index, value=_cell_value(value, language))
            cell.border = _BOX
            _format(cell, column)
            if is_total:
                cell.font = Font(bold=True)
        row += 1
    return row + 1


def _format(cell: Any, column: Column) -> None:
    if column.kind in _FORMATS:
        cell.number_format = _FORMATS[column.kind]
    cell.alignment = Alignment(horizontal=column.align, vertical="top", wrap_text=column.kind == "text")


def _write_chart(sheet: Any, row: int, chart: Chart, language: Language) -> int:
    sheet.cell(row=row, column=1, value=chart.heading(language)).font = Font(bold=True, size=12)
    row += 1
    first = row
    sheet.cell(row=row, column=1, value="")
    for index, name in enumerate(chart.series, start=2):
        sheet.cell(row=row, column=index, value=name).font = Font(bold=True)
    for label_index, label in enumerate(chart.labels):
        row += 1
        sheet.cell(row=row, column=1, value=label)
        for index, values in enumerate(chart.series.values(), start=2):
            sheet.cell(row=row, column=index, value=values[label_index])
    if chart.labels and chart.series:
        plot: Any = BarChart() if chart.kind == "bar" else LineChart()
        plot.title = chart.heading(language)
        plot.height, plot.width = 7.5, 16
        data = Reference(sheet, min_col=2, max_col=1 + len(chart.series), min_row=first, max_row=row)
        plot.add_data(data, titles_from_data=True)
        plot.set_categories(Reference(sheet, min_col=1, min_row=first + 1, max_row=row))
        sheet.add_chart(plot, f"{get_column_letter(3 + len(chart.series))}{first}")
        # The chart floats beside its data: leave it room before the next section.
        row = max(row, first + 15)
    return row + 2


def _write_fields(sheet: Any, row: int, fields: Fields, language: Language) -> int:
    if fields.heading is not None:
        sheet.cell(row=row, column=1, value=fields.heading(language)).font = Font(bold=True, size=12)
        row += 1
    for label, value in fields.items:
        sheet.cell(row=row, column=1, value=label(language)).alignment = Alignment(wrap_text=True,
                                                                                 vertical="top")
        sheet.cell(row=row, column=2, value=_cell_value(value, language))
        row += 1
    return row + 1


def render_xlsx(report: Report, out: Path | str | BinaryIO, language: Language = "vi") -> None:
    workbook = Workbook()
    sheet = workbook.active
    # Sheet names: at most 31 characters, none of []:*?/\
    sheet.title = "".join(c for c in report.name if c not in "[]:*?/\\")[:31] or "report"
    sheet.cell(row=1, column=1, value=report.school)
    sheet.cell(row=2, column=1, value=report.title(language)).font = Font(bold=True, size=14)
    row = 3
    if report.subtitle is not None:
        sheet.cell(row=row, column=1, value=report.subtitle(language))
        row += 1
    row += 1
    for section in report.sections:
        if isinstance(section, Table):
            row = _write_table(sheet, row, section, language)
        elif isinstance(section, Chart):
            row = _write_chart(sheet, row, section, language)
        elif isinstance(section, Fields):
            row = _write_fields(sheet, row, section, language)
        elif isinstance(section, Paragraph):
            sheet.cell(row=row, column=1, value=section.text(language))
            row += 2
    workbook.properties.creator = "thuvien"
    workbook.properties.title = report.title(language)
    workbook.save(out if not isinstance(out, Path) else str(out))


def render_xlsx_bytes(report: Report, language: Language = "vi") -> bytes:
    buffer = io.BytesIO()
    render_xlsx(report, buffer, language)
    return buffer.getvalue()
