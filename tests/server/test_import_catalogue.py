"""Catalogue import from MARC 21 and Excel/CSV, and MARC export, on a real migrated SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import Workbook
from pymarc import Field, Indicators, MARCWriter, Record, Subfield, XMLWriter
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from server.db import make_engine, session_factory, upgrade
from server.importers.catalogue import CatalogueFileError, export_marc, import_catalogue
from server.isbn import InvalidIsbn, normalize_isbn
from server.models import Title
from server.search import Catalogue, SearchQuery


@pytest.fixture(scope="module")
def _empty_db(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("catalogue") / "empty.db"
    upgrade(f"sqlite:///{path}")
    make_engine(f"sqlite:///{path}").dispose()
    return path.read_bytes()


def _database(directory: Path, name: str, image: bytes) -> sessionmaker[Session]:
    path = directory / name
    path.write_bytes(image)
    return session_factory(make_engine(f"sqlite:///{path}"))


@pytest.fixture
def sessions(tmp_path: Path, _empty_db: bytes) -> Iterator[sessionmaker[Session]]:
    factory = _database(tmp_path, "thuvien.db", _empty_db)
    yield factory
    factory.kw["bind"].dispose()


def _titles(sessions: sessionmaker[Session]) -> list[tuple]:
    with sessions() as s:
        return sorted((t.title, t.author, t.publisher, t.year, t.isbn, t.subject,
                       t.call_number, t.language) for t in s.scalars(select(Title)))


def _count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Title)) or 0


def _marc(title: str, rest: str | None = None, *, author: str | None = None,
          isbn: str | None = None, publisher: str | None = None, year: str | None = None,
          subject: str | None = None, call_number: str | None = None) -> Record:
    record = Record(force_utf8=True)
    if isbn:
        record.add_field(Field("020", Indicators(" ", " "), [Subfield("a", isbn)]))
    if call_number:
        record.add_field(Field("090", Indicators(" ", " "), [Subfield("a", call_number)]))
    if author:
        record.add_field(Field("100", Indicators("1", " "), [Subfield("a", author + ",")]))
    subs = [Subfield("a", title + (" :" if rest else " /"))]
    if rest:
        subs.append(Subfield("b", rest + " /"))
    record.add_field(Field("245", Indicators("1", "0"), subs))
    if publisher or year:
        subs = [Subfield("a", "Hà Nội :")]
        subs += [Subfield("b", f"{publisher},")] if publisher else []
        subs += [Subfield("c", f"{year}.")] if year else []
        record.add_field(Field("264", Indicators(" ", "1"), subs))
    if subject:
        record.add_field(Field("650", Indicators(" ", "7"), [Subfield("a", subject + ".")]))
    return record


def _write_mrc(path: Path, records: list[Record]) -> Path:
    with path.open("wb") as fh:
        writer = MARCWriter(fh)
        for record in records:
            writer.write(record)
        writer.close(close_fh=False)
    return path


# --- ISBN -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("978-604-2-12345-?", None),
    ("0-8044-2957-X", "9780804429573"),       # ISBN-10 ending in X
    ("080442957X", "9780804429573"),
    ("978 0 306 40615 7", "9780306406157"),
    ("9780306406157", "9780306406157"),
    ("0306406152", "9780306406157"),
    ("9780306406158", None),                  # bad check digit
    ("0306406153", None),
    ("1234567890123", None),                  # not 978/979
    ("", None),
])
def test_isbn_normalisation(text: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(InvalidIsbn):
            normalize_isbn(text)
    else:
        assert normalize_isbn(text) == expected


# --- MARC -------------------------------------------------------------------------------

def test_iso2709_with_vietnamese_titles(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = _write_mrc(tmp_path / "in.mrc", [
        _marc("Dế Mèn phiêu lưu ký", "truyện dài", author="Tô Hoài", isbn="0-8044-2957-X",
              publisher="Kim Đồng", year="c2019", subject="Văn học thiếu nhi",
              call_number="895.922 T450H"),
        _marc("Đường về nhà", isbn="978-0-306-40615-7", year="2021"),
    ])
    seen: list[tuple[int, int]] = []
    report = import_catalogue(sessions, path, progress=lambda d, t: seen.append((d, t)))
    assert (report.format, report.read, report.created, report.merged) == ("iso2709", 2, 2, 0)
    assert report.problems == []
    assert seen[-1] == (2, 2)
    assert _titles(sessions) == sorted([
        ("Dế Mèn phiêu lưu ký : truyện dài", "Tô Hoài", "Kim Đồng", 2019, "9780804429573",
         "Văn học thiếu nhi", "895.922 T450H", "vie"),
        ("Đường về nhà", None, None, 2021, "9780306406157", None, None, "vie"),
    ])
    # The search index is kept by triggers: a folded query finds the imported title.
    catalogue = Catalogue(sessions.kw["bind"])
    assert "Đường về nhà" in [h.title for h in catalogue.search(SearchQuery(text="duong ve nha")).hits]


def test_marc8_record_is_decoded(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    # MARC-8 puts combining marks before their base letter: E3 circumflex, E2 acute,
    # F2 dot below. An ASCII placeholder of the same length keeps the directory right.
    record = _marc("TiXYeng ViZWet", isbn="0306406152")
    raw = bytearray(record.as_marc().replace(b"TiXYeng ViZWet", b"Ti\xe3\xe2eng Vi\xf2\xe3et"))
    raw[9:10] = b" "   # leader/09 blank: MARC-8, not UTF-8
    path = tmp_path / "marc8.mrc"
    path.write_bytes(bytes(raw))
    report = import_catalogue(sessions, path)
    assert report.created == 1, report.problems
    assert _titles(sessions)[0][0] == "Tiếng Việt"


def test_same_isbn_twice_in_file_and_in_catalogue_merged(sessions: sessionmaker[Session],
                                                         tmp_path: Path) -> None:
    with sessions.begin() as s:
        s.add(Title(title="Toán 6", author="Hà Huy Khoái", publisher=None,
                    isbn="978-0-306-40615-7", language="vie"))
    path = _write_mrc(tmp_path / "dup.mrc", [
        _marc("Toán 6 (sửa)", isbn="0-306-40615-2", publisher="Giáo dục Việt Nam", year="2021",
              author="Người khác"),
        _marc("Tiếng Việt 1", "tập một", isbn="0-8044-2957-X"),
        _marc("Tiếng Việt 1", isbn="978-0-8044-2957-3", publisher="Giáo dục", year="2020",
              subject="Tiếng Việt"),
    ])
    report = import_catalogue(sessions, path)
    assert (report.created, report.merged) == (1, 2)
    assert _titles(sessions) == sorted([
        # Existing non-empty fields kept (title, author); empty ones filled.
        ("Toán 6", "Hà Huy Khoái", "Giáo dục Việt Nam", 2021, "978-0-306-40615-7", None, None,
         "vie"),
        ("Tiếng Việt 1 : tập một", None, "Giáo dục", 2020, "9780804429573", "Tiếng Việt",
         None, "vie"),
    ])


def test_bad_isbn_imports_title_without_it_and_reports(sessions: sessionmaker[Session],
                                                       tmp_path: Path) -> None:
    path = _write_mrc(tmp_path / "bad.mrc", [_marc("Lịch sử 7", isbn="978-0-306-40615-8"),
                                             _marc("", isbn="0306406152")])
    report = import_catalogue(sessions, path)
    assert report.created == 1
    assert _titles(sessions)[0][:5] == ("Lịch sử 7", None, None, None, None)
    [warning] = report.warnings
    assert (warning.position, warning.unit, warning.skipped) == (1, "record", False)
    assert "978-0-306-40615-8" in warning.reason_en and "ISBN không hợp lệ" in warning.reason_vi
    [skipped] = report.skipped
    assert skipped.position == 2 and "no title" in skipped.reason_en
    assert "Thiếu nhan đề" in skipped.reason_vi


def test_broken_record_skipped_rest_imported(sessions: sessionmaker[Session],
                                            tmp_path: Path) -> None:
    good = _marc("Âm nhạc 6").as_marc()
    broken = bytearray(_marc("Mĩ thuật 6").as_marc())
    broken[12:17] = b"abcde"                 # base address of data: not a number
    path = tmp_path / "mixed.mrc"
    path.write_bytes(good + bytes(broken) + good)
    report = import_catalogue(sessions, path)
    assert report.created == 2 and report.read == 3
    [skipped] = report.skipped
    assert skipped.position == 2 and "broken MARC record" in skipped.reason_en


@pytest.mark.parametrize("content", [
    b"this is not a MARC file at all",
    None,  # a valid record cut short
])
def test_corrupt_marc_file_writes_nothing(sessions: sessionmaker[Session], tmp_path: Path,
                                          content: bytes | None) -> None:
    if content is None:
        whole = _marc("Ngữ văn 6").as_marc()
        content = whole + whole[:-40]
    path = tmp_path / "corrupt.mrc"
    path.write_bytes(content)
    with pytest.raises(CatalogueFileError) as caught:
        import_catalogue(sessions, path)
    assert "corrupt MARC file" in str(caught.value)
    assert "Tệp MARC hỏng" in caught.value.reason_vi
    assert _count(sessions) == 0


def test_marcxml_import(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "in.xml"
    with path.open("wb") as fh:
        writer = XMLWriter(fh)
        writer.write(_marc("Truyện Kiều", author="Nguyễn Du", isbn="9780306406157",
                           publisher="Văn học", year="2015"))
        writer.close(close_fh=False)
    report = import_catalogue(sessions, path)
    assert (report.format, report.created) == ("marcxml", 1)
    assert _titles(sessions) == [("Truyện Kiều", "Nguyễn Du", "Văn học", 2015, "9780306406157",
                                  None, None, "vie")]


def test_broken_marcxml_is_a_clear_error(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "broken.xml"
    path.write_text("<collection><record><datafield tag='245'>", encoding="utf-8")
    with pytest.raises(CatalogueFileError, match="MARCXML"):
        import_catalogue(sessions, path)
    assert _count(sessions) == 0


# --- Excel and CSV ----------------------------------------------------------------------

def test_excel_with_preamble(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    book = Workbook()
    cover = book.active
    cover.title = "Bìa"
    cover.append(["Danh mục sách thư viện"])
    sheet = book.create_sheet("Danh mục")
    sheet.append(["SỞ GIÁO DỤC VÀ ĐÀO TẠO HÀ NỘI"])
    sheet.append(["TRƯỜNG THCS NGUYỄN TRÃI"])
    sheet.append([])
    sheet.append(["DANH MỤC SÁCH NHẬP NĂM 2025"])
    sheet.append(["STT", "Tên sách (*)", "Tác giả", "NXB", "Năm XB", "ISBN", "Môn loại",
                  "Ký hiệu xếp giá"])
    sheet.append([1, "Dế Mèn phiêu lưu ký", "Tô Hoài", "Kim Đồng", 2019, "0-8044-2957-X",
                  "Văn học", "8(V)23 T450H"])
    sheet.append([2, "Toán 6", None, "Giáo dục Việt Nam", "2021", 9780306406157, "Toán", None])
    sheet.append([3, "Toán 6 (tái bản)", "Hà Huy Khoái", None, None, "978-0-306-40615-7", None,
                  None])
    sheet.append([4, None, "Không tên", None, None, None, None, None])
    sheet.append([5, "Vật lí 6", None, None, "năm nào đó", "12345", None, None])
    sheet.append([])
    path = tmp_path / "sach.xlsx"
    book.save(path)
    report = import_catalogue(sessions, path)
    assert (report.format, report.read, report.created, report.merged) == ("xlsx", 5, 3, 1)
    assert _titles(sessions) == sorted([
        ("Dế Mèn phiêu lưu ký", "Tô Hoài", "Kim Đồng", 2019, "9780804429573", "Văn học",
         "8(V)23 T450H", "vie"),
        ("Toán 6", "Hà Huy Khoái", "Giáo dục Việt Nam", 2021, "9780306406157", "Toán", None,
         "vie"),
        ("Vật lí 6", None, None, None, None, None, None, "vie"),
    ])
    by_row = {(p.position, p.skipped): p for p in report.problems}
    assert set(by_row) == {(9, True), (10, False)}
    assert "no title" in by_row[9, True].reason_en
    reasons = [p.reason_en for p in report.problems if p.position == 10]
    assert any("year" in r for r in reasons) and any("ISBN" in r for r in reasons)


def test_csv_semicolons_and_no_header_error(sessions: sessionmaker[Session],
                                           tmp_path: Path) -> None:
    path = tmp_path / "sach.csv"
    path.write_text("Danh mục\nNhan đề;Tác giả;Nhà xuất bản;Năm xuất bản;ISBN;Phân loại\n"
                    "Truyện Kiều;Nguyễn Du;Văn học;2015;978-0-306-40615-7;Văn học\n",
                    encoding="utf-8-sig")
    report = import_catalogue(sessions, path)
    assert (report.format, report.created) == ("csv", 1)
    assert _titles(sessions)[0][:6] == ("Truyện Kiều", "Nguyễn Du", "Văn học", 2015,
                                        "9780306406157", "Văn học")
    no_header = tmp_path / "rac.csv"
    no_header.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(CatalogueFileError, match="no header row"):
        import_catalogue(sessions, no_header)
    with pytest.raises(CatalogueFileError, match="unknown file type"):
        import_catalogue(sessions, tmp_path / "sach.pdf")


# --- export ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, suffix", [("iso2709", "mrc"), ("marcxml", "xml")])
def test_export_then_import_gives_the_same_titles(sessions: sessionmaker[Session],
                                                 tmp_path: Path, _empty_db: bytes,
                                                 fmt: str, suffix: str) -> None:
    with sessions.begin() as s:
        s.add_all([
            Title(title="Dế Mèn phiêu lưu ký : truyện dài", author="Tô Hoài", publisher="Kim Đồng",
                  year=2019, isbn="9780804429573", subject="Văn học thiếu nhi",
                  call_number="8(V)23 T450H", language="vie"),
            Title(title="Đường về nhà", language="vie"),
            Title(title="English for kids", author="Smith, J", year=2010, isbn="9780306406157",
                  language="eng"),
        ])
    path = tmp_path / f"out.{suffix}"
    assert export_marc(sessions, path, format=fmt) == 3  # type: ignore[arg-type]
    target = _database(tmp_path, "other.db", _empty_db)
    report = import_catalogue(target, path)
    assert report.problems == [] and report.created == 3
    assert _titles(target) == _titles(sessions)
    target.kw["bind"].dispose()
