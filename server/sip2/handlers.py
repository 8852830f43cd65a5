"""SIP2 requests answered through the circulation core, as the MQTT stations are.

Each SIP2 request becomes the same `protocol.Request` an MQTT station would send, handed
to the same `Circulation`. SIP2 has no request id, so a change (11, 09, 29, 65) gets one
derived from what identifies the transaction: the station, the message code, the patron,
the item and the client's transaction date. A client retrying a checkout repeats all of
these, so the core finds the id already answered and repeats its reply: it never lends
twice. Reads (23, 63, 17) get fresh ids: they change nothing.

`no block = Y` marks a transaction the machine already did while it could not reach us:
it goes to the core as an offline replay (`offline=True`, `at` = the transaction date),
so its conflicts are recorded and raised like those of an MQTT station's outbox.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import update

import protocol
from protocol import ErrorCode, Op
from protocol import sip2
from protocol.sip2 import Message
from server.circulation import Circulation, Outcome
from server.models import Reader, ReaderStatus
from server.sip2.config import Sip2Config

log = logging.getLogger("thuvien.sip2")

Publish = Callable[[Outcome], None]

_TEXTS: dict[str, dict[str, str]] = {
    "vi": {
        "no_holds": "Thư viện chưa nhận đặt trước sách.",
        "no_fines": "Thư viện không thu tiền phạt: không có khoản nào để trả.",
        "no_item_properties": "Máy chủ không lưu thuộc tính tài liệu.",
        "no_cancel": "Không thể huỷ giao dịch qua SIP2; vui lòng báo cán bộ thư viện.",
        "no_item": "Thiếu mã tài liệu.",
        "blocked_by": "Thẻ bị khoá bởi trạm {station}: {reason}",
        "card_blocked": "Thẻ đã bị khoá. Vui lòng gặp cán bộ thư viện.",
        "days_late": "Trả muộn {days} ngày.",
        "renewed": "Đã gia hạn {count} tài liệu.",
        "goodbye": "Cảm ơn bạn. Hẹn gặp lại!",
        "session_needs_patron": "Thiếu mã bạn đọc.",
    },
    "en": {
        "no_holds": "This library does not take holds.",
        "no_fines": "This library charges no fines: there is nothing to pay.",
        "no_item_properties": "The server does not keep item properties.",
        "no_cancel": "A transaction cannot be cancelled over SIP2; please see the librarian.",
        "no_item": "No item identifier.",
        "blocked_by": "Card blocked by station {station}: {reason}",
        "card_blocked": "Your card is blocked. Please see the librarian.",
        "days_late": "Returned {days} days late.",
        "renewed": "Renewed {count} items.",
        "goodbye": "Thank you. See you again!",
        "session_needs_patron": "No patron identifier.",
    },
}

# Our copy statuses as SIP2 circulation statuses (18).
_CIRCULATION = {
    "available": "03", "on_loan": "04", "lost": "12", "damaged": "06", "withdrawn": "01",
    "reference": "01",
}

# The messages this server answers for real (98 BX): holds, fee payment and item
# status updates are answered, honestly "no", so they are not listed as supported.
SUPPORTED = ("patron_status", "checkout", "checkin", "block_patron", "sc_acs_status", "resend",
             "login", "patron_information", "end_patron_session", "item_information",
             "renew", "renew_all")


def derived_id(station: str, code: str, patron: str, item: str, when: str) -> str:
    """The request id of a SIP2 transaction: the same transaction, the same id."""
    key = "\x1f".join((station, code, patron, item, when)).encode("utf-8")
    return "sip2-" + hashlib.sha256(key).hexdigest()[:40]


class Handlers:
    """One answer per request message, for a logged-in station; thread-safe (the core
    serializes its transactions)."""

    def __init__(self, circulation: Circulation, config: Sip2Config, site: str,
                 library_name: str, language: str = "vi", publish: Publish | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.circulation = circulation
        self.config = config
        self.institution = config.institution_id or site
        self.library_name = library_name
        self.texts = _TEXTS.get(language, _TEXTS["en"])
        self.zone = circulation.calendar.zone
        self.publish = publish
        self.clock = clock or circulation.clock
        self._by_code: dict[str, Callable[[str, Message], Message]] = {
            "99": self.sc_status, "23": self.patron_status, "63": self.patron_information,
            "11": self.checkout, "09": self.checkin, "29": self.renew, "65": self.renew_all,
            "17": self.item_information, "35": self.end_session, "37": self.fee_paid,
            "15": self.hold, "19": self.item_status_update, "01": self.block_patron,
            "25": self.patron_enable,
        }

    def handles(self, code: str) -> bool:
        return code in self._by_code

    def answer(self, station: str, message: Message) -> Message:
        return self._by_code[message.code](station, message)

    # --- helpers -------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.clock().astimezone(self.zone)

    def text(self, key: str, **values: Any) -> str:
        return self.texts[key].format(**values)

    def fit(self, text: str) -> str:
        """A value the wire can carry: no `|` or line breaks, at most 255 characters,
        and, in an encoding without Vietnamese letters, the letters without their marks."""
        text = " ".join(text.replace("|", "/").split())[:sip2.MAX_FIELD_CHARS]
        try:
            text.encode(self.config.encoding)
        except UnicodeEncodeError:
            plain = "".join(ch for ch in unicodedata.normalize("NFD", text.replace("đ", "d")
                                                               .replace("Đ", "D"))
                            if not unicodedata.combining(ch))
            text = plain.encode(self.config.encoding, "replace").decode(self.config.encoding)
        return text

    def when(self, message: Message, name: str = "transaction_date") -> dt.datetime | None:
        """A client's date as an aware time in the site's zone; None when blank or bad."""
        try:
            value = message.date(name, self.zone)
        except sip2.Sip2Error:
            return None
        return value

    def run(self, station: str, op: Op, args: dict[str, Any], *, request_id: str | None = None,
            offline: bool = False, at: dt.datetime | None = None) -> protocol.Reply:
        now = self.now()
        request = protocol.Request(
            id=request_id or f"sip2-{uuid.uuid4().hex}", op=op,
            at=min(at, now) if (offline and at is not None) else now, offline=offline,
            args=protocol.models.ARGS_BY_OP[op](**args))
        outcome = self.circulation.handle_request(request, station)
        if self.publish is not None and (outcome.entries or outcome.alerts):
            try:
                self.publish(outcome)
            except Exception:  # the answer is committed: a lost publish must not lose it
                log.exception("could not publish the ledger entries of %s", request.id)
        if outcome.repeated:
            log.info("%s: %s %s repeated: the stored answer", station, op.value, request.id)
        return outcome.reply

    def _screen(self, reply: protocol.Reply) -> list[str]:
        return [self.fit(reply.error.message)] if reply.error is not None else []

    @staticmethod
    def _date(day: dt.date | str | None) -> str:
        if day is None:
            return ""
        if isinstance(day, str):
            day = dt.date.fromisoformat(day)
        # Due at the end of the day, local time.
        return sip2.format_date(dt.datetime.combine(day, dt.time(23, 59, 59)))

    def _identify(self, station: str, patron: str, password: str | None) \
            -> tuple[protocol.Reply, bool | None]:
        """The core's patron.identify; the second value is CQ (None: no password given)."""
        pin = password if password else None
        if pin is not None and not (pin.isdigit() and 4 <= len(pin) <= 12):
            # Not a PIN any reader could have: the check fails, the rest is answered.
            reply = self.run(station, Op.PATRON_IDENTIFY, {"card": patron})
            return reply, False
        args = {"card": patron, **({"pin": pin} if pin else {})}
        reply = self.run(station, Op.PATRON_IDENTIFY, args)
        if reply.error is not None and reply.error.code == ErrorCode.WRONG_PIN:
            return self.run(station, Op.PATRON_IDENTIFY, {"card": patron}), False
        return reply, (True if pin else None)

    def _status_fields(self, reply: protocol.Reply, password_ok: bool | None) \
            -> tuple[str, dict[str, Any], protocol.IdentifyResult | None]:
        """Patron status, the common variable fields, and the result when known."""
        if not reply.ok:
            denied = sip2.patron_status("charge_privileges_denied", "renewal_privileges_denied",
                                        "recall_privileges_denied", "hold_privileges_denied")
            return denied, {"AE": "", "BL": False, "AF": self._screen(reply)}, None
        result = reply.result_as(protocol.IdentifyResult)
        flags: list[str] = ["recall_privileges_denied", "hold_privileges_denied"]
        if result.blocks:
            flags += ["charge_privileges_denied", "renewal_privileges_denied"]
        elif result.can_borrow == 0:
            flags.append("too_many_items_charged")
        if any(loan.overdue for loan in result.loans):
            flags.append("too_many_items_overdue")
        fields: dict[str, Any] = {"AE": self.fit(result.patron.name), "BL": True,
                                  "BH": "VND", "BV": "0"}
        if password_ok is not None:
            fields["CQ"] = password_ok
        if result.blocks:
            fields["AF"] = [self.text("card_blocked")]
        return sip2.patron_status(*flags), fields, result

    # --- messages ------------------------------------------------------------------

    def sc_status(self, station: str, message: Message) -> Message:
        return sip2.ACSStatus(
            online_status=True, checkin_ok=True, checkout_ok=True, acs_renewal_policy=True,
            status_update_ok=False, offline_ok=True,
            timeout_period=self.config.timeout_seconds, retries_allowed=self.config.retries,
            date_time_sync=self.now(), protocol_version="2.00", AO=self.institution,
            AM=self.fit(self.library_name), BX=sip2.supported_messages(*SUPPORTED),
            AN=station)

    def patron_status(self, station: str, message: Message) -> Message:
        patron = message.patron_identifier or ""
        reply, password_ok = self._identify(station, patron, message.patron_password)
        status, fields, _ = self._status_fields(reply, password_ok)
        return sip2.PatronStatusResponse(
            patron_status=status, language=message.language or "000",
            transaction_date=self.now(), AO=self.institution, AA=patron, **fields)

    def patron_information(self, station: str, message: Message) -> Message:
        patron = message.patron_identifier or ""
        reply, password_ok = self._identify(station, patron, message.patron_password)
        status, fields, result = self._status_fields(reply, password_ok)
        loans = result.loans if result else []
        overdue = [loan for loan in loans if loan.overdue]
        response = sip2.PatronInformationResponse(
            patron_status=status, language=message.language or "000",
            transaction_date=self.now(), hold_items_count=0, overdue_items_count=len(overdue),
            charged_items_count=len(loans), fine_items_count=0, recall_items_count=0,
            unavailable_holds_count=0, AO=self.institution, AA=patron, **fields)
        if result is not None:
            response.set("CB", len(loans) + result.can_borrow)
        wanted = (message.summary or "").ljust(10)
        lists = {"AT": overdue if wanted[1] == "Y" else None,
                 "AU": loans if wanted[2] == "Y" else None}
        start, end = _page(message.start_item, message.end_item)
        for field_id, chosen in lists.items():
            if chosen is not None:
                response.set(field_id, [loan.item for loan in chosen[start - 1:end]])
        return response

    def checkout(self, station: str, message: Message) -> Message:
        patron, item = message.patron_identifier or "", message.item_identifier or ""
        base = dict(ok=False, renewal_ok=False, magnetic_media="U", desensitize=False,
                    transaction_date=self.now(), AO=self.institution, AA=patron, AB=item,
                    AJ="", AH="")
        if message.flag("cancel"):
            return sip2.CheckoutResponse(**base, AF=[self.text("no_cancel")])
        if not item or not patron:
            return sip2.CheckoutResponse(**base, AF=[self.text("no_item" if not item
                                                               else "session_needs_patron")])
        offline = bool(message.flag("no_block"))
        at = self.when(message)
        if offline and message.nb_due_date and message.nb_due_date.strip():
            log.info("%s: offline checkout of %s to %s, due %s at the machine", station, item,
                     patron, message.nb_due_date)
        reply = self.run(station, Op.LOAN_CHECKOUT, {"patron": patron, "item": item},
                         request_id=derived_id(station, "11", patron, item,
                                               message.transaction_date or ""),
                         offline=offline, at=at)
        if not reply.ok:
            return sip2.CheckoutResponse(**base, AF=self._screen(reply))
        result = reply.result_as(protocol.CheckoutResult)
        base.update(ok=True, desensitize=True, AB=result.item, AJ=self.fit(result.title),
                    AH=self._date(result.due))
        return sip2.CheckoutResponse(**base)

    def checkin(self, station: str, message: Message) -> Message:
        item = message.item_identifier or ""
        base = dict(ok=False, resensitize=False, magnetic_media="U", alert=False,
                    transaction_date=self.now(), AO=self.institution, AB=item,
                    AQ=self.institution)
        if message.flag("cancel"):
            return sip2.CheckinResponse(**base, AF=[self.text("no_cancel")])
        if not item:
            return sip2.CheckinResponse(**base, AF=[self.text("no_item")])
        offline = bool(message.flag("no_block"))
        at = self.when(message, "return_date") or self.when(message)
        reply = self.run(station, Op.LOAN_RETURN, {"item": item},
                         request_id=derived_id(station, "09", "", item,
                                               message.transaction_date or ""),
                         offline=offline, at=at)
        if not reply.ok:
            # Not on loan, unknown: an item needing a person's look, hence the alert.
            return sip2.CheckinResponse(**{**base, "alert": True}, AF=self._screen(reply))
        result = reply.result_as(protocol.ReturnResult)
        base.update(ok=True, resensitize=True, AB=result.item, AJ=self.fit(result.title))
        screen = [self.text("days_late", days=result.days_late)] if result.was_overdue else []
        return sip2.CheckinResponse(**base, AF=screen)

    def renew(self, station: str, message: Message) -> Message:
        patron, item = message.patron_identifier or "", message.item_identifier or ""
        base = dict(ok=False, renewal_ok=False, magnetic_media="U", desensitize="U",
                    transaction_date=self.now(), AO=self.institution, AA=patron, AB=item,
                    AJ="", AH="")
        if not item:  # renewal by title (AJ) alone: we lend copies, not titles
            return sip2.RenewResponse(**base, AF=[self.text("no_item")])
        reply = self.run(station, Op.LOAN_RENEW, {"patron": patron or "-", "item": item},
                         request_id=derived_id(station, "29", patron, item,
                                               message.transaction_date or ""),
                         offline=bool(message.flag("no_block")), at=self.when(message))
        if not reply.ok:
            return sip2.RenewResponse(**base, AF=self._screen(reply))
        result = reply.result_as(protocol.RenewResult)
        base.update(ok=True, renewal_ok=True, AB=result.item, AJ=self.fit(result.title or ""),
                    AH=self._date(result.due))
        return sip2.RenewResponse(**base)

    def renew_all(self, station: str, message: Message) -> Message:
        patron = message.patron_identifier or ""
        reply, password_ok = self._identify(station, patron, message.patron_password)
        base = dict(transaction_date=self.now(), AO=self.institution)
        if not reply.ok or password_ok is False:
            return sip2.RenewAllResponse(ok=False, **base, AF=self._screen(reply))
        renewed: list[str] = []
        unrenewed: list[str] = []
        screen: list[str] = []
        for loan in reply.result_as(protocol.IdentifyResult).loans:
            answer = self.run(station, Op.LOAN_RENEW, {"patron": patron, "item": loan.item},
                              request_id=derived_id(station, "65", patron, loan.item,
                                                    message.transaction_date or ""))
            (renewed if answer.ok else unrenewed).append(loan.item)
        screen.append(self.text("renewed", count=len(renewed)))
        return sip2.RenewAllResponse(ok=True, renewed_count=len(renewed),
                                     unrenewed_count=len(unrenewed), **base, BM=renewed,
                                     BN=unrenewed, AF=screen)

    def item_information(self, station: str, message: Message) -> Message:
        item = message.item_identifier or ""
        reply = self.run(station, Op.ITEM_INFO, {"item": item or "-"})
        if not reply.ok:
            return sip2.ItemInformationResponse(
                circulation_status="01", transaction_date=self.now(), AB=item, AJ="",
                AF=self._screen(reply))
        result = reply.result_as(protocol.ItemInfoResult)
        response = sip2.ItemInformationResponse(
            circulation_status=_CIRCULATION.get(result.status, "01"), security_marker="00",
            fee_type="01", transaction_date=self.now(), AB=result.item,
            AJ=self.fit(result.title), BG=self.institution)
        if result.due is not None:
            response.set("AH", self._date(result.due))
        return response

    def end_session(self, station: str, message: Message) -> Message:
        return sip2.EndSessionResponse(end_session=True, transaction_date=self.now(),
                                       AO=self.institution, AA=message.patron_identifier or "",
                                       AF=[self.text("goodbye")])

    def fee_paid(self, station: str, message: Message) -> Message:
        log.warning("%s: fee paid for %s refused: there are no fines", station,
                    message.patron_identifier)
        return sip2.FeePaidResponse(payment_accepted=False, transaction_date=self.now(),
                                    AO=self.institution, AA=message.patron_identifier or "",
                                    BK=message.transaction_id, AF=[self.text("no_fines")])

    def hold(self, station: str, message: Message) -> Message:
        return sip2.HoldResponse(ok=False, available=False, transaction_date=self.now(),
                                 AO=self.institution, AA=message.patron_identifier or "",
                                 AB=message.get("AB"), AF=[self.text("no_holds")])

    def item_status_update(self, station: str, message: Message) -> Message:
        return sip2.ItemStatusUpdateResponse(item_properties_ok=False,
                                             transaction_date=self.now(),
                                             AB=message.item_identifier or "",
                                             AF=[self.text("no_item_properties")])

    def patron_enable(self, station: str, message: Message) -> Message:
        # Unblocking is the librarian's decision: answer with the patron's status as it is.
        return self._status_response(station, message, sip2.PatronEnableResponse)

    def block_patron(self, station: str, message: Message) -> Message:
        """01: the machine kept the card or saw it misused. The reader is blocked (not
        undone by the machine), with its reason, and the answer is a 24."""
        patron = message.patron_identifier or ""
        reason = self.fit(message.blocked_card_message or "")[:150]
        text = self.text("blocked_by", station=station, reason=reason or "-")[:200]
        identified = self.run(station, Op.PATRON_IDENTIFY, {"card": patron or "-"})
        if identified.ok:
            code = identified.result_as(protocol.IdentifyResult).patron.id
            with self.circulation.engine.begin() as db:
                changed = db.execute(update(Reader).where(
                    Reader.code == code, Reader.status != ReaderStatus.BLOCKED)
                    .values(status=ReaderStatus.BLOCKED, block_reason=text)).rowcount
            log.warning("%s: block patron %s (card retained: %s): %s%s", station, code,
                        message.card_retained, text, "" if changed else " (already blocked)")
        return self._status_response(station, message, sip2.PatronStatusResponse)

    def _status_response(self, station: str, message: Message, cls: type[Message]) -> Message:
        patron = message.patron_identifier or ""
        reply, password_ok = self._identify(station, patron, message.get("AD"))
        status, fields, _ = self._status_fields(reply, password_ok)
        return cls(patron_status=status, language="000", transaction_date=self.now(),
                   AO=self.institution, AA=patron, **{k: v for k, v in fields.items()
                                                       if k in cls._by_id or k == "AF"})


def _page(start: str | None, end: str | None) -> tuple[int, int]:
    """BP/BQ (1-based, inclusive) as a slice; a missing or bad bound means the whole list."""
    first = int(start) if start and start.strip().isdigit() and int(start) > 0 else 1
    last = int(end) if end and end.strip().isdigit() and int(end) >= first else 10**9
    return first, last


__all__ = ["Handlers", "SUPPORTED", "derived_id"]
