"""Any `Report` as a PDF (reportlab), with a Vietnamese font embedded.

The standard PDF fonts have no Vietnamese letters (ư, ơ, đ, the stacked tone marks), so
DejaVu Sans (Debian's fonts-dejavu-core) is embedded, as a subset: the file opens alike
on any machine and `pdftotext` gets the text back. Tables repeat their header row on
every page and each page carries "Trang x/y".
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape, portrait
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    KeepTogether,
    LongTable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)

from server.reports.document import (
    Chart,
    Fields,
    Language,
    Report,
    Table,
    Text,
    format_value,
)
from server.reports.document import Paragraph as TextParagraph

__all__ = ["FONT", "FONT_BOLD", "FontMissing", "register_fonts", "render_pdf", "styles"]

FONT, FONT_BOLD = "DejaVuSans", "DejaVuSans-Bold"
FONT_DIRS = (os.environ.get("THUVIEN_FONT_DIR", ""), "/usr/share/fonts/truetype/dejavu",
             "/usr/share/fonts/dejavu", "/usr/local/share/fonts")
_FILES = {FONT: "DejaVuSans.ttf", FONT_BOLD: "DejaVuSans-Bold.ttf"}
_PAD = 2.0  # a table cell's left and right padding, points
SERIES_COLOURS = (colors.HexColor("#1f5f8b"), colors.HexColor("#e07b39"), colors.HexColor("#3a9d5d"),
                  colors.HexColor("#a23b72"), colors.HexColor("#6c757d"))


class FontMissing(RuntimeError):
    """DejaVu Sans is not installed: say what to install, in both languages."""


def register_fonts() -> None:
    """Register DejaVu Sans (regular and bold) with reportlab, once."""
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    for name, file_name in _FILES.items():
        for folder in FONT_DIRS:
            if folder and (Path(folder) / file_name).is_file():
                pdfmetrics.registerFont(TTFont(name, str(Path(folder) / file_name)))
                break
        else:
            raise FontMissing(
                f"Không tìm thấy phông chữ {file_name} (cài gói fonts-dejavu-core) / "
                f"font {file_name} not found: install the fonts-dejavu-core package "
                "or set THUVIEN_FONT_DIR")
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT,
                                  boldItalic=FONT_BOLD)


def styles(size: float = 8.0) -> dict[str, ParagraphStyle]:
    register_fonts()
    base = ParagraphStyle("cell", fontName=FONT, fontSize=size, leading=size * 1.25)
    return {
        "cell": base,
        "cell-right": ParagraphStyle("cell-right", parent=base, alignment=TA_RIGHT),
        "cell-center": ParagraphStyle("cell-center", parent=base, alignment=TA_CENTER),
        "head": ParagraphStyle("head", parent=base, fontName=FONT_BOLD, alignment=TA_CENTER),
        "school": ParagraphStyle("school", parent=base, fontSize=9, leading=12, alignment=TA_LEFT),
        "title": ParagraphStyle("title", parent=base, fontName=FONT_BOLD, fontSize=15, leading=19,
                                alignment=TA_CENTER, spaceAfter=2 * mm),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=10, leading=13,
                                   alignment=TA_CENTER, spaceAfter=4 * mm),
        "heading": ParagraphStyle("heading", parent=base, fontName=FONT_BOLD, fontSize=11, leading=14,
                                  spaceBefore=4 * mm, spaceAfter=2 * mm),
        "text": ParagraphStyle("text", parent=base, fontSize=9.5, leading=13),
    }


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _table(table: Table, width: float, language: Language, st: dict[str, ParagraphStyle]) -> list[Any]:
    flow: list[Any] = []
    if table.heading is not None:
        flow.append(Paragraph(_escape(table.heading(language)), st["heading"]))
    if not table.rows:
        flow.append(Paragraph(_escape(table.empty(language)), st["text"]))
        return flow
    total = sum(column.width for column in table.columns)
    widths = [width * column.width / total for column in table.columns]
    cell_style = {"left": st["cell"], "right": st["cell-right"], "center": st["cell-center"]}
    size = st["cell"].fontSize
    data: list[list[Any]] = [[Paragraph(_escape(c.header(language)), st["head"]) for c in table.columns]]

    def cell(text: str, index: int, style: ParagraphStyle, font: str) -> Any:
        # A Paragraph per cell costs a layout each (minutes for a 25,000-line register):
        # text that fits its column on one line goes in as a plain string, styled by the
        # table; only what must wrap becomes a Paragraph.
        if pdfmetrics.stringWidth(text, font, size) <= widths[index] - 2 * _PAD - 0.5:
            return text
        return Paragraph(_escape(text), style)

    for row in table.rows:
        data.append([cell(format_value(value, column.kind, language), index, cell_style[column.align], FONT)
                     for index, (value, column) in enumerate(zip(row, table.columns, strict=True))])
    commands: list[tuple[Any, ...]] = [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.black),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTNAME", (0, 1), (-1, -1), FONT), ("FONTSIZE", (0, 1), (-1, -1), size),
        ("LEADING", (0, 1), (-1, -1), st["cell"].leading),
        ("LEFTPADDING", (0, 0), (-1, -1), _PAD), ("RIGHTPADDING", (0, 0), (-1, -1), _PAD),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
    ]
    for index, column in enumerate(table.columns):
        if column.align != "left":
            commands.append(("ALIGN", (index, 1), (index, -1), column.align.upper()))
    if table.totals is not None:
        bold = ParagraphStyle("total", parent=st["cell"], fontName=FONT_BOLD)
        bold_right = ParagraphStyle("total-right", parent=bold, alignment=TA_RIGHT)
        data.append([cell(format_value(value, column.kind, language), index,
                          bold_right if column.align == "right" else bold, FONT_BOLD)
                     for index, (value, column) in enumerate(zip(table.totals, table.columns, strict=True))])
        commands += [("BACKGROUND", (0, -1), (-1, -1), colors.HexColor("#f3f3f3")),
                     ("FONTNAME", (0, -1), (-1, -1), FONT_BOLD)]
    flow.append(LongTable(data, colWidths=widths, repeatRows=1, style=TableStyle(commands)))
    return flow


def _chart(chart: Chart, width: float, language: Language, st: dict[str, ParagraphStyle]) -> list[Any]:
    height = 62 * mm
    drawing = Drawing(width, height + 14 * mm)
    plot: Any = VerticalBarChart() if chart.kind == "bar" else HorizontalLineChart()
    plot.x, plot.y = 14 * mm, 16 * mm
    plot.width, plot.height = width - 20 * mm, height - 6 * mm
    names = list(chart.series)
    plot.data = [list(chart.series[name]) or [0] for name in names]
    plot.categoryAxis.categoryNames = list(chart.labels) or [""]
    plot.categoryAxis.labels.fontName = FONT
    plot.categoryAxis.labels.fontSize = 6.5
    if len(chart.labels) > 12:
        plot.categoryAxis.labels.angle = 45
        plot.categoryAxis.labels.boxAnchor = "ne"
    plot.valueAxis.labels.fontName = FONT
    plot.valueAxis.labels.fontSize = 7
    plot.valueAxis.valueMin = 0
    peak = max((max(values) for values in plot.data if values), default=0)
    if peak <= 0:
        plot.valueAxis.valueMax = 1
    for index in range(len(names)):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        if chart.kind == "bar":
            plot.bars[index].fillColor = colour
            plot.bars[index].strokeColor = colour
        else:
            plot.lines[index].strokeColor = colour
            plot.lines[index].strokeWidth = 1.5
    drawing.add(plot)
    if len(names) > 1:
        legend = Legend()
        legend.x, legend.y = 16 * mm, height + 10 * mm
        legend.fontName, legend.fontSize = FONT, 7
        legend.alignment = "right"
        legend.columnMaximum = 1
        legend.dx = legend.dy = 6
        legend.deltax = 60 * mm
        legend.colorNamePairs = [(SERIES_COLOURS[i % len(SERIES_COLOURS)], name) for i, name in enumerate(names)]
        drawing.add(legend)
    return [KeepTogether([Paragraph(_escape(chart.heading(language)), st["heading"]), drawing])]


def _fields(fields: Fields, width: float, language: Language, st: dict[str, ParagraphStyle]) -> list[Any]:
    flow: list[Any] = []
    if fields.heading is not None:
        flow.append(Paragraph(_escape(fields.heading(language)), st["heading"]))
    data = []
    for label, value in fields.items:
        shown = "……………………………………" if value is None else format_value(value, "text", language)
        data.append([Paragraph(_escape(label(language)), st["cell"]), Paragraph(_escape(shown), st["cell"])])
    if data:
        flow.append(LongTable(data, colWidths=[width * 0.62, width * 0.38], style=TableStyle([
            ("GRID", (0, 0), (-1, -1), 0.4, colors.black), ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3)])))
    return flow


def _signatures(names: Sequence[Text], width: float, language: Language,
                st: dict[str, ParagraphStyle]) -> list[Any]:
    if not names:
        return []
    head = ParagraphStyle("sign", parent=st["cell-center"], fontName=FONT_BOLD, fontSize=9.5)
    hint = ParagraphStyle("sign-hint", parent=st["cell-center"], fontSize=8)
    sign = "(Ký, ghi rõ họ tên)" if language == "vi" else "(Signature and full name)"
    cells = [[Paragraph(_escape(name(language)), head) for name in names],
             [Paragraph(sign, hint) for _ in names]]
    table = LongTable(cells, colWidths=[width / len(names)] * len(names))
    return [Spacer(1, 8 * mm), KeepTogether([table, Spacer(1, 22 * mm)])]


def render_pdf(report: Report, out: Path | str | BinaryIO, language: Language = "vi") -> None:
    """Write `report` as a PDF to a path or a binary file object."""
    st = styles()
    pagesize = landscape(A4) if report.landscape else portrait(A4)
    margin = 12 * mm
    target: Any = str(out) if isinstance(out, Path | str) else out
    document = SimpleDocTemplate(target, pagesize=pagesize, leftMargin=margin, rightMargin=margin,
                                 topMargin=margin, bottomMargin=14 * mm, title=report.title(language),
                                 author=report.school, creator="thuvien")
    width = pagesize[0] - 2 * margin
    flow: list[Any] = [Paragraph(_escape(report.school), st["school"]), Spacer(1, 3 * mm),
                       Paragraph(_escape(report.title(language)), st["title"])]
    if report.subtitle is not None:
        flow.append(Paragraph(_escape(report.subtitle(language)), st["subtitle"]))
    for section in report.sections:
        if isinstance(section, Table):
            flow += _table(section, width, language, st)
        elif isinstance(section, Chart):
            flow += _chart(section, width, language, st)
        elif isinstance(section, Fields):
            flow += _fields(section, width, language, st)
        elif isinstance(section, TextParagraph):
            flow.append(Paragraph(_escape(section.text(language)), st["text"]))
    flow += _signatures(report.signatures, width, language, st)
    made = format_value(report.generated_at.astimezone(), "text", language)
    footer = "Lập bởi thuvien lúc" if language == "vi" else "Made by thuvien at"
    page_word = "Trang" if language == "vi" else "Page"

    class _NumberedCanvas(_PageCountCanvas):
        def footer(self, page: int, pages: int) -> None:
            self.setFont(FONT, 7)
            self.drawString(margin, 7 * mm, f"{footer} {made}")
            self.drawRightString(pagesize[0] - margin, 7 * mm, f"{page_word} {page}/{pages}")

    document.build(flow, canvasmaker=_NumberedCanvas)


def render_pdf_bytes(report: Report, language: Language = "vi") -> bytes:
    buffer = io.BytesIO()
    render_pdf(report, buffer, language)
    return buffer.getvalue()


from reportlab.pdfgen.canvas import Canvas  # noqa: E402  (kept near its only user)


class _PageCountCanvas(Canvas):
    """Holds every page until the end, so each can say "page x of y"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802  (reportlab's name)
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        count = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self.footer(self._pageNumber, count)
            super().showPage()
        super().save()

    def footer(self, page: int, pages: int) -> None:
        raise NotImplementedError
