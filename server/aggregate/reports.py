"""The office's report (báo cáo tổng hợp thư viện trường học) as a `Report`, rendered by
server/reports/pdf.py and xlsx.py like every school report: the same views as the web
pages (server.aggregate.views), on paper and in a spreadsheet.

    report = province_report(sessions, 2026, config, commune="Phường Y", level="primary")
    render_pdf_bytes(report) / render_xlsx_bytes(report)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from server.aggregate.config import AggregateConfig
from server.aggregate.models import NO_GRADE
from server.aggregate.views import Filters, GroupRow, SchoolRow, Views, build_views, month_label
from server.reports.document import Chart, Column, Fields, Language, Paragraph, Report, Table, Text
from server.reports.statistics import LEVEL_NAMES, READER_KIND_NAMES

__all__ = ["REASON_TEXTS", "TT16_TEXTS", "province_report", "render", "report_from_views"]

_N = {"align": "right", "kind": "int"}
LOANS = Text("Lượt mượn", "Loans")
TT16_TEXTS: dict[int | None, Text] = {
    2: Text("Mức độ 2", "Level 2"), 1: Text("Mức độ 1", "Level 1"),
    0: Text("Chưa đạt", "Not met"), None: Text("Chưa tự đánh giá", "Not assessed"),
}
REASON_TEXTS: dict[str, Text] = {
    "no_statistics": Text("chưa gửi thống kê năm học", "no statistics for the school year"),
    "no_tt16": Text("chưa gửi tự đánh giá TT16", "no Thông tư 16 self-assessment"),
    "no_entries": Text("chưa gửi lượt mượn trả nào", "no loan records ever"),
    "stale_entries": Text("lâu không gửi lượt mượn trả", "no loan records for a while"),
}


def _levels(levels: Sequence[str]) -> Text:
    names = [LEVEL_NAMES.get(level, Text(level, level)) for level in levels]
    return Text(", ".join(n.vi for n in names), ", ".join(n.en for n in names))


def _reasons(row: SchoolRow) -> Text:
    texts = [REASON_TEXTS[reason] for reason in row.reasons]
    return Text("; ".join(t.vi for t in texts), "; ".join(t.en for t in texts))


def _office_title(config: AggregateConfig | None) -> Text:
    if config is not None and config.level == "commune":
        return Text("BÁO CÁO TỔNG HỢP THƯ VIỆN TRƯỜNG HỌC TRÊN ĐỊA BÀN",
                    "SCHOOL LIBRARIES OF THE COMMUNE: SUMMARY")
    return Text("BÁO CÁO TỔNG HỢP THƯ VIỆN TRƯỜNG HỌC TOÀN TỈNH", "SCHOOL LIBRARIES OF THE PROVINCE: SUMMARY")


def _subtitle(filters: Filters) -> Text:
    vi, en = [f"Năm học {filters.label}"], [f"School year {filters.label}"]
    if filters.commune:
        vi.append(filters.commune)
        en.append(filters.commune)
    if filters.level:
        level = LEVEL_NAMES.get(filters.level, Text(filters.level, filters.level))
        vi.append(f"cấp {level.vi}")
        en.append(level.en)
    return Text(" · ".join(vi), " · ".join(en))


def _tt16_cells(group: GroupRow) -> list[int]:
    return [group.tt16.get(2, 0), group.tt16.get(1, 0), group.tt16.get(0, 0), group.tt16.get(None, 0)]


_TT16_COLUMNS = [Column("tt16_2", Text("TT16 mức 2", "TT16 level 2"), 0.8, **_N),
                 Column("tt16_1", Text("TT16 mức 1", "TT16 level 1"), 0.8, **_N),
                 Column("tt16_0", Text("Chưa đạt", "Not met"), 0.8, **_N),
                 Column("tt16_none", Text("Chưa đánh giá", "Not assessed"), 0.8, **_N)]


def report_from_views(views: Views, config: AggregateConfig | None = None) -> Report:
    """The report of views already built (the web's download uses the page's views)."""
    total = views.total
    sections: list[Any] = [Fields(Text("1. Tổng hợp", "1. Summary"), [
        (Text("Số trường trong danh sách", "Schools in the list"), total.listed),
        (Text("Đã báo cáo đủ", "Reported in full"), total.reported),
        (Text("Chưa báo cáo đủ", "Not reported in full"), total.not_reported),
        (Text("Trường gửi dữ liệu nhưng không có trong danh sách", "Schools sending data, not in the list"),
         total.schools - total.listed),
        (Text("Lượt mượn trong năm học", "Loans in the school year"), _int_text(total.loans)),
        (Text("Bản sách trong kho (mọi loại)", "Copies in stock (every kind)"), _int_text(total.copies)),
        (Text("Học sinh", "Students"), _int_text(total.students)),
        (Text("Bản sách trên học sinh", "Copies per student"), _ratio(total.per_student)),
        *[(Text(f"Thông tư 16 – {TT16_TEXTS[level].vi}", f"Thông tư 16 – {TT16_TEXTS[level].en}"),
           total.tt16.get(level, 0)) for level in (2, 1, 0, None)],
    ])]
    if views.filters.commune is None:
        communes = views.by_commune
        sections.append(Table(
            Text("2. Theo xã, phường", "2. By commune"),
            [Column("commune", Text("Xã, phường", "Commune"), 2.4),
             Column("schools", Text("Số trường", "Schools"), 0.8, **_N),
             Column("reported", Text("Đã báo cáo", "Reported"), 0.8, **_N),
             Column("loans", LOANS, 1, **_N),
             Column("copies", Text("Bản sách", "Copies"), 1, **_N),
             Column("students", Text("Học sinh", "Students"), 1, **_N),
             Column("per", Text("Bản/HS", "Per student"), 0.8, align="right", kind="decimal"),
             *_TT16_COLUMNS],
            [(g.name or Text("(không có trong danh sách)", "(not in the list)"), g.schools, g.reported,
              g.loans, g.copies, g.students, g.per_student, *_tt16_cells(g)) for g in communes],
            totals=(Text("Tổng", "Total"), total.schools, total.reported, total.loans, total.copies,
                    total.students, total.per_student, *_tt16_cells(total))))
    sections.append(Table(
        Text(f"3. Lượt mượn theo tháng (tổng {total.loans})", f"3. Loans by month (total {total.loans})"),
        [Column("month", Text("Tháng", "Month"), 1), Column("loans", LOANS, 1, **_N)],
        [(month_label(month), n) for month, n in views.months], totals=(Text("Tổng", "Total"), total.loans)))
    sections.append(Chart(Text("Lượt mượn theo tháng", "Loans by month"),
                          [month_label(month) for month, _ in views.months],
                          {"Lượt mượn / Loans": [n for _, n in views.months]}))
    sections.append(Table(
        Text("4. Lượt mượn theo bạn đọc và khối lớp", "4. Loans by reader and grade"),
        [Column("kind", Text("Bạn đọc", "Readers"), 1.6), Column("grade", Text("Khối", "Grade"), 0.8),
         Column("loans", LOANS, 1, **_N)],
        [(READER_KIND_NAMES.get(kind, Text(kind, kind)), grade if grade != NO_GRADE else None, n)
         for kind, grade, n in views.by_reader]))
    sections.append(Table(
        Text("5. Từng trường", "5. Each school"),
        [Column("school", Text("Trường", "School"), 3), Column("commune", Text("Xã, phường", "Commune"), 1.8),
         Column("levels", Text("Cấp học", "Levels"), 1.6),
         Column("students", Text("Học sinh", "Students"), 0.9, **_N),
         Column("copies", Text("Bản sách", "Copies"), 0.9, **_N),
         Column("per", Text("Bản/HS", "Per student"), 0.8, align="right", kind="decimal"),
         Column("tt16", Text("Thông tư 16", "Thông tư 16"), 1.1),
         Column("loans", LOANS, 0.9, **_N),
         Column("fresh", Text("Lượt mượn trả mới nhất", "Newest loan record"), 1.3)],
        [(row.name if row.listed else f"{row.name} (*)", row.commune, _levels(row.levels), row.students,
          row.copies, row.per_student, TT16_TEXTS.get(row.tt16_level, TT16_TEXTS[None]), row.loans,
          row.last_entry_at) for row in views.schools]))
    if views.unlisted:
        sections.append(Paragraph(Text("(*) không có trong danh sách trường của đơn vị.",
                                       "(*) not in the office's list of schools.")))
    sections.append(Table(
        Text(f"6. Trường chưa báo cáo đủ ({len(views.not_reported)})",
             f"6. Schools that have not reported in full ({len(views.not_reported)})"),
        [Column("school", Text("Trường", "School"), 3), Column("commune", Text("Xã, phường", "Commune"), 1.8),
         Column("why", Text("Còn thiếu", "Missing"), 3.5),
         Column("fresh", Text("Lượt mượn trả mới nhất", "Newest loan record"), 1.3)],
        [(row.name, row.commune, _reasons(row), row.last_entry_at) for row in views.not_reported],
        empty=Text("Mọi trường đã báo cáo đủ.", "Every school has reported in full.")))
    return Report(name=f"tong-hop-{views.filters.school_year}", title=_office_title(config),
                  school=config.name if config is not None else "", subtitle=_subtitle(views.filters),
                  sections=sections, generated_at=views.generated_at,
                  signatures=(Text("Người lập", "Prepared by"), Text("Thủ trưởng đơn vị", "Head of office")))


def _int_text(value: int) -> Text:
    vi, en = f"{value:,}".replace(",", "."), f"{value:,}"
    return Text(vi, en)


def _ratio(value: float | None) -> Text | None:
    if value is None:
        return None
    return Text(f"{value:.2f}".replace(".", ","), f"{value:.2f}")


def province_report(sessions: sessionmaker[Session], school_year: int, config: AggregateConfig | None = None,
                    *, commune: str | None = None, level: str | None = None,
                    now: dt.datetime | None = None) -> Report:
    """The office's report for a school year (2026 for 2026-2027), optionally narrowed
    to one commune and/or one school level."""
    if config is None:
        from server.aggregate.config import AggregateConfig as _Config

        config = _Config(name="", level="province", database={"url": "sqlite://"})
        views = build_views(sessions, config, Filters(school_year, commune, level), now)
        return report_from_views(views, None)
    return report_from_views(build_views(sessions, config, Filters(school_year, commune, level), now), config)


def render(report: Report, fmt: str, language: Language = "vi") -> bytes:
    if fmt == "pdf":
        from server.reports.pdf import render_pdf_bytes

        return render_pdf_bytes(report, language)
    if fmt == "xlsx":
        from server.reports.xlsx import render_xlsx_bytes

        return render_xlsx_bytes(report, language)
    raise LookupError(f"không có dạng {fmt} / no {fmt} form (pdf, xlsx)")
