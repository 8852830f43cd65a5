"""The ingest and the views on a real PostgreSQL database, without MQTT: every figure
checked against the hand counts of aggregate_sample.py."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select, text

from protocol.upward import upward_ledger, upward_report
from server import db
from server.aggregate.ingest import Ingest, Malformed, grade_of, local_month, parse_message, read_counters
from server.aggregate.models import Entry, MonthlyLoans, School, Snapshot
from server.aggregate.views import Filters, build_views, school_detail

import aggregate_sample as sample
from aggregate_sample import A, AN_HOI, B, C, NOW, PHU_TUC, U, YEAR


def _ingest(engine: Engine, **changes: object) -> Ingest:
    ingest = Ingest(engine, sample.config(str(engine.url), **changes), clock=lambda: NOW)
    ingest.sync_schools()
    return ingest


def _feed(ingest: Ingest) -> None:
    result = ingest.ingest_payloads([(topic, payload) for topic, payload, _ in sample.messages()])
    assert result.malformed == 0


def _views(engine: Engine, **filters: object) -> object:
    return build_views(db.session_factory(engine), sample.config(str(engine.url)),
                       Filters(YEAR, **filters), NOW)  # type: ignore[arg-type]


def _totals(engine: Engine) -> dict[str, object]:
    with engine.connect() as connection:
        return {
            "entries": connection.scalar(select(func.count()).select_from(Entry)),
            "rollup": connection.execute(select(MonthlyLoans.site, MonthlyLoans.month, MonthlyLoans.reader_kind,
                                                MonthlyLoans.grade, MonthlyLoans.checkouts)
                                         .order_by(MonthlyLoans.site, MonthlyLoans.month, MonthlyLoans.reader_kind,
                                                   MonthlyLoans.grade)).all(),
            "schools": connection.execute(select(School.site, School.entries, School.max_seq, School.last_entry_at)
                                          .order_by(School.site)).all(),
            "snapshots": connection.execute(select(Snapshot.site, Snapshot.name, Snapshot.school_year,
                                                   Snapshot.generated_at, Snapshot.copies)
                                            .order_by(Snapshot.site, Snapshot.name, Snapshot.school_year)).all(),
        }


def test_month_and_grade_rules() -> None:
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    assert local_month(sample.at("2026-08-31 17:30"), zone) == 202609
    assert local_month(sample.at("2026-08-31 16:59"), zone) == 202608
    assert grade_of(None, "4B") == 4 and grade_of(None, "12.6") == 12 and grade_of(7, "6A") == 7
    assert grade_of(None, "Lá") == -1 and grade_of(None, None) == -1


def test_every_figure_of_the_views(agg_engine: Engine) -> None:
    ingest = _ingest(agg_engine)
    _feed(ingest)
    views = _views(agg_engine)
    rows = {row.site: row for row in views.schools}
    assert {site: row.loans for site, row in rows.items()} == sample.LOANS
    assert [n for _, n in views.months] == [3, 3, 3, 1, 1, 0, 0, 0, 1, 0, 0, 0]
    assert dict(m for m in views.months if m[1]) == sample.MONTHS
    assert views.by_reader == sample.BY_READER
    # The snapshots: the newest 2026 statistics wins over the older one sent after it.
    assert (rows[A].copies, rows[A].book_copies, rows[A].students, rows[A].tt16_level) == (1200, 1000, 300, 1)
    assert (rows[B].copies, rows[B].students, rows[B].tt16_level) == (2000, 400, 2)
    assert (rows[C].copies, rows[C].book_copies, rows[C].students, rows[C].tt16_level) == (900, 801, 300, None)
    assert rows[C].per_student == pytest.approx(801 / 300)
    # Not in the list: stored and shown under the name it announced.
    assert (rows[U].listed, rows[U].name, rows[U].levels, rows[U].commune) == (False, "Trường Tiểu học Lá",
                                                                               ["primary"], None)
    # Who has not reported: C (no Thông tư 16, no entry since 15/01); U is not expected.
    assert [(row.site, row.reasons) for row in views.not_reported] == [(C, ["no_tt16", "stale_entries"])]
    total = views.total
    assert (total.schools, total.listed, total.reported, total.loans) == (4, 3, 2, 12)
    assert (total.copies, total.book_copies, total.students) == (4100, 3601, 1000)
    assert total.per_student == pytest.approx(3.601)
    assert total.tt16 == {2: 1, 1: 1, 0: 0, None: 2}
    communes = {group.name: group for group in views.by_commune}
    assert [group.name for group in views.by_commune] == [AN_HOI, PHU_TUC, ""]
    assert (communes[AN_HOI].schools, communes[AN_HOI].reported, communes[AN_HOI].loans,
            communes[AN_HOI].copies, communes[AN_HOI].per_student) == (2, 2, 9, 3200, 4.0)
    assert (communes[PHU_TUC].loans, communes[PHU_TUC].reported, communes[""].loans) == (2, 0, 1)
    assert views.communes == [AN_HOI, PHU_TUC]


def test_filters_by_commune_and_level(agg_engine: Engine) -> None:
    _feed(_ingest(agg_engine))
    an_hoi = _views(agg_engine, commune=AN_HOI)
    assert [row.site for row in an_hoi.schools] == [B, A]  # sorted by name: "THCS" < "Tiểu"
    assert (an_hoi.total.loans, dict(m for m in an_hoi.months if m[1])) == (
        9, {202609: 2, 202610: 3, 202611: 3, 202705: 1})
    # Without Phú Túc's staff and grade 2, and th-la's grade 1.
    assert an_hoi.by_reader == [("student", grade, 1) for grade in (1, 3, 4, 5, 6, 7, 8, 9)] + [
        ("teacher", -1, 1)]
    primary = _views(agg_engine, level="primary")
    assert sorted(row.site for row in primary.schools) == sorted([A, C, U])
    assert primary.total.loans == 8
    previous = build_views(db.session_factory(agg_engine), sample.config(str(agg_engine.url)),
                           Filters(YEAR - 1), NOW)
    rows = {row.site: row for row in previous.schools}
    assert (rows[A].loans, rows[A].copies) == (1, 1100)   # seq 9, 31/08/2026 23:30 local


def test_replaying_everything_changes_nothing(agg_engine: Engine) -> None:
    ingest = _ingest(agg_engine)
    _feed(ingest)
    before = _totals(agg_engine)
    # A school resending all after a restart, and the bridge resending: twice more.
    for _ in range(2):
        _feed(ingest)
        assert ingest.ingest_batches([b for site in (A, B, C, U) for b in sample.batches(site, size=4)]) == 0
    assert _totals(agg_engine) == before
    assert before["entries"] == sum(len(entries) for entries in sample.LEDGERS.values())
    counters = read_counters(agg_engine)
    assert counters["entries_new"] == 19
    assert counters["entries_duplicate"] == 19 * 4
    # The rollup is exactly a count over the stored entries (local months, NOT_APPLIED out).
    with agg_engine.connect() as connection:
        counted = connection.execute(text(
            "SELECT site, sum(1) FROM agg_entries WHERE op = 'checkout' AND (conflict IS NULL OR conflict "
            "NOT IN ('on_loan_to_other', 'not_loanable', 'not_on_loan', 'lent_again')) GROUP BY site")).all()
        rolled = connection.execute(text("SELECT site, sum(checkouts) FROM agg_monthly_loans GROUP BY site")).all()
    assert sorted((s, int(n)) for s, n in counted) == sorted((s, int(n)) for s, n in rolled)


def test_duplicates_inside_one_transaction_count_once(agg_engine: Engine) -> None:
    ingest = _ingest(agg_engine)
    batch = sample.batches(B, size=6)[0]
    assert ingest.ingest_batches([batch, batch, batch]) == 6
    assert _views(agg_engine).total.loans == 4


def test_malformed_payloads_are_counted_and_nothing_of_them_is_stored(agg_engine: Engine) -> None:
    ingest = _ingest(agg_engine)
    result = ingest.ingest_payloads(sample.malformed())
    assert (result.malformed, result.new_entries, result.snapshots_stored) == (5, 0, 0)
    assert _totals(agg_engine)["entries"] == 0
    assert read_counters(agg_engine)["malformed"] == 5
    # A retained message being cleared is nothing at all, not malformed.
    assert parse_message(upward_report(A, "tt16", YEAR), b"", NOW) is None
    with pytest.raises(Malformed, match="not an upward topic"):
        parse_message("thuvien/v1/x/station/k/status", b"{}", NOW)
    _feed(ingest)
    assert _views(agg_engine).total.loans == 12


def test_a_value_the_database_refuses_is_set_aside_alone(agg_engine: Engine) -> None:
    # Past the parser's checks (a hand-made message): the batch is written again message
    # by message; only the refused one is lost, as malformed.
    from server.aggregate.ingest import Parsed

    ingest = _ingest(agg_engine)
    bad = sample.batches(A)[0].model_copy(update={"entries": [
        sample.entry(50, "checkout", "2026-10-01 01:00").model_copy(update={"station": "k" * 80})]})
    good = sample.batches(B, size=6)[0]
    result = ingest.write([Parsed(A, NOW, batch=bad), Parsed(B, NOW, batch=good)])
    assert (result.new_entries, result.malformed) == (6, 1)
    assert read_counters(agg_engine)["malformed"] == 1


def test_personal_data_never_reaches_the_database(agg_engine: Engine) -> None:
    _feed(_ingest(agg_engine))
    with agg_engine.connect() as connection:
        data = connection.scalar(select(Snapshot.data).where(Snapshot.site == A, Snapshot.name == "statistics",
                                                             Snapshot.school_year == YEAR))
    assert data["top_readers"] == [{"class": "6A1", "loans": 9}]
    assert data["equipment_by_teacher"] == [{"loans": 2}]


def test_unlisting_a_school_keeps_its_data(agg_engine: Engine) -> None:
    ingest = _ingest(agg_engine)
    _feed(ingest)
    config = sample.config(str(agg_engine.url)).model_copy(update={"schools": sample.SCHOOLS[:2]})
    Ingest(agg_engine, config).sync_schools()
    rows = {row.site: row for row in _views(agg_engine).schools}
    assert (rows[C].listed, rows[C].loans) == (False, 2)
    assert [row.site for row in _views(agg_engine).not_reported] == []


def test_one_school_detail(agg_engine: Engine) -> None:
    _feed(_ingest(agg_engine))
    sessions = db.session_factory(agg_engine)
    detail = school_detail(sessions, sample.config(str(agg_engine.url)), A, YEAR, NOW)
    assert detail is not None
    assert (detail.row.loans, detail.row.school_loans, detail.row.entries) == (5, 5, 10)
    assert detail.row.months == {202609: 2, 202610: 3}
    assert detail.tt16 is not None and detail.tt16["overall_level"] == 1
    assert school_detail(sessions, sample.config(str(agg_engine.url)), "nobody", YEAR, NOW) is None
    announced = school_detail(sessions, sample.config(str(agg_engine.url)), U, YEAR, NOW)
    assert announced is not None and announced.software_version == "1.4.0"
    assert announced.row.last_message_at == NOW


def test_a_real_schools_snapshots(agg_engine: Engine, tmp_path: object) -> None:
    """The figures taken out of snapshots made by a school server's own code (the demo
    library on SQLite), not by hand."""
    from server.config import ServerConfig
    from server.reports.registry import ReportParams, get_report
    from server.seed import seed_demo

    from protocol.upward import UpwardReport

    url = f"sqlite:///{tmp_path}/school.db"
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        school = db.session_factory(engine)
        seed_demo(school, school_year_start=dt.date(2026, 9, 7))
        config = ServerConfig(site=B, school_name="Trường THCS An Hội")
        stats = get_report("statistics").snapshot(school, config, ReportParams(school_year=YEAR))
        assessment = get_report("tt16").snapshot(school, config, ReportParams(school_year=YEAR))
    finally:
        engine.dispose()
    ingest = _ingest(agg_engine)
    payloads = [(upward_report(B, name, YEAR),
                 UpwardReport(site=B, name=name, school_year=YEAR, generated_at=NOW, data=data)
                 .model_dump_json().encode()) for name, data in (("statistics", stats), ("tt16", assessment))]
    assert ingest.ingest_payloads(payloads).snapshots_stored == 2
    row = {r.site: r for r in _views(agg_engine).schools}[B]
    levels = stats["coverage"]["levels"]
    assert row.copies == stats["stock"]["copies"] > 0
    assert row.students == sum(level["students"] for level in levels) > 0
    assert row.book_copies == round(sum(level["copies"] for level in levels))
    assert row.tt16_level == assessment["overall_level"]
    assert row.statistics_at == NOW


def test_topics_of_the_sample_are_the_protocols() -> None:
    topics = {topic for topic, _, _ in sample.messages()}
    assert upward_ledger(U) in topics and upward_report(A, "statistics", YEAR - 1) in topics
