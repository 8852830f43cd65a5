"""`thuvien seed-demo`: a sample lower-secondary (THCS) school library for the demo.

Fills an empty, migrated database with a catalogue (titles and their copies with ĐKCB
accession numbers), 400 students in 20 classes, 30 teachers and the library staff. No
loans: the ledger starts empty and circulation happens through the protocol. The same
`rng_seed` always gives the same library, so demo scripts and tests can name codes.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from server import sample_data as data
from server import stations
from server.models import (
    AccessionCounter,
    AcquisitionSource,
    Copy,
    CopyStatus,
    Reader,
    ReaderKind,
    ReaderStatus,
    Receipt,
    Title,
)
from server.pins import hash_pin

GRADES: tuple[int, ...] = (6, 7, 8, 9)
CLASSES_PER_GRADE = 5
STUDENTS_PER_CLASS = 20
TEACHERS = 30
# The province part of the demo's MOET ids (01: Hà Nội); the rest is random.
MOET_PROVINCE = "01"
VIETNAM_TIME = dt.timezone(dt.timedelta(hours=7))  # no daylight saving in Vietnam

READING_ROOM = "Phòng đọc - Giá tra cứu"
REFERENCE_SHARE = 0.02   # đọc tại chỗ copies, as a share of all copies
LOST_COPIES = 2
RFID_SHARE = 0.10        # copies already tagged for the RFID stations
CARD_UID_SHARE = 0.30    # readers who have an NFC card besides the printed barcode

# Titles a person trying the demo will recognise, in the order they are offered.
SAMPLE_LOANABLE_TITLES: tuple[str, ...] = (
    "Dế Mèn phiêu lưu ký", "Hoàng tử bé", "Kính vạn hoa – Tập 1", "Tắt đèn", "Đường Kách Mệnh",
)


# The demo librarian's card and PIN, printed with the samples (a demo has no secrets).
STAFF_CARD = "CB-0001"
# The demo's stations, registered with the server (which serves no other): the three
# `thuvien demo` starts, and `tay`, the desk the README drives by hand.
DEMO_STATIONS: tuple[tuple[str, str], ...] = (
    ("kiosk-1", "kiosk"), ("gate-1", "gate"), ("returnbox-1", "returnbox"), ("tay", "desk"))
STAFF_PIN = "2468"


class SeedError(RuntimeError):
    """The database is not empty: seeding would mix the sample with real data."""


@dataclass(frozen=True)
class SampleReader:
    code: str
    name: str
    kind: str
    class_name: str | None = None
    card_uid: str | None = None
    block_reason: str | None = None


@dataclass(frozen=True)
class SampleItem:
    barcode: str
    title: str
    kind: str
    status: str
    rfid_item_id: str | None = None


@dataclass(frozen=True)
class SeedSummary:
    """What was created, and a few codes a person can type or scan to try the stations."""

    titles: int
    copies: int
    students: int
    teachers: int
    staff: int
    copies_by_kind: dict[str, int]
    student_cards: tuple[SampleReader, ...]   # active; the first has an NFC card UID
    teacher: SampleReader
    blocked_student: SampleReader
    loanable_items: tuple[SampleItem, ...]    # TN/TK copies a student may borrow
    textbook: SampleItem                      # GK, lent for the school year
    reference_only: SampleItem                # đọc tại chỗ: must be refused at the kiosk

    def lines(self) -> list[str]:
        """The summary as lines to print after `thuvien seed-demo`."""
        by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(self.copies_by_kind.items()))
        out = [f"Đã tạo / created: {self.titles} đầu sách, {self.copies} bản sách ({by_kind}), "
               f"{self.students} học sinh, {self.teachers} giáo viên, {self.staff} cán bộ",
               "Thẻ bạn đọc để thử / cards to try:"]
        for reader in self.student_cards:
            nfc = f"  NFC {reader.card_uid}" if reader.card_uid else ""
            out.append(f"  {reader.code:<14} {reader.name} ({reader.class_name}){nfc}")
        out.append(f"  {self.teacher.code:<14} {self.teacher.name} (giáo viên / teacher)")
        blocked = self.blocked_student
        out.append(f"  {blocked.code:<14} {blocked.name} (bị khóa / blocked: {blocked.block_reason})")
        out.append(f"  {STAFF_CARD:<14} cán bộ thư viện / librarian, PIN {STAFF_PIN}")
        out.append("Sách để thử / books to try:")
        for item in (*self.loanable_items, self.textbook, self.reference_only):
            rfid = f"  RFID {item.rfid_item_id}" if item.rfid_item_id else ""
            note = " (đọc tại chỗ / reference only)" if item.status == CopyStatus.REFERENCE else ""
            out.append(f"  {item.barcode:<14} [{item.kind}] {item.title}{note}{rfid}")
        return out


def seed_demo(sessions: sessionmaker[Session], *, school_year_start: dt.date,
              rng_seed: int = 2026) -> SeedSummary:
    """Fill an empty, migrated database with the sample school; raise SeedError if not empty."""
    rng = random.Random(rng_seed)
    titles = _plan_titles(rng, school_year_start)
    readers = _plan_readers(rng, school_year_start)
    with sessions.begin() as session:
        # Checked inside the write transaction (BEGIN IMMEDIATE on SQLite), so two
        # seeders racing on one file cannot both find it empty.
        _refuse_if_not_empty(session)
        title_ids = session.scalars(
            insert(Title).returning(Title.id, sort_by_parameter_order=True),
            [plan.row for plan in titles]).all()
        copies = _plan_copies(rng, titles, list(title_ids), school_year_start)
        _file_receipts(session, random.Random(rng_seed + 1), copies)
        session.execute(insert(Copy), copies)
        counters: dict[str, int] = {}
        for row in copies:
            counters[row["kind"]] = counters.get(row["kind"], 0) + 1
        session.execute(insert(AccessionCounter), [{"kind": kind, "last": last}
                                                   for kind, last in sorted(counters.items())])
        session.execute(insert(Reader), readers)
    register_demo_stations(sessions)
    return _summary(titles, list(title_ids), copies, readers)


def register_demo_stations(sessions: sessionmaker[Session]) -> None:
    """Register (again: it is idempotent) the demo's stations."""
    for name, kind in DEMO_STATIONS:
        stations.register(sessions, name, kind)


def _refuse_if_not_empty(session: Session) -> None:
    counts = {name: session.scalar(select(func.count()).select_from(model)) or 0
              for name, model in (("readers", Reader), ("titles", Title), ("copies", Copy))}
    if any(counts.values()):
        found = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        raise SeedError(f"the database already holds {found}; the demo library is only "
                        "seeded into an empty database, so that it never mixes with real data")


# --- Catalogue ------------------------------------------------------------------------------


@dataclass
class _TitlePlan:
    row: dict[str, Any]     # the Title columns
    kind: str               # GK, TK, NV, TN
    copies: int
    price: int              # đồng, the same for every copy of one edition
    location: str
    reference_work: bool = False   # dictionaries and atlases keep a copy in the reading room
    earliest: dt.date | None = None  # textbooks: delivered from the summer before this date's year


def isbn13_check_digit(first12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def _isbn(rng: random.Random, publisher: str, used: set[str]) -> str:
    group = data.ISBN_GROUPS.get(publisher) or str(rng.randint(3, 9))
    while True:
        body = "978604" + group
        body += "".join(str(rng.randrange(10)) for _ in range(12 - len(body)))
        isbn = body + isbn13_check_digit(body)
        if isbn not in used:
            used.add(isbn)
            return isbn


def _fold(text: str) -> str:
    """Vietnamese text without marks; đ is its own letter, so NFD alone would keep it."""
    text = text.replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _call_number(ddc: str, title: str) -> str:
    # Mimics the Vietnamese "bảng mã hóa" book mark (e.g. T450H): first letter of the
    # title, a number from its first syllable, first letter of the second word.
    words = [w for w in _fold(title).upper().split() if w[0].isalnum()]
    first = words[0]
    number = 100 + sum(ord(c) * (i + 1) for i, c in enumerate(first)) % 900
    second = words[1][0] if len(words) > 1 else ""
    return f"{ddc} {first[0]}{number}{second}"


def _shelf(kind: str, ddc: str, grade: int | None = None) -> str:
    if kind == "GK":
        return f"Kho sách giáo khoa - Tủ {(grade or 6) - 5}"
    if kind == "NV":
        return f"Kho nghiệp vụ - Kệ {1 if ddc.startswith('3') else 2}"
    if kind == "TN":
        shelf = 1 if ddc.startswith("741") else 2 if ddc.startswith("895.92") else 3 if ddc[0] == "8" else 4
        return f"Góc thiếu nhi - Kệ {shelf}"
    return f"Kho mở - Kệ {int(ddc[0]) + 1}"  # open stacks in DDC order


def _plan_titles(rng: random.Random, start: dt.date) -> list[_TitlePlan]:
    plans: list[_TitlePlan] = []
    isbns: set[str] = set()

    def reprint_year() -> int:
        return rng.randint(start.year - 10, start.year)

    def add(kind: str, book: data.Book, *, copies: tuple[int, int], price: tuple[int, int],
            year: int | None = None, language: str = "vie", grade: int | None = None,
            reference_work: bool = False, earliest: dt.date | None = None,
            title: str | None = None, author: str | None = None) -> None:
        name = title or book.title
        row = {"title": name, "author": author or book.author, "publisher": book.publisher,
               "year": year or reprint_year(), "isbn": _isbn(rng, book.publisher, isbns),
               "subject": book.subject, "call_number": _call_number(book.ddc, name),
               "language": language}
        plans.append(_TitlePlan(row=row, kind=kind, copies=rng.randint(*copies),
                                price=rng.randint(price[0] // 1000, price[1] // 1000) * 1000,
                                location=_shelf(kind, book.ddc, grade),
                                reference_work=reference_work, earliest=earliest))

    # GK: the 2018-programme textbooks of the school's series, and two others for comparison.
    for grade in GRADES:
        year = min(data.FIRST_YEAR_OF_GRADE[grade], start.year)
        arrival = dt.date(year, 6, 1)
        for subject, label, ddc, volumes in data.TEXTBOOK_SUBJECTS:
            for volume in range(volumes):
                part = f" – {data.VOLUME_NAMES[volume]}" if volumes > 1 else ""
                core = subject in data.CORE_SUBJECTS
                for series in (data.KNTT, data.CANH_DIEU, data.CTST):
                    if series == data.CANH_DIEU and subject != "Ngữ văn":
                        continue
                    if series == data.CTST and subject != "Khoa học tự nhiên":
                        continue
                    main = series == data.KNTT
                    book = data.Book(f"{subject} {grade}{part} ({series})",
                                     data.TEXTBOOK_EDITORS.get((series, subject), "Nhiều tác giả"),
                                     data.SERIES_PUBLISHER[series], ddc, label)
                    # Class sets of the core subjects on the shared shelf (tủ sách dùng chung).
                    copies = (30, 45) if main and core else (10, 20) if main else (3, 5)
                    add("GK", book, copies=copies, price=(13_000, 35_000), year=year,
                        grade=grade, earliest=arrival)

    # NV: teachers' editions of the textbooks, then professional reading.
    for grade in GRADES:
        year = min(data.FIRST_YEAR_OF_GRADE[grade], start.year)
        for subject in data.TEACHER_EDITION_SUBJECTS:
            label, ddc = next((lab, d) for s, lab, d, _ in data.TEXTBOOK_SUBJECTS if s == subject)
            book = data.Book(f"Sách giáo viên {subject} {grade} ({data.KNTT})", "Nhiều tác giả",
                             data.GIAO_DUC, ddc + ".071", "Nghiệp vụ sư phạm")
            add("NV", book, copies=(2, 4), price=(25_000, 60_000), year=year,
                earliest=dt.date(year, 6, 1))
    for book in data.PROFESSIONAL:
        add("NV", book, copies=(1, 3), price=(30_000, 120_000),
            author=book.author or _invented_author(rng))

    # TK: literature for older readers, non-fiction, reference works, study aids.
    for book in (*data.VN_LITERATURE, *data.FOREIGN_LITERATURE):
        add("TK", book, copies=(2, 6), price=(40_000, 250_000))
    for book in data.NON_FICTION:
        add("TK", book, copies=(2, 5), price=(50_000, 250_000))
    for book in data.REFERENCE_WORKS:
        add("TK", book, copies=(2, 4), price=(150_000, 450_000), reference_work=True)
    for book in data.ENGLISH_REFERENCE:
        add("TK", book, copies=(2, 3), price=(120_000, 350_000), language="eng",
            reference_work=book.subject == "Từ điển")
    # A study-aid series keeps its author from grade 6 to grade 9.
    series_authors = [book.author or _invented_author(rng) for book in data.GRADE_REFERENCE]
    for grade in GRADES:
        for book, author in zip(data.GRADE_REFERENCE, series_authors, strict=True):
            add("TK", book, copies=(3, 8), price=(35_000, 95_000),
                title=book.title.format(g=grade), author=author)

    # TN: children's and young readers' literature.
    for book in (*data.VN_CHILDREN, *data.FOREIGN_CHILDREN):
        add("TN", book, copies=(2, 8), price=(25_000, 150_000))
    for name in data.NGUYEN_NHAT_ANH:
        add("TN", data.Book(name, "Nguyễn Nhật Ánh", data.TRE, "895.9223", "Thiếu nhi"),
            copies=(2, 8), price=(45_000, 150_000))
    for name, author, publisher, ddc, subject, volumes in data.SERIES:
        for volume in range(1, volumes + 1):
            add("TN", data.Book(f"{name} – Tập {volume}", author, publisher, ddc, subject),
                copies=(2, 4), price=(20_000, 60_000))
    for name in data.FOLK_TALES:
        add("TN", data.Book(name, None, data.KIM_DONG, "398.209597", "Văn học dân gian"),
            copies=(3, 6), price=(15_000, 35_000))
    for book in data.ENGLISH_CHILDREN:
        add("TN", book, copies=(2, 3), price=(60_000, 180_000), language="eng")
    return plans


def _invented_author(rng: random.Random) -> str:
    # Generic workbooks and guides get a made-up author, never a real writer's name.
    gender = rng.choice(("Nam", "Nữ"))
    return _adult_name(rng, gender)


def _acquired_on(rng: random.Random, earliest: dt.date, latest: dt.date) -> dt.date:
    earliest = min(earliest, latest)
    day = earliest + dt.timedelta(days=rng.randint(0, (latest - earliest).days))
    # Receipts are signed on working days: a Sunday intake is booked on Saturday.
    return day - dt.timedelta(days=1) if day.weekday() == 6 else day


def _plan_copies(rng: random.Random, plans: list[_TitlePlan], title_ids: list[int],
                 start: dt.date) -> list[dict[str, Any]]:
    latest = start - dt.timedelta(days=3)
    oldest = _years_before(start, 6)
    pending: list[tuple[dt.date, int, int, dict[str, Any]]] = []
    for index, (plan, title_id) in enumerate(zip(plans, title_ids, strict=True)):
        # Big class sets come in two intakes: the first order and a top-up later.
        batches = 2 if plan.copies >= 20 else 1
        if plan.earliest is not None:
            # Textbooks are delivered in the summer before a school year.
            years = [plan.earliest.year] + [rng.randint(plan.earliest.year, latest.year)
                                            for _ in range(batches - 1)]
            dates = sorted(min(_acquired_on(rng, dt.date(y, 6, 1), dt.date(y, 8, 25)), latest)
                           for y in years)
        else:
            earliest = max(dt.date(plan.row["year"], 3, 1), oldest)
            dates = sorted(_acquired_on(rng, earliest, latest) for _ in range(batches))
        for n in range(plan.copies):
            row: dict[str, Any] = {
                "title_id": title_id, "kind": plan.kind, "status": CopyStatus.AVAILABLE.value,
                "location": plan.location, "price": plan.price, "rfid_item_id": None,
                "acquired_on": dates[0] if n < (plan.copies + 1) // 2 or batches == 1 else dates[-1],
            }
            if plan.reference_work and n == 0:
                row["status"], row["location"] = CopyStatus.REFERENCE.value, READING_ROOM
            pending.append((row["acquired_on"], index, n, row))

    rows = [row for *_, row in pending]
    _set_aside(rng, rows, plans, title_ids)
    used_rfid: set[str] = set()
    for row in rows:
        if rng.random() < RFID_SHARE:
            row["rfid_item_id"] = _unique_hex(rng, 12, used_rfid, prefix="E004")  # ISO 15693 tags
    # ĐKCB numbers run in intake order per kind and are never reused, as in the register.
    pending.sort(key=lambda item: item[:3])
    counters: dict[str, int] = {}
    ordered: list[dict[str, Any]] = []
    for *_, row in pending:
        counters[row["kind"]] = counters.get(row["kind"], 0) + 1
        row["accession_number"] = f"{row['kind']}.{counters[row['kind']]:05d}"
        row["barcode"] = row["accession_number"].replace(".", "")
        ordered.append(row)
    return ordered


def _file_receipts(session: Session, rng: random.Random, copies: list[dict[str, Any]]) -> None:
    """The phiếu nhập the sample copies came with: one per month of intake, textbooks
    (delivered by the district office) apart from what the school bought or was given.
    Each copy's date becomes its receipt's, as the register has it."""
    groups: dict[tuple[int, int, bool], list[dict[str, Any]]] = {}
    for row in copies:
        day: dt.date = row["acquired_on"]
        groups.setdefault((day.year, day.month, row["kind"] == "GK"), []).append(row)
    created = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    # Numbered in date order, as the register is written: the first day of each intake.
    dated = sorted(groups, key=lambda key: (min(row["acquired_on"] for row in groups[key]), key))
    for number, key in enumerate(dated, start=1):
        rows = groups[key]
        received_on = min(row["acquired_on"] for row in rows)
        textbooks = key[2]
        source = AcquisitionSource.DISTRICT if textbooks else (
            AcquisitionSource.DONATED if rng.random() < 0.15 else AcquisitionSource.BOUGHT)
        detail = {AcquisitionSource.DISTRICT: "Phòng Giáo dục và Đào tạo",
                  AcquisitionSource.DONATED: "Hội Cha mẹ học sinh",
                  AcquisitionSource.BOUGHT: "Nhà sách Fahasa"}[source]
        receipt_id = session.execute(insert(Receipt).returning(Receipt.id), {
            "number": number, "receipt_no": f"{number:03d}/PN-{received_on.year}",
            "received_on": received_on, "source": source.value, "source_detail": detail,
            "created_by": "seed", "created_at": created}).scalar_one()
        for row in rows:
            row["receipt_id"], row["acquired_on"] = receipt_id, received_on


def _set_aside(rng: random.Random, rows: list[dict[str, Any]], plans: list[_TitlePlan],
               title_ids: list[int]) -> None:
    """Mark ~2% of copies đọc tại chỗ and a couple lost, never the last copy of a title."""
    plan_of = dict(zip(title_ids, plans, strict=True))
    sample_titles = set(SAMPLE_LOANABLE_TITLES)
    # One candidate per title with at least three copies, so each keeps copies to lend.
    candidates: dict[int, dict[str, Any]] = {}
    for row in rows:
        plan = plan_of[row["title_id"]]
        if (plan.kind in ("TK", "TN") and plan.copies >= 3 and not plan.reference_work
                and plan.row["title"] not in sample_titles):
            candidates.setdefault(row["title_id"], row)
    pool = [candidates[title_id] for title_id in sorted(candidates)]
    already = sum(row["status"] == CopyStatus.REFERENCE for row in rows)
    wanted = max(0, round(len(rows) * REFERENCE_SHARE) - already)
    chosen = rng.sample(pool, min(len(pool), wanted + LOST_COPIES))
    for row in chosen[:LOST_COPIES]:
        row["status"] = CopyStatus.LOST.value
    for row in chosen[LOST_COPIES:]:
        row["status"], row["location"] = CopyStatus.REFERENCE.value, READING_ROOM


def _unique_hex(rng: random.Random, digits: int, used: set[str], prefix: str = "") -> str:
    while True:
        value = prefix + f"{rng.getrandbits(4 * digits):0{digits}X}"
        if value not in used:
            used.add(value)
            return value


# --- Readers --------------------------------------------------------------------------------


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _weighted(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in table], weights=[w for _, w in table])[0]


def _student_name(rng: random.Random, gender: str) -> str:
    male = gender == "Nam"
    given_names = data.MALE_GIVEN_NAMES if male else data.FEMALE_GIVEN_NAMES
    # About one child in eight has a two-word middle name (Nguyễn Hoàng Gia Bảo).
    if rng.random() < 0.125:
        middle = rng.choice(data.MALE_DOUBLE_MIDDLE_NAMES if male else data.FEMALE_DOUBLE_MIDDLE_NAMES)
    else:
        middle = _weighted(rng, data.MALE_MIDDLE_NAMES if male else data.FEMALE_MIDDLE_NAMES)
    given = rng.choice(given_names)
    while given in middle.split():  # "Minh Minh" is not a name
        given = rng.choice(given_names)
    return f"{_weighted(rng, data.FAMILY_NAMES)} {middle} {given}"


def _adult_name(rng: random.Random, gender: str) -> str:
    male = gender == "Nam"
    middle = rng.choice(data.TEACHER_MALE_MIDDLE_NAMES if male else data.TEACHER_FEMALE_MIDDLE_NAMES)
    given = middle
    while given == middle:
        given = rng.choice(data.MALE_GIVEN_NAMES if male else data.FEMALE_GIVEN_NAMES)
    return f"{_weighted(rng, data.FAMILY_NAMES)} {middle} {given}"


def _moment(day: dt.date, seconds: int) -> dt.datetime:
    """A working-hours moment on `day` (Vietnam time) as an aware UTC datetime."""
    local = dt.datetime.combine(day, dt.time(8, 0), VIETNAM_TIME) + dt.timedelta(seconds=seconds)
    return local.astimezone(dt.timezone.utc)


def _random_day(rng: random.Random, year: int) -> dt.date:
    return dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(365))


def _plan_readers(rng: random.Random, start: dt.date) -> list[dict[str, Any]]:
    readers: list[dict[str, Any]] = []
    moet_ids: set[str] = set()
    card_uids: set[str] = set()

    def card_uid() -> str | None:
        return _unique_hex(rng, 8, card_uids) if rng.random() < CARD_UID_SHARE else None

    for grade in GRADES:
        entry_year = start.year - (grade - 6)
        # Each cohort was registered when it entered grade 6, just before that school year.
        registered = _years_before(start, grade - 6) - dt.timedelta(days=14)
        serial = 0
        for class_number in range(1, CLASSES_PER_GRADE + 1):
            for _ in range(STUDENTS_PER_CLASS):
                # Gaps in the cohort's serials are students who moved away.
                serial += 2 if rng.random() < 0.06 else 1
                gender = rng.choice(("Nam", "Nữ"))
                while True:
                    moet_id = MOET_PROVINCE + f"{rng.randrange(10**8):08d}"
                    if moet_id not in moet_ids:
                        moet_ids.add(moet_id)
                        break
                readers.append({
                    "code": f"HS-{entry_year}-{serial:04d}", "moet_id": moet_id,
                    "card_uid": card_uid(), "name": _student_name(rng, gender),
                    "kind": ReaderKind.STUDENT.value, "class_name": f"{grade}A{class_number}",
                    "grade": grade, "birth_date": _random_day(rng, entry_year - 11),
                    "gender": gender, "status": ReaderStatus.ACTIVE.value, "block_reason": None,
                    "pin_hash": None, "created_at": _moment(registered, serial),
                })
    for reader, reason in zip(rng.sample(readers, len(data.BLOCK_REASONS)), data.BLOCK_REASONS):
        reader["status"], reader["block_reason"] = ReaderStatus.BLOCKED.value, reason

    staff = [(ReaderKind.TEACHER, f"GV-{n:04d}") for n in range(1, TEACHERS + 1)]
    staff += [(ReaderKind.STAFF, "CB-0001"), (ReaderKind.STAFF, "CB-0002")]
    for n, (kind, code) in enumerate(staff):
        # Most lower-secondary teachers are women.
        gender = "Nữ" if rng.random() < 0.7 else "Nam"
        joined = start - dt.timedelta(days=rng.randint(30, 3650))
        readers.append({
            "code": code, "moet_id": None, "card_uid": card_uid(),
            "name": _adult_name(rng, gender), "kind": kind.value, "class_name": None,
            "grade": None, "birth_date": _random_day(rng, rng.randint(start.year - 55, start.year - 25)),
            "gender": gender, "status": ReaderStatus.ACTIVE.value, "block_reason": None,
            # The librarian's card opens the kiosk's staff mode with this PIN.
            "pin_hash": hash_pin(STAFF_PIN) if code == STAFF_CARD else None,
            "created_at": _moment(joined, n),
        })
    return readers


# --- Summary --------------------------------------------------------------------------------


def _summary(plans: list[_TitlePlan], title_ids: list[int], copies: list[dict[str, Any]],
             readers: list[dict[str, Any]]) -> SeedSummary:
    title_of = {title_id: plan.row["title"] for title_id, plan in zip(title_ids, plans, strict=True)}

    def item(row: dict[str, Any]) -> SampleItem:
        return SampleItem(row["barcode"], title_of[row["title_id"]], row["kind"], row["status"],
                          row["rfid_item_id"])

    def first_copy(title: str, status: str) -> SampleItem:
        return item(next(row for row in copies
                         if title_of[row["title_id"]] == title and row["status"] == status))

    def reader(row: dict[str, Any]) -> SampleReader:
        return SampleReader(row["code"], row["name"], row["kind"], row["class_name"],
                            row["card_uid"], row["block_reason"])

    students = [r for r in readers if r["kind"] == ReaderKind.STUDENT]
    active = [r for r in students if r["status"] == ReaderStatus.ACTIVE]
    with_card = next(r for r in active if r["card_uid"])
    # Then two card-less students from other grades, to show a barcode-only card.
    others = [next(r for r in active if r["grade"] == grade and not r["card_uid"])
              for grade in (7, 9)]
    by_kind: dict[str, int] = {}
    for row in copies:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + 1
    textbook = next(p.row["title"] for p in plans if p.kind == "GK")
    return SeedSummary(
        titles=len(plans), copies=len(copies), students=len(students),
        teachers=sum(r["kind"] == ReaderKind.TEACHER for r in readers),
        staff=sum(r["kind"] == ReaderKind.STAFF for r in readers),
        copies_by_kind=by_kind,
        student_cards=tuple(reader(r) for r in (with_card, *others)),
        teacher=reader(next(r for r in readers if r["kind"] == ReaderKind.TEACHER)),
        blocked_student=reader(next(r for r in students if r["status"] == ReaderStatus.BLOCKED)),
        loanable_items=tuple(first_copy(t, CopyStatus.AVAILABLE) for t in SAMPLE_LOANABLE_TITLES),
        textbook=first_copy(textbook, CopyStatus.AVAILABLE),
        reference_only=first_copy("Từ điển tiếng Việt", CopyStatus.REFERENCE),
    )


__all__ = ["SampleItem", "SampleReader", "SeedError", "SeedSummary", "isbn13_check_digit",
           "seed_demo"]
