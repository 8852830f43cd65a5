"""Regenerate docs/samples/: the first page of every register and report, a label sheet
and a sheet of library cards, as PNG (and a few as PDF).

    .venv/bin/python scripts/report_samples.py [--out docs/samples] [--only NAME[,NAME...]]
        [--all-pdfs]

Builds the demo library (`thuvien demo`'s config and `seed_demo`) in a temporary folder,
then lets it live a little through the same functions the stations and the staff web
call: two months of loans and returns by students and teachers through the circulation
core (some still out, a few late), a receipt of teaching equipment lent to teachers, a
weeding decision, and a closed stocktake with copies missing and one misplaced. So every
register has lines. Each report of `server.reports.registry.all_reports()` is then
rendered to PDF and its first page to PNG (pdftoppm), reduced to 256 colours when that
keeps it small. NAMEs are report names, `labels` (an A4 3x8 sheet) and `cards`.

PNGs go to OUT as NAME.png; PDFs only for KEEP_PDFS (or all with --all-pdfs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from server.config import ServerConfig

DEFAULT_OUT = ROOT / "docs" / "samples"
RESOLUTION = 70            # dpi: an A4 page is then 579 x 819 pixels, readable and small
MAX_PNG_BYTES = 150_000    # above this a PNG is reduced to 256 colours
EXTRA = ("labels", "cards")
# Small ones a reader of the repository may open: a register and the label sheet.
KEEP_PDFS = ("register-general", "labels")
# Reports that need a choice to say anything: the first weeding decision.
OPTIONS: dict[str, dict[str, str]] = {"weeding-list": {"decision": "1"}}
# Reports whose first page shows more for this school year only (the general register:
# its three parts on one page, not five years of receipts).
THIS_YEAR = ("register-general",)
# Pages worth a picture beyond the first: (report, page, sample name). Page numbers
# follow from the fixed seed and history above; a missing page fails loudly.
MORE_PAGES: tuple[tuple[str, int, str], ...] = (("statistics", 3, "statistics-chart"),)
DESK = "tay"               # the demo's desk station
DECISION = "12/QĐ-THCS"
CARDS_CLASS = "6A1"


# --- the library ---------------------------------------------------------------------------

@dataclass
class Library:
    sessions: sessionmaker[Session]
    config: ServerConfig


@contextmanager
def demo_library(folder: Path) -> Iterator[Library]:
    """The seeded demo library in `folder`, with the history that fills the registers."""
    from protocol.configfile import load_toml
    from server import db
    from server.config import ServerConfig
    from server.seed import seed_demo
    from thuvien import demo

    # No broker is started: the circulation core is called directly, as the server does.
    text = demo.server_toml(folder / "thuvien.db", 1883, web_port=None)
    config = load_toml(text, "demo server.toml", ServerConfig)
    db.upgrade(config.database.url)
    engine = db.make_engine(config.database.url)
    try:
        sessions = db.session_factory(engine)
        seed_demo(sessions, school_year_start=demo.school_year_start())
        library = Library(sessions, config)
        live_a_little(library)
        yield library
    finally:
        engine.dispose()


class BackdatedClock:
    """The circulation core's clock, moved back to lend and return on past days."""

    def __init__(self) -> None:
        self.days_ago = 0

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=self.days_ago, hours=2)


def this_year_back(days: int) -> dt.date:
    """`days` ago, but not before this register year began (1 September): so this year's
    general register shows all three parts whenever the script runs."""
    from server.reports.period import year_of

    today = dt.date.today()
    return max(today - dt.timedelta(days=days), dt.date(year_of(today), 9, 1))


def live_a_little(library: Library) -> None:
    equipment = receive_equipment(library)
    lend_and_return(library, equipment)
    weed(library)
    count_the_stock(library)


def receive_equipment(library: Library) -> list[str]:
    """A receipt of teaching equipment (TB): the general register's newest line."""
    from sqlalchemy import select

    from server.intake import ReceiptLine, receive
    from server.models import Copy

    result = receive(library.sessions, library.config, f"07/PN-{dt.date.today().year}",
                     this_year_back(50), "province", [
                         ReceiptLine(kind="TB", quantity=3, title="Bộ thí nghiệm quang học lớp 7",
                                     subject="Vật lí", price=1_250_000, location="Phòng thiết bị"),
                         ReceiptLine(kind="TB", quantity=2, title="Bản đồ hành chính Việt Nam",
                                     subject="Địa lí", price=180_000, location="Phòng thiết bị"),
                     ], source_detail="Sở GD&ĐT", by="thuthu")
    with library.sessions() as session:
        return list(session.scalars(select(Copy.accession_number).where(
            Copy.receipt_id == result.receipt_id).order_by(Copy.accession_number)))


def lend_and_return(library: Library, equipment: Sequence[str]) -> None:
    import protocol
    from server.circulation import Circulation

    clock = BackdatedClock()
    circulation = Circulation(library.sessions, library.config, clock)

    def ask(days_ago: int, op: protocol.Op, args: Any) -> None:
        clock.days_ago = days_ago
        request = protocol.Request(id=str(uuid.uuid4()), op=op, at=clock().astimezone(), args=args)
        reply, _ = circulation.handle(request, DESK)
        if not reply.ok:
            raise RuntimeError(f"{op.value} {args} refused: {reply.error}")

    students, teachers = _readers(library)
    children, reference, professional, textbooks = (_copies(library, kind, n) for kind, n in
                                                    (("TN", 40), ("TK", 12), ("NV", 8), ("GK", 6)))
    # Students: one book each, one a day over two months; most back within a week, the
    # last few still out, three of them late (a student's TN loan is 7 days).
    for n, (student, book) in enumerate(zip(students, children + reference)):
        days_ago = 60 - n
        ask(days_ago, protocol.Op.LOAN_CHECKOUT, protocol.CheckoutArgs(patron=student, item=book))
        if days_ago > 12:
            ask(days_ago - 5, protocol.Op.LOAN_RETURN, protocol.ReturnArgs(item=book))
    for student, book in zip(students[len(children + reference):], textbooks):
        ask(70, protocol.Op.LOAN_CHECKOUT, protocol.CheckoutArgs(patron=student, item=book))
    # Teachers: professional books and the equipment, a lesson or a week at a time.
    for n, item in enumerate(professional + list(equipment)):
        teacher = teachers[n % len(teachers)]
        days_ago = 45 - 3 * n
        ask(days_ago, protocol.Op.LOAN_CHECKOUT, protocol.CheckoutArgs(patron=teacher, item=item))
        if days_ago > 12:  # returned; the last two still out (a late one blocks no loan after it)
            ask(days_ago - 4, protocol.Op.LOAN_RETURN, protocol.ReturnArgs(item=item))


def _readers(library: Library) -> tuple[list[str], list[str]]:
    from sqlalchemy import select

    from server.models import Reader, ReaderKind, ReaderStatus

    with library.sessions() as session:
        rows = session.execute(select(Reader.code, Reader.kind, Reader.class_name).where(
            Reader.status == ReaderStatus.ACTIVE).order_by(Reader.class_name, Reader.code)).all()
    # Spread over the classes, so the per-class and per-grade tables have rows.
    by_class: dict[str, list[str]] = {}
    for code, kind, class_name in rows:
        if kind == ReaderKind.STUDENT:
            by_class.setdefault(class_name or "", []).append(code)
    students = [code for round_ in range(4) for codes in by_class.values()
                for code in codes[round_:round_ + 1]]
    teachers = [code for code, kind, _ in rows if kind == ReaderKind.TEACHER][:6]
    return students, teachers


def _copies(library: Library, kind: str, count: int) -> list[str]:
    from sqlalchemy import select

    from server.models import Copy, CopyStatus

    with library.sessions() as session:
        return list(session.scalars(select(Copy.accession_number).where(
            Copy.kind == kind, Copy.status == CopyStatus.AVAILABLE)
            .order_by(Copy.title_id, Copy.accession_number).limit(count)))


def weed(library: Library) -> None:
    """A weeding decision: worn and outdated copies out, noted in the ĐKCB register."""
    from sqlalchemy import select

    from server.models import Copy, CopyStatus
    from server.weeding import withdraw

    with library.sessions() as session:
        old = list(session.scalars(select(Copy.accession_number).where(
            Copy.kind == "TK", Copy.status == CopyStatus.AVAILABLE)
            .order_by(Copy.acquired_on, Copy.accession_number).limit(6)))
    reasons = ["worn", "worn", "outdated", "outdated", "pests", "old_curriculum"]
    withdraw(library.sessions, library.config, DECISION, this_year_back(20),
             list(zip(old, reasons)), note="Thanh lý sách rách nát, lạc hậu", by="thuthu")


def count_the_stock(library: Library) -> None:
    """A stocktake: every shelf scanned but for a few copies, one found on the wrong shelf."""
    from sqlalchemy import select

    from server import stocktake
    from server.models import Copy, CopyStatus

    opened = stocktake.start(library.sessions, "Kiểm kê học kỳ I", "thuthu")
    with library.sessions() as session:
        shelves: dict[str, list[str]] = {}
        for accession, location in session.execute(select(Copy.accession_number, Copy.location)
                                                   .where(Copy.status.in_([CopyStatus.AVAILABLE,
                                                                           CopyStatus.REFERENCE]))
                                                   .order_by(Copy.location, Copy.accession_number)):
            shelves.setdefault(location or "", []).append(accession)
    names = sorted(shelves)
    for index, shelf in enumerate(names):
        codes = shelves[shelf]
        codes = codes[:-1] if index % 3 == 0 and len(codes) > 2 else codes  # a few not found
        if index == 1 and len(names) > 2:
            # One copy of the next shelf is found here: misplaced.
            codes = codes + shelves[names[2]][:1]
            shelves[names[2]] = shelves[names[2]][1:]
        stocktake.scan(library.sessions, opened.id, codes, shelf=shelf or None, station=DESK)
    stocktake.close(library.sessions, opened.id, "thuthu")


# --- the samples ---------------------------------------------------------------------------

def page_png(pdf: Path, png: Path, page: int = 1) -> None:
    """One page of `pdf` as `png`, at RESOLUTION; reduced to 256 colours if it is large."""
    prefix = png.with_suffix("")
    subprocess.run(["pdftoppm", "-r", str(RESOLUTION), "-png", "-f", str(page), "-l", str(page),
                    "-singlefile", str(pdf), str(prefix)], check=True)
    if not png.is_file():  # pdftoppm says nothing when the page is past the end
        raise RuntimeError(f"{pdf.name} has no page {page}")
    if png.stat().st_size > MAX_PNG_BYTES:
        from PIL import Image

        with Image.open(png) as image:
            small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(png, optimize=True)


def render_report(library: Library, name: str, pdf: Path) -> None:
    from server.reports.pdf import render_pdf
    from server.reports.registry import ReportParams, get_report

    from server.reports.period import year_of

    spec = get_report(name)
    year = year_of(dt.date.today()) if name in THIS_YEAR else None
    report = spec.build(library.sessions, library.config,
                        ReportParams(school_year=year, options=OPTIONS.get(name, {})))
    render_pdf(report, pdf)


def render_labels(library: Library, pdf: Path) -> None:
    from server.reports.labels import label_sheet_pdf

    # The first 24 children's books: one full A4 sheet of 3x8.
    label_sheet_pdf(library.sessions, library.config, pdf, kind="TN", first="1", last="24",
                    layout="3x8")


def render_cards(library: Library, pdf: Path) -> None:
    from server.reports.cards import library_cards_pdf

    library_cards_pdf(library.sessions, library.config, pdf, class_name=CARDS_CLASS,
                      opac_url="http://thuvien.truong.edu.vn")


def sample_names() -> list[str]:
    """Every sample this script makes: each report of the registry, then labels and cards."""
    from server.reports.registry import all_reports

    return sorted(all_reports()) + list(EXTRA)


def make_samples(out: Path, only: Sequence[str] | None = None, all_pdfs: bool = False,
                 say: Callable[[str], None] = print) -> list[Path]:
    names = sample_names()
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise SystemExit(f"report_samples: không có mẫu / no sample named {', '.join(unknown)}; "
                         f"có / there are: {', '.join(names)}")
    wanted = [name for name in names if not only or name in only]
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="report-samples-") as temp:
        folder = Path(temp)
        with demo_library(folder) as library:
            for name in wanted:
                pdf = folder / f"{name}.pdf"
                if name == "labels":
                    render_labels(library, pdf)
                elif name == "cards":
                    render_cards(library, pdf)
                else:
                    render_report(library, name, pdf)
                png = out / f"{name}.png"
                page_png(pdf, png)
                made.append(png)
                for report, page, extra in MORE_PAGES:
                    if report == name:
                        page_png(pdf, out / f"{extra}.png", page)
                        made.append(out / f"{extra}.png")
                if all_pdfs or name in KEEP_PDFS:
                    made.append(Path(shutil.copyfile(pdf, out / pdf.name)))
                say(f"{name}: {png} ({png.stat().st_size // 1024} KB)")
    return made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the folder to write")
    parser.add_argument("--only", type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
                        help="these samples only (report names, labels, cards), comma-separated")
    parser.add_argument("--all-pdfs", action="store_true",
                        help=f"write every PDF, not only {', '.join(KEEP_PDFS)}")
    args = parser.parse_args(argv)
    make_samples(args.out, args.only, args.all_pdfs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
