"""The Thông tư 16 self-assessment on a real SQLite file: what the data fills in, what
the librarian's answers file fills in, how the levels follow, and the JSON snapshot."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from server.config import LibraryConfig, ServerConfig
from server.models import Station, Stocktake, Title, Withdrawal
from server.reports import registry, tt16
from server.reports.pdf import render_pdf
from server.reports.registry import ReportParams
from server.reports.tt16 import AnswersError, assess, build_for, criteria_for, tt16_snapshot
from server.reports.xlsx import render_xlsx_bytes

from circulation_sample import AN, BINH, TK, TN, Library, local

D = dt.date
YEAR = ReportParams(school_year=2026)
TODAY = D(2026, 11, 5)

# Every librarian criterion of a lower-secondary school, answered so that all is met.
ALL_MET: dict[str, Any] = {
    "1.3": True, "1.4": True, "1.8": True, "2.1": True, "2.2": 64, "2.3": 45, "2.4": True,
    "2.5": True, "2.6": True, "3.1": True, "3.2": True, "3.5": True, "4.5": True, "4.6": True,
    "4.7": True, "4.9": True, "4.10": 40, "5.1": True, "5.2": True, "5.6": True, "5.8": True,
}


def _values(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {c["id"]: c for g in snapshot["groups"] for c in g["criteria"]}


def _levels(snapshot: dict[str, Any]) -> dict[str, int | None]:
    return {g["id"]: g["level"] for g in snapshot["groups"]}


@pytest.fixture
def catalogued(library: Library, ask: Any) -> Library:
    """The sample library with every title shelved and classed, two loans this year, a
    closed stocktake, a weeding decision and one registered station."""
    with library.sessions.begin() as db:
        for number, title in enumerate(db.scalars(select(Title)), start=1):
            title.call_number, title.subject = f"8{number}0 T{number}", "Văn học"
        db.add(Stocktake(number=1, name="Kiểm kê 2026", started_at=local(2026, 10, 1),
                         closed_at=local(2026, 10, 3)))
        db.add(Withdrawal(number=1, decision_no="05/QĐ-THCS", decided_on=D(2026, 10, 20),
                          created_at=local(2026, 10, 20)))
        db.add(Station(name="kiosk-1", kind="kiosk", registered_at=local(2026, 9, 1)))
    for reader, item in ((AN, TN[0]), (BINH, TK[0])):
        reply, _ = ask("loan.checkout", patron=reader, item=item)
        assert reply.ok, reply.error
    return library


def test_filled_from_the_data(catalogued: Library, config: ServerConfig) -> None:
    values = _values(tt16_snapshot(catalogued.sessions, config, YEAR, TODAY))
    # 15 books for 3 registered students (AN, BINH and the blocked one; not the inactive).
    assert values["1.1.THCS"]["value"] == 5.0
    assert values["1.1.THCS"]["threshold_level1"] == 4
    assert (values["1.1.THCS"]["meets_level1"], values["1.1.THCS"]["meets_level2"]) == (True, True)
    assert values["1.5"]["value"] == 100.0 and values["1.5"]["meets_level1"] is True
    assert values["1.6"]["value"] == 1.0          # 3 textbooks for 3 students
    assert values["1.7"]["value"] == {"GK": 1, "TK": 2, "NV": 1, "TN": 1, "TB": 0}
    assert values["3.3"]["value"] == 1
    assert values["4.3"]["value"] == pytest.approx(0.67)
    assert values["5.4"]["value"] is True and values["5.5"]["value"] == 1
    for data_yes in ("3.4", "4.1", "4.2", "4.8", "5.3"):
        assert values[data_yes]["value"] is True and values[data_yes]["source"] == "data"
    assert values["5.7"]["value"] == "pending" and values["5.7"]["meets_level2"] is None
    # Indicators decide nothing; level-2 criteria do not apply at level 1.
    assert values["1.6"]["meets_level1"] is None and values["1.6"]["indicator"] is True
    assert values["4.8"]["meets_level1"] is None and values["4.8"]["meets_level2"] is True
    # The librarian's part is blank.
    assert values["2.2"]["value"] is None and values["2.2"]["source"] == "librarian"


def test_unprocessed_titles_and_stocktake_pending(library: Library, config: ServerConfig) -> None:
    with library.sessions.begin() as db:
        titles = list(db.scalars(select(Title).order_by(Title.id)))
        for title in titles[:4]:
            title.call_number, title.subject = "895.9223 T", "Văn học"
    snapshot = tt16_snapshot(library.sessions, config, YEAR, TODAY)
    values = _values(snapshot)
    assert values["1.5"]["value"] == 80.0 and values["1.5"]["meets_level1"] is False
    assert _levels(snapshot)["1"] == 0 and snapshot["overall_level"] == 0
    # No stocktake yet: pending while the year runs, failed once it is over.
    assert values["5.4"]["value"] is None
    past = _values(tt16_snapshot(library.sessions, config, ReportParams(school_year=2025), TODAY))
    assert past["5.4"]["value"] is False and past["5.4"]["meets_level1"] is False


def test_levels_follow_the_answers(catalogued: Library, config: ServerConfig) -> None:
    assert tt16_snapshot(catalogued.sessions, config, YEAR, TODAY)["overall_level"] is None
    full = assess(catalogued.sessions, config, YEAR, TODAY, ALL_MET)
    # Everything met at level 2, except management: reporting upward is still pending.
    assert [level for *_, level in full.groups] == [2, 2, 2, 2, 1]
    assert full.level == 1
    no_outreach = assess(catalogued.sessions, config, YEAR, TODAY, {**ALL_MET, "4.9": False})
    assert [level for *_, level in no_outreach.groups][3] == 1
    small = assess(catalogued.sessions, config, YEAR, TODAY, {**ALL_MET, "2.2": 40})
    assert [level for *_, level in small.groups][1] == 0 and small.level == 0
    missing = dict(ALL_MET)
    del missing["3.1"]
    assert [level for *_, level in assess(catalogued.sessions, config, YEAR, TODAY,
                                          missing).groups][2] is None


def test_answers_file_fills_the_librarian_fields(catalogued: Library, config: ServerConfig,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "answers.json"
    path.write_text(json.dumps({"2.2": 64, "2.1": True, "4.10": 37.5, "5.1": False}), encoding="utf-8")
    params = ReportParams(school_year=2026, options={"answers": str(path)})
    values = _values(tt16_snapshot(catalogued.sessions, config, params, TODAY))
    assert values["2.2"]["value"] == 64 and values["2.2"]["meets_level1"] is True
    assert values["2.1"]["value"] is True and values["4.10"]["value"] == 37.5
    assert values["5.1"]["meets_level1"] is False
    assert values["3.1"]["value"] is None


@pytest.mark.parametrize(("answers", "message"), [
    ({"9.9": True}, "Không có tiêu chí '9.9'.* / no criterion '9.9'"),
    ({"1.5": 100}, "Tiêu chí 1.5 được tính từ dữ liệu.* / criterion 1.5 is computed from the data"),
    ({"2.2": "rộng"}, "Tiêu chí 2.2: cần một số.* / criterion 2.2: expected a number"),
    ({"2.1": 1}, "Tiêu chí 2.1: cần true/false.* / criterion 2.1: expected true/false"),
    (["2.1"], "phải là một đối tượng JSON.* / the answers file must be a JSON object"),
])
def test_bad_answers_are_refused(catalogued: Library, config: ServerConfig, tmp_path: Path,
                                 answers: Any, message: str) -> None:
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers), encoding="utf-8")
    params = ReportParams(school_year=2026, options={"answers": str(path)})
    with pytest.raises(AnswersError, match=message):
        tt16_snapshot(catalogued.sessions, config, params, TODAY)


def test_unreadable_answers_file(catalogued: Library, config: ServerConfig, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{\"2.1\": tru", encoding="utf-8")
    for path, message in ((tmp_path / "none.json",
                           "Không tìm thấy tệp trả lời .* / answers file .* not found"),
                          (broken, "không phải JSON hợp lệ .* / answers file .* is not valid JSON")):
        with pytest.raises(AnswersError, match=message):
            tt16_snapshot(catalogued.sessions, config,
                          ReportParams(options={"answers": str(path)}), TODAY)


def test_criteria_per_school_level(config: ServerConfig) -> None:
    def ids(*levels: str) -> list[str]:
        return [c.id for c in criteria_for(config.model_copy(
            update={"library": LibraryConfig(levels=list(levels))}))]

    assert ids("lower_secondary")[:3] == ["1.1.THCS", "1.3", "1.4"]
    assert ids("primary", "lower_secondary")[:3] == ["1.1.TH", "1.1.THCS", "1.3"]
    assert ids("preschool")[:3] == ["1.1.MN", "1.2", "1.4"]
    assert ids("preschool", "primary")[:4] == ["1.1.MN", "1.1.TH", "1.2", "1.3"]
    area = {c.id: c for c in criteria_for(config.model_copy(
        update={"library": LibraryConfig(levels=["preschool"])}))}["2.2"]
    assert area.threshold == 48
    assert {c.id: c for c in criteria_for(config)}["2.2"].threshold == 50


def test_multi_level_school_is_judged_per_level(catalogued: Library, config: ServerConfig) -> None:
    config = config.model_copy(update={"library": LibraryConfig(levels=["primary", "lower_secondary"])})
    values = _values(tt16_snapshot(catalogued.sessions, config, YEAR, TODAY))
    # AN (6), BINH (7), the blocked student of 8A3: all lower secondary; no primary pupil.
    assert values["1.1.THCS"]["value"] == 5.0 and values["1.1.THCS"]["meets_level1"] is True
    assert values["1.1.TH"]["value"] is None and values["1.1.TH"]["meets_level1"] is None


def test_snapshot_round_trips_with_the_documented_keys(catalogued: Library,
                                                       config: ServerConfig) -> None:
    snapshot = tt16_snapshot(catalogued.sessions, config, YEAR, TODAY)
    assert json.loads(json.dumps(snapshot, ensure_ascii=False)) == snapshot
    assert set(snapshot) == {"schema_version", "circular", "site", "school", "levels", "school_year",
                             "first_day", "last_day", "generated_at", "overall_level", "groups"}
    assert (snapshot["schema_version"], snapshot["circular"], snapshot["site"]) == \
        (1, "16/2022/TT-BGDĐT", "thcs-nhut-tao")
    assert (snapshot["school_year"], snapshot["first_day"]) == ("2026-2027", "2026-09-01")
    assert dt.datetime.fromisoformat(snapshot["generated_at"]).tzinfo is not None
    assert [g["id"] for g in snapshot["groups"]] == ["1", "2", "3", "4", "5"]
    assert snapshot["groups"][1]["name_vi"] == "Cơ sở vật chất"
    for group in snapshot["groups"]:
        assert set(group) == {"id", "name_vi", "name_en", "level", "criteria"}
        for criterion in group["criteria"]:
            assert set(criterion) == {"id", "text_vi", "text_en", "source", "value_type", "unit",
                                      "value", "required_for", "indicator", "threshold_level1",
                                      "meets_level1", "meets_level2"}
            assert criterion["id"].split(".")[0] == group["id"]


def test_pdf_and_xlsx(catalogued: Library, config: ServerConfig, tmp_path: Path) -> None:
    report = build_for(catalogued.sessions, config, YEAR, TODAY, ALL_MET)
    path = tmp_path / "tt16.pdf"
    render_pdf(report, path)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout
    for heading in ("TỰ ĐÁNH GIÁ THƯ VIỆN THEO THÔNG TƯ 16/2022/TT-BGDĐT", "Năm học 2026-2027",
                    "Tài nguyên thông tin và học liệu", "Cơ sở vật chất", "Thiết bị chuyên dùng",
                    "Hoạt động thư viện", "Quản lý thư viện", "Mức độ 1", "Mức độ 2", "Tổng hợp",
                    "64 m²", "Thư viện đạt", "Hiệu trưởng"):
        assert heading in text, heading
    sheet = load_workbook(io.BytesIO(render_xlsx_bytes(report))).active
    rows = {row[0]: row for row in sheet.iter_rows(values_only=True) if row[0]}
    assert rows["2.2"][3] == "64 m²" and rows["2.2"][4] == "Đạt"
    assert rows["Thư viện đạt"][1] == "Mức độ 1"


def test_registered_with_json() -> None:
    spec = registry.all_reports()["tt16"]
    assert spec.build is tt16.build and spec.snapshot is tt16_snapshot
    assert spec.formats == ("pdf", "xlsx", "json")
