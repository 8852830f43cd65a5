"""Folding and catalogue search on a real, migrated SQLite file (FTS5 with its triggers),
and the portable backend the district's PostgreSQL uses, run here on the same data."""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, event, update

from server.db import make_engine, session_factory, upgrade
from server.folding import fold, fold_words, name_sort_key, vietnamese_key
from server.models import Copy, Title
from server.search import (Catalogue, SearchQuery, accession_candidates, isbn_forms,
                           rebuild_index)

# (title, author, subject, isbn, [(accession, kind, status)])
BOOKS = [
    ("Dế Mèn phiêu lưu ký", "Tô Hoài", "Thiếu nhi", "9786042682596",
     [("TN.00315", "TN", "available"), ("TN.00316", "TN", "on_loan")]),
    ("Đường Kách Mệnh", "Hồ Chí Minh", "Chính trị - Xã hội", "9786045712345",
     [("TK.00010", "TK", "available")]),
    ("Con đường xưa em đi", "Duy Khánh", "Văn học Việt Nam", None,
     [("TK.00011", "TK", "reference")]),
    ("Tuyển tập Dế Mèn và các truyện khác", "Tô Hoài", "Văn học Việt Nam", None,
     [("TK.00012", "TK", "available")]),
    ("Truyện ngắn Tô Hoài", "Nhiều tác giả", "Văn học Việt Nam", None,
     [("TK.00013", "TK", "available")]),
    ("Hồi ký một nhà văn", "Lê Văn", "Tô Hoài", None,
     [("TK.00014", "TK", "available")]),
    ("Toán 6 – Tập một", "Hà Huy Khoái", "Toán học", "978-604-0-00001-1",
     [("GK.00001", "GK", "available"), ("GK.00002", "GK", "withdrawn")]),
    ("Le Petit Prince", "Antoine de Saint-Exupéry", "Văn học nước ngoài", "2070612759",
     [("TN.00400", "TN", "available")]),
]


@pytest.fixture(scope="module")
def db_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("search") / "thuvien.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine).begin() as db:
        for title, author, subject, isbn, copies in BOOKS:
            row = Title(title=title, author=author, subject=subject, isbn=isbn, year=2020,
                        call_number="895.9 D", language="vie")
            db.add(row)
            db.flush()
            for number, kind, status in copies:
                db.add(Copy(title_id=row.id, accession_number=number, barcode=number.replace(".", ""),
                            kind=kind, status=status, location="Kệ 1"))
    engine.dispose()
    return path


@pytest.fixture
def engine(db_file: Path, tmp_path: Path) -> Iterator[Engine]:
    copy = tmp_path / "t.db"
    copy.write_bytes(db_file.read_bytes())
    engine = make_engine(f"sqlite:///{copy}")
    yield engine
    engine.dispose()


def _pg_translate(value: str | None, src: str, dst: str) -> str | None:
    """PostgreSQL's translate(): characters past the end of `dst` are deleted."""
    if value is None:
        return None
    table = {ord(c): (dst[i] if i < len(dst) else None) for i, c in enumerate(src)}
    return value.translate(table)


@pytest.fixture(params=["fts5", "portable"])
def catalogue(request: pytest.FixtureRequest, engine: Engine) -> Catalogue:
    if request.param == "portable":
        # SQLite has no translate(); give it PostgreSQL's so the portable SQL runs as is.
        @event.listens_for(engine, "connect")
        def _add_translate(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.create_function("translate", 3, _pg_translate, deterministic=True)
        engine.dispose()
    return Catalogue(engine, backend=request.param)


def titles(catalogue: Catalogue, text: str, **kw: object) -> list[str]:
    return [h.title for h in catalogue.search(SearchQuery(text, **kw)).hits]  # type: ignore[arg-type]


# --- folding ---------------------------------------------------------------------------

def test_fold_removes_marks_case_and_folds_d_stroke() -> None:
    assert fold("Dế Mèn phiêu lưu ký") == "de men phieu luu ky"
    assert fold("ĐƯỜNG") == "duong"
    assert fold("  Tiếng   Việt\t") == "tieng viet"
    assert fold(None) == ""


def test_fold_gives_the_same_for_decomposed_text() -> None:
    composed = "Đường Kách Mệnh, Ấu thơ"
    assert fold(unicodedata.normalize("NFD", composed)) == fold(composed) == "duong kach menh, au tho"


def test_fold_words_drops_punctuation() -> None:
    assert fold_words("Kính vạn hoa – Tập 1 (tái bản)") == ["kinh", "van", "hoa", "tap", "1", "tai", "ban"]


def test_vietnamese_order_of_letters_and_tones() -> None:
    words = ["Đức", "Dũng", "Ân", "Ăn", "Anh", "Ánh", "Bình", "Em"]
    assert sorted(words, key=lambda w: vietnamese_key(w)) == [
        "Anh", "Ánh", "Ăn", "Ân", "Bình", "Dũng", "Đức", "Em"]


def test_names_sort_by_given_name_then_family() -> None:
    names = ["Trần Thị Bình", "Nguyễn Văn An", "Lê An", "Đỗ Thị Ánh", "Phạm Đức", "Vũ Dũng"]
    assert sorted(names, key=name_sort_key) == [
        "Lê An", "Nguyễn Văn An", "Đỗ Thị Ánh", "Trần Thị Bình", "Vũ Dũng", "Phạm Đức"]


# --- codes ------------------------------------------------------------------------------

def test_isbn_forms_convert_between_10_and_13() -> None:
    assert isbn_forms("978-604-2-68259-6") == ("9786042682596", "6042682598")
    assert isbn_forms("2-07-061275-9") == ("2070612759", "9782070612758")
    assert isbn_forms("207061275x")[0] == "207061275X"
    assert isbn_forms("12345") == () and isbn_forms("de men") == ()


def test_accession_candidates_accept_either_spelling() -> None:
    assert accession_candidates("TN00315") == ("TN.00315", "TN00315")
    assert accession_candidates("tk.315") == ("TK.315", "TK315", "TK.00315", "TK00315")
    assert accession_candidates("de men") == ()


# --- search -----------------------------------------------------------------------------

def test_unaccented_words_find_the_vietnamese_title(catalogue: Catalogue) -> None:
    assert titles(catalogue, "de men phieu luu ky")[0] == "Dế Mèn phiêu lưu ký"


def test_duong_finds_the_titles_with_d_stroke(catalogue: Catalogue) -> None:
    found = titles(catalogue, "duong")
    assert found[0] == "Đường Kách Mệnh"   # starts with the word: ranked first
    assert set(found) == {"Đường Kách Mệnh", "Con đường xưa em đi"}
    assert titles(catalogue, "ĐƯỜNG") == found


def test_title_outranks_author_outranks_subject(catalogue: Catalogue) -> None:
    found = titles(catalogue, "to hoai")
    assert found[0] == "Truyện ngắn Tô Hoài"
    assert set(found[1:3]) == {"Dế Mèn phiêu lưu ký", "Tuyển tập Dế Mèn và các truyện khác"}
    assert found[3:] == ["Hồi ký một nhà văn"]


def test_exact_title_comes_before_longer_ones(catalogue: Catalogue) -> None:
    found = titles(catalogue, "de men")
    assert found[0] == "Dế Mèn phiêu lưu ký"  # starts with the query
    assert "Tuyển tập Dế Mèn và các truyện khác" in found


def test_last_word_is_a_prefix(catalogue: Catalogue) -> None:
    assert titles(catalogue, "de men phieu lu") == ["Dế Mèn phiêu lưu ký"]
    assert titles(catalogue, "kach me") == ["Đường Kách Mệnh"]


def test_field_restricts_the_columns(catalogue: Catalogue) -> None:
    assert set(titles(catalogue, "to hoai", field="author")) == {
        "Dế Mèn phiêu lưu ký", "Tuyển tập Dế Mèn và các truyện khác"}
    assert titles(catalogue, "to hoai", field="subject") == ["Hồi ký một nhà văn"]


def test_kind_and_subject_filters(catalogue: Catalogue) -> None:
    assert titles(catalogue, "de men", kind="TN") == ["Dế Mèn phiêu lưu ký"]
    assert titles(catalogue, "de men", kind="GK") == []
    assert titles(catalogue, "duong", subject="Văn học Việt Nam") == ["Con đường xưa em đi"]
    with pytest.raises(ValueError, match="unknown kind"):
        SearchQuery("x", kind="XX")


def test_operators_and_junk_are_just_words(catalogue: Catalogue) -> None:
    for junk in ['de" OR men', "NEAR(de men)", "title:*", "%_\\", "\x00\ufffd", "ký*) AND (", "a" * 5000]:
        catalogue.search(SearchQuery(junk[:200]))  # never raises
    assert catalogue.search(SearchQuery("   ")).matched_by == "none"
    assert catalogue.search(SearchQuery("'de men")).hits[0].title == "Dế Mèn phiêu lưu ký"


def test_isbn_with_or_without_hyphens_10_or_13(catalogue: Catalogue) -> None:
    for text in ("9786042682596", "978-604-268-259-6", "6042682598"):
        result = catalogue.search(SearchQuery(text))
        assert result.matched_by == "isbn" and [h.title for h in result.hits] == ["Dế Mèn phiêu lưu ký"]
    # Stored hyphenated; stored as ISBN-10 and asked as ISBN-13.
    assert titles(catalogue, "9786040000011") == ["Toán 6 – Tập một"]
    assert titles(catalogue, "978-2-07-061275-8") == ["Le Petit Prince"]


def test_accession_number_either_spelling(catalogue: Catalogue) -> None:
    for text in ("TN.00315", "TN00315", "tn00316", "tn 316"):
        result = catalogue.search(SearchQuery(text))
        assert result.matched_by == "accession", text
        assert [h.title for h in result.hits] == ["Dế Mèn phiêu lưu ký"]


def test_availability_counts_and_paging(catalogue: Catalogue) -> None:
    hit = catalogue.search(SearchQuery("de men phieu")).hits[0]
    assert (hit.available, hit.copies) == (1, 2)
    toan = catalogue.search(SearchQuery("toan")).hits[0]
    assert (toan.available, toan.copies) == (1, 1)  # the withdrawn copy is not counted
    all_pages = titles(catalogue, "hoai", per_page=10)
    page1, page2 = titles(catalogue, "hoai", per_page=2), titles(catalogue, "hoai", per_page=2, page=2)
    assert page1 + page2 == all_pages[:4] and len(set(page1 + page2)) == 4
    assert catalogue.search(SearchQuery("hoai", per_page=2)).total == len(all_pages) == 4
    assert "Toán 6 – Tập một" not in all_pages  # by Hà Huy Khoái: "hoai" is inside a word


def test_title_record_with_due_dates(engine: Engine) -> None:
    catalogue = Catalogue(engine)
    title_id = catalogue.search(SearchQuery("TN00315")).hits[0].title_id
    record = catalogue.title(title_id)
    assert record is not None
    assert [(c.accession_number, c.status, c.due_on) for c in record.copies] == [
        ("TN.00315", "available", None), ("TN.00316", "on_loan", None)]
    assert catalogue.title(999_999) is None


def test_index_follows_title_changes_through_the_triggers(engine: Engine) -> None:
    catalogue = Catalogue(engine)
    with session_factory(engine).begin() as db:
        db.add(Title(title="Đất rừng phương Nam", author="Đoàn Giỏi", language="vie"))
        db.execute(update(Title).where(Title.title == "Đường Kách Mệnh").values(title="Nhật ký trong tù"))
        db.execute(delete(Copy).where(Copy.accession_number == "TK.00011"))
        db.execute(delete(Title).where(Title.title == "Con đường xưa em đi"))
    assert titles(catalogue, "dat rung phuong nam") == ["Đất rừng phương Nam"]
    assert titles(catalogue, "doan gioi") == ["Đất rừng phương Nam"]
    assert titles(catalogue, "duong") == []
    assert titles(catalogue, "nhat ky trong tu") == ["Nhật ký trong tù"]


def test_rebuild_repairs_an_emptied_index(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM catalogue_fts")
    assert titles(Catalogue(engine), "de men") == []
    with engine.begin() as connection:
        assert rebuild_index(connection) == len(BOOKS)
    assert titles(Catalogue(engine), "de men")[0] == "Dế Mèn phiêu lưu ký"


def test_a_sqlite_shell_insert_is_indexed_too(engine: Engine) -> None:
    # The triggers are plain SQL: a writer that is not this program keeps the index current.
    path = engine.url.database
    engine.dispose()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO titles(title, author, language) VALUES ('Đội thiếu niên tình báo Bát Sắt', 'Phạm Thắng', 'vie')")
    raw.commit()
    raw.close()
    assert titles(Catalogue(engine), "doi thieu nien") == ["Đội thiếu niên tình báo Bát Sắt"]


def test_subjects_in_vietnamese_order(engine: Engine) -> None:
    subjects = Catalogue(engine).subjects()
    assert subjects[0] == "Chính trị - Xã hội" and subjects[-1] == "Văn học Việt Nam"
    assert subjects.index("Thiếu nhi") < subjects.index("Toán học") < subjects.index("Tô Hoài")  # o < ô


# --- the kind filter's index and broad queries ------------------------------------------

def test_kind_filter_follows_the_copies_through_the_triggers(engine: Engine) -> None:
    catalogue = Catalogue(engine)
    assert titles(catalogue, "de men", kind="NV") == []
    with session_factory(engine).begin() as db:
        dm = db.query(Title).filter(Title.title == "Dế Mèn phiêu lưu ký").one()
        db.add(Copy(title_id=dm.id, accession_number="NV.00001", barcode="NV00001", kind="NV",
                    status="available"))
    assert titles(catalogue, "de men", kind="NV") == ["Dế Mèn phiêu lưu ký"]
    with session_factory(engine).begin() as db:
        db.execute(update(Copy).where(Copy.accession_number == "NV.00001").values(status="withdrawn"))
    assert titles(catalogue, "de men", kind="NV") == []
    with session_factory(engine).begin() as db:
        db.execute(update(Copy).where(Copy.accession_number == "NV.00001").values(status="available", kind="GK"))
    assert titles(catalogue, "de men", kind="GK") == ["Dế Mèn phiêu lưu ký"]
    with session_factory(engine).begin() as db:
        db.execute(delete(Copy).where(Copy.accession_number == "NV.00001"))
    assert titles(catalogue, "de men", kind="GK") == []
    # Both TN copies withdrawn: the title has no TN copy left to find.
    with session_factory(engine).begin() as db:
        db.execute(update(Copy).where(Copy.kind == "TN").values(status="withdrawn"))
    assert titles(catalogue, "de men", kind="TN") == []


def test_a_loan_does_not_rewrite_the_index(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE fts_writes(n INTEGER)")
        connection.exec_driver_sql("INSERT INTO fts_writes VALUES (0)")
        # Counts every write to the index's content (FTS5 keeps the row's text there).
        connection.exec_driver_sql(
            "CREATE TRIGGER count_fts AFTER UPDATE ON catalogue_fts_content "
            "BEGIN UPDATE fts_writes SET n = n + 1; END")
        connection.exec_driver_sql(
            "CREATE TRIGGER count_fts_insert AFTER INSERT ON catalogue_fts_content "
            "BEGIN UPDATE fts_writes SET n = n + 1; END")
    with session_factory(engine).begin() as db:
        db.execute(update(Copy).where(Copy.accession_number == "TN.00315").values(status="on_loan"))
        db.execute(update(Copy).where(Copy.accession_number == "TN.00315").values(status="available"))
        # Another copy of a kind the title already has: the row is left as it is.
        dm = db.query(Title).filter(Title.title == "Dế Mèn phiêu lưu ký").one()
        db.add(Copy(title_id=dm.id, accession_number="TN.00317", kind="TN", status="available"))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT n FROM fts_writes").scalar_one() == 0


def test_migration_writes_the_same_index_as_install_index() -> None:
    import importlib.util

    from server import search

    path = Path(__file__).resolve().parents[2] / "server/migrations/versions/0005_catalogue_search.py"
    spec = importlib.util.spec_from_file_location("migration_0005", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert [s.replace(" IF NOT EXISTS", "") for s in search.SQLITE_DDL] == list(migration.SQLITE_UP[:-1])
    assert migration.SQLITE_DOWN == search.SQLITE_DROP


@pytest.fixture
def broad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Catalogue:
    """A catalogue where one word is in 60 titles, with the limits made small to match."""
    import server.search as search_module

    url = f"sqlite:///{tmp_path / 'broad.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine).begin() as db:
        for i in range(60):
            words = "Truyện cổ tích " + " ".join(["hay"] * (i % 7)) + f" số {i}"
            db.add(Title(title=words, author="Nhiều tác giả", language="vie"))
        db.add(Title(title="Truyện", author="Ai đó", language="vie"))
        db.add(Title(title="Những truyện ngắn", author="Ai đó", language="vie"))
        db.add(Title(title="Sách khác", author="Truyện Kiều", language="vie"))
    monkeypatch.setattr(search_module, "_FEW", 5)
    monkeypatch.setattr(search_module, "_RANK_LIMIT", 10)
    return Catalogue(engine)


def test_broad_query_keeps_tiers_and_pages_without_gaps(broad: Catalogue) -> None:
    first = broad.search(SearchQuery("truyen", per_page=3))
    assert first.total == 63
    # The title equal to the query, then the title holding it later, then the author.
    assert first.hits[0].title == "Truyện"
    every = [h.title for p in range(1, 8)
             for h in broad.search(SearchQuery("truyen", per_page=10, page=p)).hits]
    assert len(every) == 63 and len(set(every)) == 63
    assert every[0] == "Truyện"
    assert every.index("Những truyện ngắn") > every.index("Truyện cổ tích  số 0")  # starts before inside
    assert every[-1] == "Sách khác"   # the word only in the author comes last
    # Paged with another size, the same order.
    again = [h.title for p in range(1, 23)
             for h in broad.search(SearchQuery("truyen", per_page=3, page=p)).hits]
    assert again == every


def test_tier_queries_and_python_ranking_agree(broad: Catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    import server.search as search_module

    # _FEW = 5: ranked by one index query a tier; the tiers are ranked whole (no limit hit).
    monkeypatch.setattr(search_module, "_RANK_LIMIT", 1000)
    by_tiers = [h.title for h in broad.search(SearchQuery("truyen co tich hay", per_page=100)).hits]
    monkeypatch.setattr(search_module, "_FEW", 1000)
    in_python = [h.title for h in broad.search(SearchQuery("truyen co tich hay", per_page=100)).hits]
    assert by_tiers == in_python
    assert len(by_tiers) == 51   # every title with "hay" at least once (i % 7 != 0)
    assert by_tiers[0] == "Truyện cổ tích hay số 8"   # the shortest, then the newest
