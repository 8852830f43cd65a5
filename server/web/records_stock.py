"""Staff pages for the stocktake (kiểm kê) and weeding (thanh lý).

/staff/stocktake: start one, a scan box (a USB scanner types a code and Enter; an RFID
reader's dump or a typed batch may put many codes in the box at once), the progress per
shelf, the missing list, and the close with its result. /staff/weeding: a form with the
decision and a list of codes, a preview (counts, problems, the 10% warning), then the
confirmation; the past decisions with their printable lists.

Everything goes through server/stocktake.py and server/weeding.py, as the CLI does.
Viewers see; librarians and admins act. The forms work without JavaScript; a scan posted
twice is harmless (a copy counts once per stocktake).
"""

from __future__ import annotations

import datetime as dt
from itertools import islice
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server import stocktake, weeding
from server.models import StaffUser
from server.stocktake import StocktakeError
from server.web.auth import Auth
from server.web.context import WebContext
from server.weeding import REASONS, WeedingError

__all__ = ["MAX_CODES", "STOCK_VI", "StockPages"]

# Codes taken from one post: a shelf's RFID inventory fits, a pasted register does not.
MAX_CODES = 2000
# Missing copies listed on the page; the printed list has them all.
MISSING_SHOWN = 1000

STOCK_VI: dict[str, str] = {
    "Stocktake": "Kiểm kê",
    "Weeding": "Thanh lý",
    "Stocktake no. {number}: {name}": "Đợt kiểm kê số {number}: {name}",
    "Started {time} by {name}": "Bắt đầu lúc {time}, người thực hiện: {name}",
    "No stocktake is open.": "Không có đợt kiểm kê nào đang mở.",
    "Start a stocktake": "Bắt đầu đợt kiểm kê",
    "Name of the stocktake": "Tên đợt kiểm kê",
    "Scan books": "Quét sách",
    "Shelf being counted": "Giá đang kiểm",
    "Scan or type codes (barcode, ĐKCB or RFID; several at once are fine)":
        "Quét hoặc gõ mã (mã vạch, ĐKCB hoặc RFID; nhiều mã một lần cũng được)",
    "Count them": "Kiểm",
    "Counted {counted}, already counted {already}, unknown {unknown}.":
        "Đã kiểm {counted}, đã kiểm trước đó {already}, mã lạ {unknown}.",
    "Progress per shelf": "Tiến độ theo giá",
    "Shelf location": "Giá sách",
    "Copies expected": "Cần kiểm",
    "Copies seen": "Đã thấy",
    "Copies left": "Còn lại",
    "No shelf": "Chưa xếp giá",
    "All shelves": "Tất cả các giá",
    "Stock (copies)": "Vốn sách (bản)",
    "Copies not found yet": "Sách chưa thấy",
    "Close the stocktake": "Kết thúc đợt kiểm kê",
    "Every shelf has been counted": "Đã kiểm xong mọi giá",
    "Mark the missing copies as lost (with a note in the ĐKCB register)":
        "Ghi các bản không thấy là mất (kèm ghi chú trong sổ đăng ký cá biệt)",
    "Close it": "Kết thúc đợt",
    "Tick “Every shelf has been counted” to close the stocktake.":
        "Hãy đánh dấu “Đã kiểm xong mọi giá” để kết thúc đợt kiểm kê.",
    "Stocktake no. {number} is closed.": "Đã kết thúc đợt kiểm kê số {number}.",
    "Started stocktake no. {number}.": "Đã bắt đầu đợt kiểm kê số {number}.",
    "Past stocktakes": "Các đợt kiểm kê trước",
    "No stocktake has been closed yet.": "Chưa có đợt kiểm kê nào kết thúc.",
    "Running no.": "Số thứ tự",
    "Closed": "Kết thúc",
    "Copies present": "Còn",
    "Copies missing": "Mất",
    "Copies misplaced": "Xếp nhầm giá",
    "Value missing (đ)": "Giá trị mất (đ)",
    "Print the list (PDF)": "In danh sách (PDF)",
    "The list in Excel": "Danh sách (Excel)",
    "Missing copies": "Sách không thấy",
    "Not found in stocktake no. {number}: {count} copies.":
        "Không thấy trong đợt kiểm kê số {number}: {count} bản.",
    "Only the first {count} are shown here; the printed list has them all.":
        "Trang này chỉ hiện {count} bản đầu; danh sách in có đủ.",
    "Author": "Tác giả",
    "Price (đ)": "Giá tiền (đ)",
    "Back to the stocktake": "Về trang kiểm kê",
    "Scan or type at least one code.": "Hãy quét hoặc gõ ít nhất một mã.",
    "Too many codes at once (at most {count}).": "Quá nhiều mã một lần (tối đa {count}).",
    "New weeding decision": "Quyết định thanh lý mới",
    "Decision no.": "Số quyết định",
    "Decision date": "Ngày quyết định",
    "Reason for weeding": "Lý do thanh lý",
    "Codes of the copies (barcode or ĐKCB, one a line)":
        "Mã các bản sách (mã vạch hoặc ĐKCB, mỗi dòng một mã)",
    "Note on the decision": "Ghi chú",
    "Check the list": "Kiểm tra danh sách",
    "Check before withdrawing": "Kiểm tra trước khi thanh lý",
    "{count} copies can be withdrawn, worth {value} đ: {share} of the stock of {stock} copies.":
        "Có thể thanh lý {count} bản, trị giá {value} đ: {share} vốn sách hiện có ({stock} bản).",
    "These lines cannot be withdrawn; correct the list and check again:":
        "Các dòng sau không thanh lý được; hãy sửa danh sách rồi kiểm tra lại:",
    "This round is over 10% of the stock. Confirm that the decision covers it.":
        "Đợt này vượt quá 10% vốn sách. Hãy xác nhận quyết định cho phép điều này.",
    "I confirm withdrawing more than 10% of the stock": "Tôi xác nhận thanh lý quá 10% vốn sách",
    "Withdraw these copies": "Thanh lý các bản này",
    "Withdrew {count} copies under decision {decision} (no. {number} in part II).":
        "Đã thanh lý {count} bản theo quyết định {decision} (số thứ tự {number} trong phần II).",
    "Give the decision's date (dd/mm/yyyy).": "Hãy ghi ngày quyết định (ngày/tháng/năm).",
    "Past decisions": "Các quyết định đã có",
    "No weeding decision yet.": "Chưa có quyết định thanh lý nào.",
    "Copies withdrawn": "Số bản thanh lý",
    "Value withdrawn (đ)": "Giá trị thanh lý (đ)",
    "Printable list": "Danh sách in",
    "Withdrawn copies keep their rows and ĐKCB numbers; they leave the catalogue search.":
        "Bản sách thanh lý vẫn được giữ trong sổ cùng số ĐKCB; chúng không còn hiện khi tra cứu.",
}


def _codes(value: object) -> list[str]:
    return [code for code in str(value or "").replace(",", " ").replace(";", " ").split() if code]


def _date(value: object) -> dt.date | None:
    text = str(value or "").strip()
    for form in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, form).date()
        except ValueError:
            pass
    return None


def _money(value: int | None) -> str:
    return f"{value or 0:,}".replace(",", ".")


class StockPages:
    def __init__(self, ctx: WebContext, auth: Auth) -> None:
        self.ctx = ctx
        self.auth = auth
        ctx.catalogue.add(STOCK_VI)

    def _in_thread(self, work: Any, *args: Any, **kwargs: Any) -> Any:
        return run_in_threadpool(work, *args, **kwargs)

    def _lang(self, request: Request) -> str:
        return self.ctx.language(request)

    # --- stocktake --------------------------------------------------------------------

    def _stocktake_values(self) -> dict[str, Any]:
        sessions = self.ctx.sessions
        current = stocktake.open_stocktake(sessions)
        shelves = stocktake.progress(sessions, current.id) if current else []
        return {"current": current, "shelves": shelves,
                "expected": sum(s.expected for s in shelves),
                "seen": sum(s.seen for s in shelves),
                "past": [s for s in stocktake.stocktakes(sessions) if s.closed_at is not None],
                "money": _money, "reasons": REASONS}

    async def _stocktake_page(self, request: Request, *, status_code: int = 200,
                              **values: Any) -> Response:
        base = await self._in_thread(self._stocktake_values)
        return self.ctx.render(request, "staff/stocktake.html",
                               {**base, "result": None, "message": None, "error": None,
                                "shelf": "", **values}, status_code=status_code)

    async def stocktake_page(self, request: Request, user: StaffUser) -> Response:
        return await self._stocktake_page(request)

    async def start(self, request: Request, user: StaffUser, form: FormData) -> Response:
        _ = self.ctx.catalogue.translator(self._lang(request))
        try:
            opened = await self._in_thread(stocktake.start, self.ctx.sessions,
                                           str(form.get("name", "")), user.name,
                                           now=self.ctx.clock())
        except StocktakeError as error:
            return await self._stocktake_page(request, status_code=409,
                                              error=error.text(self._lang(request)))
        return await self._stocktake_page(
            request, message=_("Started stocktake no. {number}.", number=opened.number))

    async def scan(self, request: Request, user: StaffUser, form: FormData) -> Response:
        _ = self.ctx.catalogue.translator(self._lang(request))
        shelf = " ".join(str(form.get("shelf", "")).split())[:100]
        codes = _codes(form.get("codes"))
        if not codes:
            return await self._stocktake_page(request, status_code=400, shelf=shelf,
                                              error=_("Scan or type at least one code."))
        if len(codes) > MAX_CODES:
            return await self._stocktake_page(request, status_code=400, shelf=shelf, error=_(
                "Too many codes at once (at most {count}).", count=MAX_CODES))
        current = await self._in_thread(stocktake.open_stocktake, self.ctx.sessions)
        if current is None:
            return await self._stocktake_page(request, status_code=409,
                                              error=_("No stocktake is open."))
        try:
            result = await self._in_thread(stocktake.scan, self.ctx.sessions, current.id, codes,
                                           shelf=shelf or None, station="web-desk",
                                           now=self.ctx.clock())
        except StocktakeError as error:
            return await self._stocktake_page(request, status_code=409, shelf=shelf,
                                              error=error.text(self._lang(request)))
        return await self._stocktake_page(request, result=result, shelf=shelf)

    async def close(self, request: Request, user: StaffUser, form: FormData) -> Response:
        _ = self.ctx.catalogue.translator(self._lang(request))
        current = await self._in_thread(stocktake.open_stocktake, self.ctx.sessions)
        if current is None:
            return await self._stocktake_page(request, status_code=409,
                                              error=_("No stocktake is open."))
        if form.get("confirm") != "yes":
            return await self._stocktake_page(request, status_code=400, error=_(
                "Tick “Every shelf has been counted” to close the stocktake."))
        try:
            await self._in_thread(stocktake.close, self.ctx.sessions, current.id, user.name,
                                  mark_missing=form.get("mark_missing") == "yes",
                                  now=self.ctx.clock())
        except StocktakeError as error:
            return await self._stocktake_page(request, status_code=409,
                                              error=error.text(self._lang(request)))
        return await self._stocktake_page(
            request, message=_("Stocktake no. {number} is closed.", number=current.number))

    async def missing(self, request: Request, user: StaffUser) -> Response:
        wanted = request.query_params.get("number", "")

        def load() -> tuple[Any, list[stocktake.MissingCopy], int] | None:
            found = [s for s in stocktake.stocktakes(self.ctx.sessions)
                     if not wanted or str(s.number) == wanted]
            if not found:
                return None
            chosen = found[0]
            copies = stocktake.missing_list(self.ctx.sessions, chosen.id)
            shown = list(islice(copies, MISSING_SHOWN))
            total = len(shown) + sum(1 for _copy in copies)
            return chosen, shown, total

        loaded = await self._in_thread(load)
        if loaded is None:
            return self.ctx.render(request, "staff/message.html",
                                   {"title": "Not found", "message": "Not found", "error": True},
                                   status_code=404)
        chosen, shown, total = loaded
        return self.ctx.render(request, "staff/stocktake_missing.html", {
            "stocktake": chosen, "copies": shown, "total": total, "limit": MISSING_SHOWN,
            "money": _money})

    # --- weeding --------------------------------------------------------------------

    async def _weeding_page(self, request: Request, *, status_code: int = 200,
                            **values: Any) -> Response:
        past = await self._in_thread(weeding.withdrawals, self.ctx.sessions)
        today = self.ctx.clock().astimezone(self.ctx.zone).date()
        defaults = {"decision_no": "", "decided_on": today.isoformat(), "reason": "",
                    "codes": "", "note": "", "proposal": None, "message": None, "error": None,
                    "done": None}
        return self.ctx.render(request, "staff/weeding.html", {
            **defaults, **values, "past": past, "reasons": REASONS, "money": _money,
            }, status_code=status_code)

    async def weeding_page(self, request: Request, user: StaffUser) -> Response:
        return await self._weeding_page(request)

    def _round(self, form: FormData) -> dict[str, Any]:
        return {"decision_no": " ".join(str(form.get("decision_no", "")).split())[:64],
                "decided_on": str(form.get("decided_on", "")).strip()[:10],
                "reason": str(form.get("reason", "")),
                "codes": "\n".join(_codes(form.get("codes"))),
                "note": " ".join(str(form.get("note", "")).split())[:300]}

    async def preview(self, request: Request, user: StaffUser, form: FormData) -> Response:
        _ = self.ctx.catalogue.translator(self._lang(request))
        values = self._round(form)
        codes = values["codes"].split()
        if not codes:
            return await self._weeding_page(request, status_code=400, **values,
                                            error=_("Scan or type at least one code."))
        if len(codes) > MAX_CODES:
            return await self._weeding_page(request, status_code=400, **values, error=_(
                "Too many codes at once (at most {count}).", count=MAX_CODES))
        try:
            proposal = await self._in_thread(weeding.propose, self.ctx.sessions, codes,
                                             values["reason"])
        except WeedingError as error:
            return await self._weeding_page(request, status_code=400, **values,
                                            error=error.text(self._lang(request)))
        return await self._weeding_page(request, **values, proposal=proposal)

    async def confirm(self, request: Request, user: StaffUser, form: FormData) -> Response:
        _ = self.ctx.catalogue.translator(self._lang(request))
        values = self._round(form)
        decided_on = _date(values["decided_on"])
        codes = values["codes"].split()
        if decided_on is None:
            return await self._weeding_page(request, status_code=400, **values,
                                            error=_("Give the decision's date (dd/mm/yyyy)."))
        if not codes or len(codes) > MAX_CODES:
            return await self._weeding_page(request, status_code=400, **values,
                                            error=_("Scan or type at least one code."))
        try:
            items = [(code, weeding.parse_reason(values["reason"])) for code in codes]
            done = await self._in_thread(
                weeding.withdraw, self.ctx.sessions, self.ctx.config, values["decision_no"],
                decided_on, items, note=values["note"] or None, by=user.name,
                allow_over_10_percent=form.get("allow_over") == "yes", now=self.ctx.clock())
        except WeedingError as error:
            proposal = None
            if values["reason"] and codes:
                try:
                    proposal = await self._in_thread(weeding.propose, self.ctx.sessions, codes,
                                                     values["reason"])
                except WeedingError:
                    proposal = None
            return await self._weeding_page(request, status_code=409, **values, proposal=proposal,
                                            error=error.text(self._lang(request)))
        message = _("Withdrew {count} copies under decision {decision} (no. {number} in part II).",
                    count=len(items), decision=done.decision_no, number=done.number)
        return await self._weeding_page(request, message=message, done=done)

    def routes(self) -> list[BaseRoute]:
        page, action = self.auth.page, self.auth.action
        return [
            Route("/staff/stocktake", page("viewer")(self.stocktake_page), methods=["GET"]),
            Route("/staff/stocktake/start", action("librarian")(self.start), methods=["POST"]),
            Route("/staff/stocktake/scan", action("librarian")(self.scan), methods=["POST"]),
            Route("/staff/stocktake/close", action("librarian")(self.close), methods=["POST"]),
            Route("/staff/stocktake/missing", page("viewer")(self.missing), methods=["GET"]),
            Route("/staff/weeding", page("viewer")(self.weeding_page), methods=["GET"]),
            Route("/staff/weeding/preview", action("librarian")(self.preview), methods=["POST"]),
            Route("/staff/weeding/confirm", action("librarian")(self.confirm), methods=["POST"]),
        ]
