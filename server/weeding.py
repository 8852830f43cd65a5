"""Thanh lý: weeding copies under a numbered decision (part II of the general register).

A round names copies by barcode, ĐKCB or RFID id, each with a reason (mất, rách nát, lạc
hậu, mối mọt, chương trình cũ). `review` checks a round without writing; `withdraw`
applies it all or nothing: a Withdrawal with the next running number, and each copy
marked withdrawn with its decision, reason and a note in the ĐKCB register. Copies are
never deleted (their ĐKCB numbers are never given again). A copy on loan is refused:
the librarian takes it back (or marks it lost) at the desk first. A round over 10% of
the current stock is refused unless the librarian confirms it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from server import db
from server.config import ServerConfig
from server.folding import fold
from server.models import Copy, CopyStatus, Title, Withdrawal, WithdrawalReason
from server.reports.document import Column, Fields, Report, Table, Text, format_value
from server.reports.registry import ReportParams, report
from server.stocktake import CopyRef, find_copies

__all__ = [
    "REASONS", "LIMIT_SHARE", "Proposal", "ProposedCopy", "WeedingError", "WithdrawalSummary",
    "parse_reason", "propose", "reason_label", "review", "withdraw", "withdrawal_list_report", "withdrawals",
]

# Copies per UPDATE: well under any database's limit of bound values.
_CHUNK = 500
# A round may take at most this share of the stock without the librarian's confirmation.
LIMIT_SHARE = 0.10

REASONS: dict[WithdrawalReason, Text] = {
    WithdrawalReason.LOST: Text("Mất", "Lost"),
    WithdrawalReason.WORN: Text("Rách nát", "Worn out"),
    WithdrawalReason.OUTDATED: Text("Lạc hậu", "Outdated"),
    WithdrawalReason.PESTS: Text("Mối mọt", "Damaged by pests"),
    WithdrawalReason.OLD_CURRICULUM: Text("Chương trình cũ", "Old curriculum"),
}
# Every spelling a librarian may type, folded (no marks, đ as d): "mat", "rach nat", ...
_REASON_WORDS: dict[str, WithdrawalReason] = {
    **{fold(reason.value.replace("_", " ")): reason for reason in REASONS},
    **{fold(label.vi): reason for reason, label in REASONS.items()},
    **{fold(label.en): reason for reason, label in REASONS.items()},
    "rach": WithdrawalReason.WORN, "hu hong": WithdrawalReason.WORN,
    "moi": WithdrawalReason.PESTS, "ct cu": WithdrawalReason.OLD_CURRICULUM,
}


class WeedingError(ValueError):
    """A refusal, in Vietnamese and English; nothing was written."""

    def __init__(self, vi: str, en: str) -> None:
        super().__init__(f"{vi} / {en}")
        self.vi = vi
        self.en = en

    def text(self, language: str) -> str:
        return self.vi if language == "vi" else self.en


def reason_label(value: str | None) -> Text | str | None:
    """The vi/en label of a stored reason (the stored word itself if it is not one of ours)."""
    try:
        return REASONS[WithdrawalReason(value)]
    except ValueError:
        return value


def parse_reason(value: str | WithdrawalReason) -> WithdrawalReason:
    """A reason from its code (worn), its Vietnamese label with or without marks (rách
    nát, rach nat) or its English label."""
    if isinstance(value, WithdrawalReason):
        return value
    reason = _REASON_WORDS.get(fold(str(value).replace("_", " ").replace("-", " ")))
    if reason is None:
        choices_vi = ", ".join(label.vi.lower() for label in REASONS.values())
        choices_en = ", ".join(reason.value for reason in REASONS)
        raise WeedingError(f"Lý do thanh lý không hợp lệ: {value!r} (chọn: {choices_vi}).",
                           f"Not a weeding reason: {value!r} (one of: {choices_en}).")
    return reason


# --- checking a round -------------------------------------------------------------------------

@dataclass(frozen=True)
class ProposedCopy:
    code: str
    reason: WithdrawalReason
    copy: CopyRef | None
    problem: Text | None = None     # why this line cannot be withdrawn

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Proposal:
    lines: list[ProposedCopy]
    stock: int                      # copies not withdrawn, before this round

    @property
    def ok_lines(self) -> list[ProposedCopy]:
        return [line for line in self.lines if line.ok]

    @property
    def problems(self) -> list[ProposedCopy]:
        return [line for line in self.lines if not line.ok]

    @property
    def count(self) -> int:
        return len(self.ok_lines)

    @property
    def value(self) -> int:
        return sum((line.copy.price or 0) for line in self.ok_lines if line.copy)

    @property
    def share(self) -> float:
        return self.count / self.stock if self.stock else 0.0

    @property
    def over_limit(self) -> bool:
        """More than 10% of the stock in one round: the librarian must confirm."""
        return self.count > LIMIT_SHARE * self.stock

    def by_reason(self) -> dict[WithdrawalReason, int]:
        counts: dict[WithdrawalReason, int] = {}
        for line in self.ok_lines:
            counts[line.reason] = counts.get(line.reason, 0) + 1
        return counts


def _problem(copy: CopyRef | None, code: str, seen: set[int]) -> Text | None:
    if copy is None:
        return Text(f"{code}: không có bản sách nào mang mã này.", f"{code}: no copy has this code.")
    if copy.id in seen:
        return Text(f"{copy.accession_number}: có hai lần trong danh sách.",
                    f"{copy.accession_number}: listed twice.")
    if copy.status == CopyStatus.WITHDRAWN:
        return Text(f"{copy.accession_number}: đã thanh lý trước đây.",
                    f"{copy.accession_number}: withdrawn already.")
    if copy.on_loan:
        return Text(f"{copy.accession_number}: đang cho mượn; hãy nhận trả (hoặc ghi mất) tại "
                    f"bàn thủ thư trước.",
                    f"{copy.accession_number}: on loan; return it (or mark it lost) at the desk "
                    f"first.")
    return None


def _stock(session: Session) -> int:
    return session.scalar(select(func.count(Copy.id)).where(
        Copy.status != CopyStatus.WITHDRAWN)) or 0


def _review(session: Session, items: Sequence[tuple[str, WithdrawalReason | str]]) -> Proposal:
    wanted = [(code.strip(), parse_reason(reason)) for code, reason in items
              if code and code.strip()]
    found = find_copies(session, [code for code, _reason in wanted])
    seen: set[int] = set()
    lines = []
    for code, reason in wanted:
        copy = found.get(code)
        problem = _problem(copy, code, seen)
        if copy is not None:
            seen.add(copy.id)
        lines.append(ProposedCopy(code, reason, copy, problem))
    return Proposal(lines, _stock(session))


def review(sessions: sessionmaker[Session],
           items: Sequence[tuple[str, WithdrawalReason | str]]) -> Proposal:
    """Check a round of (code, reason) lines without writing anything."""
    with sessions() as session:
        return _review(session, items)


def propose(sessions: sessionmaker[Session], codes: Iterable[str],
            reason: WithdrawalReason | str) -> Proposal:
    """Check a round of copies that share one reason, without writing anything."""
    return review(sessions, [(code, reason) for code in codes])


# --- applying a round -------------------------------------------------------------------------

def _refusal(proposal: Proposal) -> WeedingError:
    shown = proposal.problems[:20]
    more = len(proposal.problems) - len(shown)
    vi = "; ".join(line.problem.vi for line in shown if line.problem)
    en = "; ".join(line.problem.en for line in shown if line.problem)
    if more:
        vi += f"; và {more} dòng khác"
        en += f"; and {more} more"
    return WeedingError(f"Chưa thanh lý bản nào: {vi}.", f"Nothing was withdrawn: {en}.")


def _over_limit(proposal: Proposal) -> WeedingError:
    percent = f"{proposal.share * 100:.1f}"
    return WeedingError(
        f"Đợt thanh lý này gồm {proposal.count} bản, {percent.replace('.', ',')}% vốn sách hiện có "
        f"({proposal.stock} bản), quá 10%: hãy xác nhận để tiếp tục.",
        f"This round withdraws {proposal.count} copies, {percent}% of the current stock "
        f"({proposal.stock} copies), over 10%: confirm it to go on.")


def withdraw(sessions: sessionmaker[Session], config: ServerConfig, decision_no: str,
             decided_on: dt.date, items: Sequence[tuple[str, WithdrawalReason | str]],
             note: str | None = None, by: str | None = None,
             allow_over_10_percent: bool = False, *, now: dt.datetime | None = None) -> Withdrawal:
    """Withdraw the copies of `items` ((code, reason) lines) under decision `decision_no`
    of `decided_on`, all or nothing; the new Withdrawal (a line of part II)."""
    decision_no = " ".join((decision_no or "").split())
    if not decision_no:
        raise WeedingError("Hãy ghi số quyết định thanh lý.", "Give the decision's number.")
    if len(decision_no) > 64:
        raise WeedingError("Số quyết định dài quá 64 ký tự.",
                           "The decision's number is longer than 64 characters.")
    at = now or dt.datetime.now(dt.timezone.utc)
    today = at.astimezone(ZoneInfo(config.calendar.timezone)).date()
    if decided_on > today:
        raise WeedingError(f"Ngày quyết định {decided_on:%d/%m/%Y} chưa đến.",
                           f"The decision's date {decided_on:%d/%m/%Y} is in the future.")
    note = " ".join((note or "").split())[:300] or None
    with sessions.begin() as session:
        db.one_writer_at_a_time(session, "withdrawals")
        proposal = _review(session, items)
        if not proposal.lines:
            raise WeedingError("Danh sách thanh lý trống.", "The list of copies is empty.")
        if proposal.problems:
            raise _refusal(proposal)
        if proposal.over_limit and not allow_over_10_percent:
            raise _over_limit(proposal)
        number = (session.scalar(select(func.max(Withdrawal.number))) or 0) + 1
        withdrawal = Withdrawal(number=number, decision_no=decision_no, decided_on=decided_on,
                                note=note, created_by=by, created_at=at)
        session.add(withdrawal)
        session.flush()
        # The "ghi chú" of the ĐKCB register: where the copy went.
        register_note = f"Thanh lý theo QĐ số {decision_no} ngày {decided_on:%d/%m/%Y}"
        noted = case((or_(Copy.note.is_(None), Copy.note == ""), register_note),
                     else_=func.substr(Copy.note + "; " + register_note, 1, 300))
        for reason in sorted(proposal.by_reason(), key=lambda r: r.value):
            ids = [line.copy.id for line in proposal.ok_lines
                   if line.reason is reason and line.copy is not None]
            changed = 0
            for start in range(0, len(ids), _CHUNK):
                changed += session.execute(
                    update(Copy).where(Copy.id.in_(ids[start:start + _CHUNK]),
                                       Copy.status != CopyStatus.WITHDRAWN)
                    .values(status=CopyStatus.WITHDRAWN.value, withdrawal_id=withdrawal.id,
                            withdrawal_reason=reason.value, note=noted)
                    .execution_options(synchronize_session=False)).rowcount
            if changed != len(ids):
                # Withdrawn by someone else between the check and now: leave all as it was.
                raise WeedingError("Danh sách đã thay đổi trong lúc thanh lý; hãy thử lại.",
                                   "The copies changed meanwhile; please try again.")
    return withdrawal


# --- past decisions -----------------------------------------------------------------------

@dataclass(frozen=True)
class WithdrawalSummary:
    number: int
    decision_no: str
    decided_on: dt.date
    note: str | None
    created_by: str | None
    copies: int
    value: int


def withdrawals(sessions: sessionmaker[Session]) -> list[WithdrawalSummary]:
    """Every decision with its count and value, the newest first."""
    query = (select(Withdrawal.number, Withdrawal.decision_no, Withdrawal.decided_on,
                    Withdrawal.note, Withdrawal.created_by, func.count(Copy.id),
                    func.coalesce(func.sum(Copy.price), 0))
             .outerjoin(Copy, Copy.withdrawal_id == Withdrawal.id)
             .group_by(Withdrawal.id).order_by(Withdrawal.number.desc()))
    with sessions() as session:
        return [WithdrawalSummary(*row) for row in session.execute(query)]


# --- the decision's annex (a report) ----------------------------------------------------

def _decision(session: Session, value: str | None) -> Withdrawal:
    if not value:
        raise WeedingError("Hãy chọn quyết định thanh lý (--option decision=SỐ).",
                           "Choose the weeding decision (--option decision=NUMBER).")
    try:
        number = int(value)
    except ValueError:
        raise WeedingError(f"Số thứ tự quyết định phải là một số: {value!r}.",
                           f"The decision's running number must be a number: {value!r}.") from None
    found = session.scalars(select(Withdrawal).where(Withdrawal.number == number)).first()
    if found is None:
        raise WeedingError(f"Không có quyết định thanh lý số thứ tự {number}.",
                           f"There is no weeding decision no. {number}.")
    return found


@report("weeding-list", Text("Danh sách sách thanh lý", "List of withdrawn copies"),
        Text("Sổ sách", "Registers"))
def withdrawal_list_report(sessions: sessionmaker[Session], config: ServerConfig,
                           params: ReportParams) -> Report:
    """The copies of one decision (`params.options["decision"]`: its running number in
    part II) with their reasons and value: the decision's annex."""
    query = (select(Copy.accession_number, Title.title, Title.author, Title.year, Copy.price,
                    Copy.withdrawal_reason)
             .join(Title, Title.id == Copy.title_id))
    with sessions() as session:
        decision = _decision(session, params.options.get("decision"))
        result = session.execute(query.where(Copy.withdrawal_id == decision.id)
                                 .order_by(Copy.kind, Copy.accession_number)
                                 .execution_options(yield_per=1000))
        rows: list[list[Any]] = []
        value = 0
        counts: dict[str, int] = {}
        for number, row in enumerate(result, start=1):
            rows.append([number, row.accession_number, row.title, row.author, row.year,
                         row.price, reason_label(row.withdrawal_reason)])
            value += row.price or 0
            counts[row.withdrawal_reason or ""] = counts.get(row.withdrawal_reason or "", 0) + 1
    decided = decision.decided_on.strftime("%d/%m/%Y")
    columns = [
        Column("no", Text("STT", "No."), 0.4, "right", "int"),
        Column("item", Text("Số ĐKCB", "Accession no."), 1.0),
        Column("title", Text("Tên sách", "Title"), 3.0),
        Column("author", Text("Tác giả", "Author"), 1.6),
        Column("year", Text("Năm XB", "Year"), 0.6, "right"),
        Column("price", Text("Giá tiền (đ)", "Price (VND)"), 1.0, "right", "money"),
        Column("reason", Text("Lý do", "Reason"), 1.1),
    ]
    summary = [(Text("Số quyết định", "Decision no."), decision.decision_no),
               (Text("Ngày quyết định", "Decided on"), decision.decided_on),
               (Text("Số thứ tự trong sổ (phần II)", "Running number (part II)"), decision.number),
               (Text("Số bản", "Copies"), len(rows)),
               (Text("Tổng giá tiền (đ)", "Total value (VND)"),
                Text(format_value(value, "money", "vi"), format_value(value, "money", "en")))]
    for reason, label in REASONS.items():
        if counts.get(reason.value):
            summary.append((Text(f"Lý do: {label.vi.lower()}", f"Reason: {label.en.lower()}"),
                            counts[reason.value]))
    return Report(
        name="weeding-list",
        title=Text("DANH SÁCH SÁCH THANH LÝ", "LIST OF WITHDRAWN COPIES"),
        school=config.school_name,
        subtitle=Text(f"Kèm theo Quyết định số {decision.decision_no} ngày {decided}",
                      f"Annex to decision no. {decision.decision_no} of {decided}"),
        sections=[Fields(None, summary),
                  Table(None, columns, rows,
                        totals=[Text("Cộng", "Total"), Text(f"{len(rows)} bản", f"{len(rows)} copies"),
                                None, None, None, value, None])],
        signatures=(Text("Người lập danh sách", "Prepared by"), Text("Hiệu trưởng", "Principal")),
    )
