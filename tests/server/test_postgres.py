"""The school server on PostgreSQL: migrations, backups with pg_dump, the catalogue's
portable search and the reports, on a real server (tests/pg.py), each checked against
what the same data gives on SQLite where that is the question.

The circulation tests themselves run on both databases through the `library` fixture
(tests/server/conftest.py); these are the parts that fixture does not reach.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from openpyxl import load_workbook
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError

import protocol
import test_search
from pg import PgCluster, pg_required
from server import db
from server.circulation import Circulation
from server.config import ServerConfig, load
from server.models import Base, Copy, LedgerEntry, Loan, Title
from server.reports.registry import ReportParams, get_report, render_report
from server.search import Catalogue
from thuvien.cli import main as thuvien

from circulation_sample import (
    AN,
    BINH,
    GK,
    HOA,
    NV,
    TK,
    TN,
    Library,
    WallClock,
    local,
    make_config,
    make_request,
)

YEAR = ReportParams(school_year=2026)


@pytest.fixture
def pg_library(postgres: PgCluster, _seeded_pg_template: str) -> Iterator[Library]:
    """The sample library on PostgreSQL only."""
    with postgres.database(_seeded_pg_template) as url:
        engine = db.make_engine(url)
        yield Library(url=url, engine=engine, sessions=db.session_factory(engine))
        engine.dispose()


@pytest.fixture
def sqlite_library(tmp_path: Path, _seeded_file: bytes) -> Iterator[Library]:
    """The same sample library on SQLite, for the comparisons."""
    path = tmp_path / "thuvien.db"
    path.write_bytes(_seeded_file)
    url = f"sqlite:///{path}"
    engine = db.make_engine(url)
    yield Library(url=url, engine=engine, sessions=db.session_factory(engine))
    engine.dispose()


def _config_file(folder: Path, url: str, name: str = "server.toml") -> Path:
    path = folder / name
    path.write_text(f'site = "thcs-nhut-tao"\nschool_name = "Trường THCS Nhựt Tảo"\n'
                    f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return path


def _require(program: str) -> None:
    if shutil.which(program) is None:
        reason = f"{program} is not installed (apt-get install postgresql-client)"
        if pg_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


# --- migrations ---------------------------------------------------------------------------

def _assert_ledger_append_only(engine: Engine) -> None:
    for statement in ("UPDATE ledger_entries SET station = 'forged'", "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as connection:
                connection.exec_driver_sql(statement)


def _one_ledger_entry(engine: Engine) -> None:
    at = dt.datetime(2026, 10, 5, 2, tzinfo=dt.timezone.utc)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO readers (id, code, name, kind, status, created_at) "
            "VALUES (1, 'HS-1', 'Nguyễn Văn An', 'student', 'active', :at)"), {"at": at})
        connection.execute(text("INSERT INTO titles (id, title, language, material) "
                                "VALUES (1, 'Dế Mèn phiêu lưu ký', 'vie', 'book')"))
        connection.execute(text("INSERT INTO copies (id, title_id, accession_number, kind, status) "
                                "VALUES (1, 1, 'TN.00001', 'TN', 'available')"))
        connection.execute(text(
            "INSERT INTO ledger_entries (request_id, op, copy_id, reader_id, station, "
            "station_at, server_at, offline) VALUES ('r-1', 'checkout', 1, 1, 'kiosk-1', "
            ":at, :at, false)"), {"at": at})


def test_migrations_up_down_and_up_again(pg_url: str) -> None:
    db.upgrade(pg_url)
    assert db.current_revision(pg_url) == db.head_revision()
    engine = db.make_engine(pg_url)
    try:
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        _one_ledger_entry(engine)
        _assert_ledger_append_only(engine)

        command.downgrade(db.alembic_config(pg_url), "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        with engine.connect() as connection:
            # Nothing of ours is left behind: a second upgrade must not meet it.
            assert connection.scalar(text(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public'")) == 0

        db.upgrade(pg_url)
        assert db.current_revision(pg_url) == db.head_revision()
        _one_ledger_entry(engine)
        _assert_ledger_append_only(engine)
    finally:
        engine.dispose()


# --- backup and restore -------------------------------------------------------------------

def test_backup_with_pg_dump_and_restore_elsewhere(pg_library: Library, pg_url: str,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _require("pg_dump")
    clock = WallClock(local(2026, 10, 5))
    circulation = Circulation(pg_library.sessions, make_config(), clock)
    for patron, item in ((AN, TN[0]), (BINH, TN[1]), (HOA, NV)):
        reply, _ = circulation.handle(make_request("loan.checkout", clock.now, patron=patron,
                                                   item=item), "kiosk-1")
        assert reply.ok, reply.error
    assert circulation.handle(make_request("loan.return", clock.now, item=TN[1]), "kiosk-1")[0].ok
    pg_library.engine.dispose()  # the circulation's held connection too

    backups = tmp_path / "backups"
    assert thuvien(["backup", "--config", str(_config_file(tmp_path, pg_library.url)),
                    "--to", str(backups), "--keep", "2"]) == 0
    [dump] = list(backups.glob("*.pgdump"))
    assert f"schema {db.head_revision()}, 4 ledger entries" in capsys.readouterr().out

    elsewhere = _config_file(tmp_path, pg_url, "elsewhere.toml")
    assert thuvien(["restore", "--config", str(elsewhere), str(dump)]) == 0
    assert "4 ledger entries" in capsys.readouterr().out
    restored = db.make_engine(pg_url)
    try:
        def contents(engine: Engine) -> tuple[list[Any], list[Any]]:
            with engine.connect() as connection:
                return (connection.execute(select(LedgerEntry.__table__).order_by(
                            LedgerEntry.seq)).all(),
                        connection.execute(select(Loan.__table__).order_by(Loan.id)).all())

        assert contents(restored) == contents(pg_library.engine)
        assert len(contents(restored)[1]) == 2
        _assert_ledger_append_only(restored)
        # The sequences came along: the next loan gets a new seq, not a taken one.
        more = Circulation(db.session_factory(restored), make_config(), clock)
        reply, entries = more.handle(make_request("loan.checkout", clock.now, patron=BINH,
                                                  item=TN[2]), "kiosk-1")
        assert reply.ok and entries[0].seq == 5
    finally:
        restored.dispose()


# --- the catalogue's portable search ------------------------------------------------------

def _load_books(url: str) -> None:
    db.upgrade(url)
    engine = db.make_engine(url)
    with db.session_factory(engine).begin() as session:
        for title, author, subject, isbn, copies in test_search.BOOKS:
            row = Title(title=title, author=author, subject=subject, isbn=isbn, year=2020,
                        call_number="895.9 D", language="vie")
            session.add(row)
            session.flush()
            for number, kind, status in copies:
                session.add(Copy(title_id=row.id, accession_number=number,
                                 barcode=number.replace(".", ""), kind=kind, status=status,
                                 location="Kệ 1"))
    engine.dispose()


@pytest.fixture
def books_engine(postgres: PgCluster) -> Iterator[Engine]:
    """test_search.py's catalogue, on PostgreSQL."""
    with postgres.database(postgres.template("search_books", _load_books)) as url:
        engine = db.make_engine(url)
        yield engine
        engine.dispose()


# The search tests of test_search.py, which run there on SQLite (FTS5 and the portable
# SQL through a stand-in translate()), here on the real thing.
_SEARCH_CHECKS = [
    test_search.test_unaccented_words_find_the_vietnamese_title,
    test_search.test_duong_finds_the_titles_with_d_stroke,
    test_search.test_title_outranks_author_outranks_subject,
    test_search.test_exact_title_comes_before_longer_ones,
    test_search.test_last_word_is_a_prefix,
    test_search.test_field_restricts_the_columns,
    test_search.test_kind_and_subject_filters,
    test_search.test_operators_and_junk_are_just_words,
    test_search.test_isbn_with_or_without_hyphens_10_or_13,
    test_search.test_accession_number_either_spelling,
    test_search.test_availability_counts_and_paging,
]
_ENGINE_CHECKS = [
    test_search.test_title_record_with_due_dates,
    test_search.test_index_follows_title_changes_through_the_triggers,
    test_search.test_subjects_in_vietnamese_order,
]


@pytest.mark.parametrize("check", _SEARCH_CHECKS, ids=lambda check: check.__name__[5:])
def test_catalogue_search(books_engine: Engine, check: Any) -> None:
    catalogue = Catalogue(books_engine)
    assert catalogue.backend == "portable"
    check(catalogue)


@pytest.mark.parametrize("check", _ENGINE_CHECKS, ids=lambda check: check.__name__[5:])
def test_catalogue_reads(books_engine: Engine, check: Any) -> None:
    check(books_engine)


# --- reports ------------------------------------------------------------------------------

def _school_year(library: Library, config: ServerConfig) -> None:
    """Three months of lending, returns (one late), renewals and an offline conflict."""
    clock = WallClock(local(2026, 9, 14))
    circulation = Circulation(library.sessions, config, clock)

    def ask(op: str, station: str = "kiosk-1", offline: bool = False, **args: Any) -> None:
        reply, _ = circulation.handle(make_request(op, clock.now, offline=offline, **args),
                                      station)
        assert reply.ok or offline, reply.error

    ask("loan.checkout", patron=AN, item=TN[0])
    ask("loan.checkout", patron=BINH, item=TK[0])
    ask("loan.checkout", patron=HOA, item=GK[0])
    clock.advance(days=3)
    ask("loan.renew", patron=AN, item=TN[0])
    clock.advance(days=30)
    ask("loan.return", item=TN[0], station="returnbox-1")  # late
    ask("loan.checkout", patron=AN, item=TK[1])
    ask("loan.checkout", patron=HOA, item=NV)
    # Lent offline by another kiosk while it was on loan to AN: a conflict, not a loan.
    ask("loan.checkout", station="kiosk-2", offline=True, patron=BINH, item=TK[1])
    clock.advance(days=20)
    ask("loan.return", item=TK[0])
    ask("loan.checkout", patron=BINH, item=TN[2])
    library.engine.dispose()


def _sheets(data: bytes) -> list[list[tuple[Any, ...]]]:
    book = load_workbook(io.BytesIO(data))
    return [list(sheet.iter_rows(values_only=True)) for sheet in book.worksheets]


def test_reports_are_the_same_on_both_databases(sqlite_library: Library, pg_library: Library,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config()
    for library in (sqlite_library, pg_library):
        _school_year(library, config)

    for name in ("statistics", "tt16"):
        report = get_report(name)
        on_sqlite = _undated(report.snapshot(sqlite_library.sessions, config, YEAR))
        on_postgres = _undated(report.snapshot(pg_library.sessions, config, YEAR))
        assert on_postgres == on_sqlite, name
    loans = get_report("statistics").snapshot(pg_library.sessions, config, YEAR)["loans"]
    assert loans["total"] == 6  # the offline conflict changed no loan
    assert [month["loans"] for month in loans["by_month"][:3]] == [3, 2, 1]

    for name in ("loans-students", "loans-teachers", "register-general", "register-individual",
                 "register-textbooks"):
        spec = get_report(name)
        on_sqlite = render_report(spec, "xlsx", sqlite_library.sessions, config, YEAR)
        on_postgres = render_report(spec, "xlsx", pg_library.sessions, config, YEAR)
        assert _sheets(on_postgres) == _sheets(on_sqlite), name

    # `thuvien report` against a PostgreSQL config.
    out = tmp_path / "statistics.json"
    assert thuvien(["report", "statistics", "--config", str(_config_file(tmp_path, pg_library.url)),
                    "--format", "json", "--year", "2026", "--out", str(out)]) == 0
    expected = get_report("statistics").snapshot(sqlite_library.sessions,
                                                 load(str(tmp_path / "server.toml")), YEAR)
    assert _undated(json.loads(out.read_text(encoding="utf-8"))) == \
        _undated(json.loads(json.dumps(expected, default=str)))
    capsys.readouterr()


def _undated(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot without the moment it was made, which two runs never share."""
    return {key: value for key, value in snapshot.items() if key != "generated_at"}


# --- the test databases themselves --------------------------------------------------------

def test_a_reused_database_is_the_template_again(postgres: PgCluster,
                                                 _seeded_pg_template: str) -> None:
    """tests/pg.py hands a used database to the next test: it must hold the template's
    rows and sequences again, with the ledger still append-only."""

    def state(url: str) -> dict[str, Any]:
        with psycopg.connect(url.replace("+psycopg", "")) as connection:
            tables = [row[0] for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
            return {
                "rows": {table: connection.execute(
                    f'SELECT * FROM "{table}" ORDER BY 1').fetchall() for table in tables},
                "sequences": connection.execute(
                    "SELECT sequencename, last_value FROM pg_sequences ORDER BY 1").fetchall(),
            }

    with postgres.database(_seeded_pg_template) as url:
        fresh = state(url)
        engine = db.make_engine(url)
        clock = WallClock(local(2026, 10, 5))
        circulation = Circulation(db.session_factory(engine), make_config(), clock)
        reply, _ = circulation.handle(make_request(protocol.Op.LOAN_CHECKOUT, clock.now,
                                                   patron=AN, item=TN[0]), "kiosk-1")
        assert reply.ok
        # Left open on purpose, as a test that forgot to dispose of its engine would.
        first = url
    with postgres.database(_seeded_pg_template) as url:
        assert url == first  # the same database, reset
        assert state(url) == fresh
        engine.dispose()
        again = db.make_engine(url)
        try:
            circulation = Circulation(db.session_factory(again), make_config(), clock)
            reply, entries = circulation.handle(make_request(
                protocol.Op.LOAN_CHECKOUT, clock.now, patron=BINH, item=TN[0]), "kiosk-1")
            assert reply.ok and entries[0].seq == 1
            _assert_ledger_append_only(again)
        finally:
            again.dispose()
