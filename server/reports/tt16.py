"""The library's self-assessment under Thông tư 16/2022/TT-BGDĐT (standards for preschool
and general-school libraries, in force since 07/01/2023), as a paper form and as the JSON
snapshot that the upward reporting carries.

The circular judges a library on five groups, each at level 1 (mức độ 1) or level 2
(mức độ 2, which also asks all of level 1): 1 information resources, 2 premises,
3 special equipment, 4 library activities, 5 library management (articles 5-9 for
preschools, 10-14 primary, 15-19 secondary, 20-24 multi-level schools). The criteria
below follow those articles as far as the public summaries we could read state them
(the copies-per-student minimums, 0.60 m²/child and 48 m² for preschools, the 50 m²
reading space of Nghị định 93/2020 art. 17, a catalogue search system, lending by
slips or software, guidance, reading promotion, plans and registers). Where the exact
wording or a level-2 threshold was not available, the criterion is written from
DOMAIN.md and is a yes/no for the librarian; the wording is ours, not the circular's.

Each criterion is filled from the data where the data can tell (`source: "data"`) and
otherwise left blank for the librarian (`source: "librarian"`), who may answer in a JSON
file given as `--option answers=PATH`: {"2.2": 64, "2.1": true, ...}. An unknown id, an
answer to a data criterion or a value of the wrong type is refused, naming the id.

Levels: a criterion `required_for` 1 must hold at both levels; one `required_for` 2 only
at level 2 (`meets_level1` is then null: it does not apply). Indicators are figures
shown for the record that decide no level. A group is at level 2 when every criterion
meets level 2, at level 1 when every level-1 criterion meets level 1, at 0 (chưa đạt)
when a level-1 criterion fails, and null when a level-1 answer is still missing. The
overall level is the lowest group's (0 if any group is 0, else null if any is null).

Criterion ids are stable: "1.1.<level>" per school level (MN preschool, TH primary, THCS
lower secondary, THPT upper secondary), "1.2" only with a preschool level, "1.3" only
with a primary or secondary level, the rest always.

The snapshot (`tt16_snapshot`, schema_version 1; keep it stable, issue #8 sends it up):
    {"schema_version": 1, "circular": "16/2022/TT-BGDĐT",
     "site": str, "school": str, "levels": [str],        # config.library.levels
     "school_year": "2026-2027" | null, "first_day": "YYYY-MM-DD", "last_day": "YYYY-MM-DD",
     "generated_at": ISO 8601 UTC,
     "overall_level": 0 | 1 | 2 | null,
     "groups": [{"id": "1", "name_vi": str, "name_en": str, "level": 0 | 1 | 2 | null,
                 "criteria": [{"id": "1.1.THCS", "text_vi": str, "text_en": str,
                               "source": "data" | "librarian", "value_type": "bool" |
                               "number" | "text" | "counts", "unit": str | null,
                               "value": bool | number | str | {str: int} | null,
                               "required_for": 1 | 2, "indicator": bool,
                               "threshold_level1": number | null,
                               "meets_level1": bool | null, "meets_level2": bool | null}]}]}
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from server.config import ServerConfig
from server.models import Copy, Station, Stocktake, Title, Withdrawal
from server.reports.document import Column, Paragraph, Report, Table, Text
from server.reports.registry import ReportParams, report
from server.reports.statistics import GROUP, LEVEL_NAMES, Statistics, collect

__all__ = ["AnswersError", "Assessed", "Criterion", "assess", "build", "criteria_for",
           "load_answers", "tt16_snapshot"]

Source = Literal["data", "librarian"]
ValueType = Literal["bool", "number", "text", "counts"]

GROUPS: tuple[tuple[str, Text], ...] = (
    ("1", Text("Tài nguyên thông tin và học liệu", "Information resources")),
    ("2", Text("Cơ sở vật chất", "Premises")),
    ("3", Text("Thiết bị chuyên dùng", "Special equipment")),
    ("4", Text("Hoạt động thư viện", "Library activities")),
    ("5", Text("Quản lý thư viện", "Library management")),
)
PENDING = "pending"
# The short names Vietnamese schools use for their levels: criterion ids per level end in them.
LEVEL_CODES: dict[str, str] = {"preschool": "MN", "primary": "TH", "lower_secondary": "THCS",
                               "upper_secondary": "THPT"}


class AnswersError(ValueError):
    """The librarian's answers file cannot be used; the message is in both languages."""


@dataclass(frozen=True)
class Criterion:
    id: str
    text: Text
    source: Source
    value_type: ValueType
    required_for: Literal[1, 2] = 1
    indicator: bool = False           # a figure for the record: decides no level
    threshold: float | None = None    # for numbers: the least value that meets level 1
    unit: Text | None = None

    @property
    def group(self) -> str:
        return self.id.split(".")[0]


@dataclass(frozen=True)
class Assessed:
    criterion: Criterion
    value: Any
    meets_level1: bool | None
    meets_level2: bool | None


def _c(id: str, vi: str, en: str, source: Source = "librarian", value_type: ValueType = "bool",
       **more: Any) -> Criterion:
    return Criterion(id, Text(vi, en), source, value_type, **more)


M2 = Text("m²", "m²")


def criteria_for(config: ServerConfig) -> list[Criterion]:
    """The criteria for this school's level(s), in order."""
    levels = list(config.library.levels)
    schools = [level for level in levels if level != "preschool"]
    reading_space = 48 if not schools else 50
    out: list[Criterion] = []
    for level in levels:
        name = LEVEL_NAMES[level]
        minimum = {"preschool": 2, "primary": 3, "lower_secondary": 4, "upper_secondary": 5}[level]
        out.append(_c(f"1.1.{LEVEL_CODES[level]}",
                      f"Số bản sách trên học sinh ({name.vi}): tối thiểu {minimum} bản/học sinh",
                      f"Copies per student ({name.en}): at least {minimum}",
                      "data", "number", threshold=minimum, unit=Text("bản/HS", "per student")))
    if "preschool" in levels:
        out.append(_c("1.2", "Sách nghiệp vụ trên giáo viên mầm non: tối thiểu 3 bản/giáo viên",
                      "Professional books per preschool teacher: at least 3", "data", "number",
                      threshold=3, unit=Text("bản/GV", "per teacher")))
    if schools:
        out.append(_c("1.3", "Mỗi giáo viên có ít nhất 01 bộ sách theo khối lớp (tiểu học) hoặc môn học "
                             "(trung học)", "Each teacher has at least one set of books for the grade "
                                            "(primary) or subject (secondary)"))
    out += [
        _c("1.4", "Có báo, tạp chí, bản đồ, tranh ảnh giáo dục, học liệu nghe nhìn, sách điện tử phù hợp "
                  "lứa tuổi và chương trình",
           "Newspapers, magazines, maps, pictures, audiovisual materials and e-books fit for the "
           "pupils' age and the curriculum"),
        _c("1.5", "Tài nguyên được xử lý nghiệp vụ: tỉ lệ đầu sách có ký hiệu xếp giá và môn loại",
           "Resources processed: share of titles with a call number and a subject class",
           "data", "number", threshold=100, unit=Text("%", "%")),
        _c("1.6", "Sách giáo khoa trên học sinh", "Textbooks per student", "data", "number",
           indicator=True, unit=Text("bản/HS", "per student")),
        _c("1.7", "Số đầu sách theo loại", "Titles by kind", "data", "counts", indicator=True),
        _c("1.8", "Tài nguyên phong phú: sách tham khảo theo môn, tài liệu bồi dưỡng chuyên môn, học liệu "
                  "số dùng chung", "Rich resources: reference books per subject, professional "
                                   "development material, shared digital resources",
           required_for=2),
        _c("2.1", "Thư viện ở vị trí trung tâm, thuận tiện, người khuyết tật tiếp cận được",
           "Central, convenient location, accessible to readers with disabilities"),
        _c("2.2", f"Diện tích không gian đọc (tối thiểu {reading_space} m²)",
           f"Reading space area (at least {reading_space} m²)", value_type="number",
           threshold=reading_space, unit=M2),
        _c("2.3", "Số chỗ ngồi đọc", "Reading seats", value_type="number", indicator=True,
           unit=Text("chỗ", "seats")),
        _c("2.4", "Kho bảo quản đủ diện tích; khu vực quầy thủ thư", "Stacks large enough; a "
                                                                      "circulation desk area"),
        _c("2.5", "Đủ ánh sáng, thông gió; bảo đảm an toàn, phòng cháy chữa cháy",
           "Light and ventilation; safety and fire protection"),
        _c("2.6", "Không gian đọc mở, thân thiện; góc đọc, tủ sách lớp học", "Open, friendly reading "
                  "spaces; reading corners and class book shelves", required_for=2),
        _c("3.1", "Giá, tủ, bàn ghế, quầy thủ thư đủ và phù hợp lứa tuổi", "Shelves, cabinets, tables, "
                  "chairs and desk, enough and fit for the readers' age"),
        _c("3.2", "Máy tính kết nối Internet, máy in, máy đọc mã vạch phục vụ quản lý",
           "Computers on the Internet, a printer and barcode readers for the management"),
        _c("3.3", "Trạm tự phục vụ, cổng, quầy đã đăng ký với phần mềm", "Self-service kiosks, gates "
                  "and desks registered with the software", "data", "number", indicator=True),
        _c("3.4", "Phần mềm quản lý thư viện", "Library management software", "data"),
        _c("3.5", "Thiết bị nghe nhìn, đọc sách điện tử, thiết bị an ninh (cổng từ, RFID)",
           "Audiovisual and e-reading devices, security equipment (gates, RFID)", required_for=2),
        _c("4.1", "Hệ thống tra cứu tài nguyên thông tin (mục lục trực tuyến)",
           "A catalogue search system (online catalogue)", "data"),
        _c("4.2", "Mượn, trả tài nguyên được ghi nhận bằng phần mềm", "Loans and returns recorded "
                  "by the software", "data"),
        _c("4.3", "Lượt mượn trên học sinh trong năm học", "Loans per student in the school year",
           "data", "number", indicator=True, unit=Text("lượt/HS", "per student")),
        _c("4.4", "Lượt vào thư viện trong năm học (cổng đếm)", "Visits in the school year (gate "
                  "counts)", "data", "number", indicator=True),
        _c("4.5", "Hướng dẫn sử dụng thư viện, phổ biến nội quy cho bạn đọc", "Guidance on using "
                  "the library and its rules"),
        _c("4.6", "Hoạt động khuyến đọc, phát triển văn hóa đọc", "Reading promotion activities"),
        _c("4.7", "Hỗ trợ dạy và học: tiết đọc thư viện, hoạt động gắn với chương trình",
           "Support for teaching: library lessons, activities tied to the curriculum"),
        _c("4.8", "Liên thông, chia sẻ dữ liệu biên mục (MARC 21, Excel) với thư viện khác",
           "Sharing catalogue records (MARC 21, Excel) with other libraries", "data",
           required_for=2),
        _c("4.9", "Hoạt động mở rộng: thư viện lưu động, câu lạc bộ đọc, phối hợp cộng đồng",
           "Outreach: mobile library, reading clubs, work with the community", required_for=2),
        _c("4.10", "Thời gian mở cửa phục vụ (giờ/tuần)", "Opening hours (hours a week)",
           value_type="number", indicator=True, unit=Text("giờ/tuần", "hours/week")),
        _c("5.1", "Kế hoạch hoạt động thư viện năm học được phê duyệt", "A yearly library plan "
                  "approved by the principal"),
        _c("5.2", "Nội quy thư viện được ban hành và niêm yết", "Library rules issued and posted"),
        _c("5.3", "Sổ đăng ký tổng quát, đăng ký cá biệt, sổ mượn được lưu trữ điện tử",
           "General and individual registers and loan registers kept electronically", "data"),
        _c("5.4", "Kiểm kê tài nguyên trong năm học", "A stocktake in the school year", "data"),
        _c("5.5", "Số quyết định thanh lý trong năm học", "Weeding decisions in the school year",
           "data", "number", indicator=True),
        _c("5.6", "Người làm công tác thư viện có chuyên môn hoặc được bồi dưỡng nghiệp vụ",
           "Library staff trained in librarianship"),
        _c("5.7", "Báo cáo, chia sẻ dữ liệu với cơ sở dữ liệu ngành giáo dục",
           "Reporting to and sharing data with the education sector database", "data", "text",
           required_for=2),
        _c("5.8", "Đánh giá, cải tiến hoạt động thư viện hằng năm; phát triển thư viện số",
           "Yearly evaluation and improvement; a growing digital library", required_for=2),
    ]
    return out


# --- the librarian's answers ---------------------------------------------------------------

def load_answers(path: str | Path | None, criteria: Sequence[Criterion]) -> dict[str, Any]:
    """Read and check the answers file: {criterion id: value}; None gives no answers."""
    if path is None:
        return {}
    try:
        answers = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnswersError(f"Không tìm thấy tệp trả lời {path} / answers file {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnswersError(f"Tệp trả lời {path} không phải JSON hợp lệ ({error}) / "
                           f"answers file {path} is not valid JSON ({error})") from None
    return check_answers(answers, criteria)


def check_answers(answers: Any, criteria: Sequence[Criterion]) -> dict[str, Any]:
    if not isinstance(answers, dict):
        raise AnswersError("Tệp trả lời phải là một đối tượng JSON {mã tiêu chí: giá trị} / "
                           "the answers file must be a JSON object {criterion id: value}")
    known = {criterion.id: criterion for criterion in criteria}
    for key, value in answers.items():
        criterion = known.get(key)
        if criterion is None:
            raise AnswersError(f"Không có tiêu chí {key!r}; các tiêu chí: "
                               f"{', '.join(c.id for c in criteria if c.source == 'librarian')} / "
                               f"no criterion {key!r}")
        if criterion.source != "librarian":
            raise AnswersError(f"Tiêu chí {key} được tính từ dữ liệu, không nhập tay / "
                               f"criterion {key} is computed from the data, not answered")
        if value is None:
            continue
        ok = (isinstance(value, bool) if criterion.value_type == "bool" else
              isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
              if criterion.value_type == "number" else isinstance(value, str))
        if not ok:
            expected = {"bool": ("true/false", "true/false"), "number": ("một số ≥ 0", "a number ≥ 0"),
                        "text": ("một chuỗi", "a string")}.get(criterion.value_type, ("?", "?"))
            raise AnswersError(f"Tiêu chí {key}: cần {expected[0]}, nhận {value!r} / "
                               f"criterion {key}: expected {expected[1]}, got {value!r}")
    return dict(answers)


# --- filling and judging --------------------------------------------------------------------

def _data_values(sessions: sessionmaker[Session], config: ServerConfig, stats: Statistics,
                 today: dt.date) -> dict[str, Any]:
    w = stats.window
    values: dict[str, Any] = {}
    for coverage in stats.coverage:
        if coverage.level is not None:
            ratio = coverage.ratio
            values[f"1.1.{LEVEL_CODES[coverage.level]}"] = None if ratio is None else round(ratio, 2)
    teachers = stats.teachers
    values["1.2"] = None if teachers.ratio is None else round(teachers.ratio, 2)
    textbook_kinds = {k.prefix for k in config.library.kinds if k.textbook}
    textbooks = sum(k.copies for k in stats.kinds if k.prefix in textbook_kinds)
    students = stats.students
    values["1.6"] = round(textbooks / students, 2) if students else None
    values["1.7"] = {k.prefix: k.titles for k in stats.kinds}
    values["4.3"] = round(stats.loans / students, 2) if students else None
    values["4.4"] = sum(n for _, n in stats.visits_by_month)
    with sessions() as db:
        in_stock = (select(Title.id).join(Copy, Copy.title_id == Title.id)
                    .where(Copy.withdrawal_id.is_(None), Copy.status != "withdrawn").distinct().subquery())
        total, processed = db.execute(select(
            func.count(), func.count(Title.id).filter(Title.call_number.is_not(None),
                                                      Title.call_number != "",
                                                      Title.subject.is_not(None), Title.subject != ""))
            .select_from(in_stock).join(Title, Title.id == in_stock.c.id)).one()
        values["1.5"] = round(100 * processed / total, 1) if total else None
        values["3.3"] = int(db.scalar(select(func.count()).select_from(Station)
                                      .where(Station.active.is_(True))) or 0)
        stocktakes = int(db.scalar(select(func.count()).select_from(Stocktake).where(
            Stocktake.closed_at >= w.start, Stocktake.closed_at < w.end)) or 0)
        values["5.4"] = True if stocktakes else (False if today > w.last_day else None)
        values["5.5"] = int(db.scalar(select(func.count()).select_from(Withdrawal).where(
            Withdrawal.decided_on >= w.first_day, Withdrawal.decided_on <= w.last_day)) or 0)
    # What thuvien itself provides.
    values.update({"3.4": True, "4.1": True, "4.2": True, "4.8": True, "5.3": True, "5.7": PENDING})
    return values


def judge(criterion: Criterion, value: Any) -> Assessed:
    if criterion.indicator or value is None or criterion.value_type in ("text", "counts"):
        return Assessed(criterion, value, None, None)
    met = bool(value) if criterion.value_type == "bool" else (
        criterion.threshold is None or float(value) >= criterion.threshold)
    if criterion.required_for == 2:
        return Assessed(criterion, value, None, met)
    # Level 2 asks all of level 1; no level-2 threshold is set apart from level 1's.
    return Assessed(criterion, value, met, met)


def _all(values: Sequence[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def group_level(results: Sequence[Assessed]) -> int | None:
    decisive = [r for r in results if not r.criterion.indicator]
    level1 = _all([r.meets_level1 for r in decisive if r.criterion.required_for == 1])
    if level1 is False:
        return 0
    if level1 is None:
        return None
    return 2 if _all([r.meets_level2 for r in decisive]) is True else 1


def overall_level(levels: Sequence[int | None]) -> int | None:
    if any(level == 0 for level in levels):
        return 0
    if any(level is None for level in levels):
        return None
    return min(levels, default=None)  # type: ignore[type-var]


@dataclass
class Assessment:
    stats: Statistics
    groups: list[tuple[str, Text, list[Assessed], int | None]]

    @property
    def level(self) -> int | None:
        return overall_level([level for *_, level in self.groups])


def assess(sessions: sessionmaker[Session], config: ServerConfig, params: ReportParams,
           today: dt.date | None = None, answers: Mapping[str, Any] | None = None) -> Assessment:
    """Fill every criterion (data, then the answers file or `answers`) and judge it."""
    criteria = criteria_for(config)
    given = check_answers(dict(answers), criteria) if answers is not None else \
        load_answers(params.options.get("answers"), criteria)
    stats = collect(sessions, config, params, today)
    data = _data_values(sessions, config, stats, stats.today)
    groups = []
    for group_id, name in GROUPS:
        results = [judge(c, data.get(c.id) if c.source == "data" else given.get(c.id))
                   for c in criteria if c.group == group_id]
        groups.append((group_id, name, results, group_level(results)))
    return Assessment(stats, groups)


# --- paper and JSON ---------------------------------------------------------------------------

LEVEL_TEXT: dict[int | None, Text] = {
    0: Text("Chưa đạt", "Not met"), 1: Text("Mức độ 1", "Level 1"), 2: Text("Mức độ 2", "Level 2"),
    None: Text("Chưa đủ thông tin", "Incomplete"),
}
_MET = {True: Text("Đạt", "Met"), False: Text("Chưa đạt", "Not met"), None: None}
_NOT_APPLICABLE = Text("—", "—")


def _shown(result: Assessed) -> Any:
    value, kind = result.value, result.criterion.value_type
    if value is None:
        # A blank is for the librarian's pen; the data's own gaps say so.
        return Text("Chưa có", "Not yet") if result.criterion.source == "data" else None
    if kind == "bool":
        return Text("Có", "Yes") if value else Text("Không", "No")
    if kind == "counts":
        return "; ".join(f"{key}: {n}" for key, n in value.items())
    if value == PENDING:
        return Text("Chưa thực hiện (chờ kết nối báo cáo lên cấp trên)", "Pending (upward reporting "
                                                                          "not connected yet)")
    if isinstance(value, float):
        text = f"{value:,.2f}".rstrip("0").rstrip(".")
        value = Text(text.replace(",", " ").replace(".", ",").replace(" ", "."), text)
    unit = result.criterion.unit
    if unit is None:
        return value
    shown = value if isinstance(value, Text) else Text(str(value), str(value))
    return Text(f"{shown.vi} {unit.vi}", f"{shown.en} {unit.en}")


def _level_cell(result: Assessed, level: int) -> Any:
    if result.criterion.indicator:
        return _NOT_APPLICABLE
    if level == 1 and result.criterion.required_for == 2:
        return _NOT_APPLICABLE
    return _MET[result.meets_level1 if level == 1 else result.meets_level2]


def _report(a: Assessment, config: ServerConfig) -> Report:
    w = a.stats.window
    levels = ", ".join(LEVEL_NAMES[level].vi for level in config.library.levels)
    levels_en = ", ".join(LEVEL_NAMES[level].en for level in config.library.levels)
    sections: list[Any] = [Paragraph(Text(
        f"Cấp học: {levels}. Cột \"Nguồn\": \"Dữ liệu\" do phần mềm tính; \"Thủ thư\" do cán bộ thư viện "
        "điền (ô trống là chưa có câu trả lời). \"—\": không áp dụng ở mức này hoặc chỉ để tham khảo.",
        f"Levels: {levels_en}. \"Source\": \"Data\" is computed by the software; \"Librarian\" is "
        "filled in by the librarian (a blank is not answered yet). \"—\": does not apply at this "
        "level, or a figure for the record."))]
    columns = [Column("id", Text("Mã", "Id"), 0.8), Column("text", Text("Tiêu chí", "Criterion"), 5),
               Column("source", Text("Nguồn", "Source"), 0.9),
               Column("value", Text("Giá trị", "Value"), 1.8),
               Column("level1", Text("Mức độ 1", "Level 1"), 0.9, align="center"),
               Column("level2", Text("Mức độ 2", "Level 2"), 0.9, align="center")]
    source = {"data": Text("Dữ liệu", "Data"), "librarian": Text("Thủ thư", "Librarian")}
    for group_id, name, results, level in a.groups:
        sections.append(Table(
            Text(f"{group_id}. {name.vi} — {LEVEL_TEXT[level].vi}",
                 f"{group_id}. {name.en} — {LEVEL_TEXT[level].en}"), columns,
            [(r.criterion.id, r.criterion.text, source[r.criterion.source], _shown(r),
              _level_cell(r, 1), _level_cell(r, 2)) for r in results]))
    sections.append(Table(
        Text("Tổng hợp", "Summary"),
        [Column("group", Text("Tiêu chuẩn", "Standard"), 4), Column("level", Text("Kết quả", "Result"), 2)],
        [(Text(f"{gid}. {name.vi}", f"{gid}. {name.en}"), LEVEL_TEXT[level])
         for gid, name, _, level in a.groups],
        totals=(Text("Thư viện đạt", "The library meets"), LEVEL_TEXT[a.level])))
    return Report(
        name="tt16",
        title=Text("TỰ ĐÁNH GIÁ THƯ VIỆN THEO THÔNG TƯ 16/2022/TT-BGDĐT",
                   "LIBRARY SELF-ASSESSMENT UNDER CIRCULAR 16/2022/TT-BGDĐT"),
        school=config.school_name, subtitle=w.label, sections=sections,
        signatures=(Text("Cán bộ thư viện", "Librarian"), Text("Hiệu trưởng", "Principal")))


def _snapshot(a: Assessment, config: ServerConfig) -> dict[str, Any]:
    w = a.stats.window
    return {
        "schema_version": 1,
        "circular": "16/2022/TT-BGDĐT",
        "site": config.site,
        "school": config.school_name,
        "levels": list(config.library.levels),
        "school_year": w.school_year,
        "first_day": w.first_day.isoformat(),
        "last_day": w.last_day.isoformat(),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "overall_level": a.level,
        "groups": [{
            "id": gid, "name_vi": name.vi, "name_en": name.en, "level": level,
            "criteria": [{
                "id": r.criterion.id, "text_vi": r.criterion.text.vi, "text_en": r.criterion.text.en,
                "source": r.criterion.source, "value_type": r.criterion.value_type,
                "unit": r.criterion.unit.en if r.criterion.unit else None,
                "value": r.value, "required_for": r.criterion.required_for,
                "indicator": r.criterion.indicator, "threshold_level1": r.criterion.threshold,
                "meets_level1": r.meets_level1, "meets_level2": r.meets_level2,
            } for r in results],
        } for gid, name, results, level in a.groups],
    }


def tt16_snapshot(sessions: sessionmaker[Session], config: ServerConfig, params: ReportParams,
                  today: dt.date | None = None) -> dict[str, Any]:
    """The self-assessment as JSON values (schema in the module docstring)."""
    return _snapshot(assess(sessions, config, params, today), config)


@report("tt16", Text("Tự đánh giá thư viện theo Thông tư 16/2022", "Self-assessment (Circular 16/2022)"),
        GROUP, formats=("pdf", "xlsx", "json"), snapshot=tt16_snapshot)
def build(sessions: sessionmaker[Session], config: ServerConfig, params: ReportParams) -> Report:
    return _report(assess(sessions, config, params), config)


def build_for(sessions: sessionmaker[Session], config: ServerConfig, params: ReportParams,
              today: dt.date, answers: Mapping[str, Any] | None = None) -> Report:
    """`build` on a given day, optionally with answers given directly (tests, the web form)."""
    return _report(assess(sessions, config, params, today, answers), config)

