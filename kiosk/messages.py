"""Every sentence a station shows or says, in Vietnamese first and English.

Written for a ten-year-old at the kiosk: short, friendly, with diacritics. Where the
reader's kind is known a student is "em" and a teacher "thầy/cô"; where it is not
(return mode, refusals) the sentence needs no pronoun. The server's own messages
(`reply.error.message`) are shown as given: they are already in the site's language.
"""

from __future__ import annotations

import datetime as dt

Language = str  # "vi" or "en"; anything else falls back to Vietnamese

MESSAGES: dict[str, dict[str, str]] = {
    # --- terminal banner (kiosk/headless.py prints both languages) ---
    "banner.title": {
        "vi": "Thư viện - trạm {station}",
        "en": "Library - station {station}",
    },
    "banner.card": {
        "vi": "Quét hoặc gõ số thẻ thư viện, rồi quét từng cuốn sách muốn mượn.",
        "en": "Scan or type your library card number, then scan each book to borrow.",
    },
    "banner.commands": {
        "vi": "Gõ \"tra\" để trả sách, \"xong\" khi đã xong, \"thoat\" để thoát.",
        "en": "Type \"return\" to return books, \"done\" when finished, \"quit\" to leave.",
    },
    "bye": {
        "vi": "Tạm biệt! Hẹn gặp lại.",
        "en": "Goodbye! See you soon.",
    },
    # --- a reader is identified ---
    "hello.student": {"vi": "Xin chào {given_name}!", "en": "Hello {given_name}!"},
    "hello.teacher": {"vi": "Xin chào thầy/cô {given_name}!", "en": "Hello {given_name}!"},
    "hello.staff": {"vi": "Xin chào {given_name}!", "en": "Hello {given_name}!"},
    "can_borrow.student": {
        "vi": "Em có thể mượn thêm {n} cuốn.",
        "en": "You can borrow {n} more books.",
    },
    "can_borrow.teacher": {
        "vi": "Thầy/cô có thể mượn thêm {n} cuốn.",
        "en": "You can borrow {n} more books.",
    },
    "can_borrow.staff": {
        "vi": "Bạn có thể mượn thêm {n} cuốn.",
        "en": "You can borrow {n} more books.",
    },
    "can_borrow_none.student": {
        "vi": "Em đã mượn đủ số sách rồi. Trả bớt sách thì mượn tiếp được nhé.",
        "en": "You have borrowed as many books as allowed. Return some to borrow more.",
    },
    "can_borrow_none.teacher": {
        "vi": "Thầy/cô đã mượn đủ số sách được phép.",
        "en": "You have borrowed as many books as allowed.",
    },
    "can_borrow_none.staff": {
        "vi": "Bạn đã mượn đủ số sách được phép.",
        "en": "You have borrowed as many books as allowed.",
    },
    "loans.header": {"vi": "Sách đang mượn:", "en": "Books on loan:"},
    "loan.line": {"vi": "{title} - Hạn trả: {due}", "en": "{title} - Due: {due}"},
    "loan.line_overdue": {
        "vi": "{title} - Hạn trả: {due} (quá hạn!)",
        "en": "{title} - Due: {due} (overdue!)",
    },
    "blocked.student": {
        "vi": "Thẻ của em đang bị khóa nên chưa mượn được sách. Em vẫn trả sách được nhé.",
        "en": "Your card is blocked, so you cannot borrow now. You can still return books.",
    },
    "blocked.teacher": {
        "vi": "Thẻ của thầy/cô đang bị khóa nên chưa mượn được sách.",
        "en": "Your card is blocked, so you cannot borrow now.",
    },
    "blocked.staff": {
        "vi": "Thẻ của bạn đang bị khóa nên chưa mượn được sách.",
        "en": "Your card is blocked, so you cannot borrow now.",
    },
    # Reasons, by the block codes of `patron.identify`; `block.other` for any new code.
    "block.overdue": {
        "vi": "Có sách quá hạn chưa trả.",
        "en": "A book is overdue.",
    },
    "block.blocked": {
        "vi": "Thư viện đang tạm khóa thẻ. Hãy gặp thầy cô thư viện nhé.",
        "en": "The library has blocked this card. Please see the librarian.",
    },
    "block.inactive": {
        "vi": "Thẻ không còn hiệu lực. Hãy gặp thầy cô thư viện nhé.",
        "en": "This card is no longer valid. Please see the librarian.",
    },
    "block.other": {
        "vi": "Hãy gặp thầy cô thư viện nhé.",
        "en": "Please see the librarian.",
    },
    "prompt.scan_items": {
        "vi": "Hãy quét từng cuốn sách muốn mượn.",
        "en": "Scan each book you want to borrow.",
    },
    "same_card": {
        "vi": "Thẻ này đang được dùng rồi. Hãy quét sách nhé.",
        "en": "This card is already in use. Scan a book.",
    },
    # --- borrowing ---
    "item.borrowed": {
        "vi": "Đã mượn: {title}. Hạn trả: {due}",
        "en": "Borrowed: {title}. Due: {due}",
    },
    "item.refused": {"vi": "Chưa mượn được {item}: {message}", "en": "Not borrowed {item}: {message}"},
    "item.refused_blocked": {
        "vi": "Thẻ đang bị khóa nên chưa mượn được sách.",
        "en": "The card is blocked, so no book can be borrowed.",
    },
    "need_card": {
        "vi": "Hãy quét thẻ thư viện trước khi mượn sách. Muốn trả sách thì chọn Trả sách nhé.",
        "en": "Scan your library card before borrowing. To return books, choose Return.",
    },
    # --- returning ---
    "return.mode": {
        "vi": "Trả sách: hãy quét từng cuốn sách cần trả.",
        "en": "Returning: scan each book you are bringing back.",
    },
    "item.returned": {"vi": "Đã trả: {title}. Cảm ơn!", "en": "Returned: {title}. Thank you!"},
    "item.returned_late": {
        "vi": "Sách này trả muộn {days} ngày.",
        "en": "This book is {days} days late.",
    },
    "return.refused": {"vi": "Chưa trả được {item}: {message}", "en": "Not returned {item}: {message}"},
    # --- problems ---
    "unreadable": {
        "vi": "Không đọc được mã này. Hãy quét lại nhé.",
        "en": "This code could not be read. Please scan again.",
    },
    "server_unreachable": {
        "vi": "Chưa kết nối được với máy chủ thư viện. Hãy thử lại sau ít phút hoặc báo thầy cô thư viện nhé.",
        "en": "The library server cannot be reached. Try again in a few minutes or tell the librarian.",
    },
    "server_bad_reply": {
        "vi": "Máy chủ thư viện trả lời không rõ. Hãy báo thầy cô thư viện nhé.",
        "en": "The library server gave an unclear answer. Please tell the librarian.",
    },
    "inactivity": {
        "vi": "Còn ai ở đây không? Sau {seconds} giây máy sẽ tự kết thúc.",
        "en": "Still there? The session ends in {seconds} seconds.",
    },
    # --- the end of a session ---
    "summary.borrowed": {"vi": "Lần này đã mượn {n} cuốn:", "en": "Borrowed this time: {n}"},
    "summary.borrowed_none": {"vi": "Lần này chưa mượn cuốn nào.", "en": "Nothing borrowed this time."},
    "summary.returned": {"vi": "Đã trả {n} cuốn. Cảm ơn!", "en": "Returned {n} books. Thank you!"},
    "summary.returned_none": {"vi": "Chưa trả cuốn nào.", "en": "No books returned."},
    "ended.done": {"vi": "Hẹn gặp lại nhé!", "en": "See you soon!"},
    "ended.timeout": {
        "vi": "Lâu quá không thấy ai, máy đã tự kết thúc.",
        "en": "Nobody was there for a while, so the session ended.",
    },
    "ended.logout": {"vi": "Đã thoát. Hẹn gặp lại nhé!", "en": "Logged out. See you soon!"},
    "ended.new_card": {"vi": "Đã kết thúc lượt trước.", "en": "The previous session has ended."},
}


def text(key: str, language: Language = "vi", **fields: object) -> str:
    table = MESSAGES[key]
    return table.get(language, table["vi"]).format(**fields)


def format_date(day: dt.date) -> str:
    """Dates as Vietnamese readers write them: 19/09/2026."""
    return day.strftime("%d/%m/%Y")


def given_name(full_name: str) -> str:
    """The name a Vietnamese person is called by: the last word ("Nguyễn Văn An" -> "An")."""
    words = full_name.split()
    return words[-1] if words else ""
