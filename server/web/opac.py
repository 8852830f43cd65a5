"""The public catalogue (OPAC): search, a page per title, and a reader's own loans.

No login to search. A reader who wants their loans signs in with the card number and
PIN (the kiosk's), in a session of their own: cookie `thuvien_reader`, path `/ban-doc`,
so it is never sent to the staff pages and a staff cookie never opens a reader's page.
The loans page has no reader id in its address: it always shows the signed-in reader,
so there is no other reader's id to try. The kiosk receipt's QR code carries
`<site>/ban-doc/<anything>`; every such address lands on the same page.

Lockout: failures count per card (5 in 15 minutes lock the card for 15 minutes) and per
client address (30: a school's computers share one address behind NAT, so the limit is
higher, but one machine still cannot walk through every card's PIN).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server import search
from server.models import Copy, Loan, LoginThrottle, Reader, ReaderSession, Title
from server.pins import hash_pin, verify_pin
from server.web.accounts import LOCK_FOR, locked_until, record_failure
from server.web.context import WebContext

READER_PATH = "/ban-doc"
READER_COOKIE = "thuvien_reader"
READER_CSRF_COOKIE = "thuvien_reader_csrf"
# A phone may be a parent's or lie on a desk at school: sessions are short.
SESSION_LIFETIME = dt.timedelta(hours=1)
MAX_CARD_FAILURES = 5
MAX_ADDRESS_FAILURES = 30
_CARD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Compared with when the card is unknown, so a wrong card costs as long as a wrong PIN.
_DUMMY_HASH = hash_pin("no reader has this PIN")
PER_PAGE = 20

OPAC_VI: dict[str, str] = {
    "Library catalogue": "Tra cứu sách",
    "Search the catalogue": "Tìm sách trong thư viện",
    "Title, author, subject, ISBN or ĐKCB": "Tên sách, tác giả, môn loại, ISBN hoặc số ĐKCB",
    "Search": "Tìm",
    "Search in": "Tìm trong",
    "Everything": "Tất cả",
    "Title": "Tên sách",
    "Author": "Tác giả",
    "Subject": "Môn loại",
    "Any subject": "Mọi môn loại",
    "Any kind": "Mọi loại sách",
    "Kind of book": "Loại sách",
    "GK": "Sách giáo khoa",
    "TK": "Sách tham khảo",
    "NV": "Sách nghiệp vụ",
    "TN": "Sách thiếu nhi",
    "{count} results for “{query}”": "{count} kết quả cho “{query}”",
    "No book matches “{query}”.": "Không có sách nào khớp với “{query}”.",
    "Type a few words of a title or an author; marks are optional: “de men” finds “Dế Mèn”.":
        "Gõ vài chữ của tên sách hoặc tác giả, có dấu hay không dấu đều được: “de men” sẽ tìm thấy “Dế Mèn”.",
    "{available} of {copies} available": "{available}/{copies} cuốn có sẵn",
    "Year": "Năm",
    "Publisher": "Nhà xuất bản",
    "Shelf mark": "Ký hiệu xếp giá",
    "Language": "Ngôn ngữ",
    "Copies": "Các bản sách",
    "ĐKCB": "Số ĐKCB",
    "Location": "Vị trí",
    "Status": "Tình trạng",
    "Available": "Có sẵn",
    "On loan, due {due}": "Đang cho mượn, hạn trả {due}",
    "Reference only": "Chỉ đọc tại thư viện",
    "Not available": "Không phục vụ",
    "This title has no copies in the library.": "Thư viện chưa có bản nào của đầu sách này.",
    "Previous": "Trang trước",
    "Next": "Trang sau",
    "Page {page} of {pages}": "Trang {page}/{pages}",
    "Back to the search": "Quay lại tìm kiếm",
    "No such title.": "Không có đầu sách này.",
    "The search could not be understood: {reason}": "Không hiểu yêu cầu tìm kiếm: {reason}",
    # the reader's page
    "My loans": "Sách tôi đang mượn",
    "Reader sign-in": "Đăng nhập bạn đọc",
    "Sign in with the number on your library card and your PIN to see your loans.":
        "Đăng nhập bằng số trên thẻ thư viện và mã PIN để xem sách bạn đang mượn.",
    "Card number": "Số thẻ",
    "PIN": "Mã PIN",
    "Wrong card number or PIN.": "Sai số thẻ hoặc mã PIN.",
    "This card has no PIN yet. Please ask the librarian to set one.":
        "Thẻ này chưa có mã PIN. Hãy nhờ cán bộ thư viện đặt mã PIN cho bạn.",
    "Too many failed sign-ins. Please try again after {time} ({minutes} minutes).":
        "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {time} ({minutes} phút).",
    "Hello {name}": "Xin chào {name}",
    "Class {name}": "Lớp {name}",
    "You have no books on loan.": "Bạn không mượn cuốn sách nào.",
    "Borrowed on": "Ngày mượn",
    "Due": "Hạn trả",
    "Overdue by {days} days": "Quá hạn {days} ngày",
    "Due today": "Hạn trả hôm nay",
    "You have signed out.": "Bạn đã đăng xuất.",
    "Your session has ended. Please sign in again.":
        "Phiên làm việc đã hết hạn. Vui lòng đăng nhập lại.",
}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _same(given: str, expected: str | None) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), str(expected).encode())


# --- reader sign-in: database logic ----------------------------------------------------

@dataclass(frozen=True)
class SignIn:
    outcome: Literal["ok", "wrong", "no_pin", "locked"]
    token: str | None = None
    locked_until: dt.datetime | None = None


def _throttle_keys(card: str, client: str | None) -> dict[str, int]:
    keys = {f"reader:{card[:64]}": MAX_CARD_FAILURES}
    if client:
        keys[f"reader-addr:{client[:64]}"] = MAX_ADDRESS_FAILURES
    return keys


def sign_in(db: Session, card: str, pin: str, client: str | None, now: dt.datetime) -> SignIn:
    """Check a card and PIN, with lockout; on success open a session and return its token."""
    card = card.strip().upper()
    if not _CARD.match(card):
        card = "?"
    keys = _throttle_keys(card, client)
    until = locked_until(db, keys, now)
    if until is not None:
        return SignIn("locked", locked_until=until)
    reader = db.scalar(select(Reader).where(Reader.code == card)) if card != "?" else None
    if reader is not None and reader.pin_hash is None:
        # Not a guess at a PIN, but it tells that the card exists: count it per address.
        addr = {k: v for k, v in keys.items() if k.startswith("reader-addr:")}
        until = record_failure(db, addr, now) if addr else None
        return SignIn("locked", locked_until=until) if until else SignIn("no_pin")
    try:
        good = verify_pin(pin, reader.pin_hash if reader and reader.pin_hash else _DUMMY_HASH) if pin else False
    except ValueError:
        good = False  # a damaged stored hash lets nobody in
    if reader is None or not good:
        until = record_failure(db, keys, now)
        return SignIn("locked", locked_until=until) if until else SignIn("wrong")
    db.execute(delete(LoginThrottle).where(LoginThrottle.key == f"reader:{card}"))
    db.execute(delete(ReaderSession).where(ReaderSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    db.add(ReaderSession(token_hash=token_hash(token), reader_id=reader.id,
                         csrf_token=secrets.token_urlsafe(32), created_at=now,
                         expires_at=now + SESSION_LIFETIME))
    db.flush()
    return SignIn("ok", token=token)


def find_session(db: Session, token: str, now: dt.datetime) -> tuple[ReaderSession, Reader] | None:
    if not token or len(token) > 128:
        return None
    row = db.scalar(select(ReaderSession).where(ReaderSession.token_hash == token_hash(token)))
    if row is None:
        return None
    reader = db.get(Reader, row.reader_id)
    if row.expires_at <= now or reader is None:
        db.delete(row)
        return None
    return row, reader


@dataclass(frozen=True)
class LoanLine:
    title_id: int
    title: str
    accession_number: str
    loaned_at: dt.datetime
    due_on: dt.date


def loans_of(db: Session, reader_id: int) -> list[LoanLine]:
    rows = db.execute(
        select(Title.id, Title.title, Copy.accession_number, Loan.loaned_at, Loan.due_on)
        .join(Copy, Copy.id == Loan.copy_id).join(Title, Title.id == Copy.title_id)
        .where(Loan.reader_id == reader_id).order_by(Loan.due_on, Title.title)).all()
    return [LoanLine(*row) for row in rows]


# --- pages ---------------------------------------------------------------------------------

def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value or default), low), high)
    except ValueError:
        return default


class Opac:
    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.books = search.Catalogue(ctx.engine)
        ctx.catalogue.add(OPAC_VI)
        ctx.templates.env.filters.setdefault("vn_date", _vn_date)

    def _today(self) -> dt.date:
        return self.ctx.clock().astimezone(self.ctx.zone).date()

    # -- search and titles -------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        params = request.query_params
        text = search.normalize_query(params.get("q", ""))
        kind = params.get("kind") or None
        subject = (params.get("subject") or "").strip()[:200] or None
        field = params.get("field") or "all"
        page = _int(params.get("page"), 1, 1, 500)
        error: str | None = None
        results: search.Results | None = None
        subjects = await run_in_threadpool(self.books.subjects)
        try:
            query = search.SearchQuery(text, kind=kind, subject=subject, field=field,  # type: ignore[arg-type]
                                       page=page, per_page=PER_PAGE)
        except ValueError as exc:
            error, query = str(exc), search.SearchQuery("")
        if text and error is None:
            results = await run_in_threadpool(self.books.search, query)
        values: dict[str, Any] = {"q": text, "query": query, "results": results, "error": error,
                                  "kinds": search.KINDS, "subjects": subjects}
        return self.ctx.render(request, "opac/search.html", values,
                               status_code=400 if error else 200)

    async def title(self, request: Request) -> Response:
        title_id = _int(request.path_params.get("title_id"), 0, 0, 2**62)
        record = await run_in_threadpool(self.books.title, title_id) if title_id else None
        if record is None:
            return self.ctx.render(request, "opac/message.html",
                                   {"message": "No such title."}, status_code=404)
        return self.ctx.render(request, "opac/title.html",
                               {"record": record, "back": _back_to_search(request)})

    # -- the reader's page ----------------------------------------------------------------

    def _secure(self, request: Request) -> bool:
        return self.ctx.web.cookie_secure or request.url.scheme == "https"

    def _cookie(self, response: Response, request: Request, name: str, value: str,
                max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path=READER_PATH, httponly=True,
                            samesite="lax", secure=self._secure(request))

    async def _current(self, request: Request) -> tuple[ReaderSession, Reader, list[LoanLine]] | None:
        token = request.cookies.get(READER_COOKIE, "")
        if not token:
            return None
        now = self.ctx.clock()

        def look_up() -> tuple[ReaderSession, Reader, list[LoanLine]] | None:
            with self.ctx.sessions.begin() as db:
                found = find_session(db, token, now)
                return None if found is None else (*found, loans_of(db, found[1].id))

        return await run_in_threadpool(look_up)

    def _sign_in_page(self, request: Request, *, error: str | None = None,
                      error_values: dict[str, Any] | None = None, notice: str | None = None,
                      card: str = "", status_code: int = 200) -> Response:
        csrf = request.cookies.get(READER_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = self.ctx.render(request, "opac/reader_login.html", {
            "reader_csrf": csrf, "error": error, "error_values": error_values or {},
            "notice": notice, "card": card}, status_code=status_code)
        self._cookie(response, request, READER_CSRF_COOKIE, csrf, max_age=None)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def reader(self, request: Request) -> Response:
        found = await self._current(request)
        if found is None:
            notice = "You have signed out." if request.query_params.get("bye") else None
            if request.cookies.get(READER_COOKIE):
                notice = "Your session has ended. Please sign in again."
            # The QR code on a library card brings its number: only the PIN is left to type.
            card = request.query_params.get("card", "").strip().upper()[:64]
            response = self._sign_in_page(request, notice=notice, card=card)
            if request.cookies.get(READER_COOKIE):
                response.delete_cookie(READER_COOKIE, path=READER_PATH)
            return response
        row, reader, loans = found
        response = self.ctx.render(request, "opac/reader.html", {
            "reader": reader, "loans": loans, "today": self._today(),
            "reader_csrf": row.csrf_token})
        # A shared computer's back button must not show the last reader's loans.
        response.headers["Cache-Control"] = "no-store"
        return response

    async def receipt_link(self, _request: Request) -> Response:
        return RedirectResponse(READER_PATH, status_code=303)

    async def sign_in(self, request: Request) -> Response:
        form = await request.form()
        card = str(form.get("card", "")).strip()[:64]
        pin = str(form.get("pin", ""))[:64]
        if not _same(str(form.get("csrf_token", "")), request.cookies.get(READER_CSRF_COOKIE)):
            return self._sign_in_page(request, card=card, status_code=403, error=(
                "The form has expired or did not come from this site. Please try again."))
        client = request.client.host if request.client else None
        now = self.ctx.clock()

        def attempt() -> SignIn:
            with self.ctx.sessions.begin() as db:
                return sign_in(db, card, pin, client, now)

        result = await run_in_threadpool(attempt)
        if result.outcome == "locked":
            return self._sign_in_page(request, card=card, status_code=429, error=(
                "Too many failed sign-ins. Please try again after {time} ({minutes} minutes)."),
                error_values={"time": self.ctx.local_time(result.locked_until, False),
                              "minutes": math.ceil(LOCK_FOR.total_seconds() / 60)})
        if result.outcome == "no_pin":
            return self._sign_in_page(request, card=card, status_code=403, error=(
                "This card has no PIN yet. Please ask the librarian to set one."))
        if result.token is None:
            return self._sign_in_page(request, card=card, status_code=401,
                                      error="Wrong card number or PIN.")
        response = RedirectResponse(READER_PATH, status_code=303)
        self._cookie(response, request, READER_COOKIE, result.token,
                     max_age=int(SESSION_LIFETIME.total_seconds()))
        return response

    async def sign_out(self, request: Request) -> Response:
        found = await self._current(request)
        form = await request.form()
        if found is not None:
            if not _same(str(form.get("csrf_token", "")), found[0].csrf_token):
                return self._sign_in_page(request, status_code=403, error=(
                    "The form has expired or did not come from this site. Please try again."))
            session_id = found[0].id

            def close() -> None:
                with self.ctx.sessions.begin() as db:
                    db.execute(delete(ReaderSession).where(ReaderSession.id == session_id))

            await run_in_threadpool(close)
        response = RedirectResponse(f"{READER_PATH}?bye=1", status_code=303)
        response.delete_cookie(READER_COOKIE, path=READER_PATH)
        return response

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/sach/{title_id:int}", self.title, methods=["GET"]),
            Route(READER_PATH, self.reader, methods=["GET"]),
            Route(f"{READER_PATH}/dang-nhap", self.sign_in, methods=["POST"]),
            Route(f"{READER_PATH}/dang-xuat", self.sign_out, methods=["POST"]),
            # The receipt's QR code: whatever follows /ban-doc/ names nobody.
            Route(f"{READER_PATH}/{{rest:path}}", self.receipt_link, methods=["GET"]),
        ]


def _back_to_search(request: Request) -> str:
    """The results page the reader came from, if it was ours; else the empty search."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc == request.url.netloc and referer.path == "/" and referer.query:
        return f"/?{referer.query}"
    return "/"


def _vn_date(day: dt.date | dt.datetime | None) -> str:
    return "" if day is None else day.strftime("%d/%m/%Y")


def routes(ctx: WebContext) -> list[BaseRoute]:
    """The catalogue's routes, mounted at "/" by `server.web.app`."""
    return Opac(ctx).routes()
