"""The librarian's records on the staff web: report downloads, intake (phiếu nhập), label
sheets and library cards.

Every page calls the same functions as the CLI (`server.reports.registry`,
`server.intake`, `server.reports.labels`, `server.reports.cards`), so paper printed from
the web and from cron is the same paper. Building a report or a PDF is slow work for a
request, so it runs in a worker thread.

Downloads and the label and card forms are GETs: they change nothing, and a librarian
may bookmark "this year's individual register". Intake changes the stock, so it is a
POSTed upload, a preview, and a confirming POST (CSRF-checked like every form). The
uploaded file waits between preview and confirm in a private temporary folder under a
random token; nothing is written to the database before the confirm.
"""

from __future__ import annotations

import atexit
import datetime as dt
import io
import logging
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, QueryParams, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server import intake
from server.folding import fold
from server.models import AcquisitionSource, ReaderKind, StaffUser, Stocktake, Withdrawal
from server.reports.cards import library_cards_pdf
from server.reports.labels import PRESETS, label_sheet_pdf, labels_config
from server.reports.period import school_year
from server.reports.registry import ReportParams, ReportSpec, all_reports, render_report
from server.web.auth import Auth
from server.web.context import WebContext
from server.web.desk import class_names

log = logging.getLogger("thuvien.web.records")

FORMATS: dict[str, str] = {
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json; charset=utf-8",
}
YEARS_SHOWN = 5
MAX_UPLOAD = 10 * 1024 * 1024
UPLOAD_SUFFIXES = (".xlsx", ".csv")
UPLOAD_LIFETIME = 6 * 3600
MAX_CODES = 2000
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{24,64}$")
_OPTION_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_CODE_SPLIT = re.compile(r"[\s,;]+")
# Options naming a file on the server (the self-assessment's answers file) are for the
# CLI only: from the web they would let anyone signed in make the server read a path.
SERVER_SIDE_OPTIONS = frozenset({"answers"})


# The Vietnamese of these pages' strings (server/web/i18n.py explains the catalogue).
RECORDS_VI: dict[str, str] = {
    # navigation
    "Reports": "Báo cáo",
    "Intake": "Nhập sách",
    "Labels": "In nhãn",
    "Library cards": "Thẻ thư viện",
    "Not done": "Chưa thực hiện được",
    "Back": "Quay lại",
    # reports
    "Each link downloads the report for this school year. Open “Choose…” for another year, "
    "a date range or an option.":
        "Mỗi liên kết tải báo cáo của năm học này. Mở “Chọn…” để chọn năm học khác, "
        "khoảng ngày hoặc tuỳ chọn.",
    "No reports are installed.": "Chưa có báo cáo nào được cài đặt.",
    "Report": "Báo cáo",
    "Download": "Tải về",
    "Choose…": "Chọn…",
    "School year": "Năm học",
    "From (optional)": "Từ ngày (không bắt buộc)",
    "Until (optional)": "Đến ngày (không bắt buộc)",
    "All": "Tất cả",
    "Other options (name=value)": "Tuỳ chọn khác (tên=giá trị)",
    "Weeding decision": "Quyết định thanh lý",
    "Stocktake round": "Đợt kiểm kê",
    "“{value}” is not a date; write it as 25/12/2026.":
        "“{value}” không phải là ngày; hãy viết như 25/12/2026.",
    "“{part}” is not an option; write name=value, e.g. kind=TK.":
        "“{part}” không phải là tuỳ chọn; hãy viết tên=giá trị, ví dụ kind=TK.",
    "There is no school year {year}.": "Không có năm học {year}.",
    "The start date is after the end date.": "Ngày bắt đầu sau ngày kết thúc.",
    "The option “{name}” can only be given on the command line.":
        "Tuỳ chọn “{name}” chỉ dùng được trên dòng lệnh.",
    # intake
    "New receipt": "Phiếu nhập mới",
    "Upload the receipt as an Excel or CSV file with a header row (Nhan đề, Tác giả, NXB, "
    "Năm XB, ISBN, Loại, Số lượng, Đơn giá, ...). You will see what was read before anything "
    "is saved.":
        "Tải lên phiếu nhập dạng tệp Excel hoặc CSV có dòng tiêu đề (Nhan đề, Tác giả, NXB, "
        "Năm XB, ISBN, Loại, Số lượng, Đơn giá, ...). Bạn sẽ xem lại những gì đọc được trước "
        "khi lưu.",
    "Receipts": "Các phiếu nhập",
    "No.": "Số TT",
    "Date": "Ngày",
    "Receipt number": "Số phiếu",
    "Source": "Nguồn cấp",
    "Number of copies": "Số bản",
    "Total price (đồng)": "Thành tiền (đồng)",
    "Price (đồng)": "Đơn giá (đồng)",
    "No receipts yet.": "Chưa có phiếu nhập nào.",
    "Supplier or donor (optional)": "Nhà cung cấp hoặc người tặng (không bắt buộc)",
    "Note (optional)": "Ghi chú (không bắt buộc)",
    "Receipt file (.xlsx or .csv)": "Tệp phiếu nhập (.xlsx hoặc .csv)",
    "Read the file": "Đọc tệp",
    "Check the receipt": "Kiểm tra phiếu nhập",
    "Nothing was saved.": "Chưa lưu gì.",
    "Row": "Hàng",
    "Author": "Tác giả",
    "Total": "Tổng cộng",
    "Saving gives the copies their ĐKCB numbers. This cannot be undone, except by weeding.":
        "Khi lưu, các bản sách được cấp số ĐKCB. Không thể hoàn tác, trừ khi thanh lý.",
    "Save the receipt": "Lưu phiếu nhập",
    "Cancel": "Huỷ",
    "Upload the corrected file": "Tải lên tệp đã sửa",
    "Receipt {number}": "Phiếu nhập số {number}",
    "Saved: {count} copies.": "Đã lưu: {count} bản sách.",
    "ĐKCB numbers": "Số ĐKCB",
    "Print labels": "In nhãn",
    "Titles": "Đầu sách",
    "All receipts": "Tất cả phiếu nhập",
    "Bought by the school": "Trường tự mua",
    "From the district office": "PGD cấp phát",
    "From the provincial department": "SGD cấp phát",
    "Donated": "Biếu tặng",
    "Other": "Khác",
    "Choose an Excel (.xlsx) or CSV (.csv) receipt file.":
        "Hãy chọn tệp phiếu nhập Excel (.xlsx) hoặc CSV (.csv).",
    "The file is empty or larger than {mb} MB.": "Tệp trống hoặc lớn hơn {mb} MB.",
    "The uploaded file is no longer here; please upload it again.":
        "Tệp đã tải lên không còn nữa; vui lòng tải lên lại.",
    "Write the receipt number (at most 32 characters).":
        "Hãy ghi số phiếu nhập (tối đa 32 ký tự).",
    "Write the date of the receipt.": "Hãy ghi ngày của phiếu nhập.",
    "Choose where the books came from.": "Hãy chọn nguồn cấp.",
    "Row {row}: {reason}": "Hàng {row}: {reason}",
    "Line {line}: {reason}": "Dòng {line}: {reason}",
    # labels and cards
    "Barcode labels for the spines: the ĐKCB as Code 128, the shelf mark and the title.":
        "Nhãn mã vạch dán gáy sách: số ĐKCB dạng Code 128, ký hiệu xếp giá và tên sách.",
    "Which copies (one of the three)": "Những bản sách nào (chọn một trong ba cách)",
    "All copies of receipt no.": "Mọi bản sách của phiếu nhập số",
    "From ĐKCB": "Từ số ĐKCB",
    "To ĐKCB": "Đến số ĐKCB",
    "Or a list of ĐKCB (one per line)": "Hoặc danh sách số ĐKCB (mỗi dòng một số)",
    "Label sheet": "Khổ giấy nhãn",
    "Labels already used on the first sheet": "Số nhãn đã dùng trên tờ đầu",
    "Download the PDF": "Tải tệp PDF",
    "Cards of credit-card size with the reader's barcode and a QR code to this library's "
    "catalogue.":
        "Thẻ cỡ thẻ ngân hàng, có mã vạch của bạn đọc và mã QR dẫn đến trang tra cứu của "
        "thư viện.",
    "Which readers": "Những bạn đọc nào",
    "Kind of reader": "Loại bạn đọc",
    "Or a list of card numbers (one per line)": "Hoặc danh sách số thẻ (mỗi dòng một số)",
    "Print on": "In trên",
    "A4 sheets, 10 cards each, to cut": "Giấy A4, mỗi tờ 10 thẻ, cắt rời",
    "Single cards (a card printer)": "Từng thẻ (máy in thẻ)",
    "At most {limit} codes at a time.": "Mỗi lần tối đa {limit} mã.",
    "There is no kind “{kind}”.": "Không có loại “{kind}”.",
    "Choose the copies: a kind and a ĐKCB range, a receipt, or a list of ĐKCB.":
        "Hãy chọn bản sách: loại và khoảng số ĐKCB, một phiếu nhập, hoặc danh sách số ĐKCB.",
    "The receipt number is a whole number from {low} to {high}.":
        "Số phiếu nhập là số nguyên từ {low} đến {high}.",
    "Labels already used must be a whole number from {low} to {high}.":
        "Số nhãn đã dùng phải là số nguyên từ {low} đến {high}.",
    "There is no kind of reader “{kind}”.": "Không có loại bạn đọc “{kind}”.",
    "Choose the readers: a class, a kind of reader, or a list of cards.":
        "Hãy chọn bạn đọc: một lớp, một loại bạn đọc, hoặc danh sách số thẻ.",
    "Print on A4 sheets or on single cards.": "Hãy chọn in trên giấy A4 hoặc từng thẻ.",
}


class BadInput(ValueError):
    """Input the page refuses: an English message id and its values, translated when shown."""

    def __init__(self, msgid: str, **values: Any) -> None:
        super().__init__(msgid.format(**values) if values else msgid)
        self.msgid = msgid
        self.values = values


# --- report parameters ---------------------------------------------------------------

@dataclass(frozen=True)
class OptionField:
    """A report option the form offers by name (the free "options" field takes the rest)."""

    key: str
    label: str                       # message id
    choices: list[tuple[str, str]] = field(default_factory=list)   # empty: free text


# Known options per report; each also arrives as a plain query parameter (?kind=TK), which
# is how other pages link here (/staff/reports/weeding-list.pdf?decision=3).
KNOWN_OPTIONS: dict[str, tuple[str, ...]] = {
    "register-individual": ("kind",),
    "loans-students": ("class",),
    "weeding-list": ("decision",),
    "stocktake-missing": ("stocktake",),
}
OPTION_LABELS: dict[str, str] = {"kind": "Kind", "class": "Class", "decision": "Weeding decision",
                                 "stocktake": "Stocktake round"}


def parse_day(value: str | None) -> dt.date | None:
    """A date from a date field (2026-09-05) or typed the Vietnamese way (5/9/2026)."""
    text = (value or "").strip()
    if not text:
        return None
    for pattern in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y"):
        try:
            return dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise BadInput("“{value}” is not a date; write it as 25/12/2026.", value=text[:40])


def parse_options(text: str) -> dict[str, str]:
    """`kind=TK, class=6A1` (commas, semicolons or lines between) as a dict."""
    options: dict[str, str] = {}
    for part in re.split(r"[,;\n]+", text or ""):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not _OPTION_KEY.match(key) or not value or len(value) > 100:
            raise BadInput("“{part}” is not an option; write name=value, e.g. kind=TK.",
                           part=part.strip()[:60])
        options[key] = value
    return options


def report_params(query: QueryParams | Mapping[str, str], current_year: int) -> ReportParams:
    """The librarian's choices for one report, checked; BadInput when they make no sense."""
    year: int | None = None
    raw_year = str(query.get("year", "") or "").strip()
    if raw_year:
        if not raw_year.isdigit() or not 1990 <= int(raw_year) <= current_year + 1:
            raise BadInput("There is no school year {year}.", year=raw_year[:12])
        year = int(raw_year)
    since = parse_day(query.get("since"))
    until = parse_day(query.get("until"))
    if since and until and since > until:
        raise BadInput("The start date is after the end date.")
    options = parse_options(str(query.get("options", "") or ""))
    for key in {k for keys in KNOWN_OPTIONS.values() for k in keys}:
        value = str(query.get(key, "") or "").strip()
        if value:
            options[key] = value[:100]
    refused = sorted(SERVER_SIDE_OPTIONS & options.keys())
    if refused:
        raise BadInput("The option “{name}” can only be given on the command line.", name=refused[0])
    return ReportParams(school_year=year, since=since, until=until, options=options)


def slug(text: str) -> str:
    """ASCII file-name words: "SỔ ĐĂNG KÝ CÁ BIỆT" -> "so-dang-ky-ca-biet"."""
    return re.sub(r"[^a-z0-9]+", "-", fold(text)).strip("-") or "bao-cao"


def report_filename(spec: ReportSpec, params: ReportParams, year_label: str, fmt: str) -> str:
    if params.since or params.until:
        span = "-".join(d.isoformat() for d in (params.since, params.until) if d)
    else:
        span = year_label
    extra = "-".join(slug(v) for _k, v in sorted(params.options.items()))
    return "-".join(p for p in (slug(spec.title.vi), extra, span) if p) + f".{fmt}"


def attachment(filename: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{filename}"'}


def build_report(spec: ReportSpec, fmt: str, sessions: Any, config: Any, params: ReportParams,
                 language: str) -> bytes:
    """The report as the bytes of one file (runs in a worker thread)."""
    return render_report(spec, fmt, sessions, config, params, language)


# --- the intake upload between preview and confirm -------------------------------------

class UploadStore:
    """Uploaded receipt files kept under a random token until confirmed or stale.

    A confirm claims its file by moving it aside (an atomic rename), so a form posted
    twice (a double click, a reload) books the receipt once: the second finds no file.
    """

    def __init__(self, root: Path | None = None) -> None:
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="thuvien-intake-"))
            # Unconfirmed uploads are worthless once the server stops.
            atexit.register(shutil.rmtree, root, True)
        self.root = root
        self.claimed = root / "claimed"
        self.claimed.mkdir(parents=True, exist_ok=True)

    def _sweep(self) -> None:
        cutoff = time.time() - UPLOAD_LIFETIME
        for folder in (self.root, self.claimed):
            for old in folder.iterdir():
                if old.is_file() and old.stat().st_mtime < cutoff:
                    old.unlink(missing_ok=True)

    def put(self, upload: UploadFile) -> tuple[str, Path]:
        name = (upload.filename or "").lower()
        suffix = next((s for s in UPLOAD_SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            raise BadInput("Choose an Excel (.xlsx) or CSV (.csv) receipt file.")
        self._sweep()
        token = secrets.token_urlsafe(24)
        path = self.root / f"{token}{suffix}"
        size = 0
        with path.open("wb") as out:
            upload.file.seek(0)
            while chunk := upload.file.read(1 << 16):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    break
                out.write(chunk)
        if size > MAX_UPLOAD or size == 0:
            path.unlink(missing_ok=True)
            raise BadInput("The file is empty or larger than {mb} MB.", mb=MAX_UPLOAD // 2**20)
        return token, path

    def _waiting(self, token: str) -> Path:
        if _TOKEN.match(token or ""):
            for suffix in UPLOAD_SUFFIXES:
                path = self.root / f"{token}{suffix}"
                if path.is_file():
                    return path
        raise BadInput("The uploaded file is no longer here; please upload it again.")

    def claim(self, token: str) -> Path:
        """The file for one confirm only; `release` it if the confirm fails, else `drop` it."""
        path = self._waiting(token)
        claimed = self.claimed / path.name
        try:
            path.rename(claimed)
        except FileNotFoundError:  # another confirm took it a moment ago
            raise BadInput("The uploaded file is no longer here; please upload it again.") from None
        return claimed

    def release(self, claimed: Path) -> None:
        claimed.rename(self.root / claimed.name)

    def drop(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# --- intake: the receipt's header fields ---------------------------------------------

@dataclass(frozen=True)
class ReceiptHeader:
    receipt_no: str
    received_on: dt.date
    source: str
    source_detail: str | None
    note: str | None


def receipt_header(form: FormData | Mapping[str, Any]) -> ReceiptHeader:
    receipt_no = " ".join(str(form.get("receipt_no", "") or "").split())
    if not receipt_no or len(receipt_no) > 32:
        raise BadInput("Write the receipt number (at most 32 characters).")
    received_on = parse_day(str(form.get("received_on", "") or ""))
    if received_on is None:
        raise BadInput("Write the date of the receipt.")
    source = str(form.get("source", "") or "")
    if source not in {s.value for s in AcquisitionSource}:
        raise BadInput("Choose where the books came from.")
    detail = " ".join(str(form.get("source_detail", "") or "").split())[:200] or None
    note = " ".join(str(form.get("note", "") or "").split())[:300] or None
    return ReceiptHeader(receipt_no, received_on, source, detail, note)


SOURCE_LABELS: dict[str, str] = {
    AcquisitionSource.BOUGHT.value: "Bought by the school",
    AcquisitionSource.DISTRICT.value: "From the district office",
    AcquisitionSource.PROVINCE.value: "From the provincial department",
    AcquisitionSource.DONATED.value: "Donated",
    AcquisitionSource.OTHER.value: "Other",
}


def split_codes(text: str | None, limit: int = MAX_CODES) -> list[str]:
    """Codes typed or scanned into a box, one per line or separated by commas."""
    codes = [c for c in _CODE_SPLIT.split(text or "") if c]
    if len(codes) > limit:
        raise BadInput("At most {limit} codes at a time.", limit=limit)
    return list(dict.fromkeys(codes))


def small_int(value: Any, msgid: str, low: int, high: int) -> int | None:
    """A whole number from a form field, or None when left empty; `msgid` says what is wrong."""
    text = str(value or "").strip()
    if not text:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadInput(msgid, low=low, high=high)
    return int(text)


def _error_text(error: Exception, translate: Callable[..., str] | None = None,
                language: str = "vi") -> str:
    """What a refusal says: our own message translated; the core's own bilingual message
    (`message_vi`/`message_en`: intake, labels, cards) in the page's language; else as raised."""
    if isinstance(error, BadInput) and translate is not None:
        return translate(error.msgid, **error.values)
    own = getattr(error, "message_en" if language == "en" else "message_vi", None)
    if isinstance(own, str) and own:
        return own
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error)


def _problems(error: Exception, translate: Callable[..., str], language: str) -> list[str]:
    """A refused receipt's reasons: the headline, then each bad row as the sheet numbers it."""
    lines = [_error_text(error, translate, language)]
    for problem in getattr(error, "problems", None) or ():
        reason = problem.reason_en if language == "en" else problem.reason_vi
        if problem.row:
            lines.append(translate("Row {row}: {reason}", row=problem.row, reason=reason))
        else:
            lines.append(translate("Line {line}: {reason}", line=problem.line, reason=reason))
    return lines


def line_total(line: intake.ReceiptLine) -> int:
    return line.quantity * (line.price or 0)


def label_choice(query: Mapping[str, Any]) -> dict[str, Any]:
    """`label_sheet_pdf`'s keywords from the labels form: a list of ĐKCB wins over a receipt,
    a receipt over a kind and range."""
    choice: dict[str, Any] = {}
    codes = split_codes(query.get("codes"))
    receipt = small_int(query.get("receipt"), "The receipt number is a whole number from {low} "
                        "to {high}.", 1, 10**9)
    kind = str(query.get("kind", "") or "").strip().upper()
    if codes:
        choice["accession_numbers"] = codes
    elif receipt is not None:
        choice["receipt_number"] = receipt
    elif kind:
        if not re.fullmatch(r"[A-Z]{1,8}", kind):
            raise BadInput("There is no kind “{kind}”.", kind=kind[:12])
        choice["kind"] = kind
        for key in ("first", "last"):
            value = str(query.get(key, "") or "").strip()[:32]
            if value:
                choice[key] = value
    else:
        raise BadInput("Choose the copies: a kind and a ĐKCB range, a receipt, or a list of ĐKCB.")
    layout = str(query.get("layout", "") or "").strip()[:32]
    if layout:
        choice["layout"] = layout
    choice["skip"] = small_int(query.get("skip"), "Labels already used must be a whole number "
                               "from {low} to {high}.", 0, 199) or 0
    return choice


def labels_filename(choice: Mapping[str, Any]) -> str:
    if "accession_numbers" in choice:
        what = "danh-sach"
    elif "receipt_number" in choice:
        what = f"phieu-nhap-{choice['receipt_number']}"
    else:
        what = slug("-".join(str(choice[k]) for k in ("kind", "first", "last") if k in choice))
    return f"nhan-sach-{what}.pdf"


def card_choice(query: Mapping[str, Any]) -> dict[str, Any]:
    """`library_cards_pdf`'s keywords from the cards form."""
    choice: dict[str, Any] = {}
    codes = split_codes(query.get("readers"))
    class_name = " ".join(str(query.get("class", "") or "").split())[:32]
    kind = str(query.get("kind", "") or "").strip()
    if kind and kind not in {k.value for k in ReaderKind}:
        raise BadInput("There is no kind of reader “{kind}”.", kind=kind[:20])
    if codes:
        choice["reader_codes"] = codes
    elif class_name or kind:
        if class_name:
            choice["class_name"] = class_name
        if kind:
            choice["kind"] = kind
    else:
        raise BadInput("Choose the readers: a class, a kind of reader, or a list of cards.")
    per_page = str(query.get("per_page", "a4") or "a4")
    if per_page not in ("a4", "cr80"):
        raise BadInput("Print on A4 sheets or on single cards.")
    choice["per_page"] = per_page
    return choice


def cards_filename(choice: Mapping[str, Any]) -> str:
    what = "danh-sach" if "reader_codes" in choice else slug(
        "-".join(str(choice[k]) for k in ("class_name", "kind") if k in choice))
    return f"the-thu-vien-{what}.pdf"


def _pdf_bytes(make: Callable[..., Any], sessions: Any, config: Any, choice: Mapping[str, Any]) -> bytes:
    out = io.BytesIO()
    make(sessions, config, out, **choice)
    return out.getvalue()


def offered_formats(spec: ReportSpec) -> tuple[str, ...]:
    """The formats a report can be downloaded in here: JSON only with a snapshot."""
    return tuple(f for f in spec.formats if f in FORMATS and (f != "json" or spec.snapshot is not None))


def layout_choices(config: Any) -> tuple[list[tuple[str, str]], str]:
    """The label stocks to choose from (the school's own first) and the configured one."""
    labels = labels_config(config)
    layouts = [*labels.layouts, *(p for n, p in PRESETS.items()
                                  if n not in {own.name for own in labels.layouts})]
    return ([(lay.name, f"{lay.name}: {lay.per_sheet} × {lay.label_width_mm:g} x "
                        f"{lay.label_height_mm:g} mm") for lay in layouts], labels.layout)


def withdrawal_choices(db: Session) -> list[tuple[str, str]]:
    rows = db.execute(select(Withdrawal.number, Withdrawal.decision_no, Withdrawal.decided_on)
                      .order_by(Withdrawal.number.desc()).limit(200)).all()
    return [(str(n), f"{n}: {no} ({day.strftime('%d/%m/%Y')})") for n, no, day in rows]


def stocktake_choices(db: Session) -> list[tuple[str, str]]:
    rows = db.execute(select(Stocktake.number, Stocktake.name)
                      .order_by(Stocktake.number.desc()).limit(200)).all()
    return [(str(n), f"{n}: {name}") for n, name in rows]


@dataclass(frozen=True)
class ReportEntry:
    name: str
    title: str
    formats: tuple[str, ...]
    fields: list[OptionField]


# --- pages ---------------------------------------------------------------------------

class RecordsPages:
    def __init__(self, ctx: WebContext, auth: Auth, uploads: UploadStore | None = None) -> None:
        self.ctx = ctx
        self.auth = auth
        ctx.catalogue.add(RECORDS_VI)
        self.uploads = uploads or UploadStore()

    # --- shared ----------------------------------------------------------------------

    def _today(self) -> dt.date:
        return self.ctx.clock().astimezone(self.ctx.zone).date()

    def _current_year(self) -> int:
        return school_year(self.ctx.config, None, self._today()).first

    def _db(self, work: Callable[..., Any], *args: Any) -> Any:
        def run() -> Any:
            with self.ctx.sessions() as db:
                return work(db, *args)
        return run_in_threadpool(run)

    def _says(self, request: Request) -> tuple[Callable[..., str], str]:
        lang = self.ctx.language(request)
        return self.ctx.catalogue.translator(lang), lang

    def _refuse(self, request: Request, error: Exception, back: str, status_code: int = 400) -> Response:
        _, lang = self._says(request)
        return self.ctx.render(request, "staff/records_message.html",
                               {"message": _error_text(error, _, lang), "back": back},
                               status_code=status_code)

    def _kind_choices(self, lang: str) -> list[tuple[str, str]]:
        return [(k.prefix, f"{k.prefix}: {k.name_vi if lang == 'vi' else k.name_en}")
                for k in self.ctx.config.library.kinds]

    # --- reports ---------------------------------------------------------------------

    async def reports(self, request: Request, user: StaffUser) -> Response:
        lang = self.ctx.language(request)
        specs = await run_in_threadpool(all_reports)

        def load(db: Session) -> dict[str, list[tuple[str, str]]]:
            return {"class": [(c, c) for c in class_names(db)], "decision": withdrawal_choices(db),
                    "stocktake": stocktake_choices(db)}

        choices = {"kind": self._kind_choices(lang), **await self._db(load)}
        groups: dict[str, list[ReportEntry]] = {}
        for spec in specs.values():
            fields = [OptionField(key, OPTION_LABELS.get(key, key), choices.get(key, []))
                      for key in KNOWN_OPTIONS.get(spec.name, ())]
            groups.setdefault(spec.group(lang), []).append(
                ReportEntry(spec.name, spec.title(lang), offered_formats(spec), fields))
        current = self._current_year()
        years = [(y, f"{y}-{y + 1}") for y in range(current, current - YEARS_SHOWN, -1)]
        return self.ctx.render(request, "staff/records.html", {
            "groups": [(g, sorted(e, key=lambda r: r.name)) for g, e in groups.items()],
            "years": years, "current_year": current})

    async def download(self, request: Request, user: StaffUser) -> Response:
        name, fmt = request.path_params["name"], request.path_params["fmt"]
        spec = (await run_in_threadpool(all_reports)).get(name)
        if spec is None or fmt not in offered_formats(spec):
            raise HTTPException(status_code=404)
        try:
            params = report_params(request.query_params, self._current_year())
        except BadInput as error:
            return self._refuse(request, error, "/staff/reports")
        try:
            data = await run_in_threadpool(build_report, spec, fmt, self.ctx.sessions,
                                           self.ctx.config, params, self.ctx.language(request))
        except (ValueError, LookupError) as error:
            log.info("report %s refused for %s: %s", name, user.name, error)
            return self._refuse(request, error, "/staff/reports")
        label = school_year(self.ctx.config, params.school_year, self._today()).label
        log.info("report %s.%s built for %s (%d bytes)", name, fmt, user.name, len(data))
        return Response(data, media_type=FORMATS[fmt],
                        headers=attachment(report_filename(spec, params, label, fmt)))

    # --- intake ----------------------------------------------------------------------

    async def intake(self, request: Request, user: StaffUser) -> Response:
        receipts = await run_in_threadpool(intake.list_receipts, self.ctx.sessions)
        return self.ctx.render(request, "staff/intake.html", {
            "receipts": receipts, "sources": SOURCE_LABELS, "today": self._today()})

    def _read(self, path: Path, request: Request) -> tuple[list[intake.ReceiptLine], list[str]]:
        """The receipt file's lines, or the reasons its rows were refused."""
        try:
            return intake.read_receipt_file(path, library=self.ctx.config), []
        except intake.IntakeError as error:
            return [], _problems(error, *self._says(request))

    def _preview(self, request: Request, header: ReceiptHeader, token: str,
                 lines: list[intake.ReceiptLine], errors: list[str],
                 status_code: int = 200) -> Response:
        return self.ctx.render(request, "staff/intake_preview.html", {
            "h": header, "token": token, "lines": lines, "errors": errors,
            "sources": SOURCE_LABELS, "copies": sum(line.quantity for line in lines),
            "total": sum(line_total(line) for line in lines), "line_total": line_total},
            status_code=status_code)

    async def preview(self, request: Request, user: StaffUser, form: FormData) -> Response:
        try:
            header = receipt_header(form)
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise BadInput("Choose an Excel (.xlsx) or CSV (.csv) receipt file.")
            token, path = await run_in_threadpool(self.uploads.put, upload)
        except BadInput as error:
            return self._refuse(request, error, "/staff/intake")
        lines, errors = await run_in_threadpool(self._read, path, request)
        if errors:
            self.uploads.drop(path)
            return self._preview(request, header, "", [], errors, status_code=400)
        return self._preview(request, header, token, lines, [])

    async def confirm(self, request: Request, user: StaffUser, form: FormData) -> Response:
        try:
            header = receipt_header(form)
            path = self.uploads.claim(str(form.get("token", "")))
        except BadInput as error:
            return self._refuse(request, error, "/staff/intake")
        lines, errors = await run_in_threadpool(self._read, path, request)
        if errors:
            self.uploads.drop(path)
            return self._preview(request, header, "", [], errors, status_code=400)
        try:
            result = await run_in_threadpool(
                partial(intake.receive, self.ctx.sessions, self.ctx.config, header.receipt_no,
                        header.received_on, header.source, lines,
                        source_detail=header.source_detail, note=header.note, by=user.name,
                        now=self.ctx.clock()))
        except (intake.IntakeError, ValueError) as error:
            # Nothing was written: the same preview again, with why, to confirm once fixed.
            self.uploads.release(path)
            return self._preview(request, header, str(form.get("token")), lines,
                                 _problems(error, *self._says(request)), status_code=400)
        self.uploads.drop(path)
        log.info("intake: %s received receipt %s (%s): %d copies", user.name, result.number,
                 header.receipt_no, result.copies)
        return RedirectResponse(f"/staff/intake/{result.number}?new=1", status_code=303)

    async def receipt(self, request: Request, user: StaffUser) -> Response:
        try:
            detail = await run_in_threadpool(intake.receipt_detail, self.ctx.sessions,
                                             request.path_params["number"])
        except intake.IntakeError as error:
            raise HTTPException(status_code=404) from error
        return self.ctx.render(request, "staff/intake_receipt.html", {
            "d": detail, "sources": SOURCE_LABELS, "new": bool(request.query_params.get("new"))})

    # --- labels and cards ------------------------------------------------------------

    def _labels_form(self, request: Request, values: Mapping[str, Any], error: str | None = None,
                     status_code: int = 200) -> Response:
        layouts, default = layout_choices(self.ctx.config)
        return self.ctx.render(request, "staff/labels.html", {
            "v": values, "kinds": self._kind_choices(self.ctx.language(request)), "error": error,
            "layouts": layouts, "default_layout": default}, status_code=status_code)

    async def labels(self, request: Request, user: StaffUser) -> Response:
        return self._labels_form(request, request.query_params)

    async def label_sheet(self, request: Request, user: StaffUser) -> Response:
        query = request.query_params
        try:
            choice = label_choice(query)
            pdf = await run_in_threadpool(_pdf_bytes, label_sheet_pdf, self.ctx.sessions,
                                          self.ctx.config, choice)
        except (ValueError, LookupError) as error:
            return self._labels_form(request, query, _error_text(error, *self._says(request)), 400)
        log.info("labels printed by %s: %s", user.name, choice)
        return Response(pdf, media_type=FORMATS["pdf"], headers=attachment(labels_filename(choice)))

    async def _cards_form(self, request: Request, values: Mapping[str, Any],
                          error: str | None = None, status_code: int = 200) -> Response:
        return self.ctx.render(request, "staff/labels_cards.html", {
            "v": values, "classes": await self._db(class_names), "error": error,
            "reader_kinds": [k.value for k in ReaderKind]}, status_code=status_code)

    async def cards(self, request: Request, user: StaffUser) -> Response:
        return await self._cards_form(request, request.query_params)

    async def card_sheet(self, request: Request, user: StaffUser) -> Response:
        query = request.query_params
        try:
            choice = card_choice(query)
            # The QR leads to this server's catalogue as the librarian's browser reached it.
            choice["opac_url"] = str(request.base_url).rstrip("/")
            pdf = await run_in_threadpool(_pdf_bytes, library_cards_pdf, self.ctx.sessions,
                                          self.ctx.config, choice)
        except (ValueError, LookupError) as error:
            return await self._cards_form(request, query,
                                          _error_text(error, *self._says(request)), 400)
        log.info("cards printed by %s: %s", user.name,
                 {k: v for k, v in choice.items() if k != "reader_codes"})
        return Response(pdf, media_type=FORMATS["pdf"], headers=attachment(cards_filename(choice)))

    def routes(self) -> list[BaseRoute]:
        page, action = self.auth.page, self.auth.action
        return [
            Route("/staff/reports", page("viewer")(self.reports), methods=["GET"]),
            Route("/staff/reports/{name}.{fmt}", page("viewer")(self.download), methods=["GET"]),
            Route("/staff/intake", page("librarian")(self.intake), methods=["GET"]),
            Route("/staff/intake/preview", action("librarian")(self.preview), methods=["POST"]),
            Route("/staff/intake/confirm", action("librarian")(self.confirm), methods=["POST"]),
            Route("/staff/intake/{number:int}", page("librarian")(self.receipt), methods=["GET"]),
            Route("/staff/labels", page("librarian")(self.labels), methods=["GET"]),
            Route("/staff/labels/sheet.pdf", page("librarian")(self.label_sheet), methods=["GET"]),
            Route("/staff/cards", page("librarian")(self.cards), methods=["GET"]),
            Route("/staff/cards/cards.pdf", page("librarian")(self.card_sheet), methods=["GET"]),
        ]

    def close(self) -> None:
        self.uploads.close()


__all__ = ["RECORDS_VI", "BadInput", "RecordsPages", "UploadStore", "card_choice", "label_choice",
           "parse_options", "report_filename", "report_params", "slug"]
