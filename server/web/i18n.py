"""The web pages' strings: a small gettext-like catalogue, Vietnamese first.

Templates and code write the English text as the message id, `_("Stations")`, and the
catalogue maps each id to its Vietnamese text; placeholders are `str.format` names,
`_("Offline since {time}", time=...)`, the same in both languages. English is the id
itself, so it can never be missing; a Vietnamese entry that is missing shows the English
and is caught by a test that reads every `_("...")` in the templates.

Why not gettext .po files: a few hundred strings, one language besides the source, and
no build step; a dict in Python is greppable and reviewed with the code. Each part of
the web brings its own dict (`STAFF_VI` here; the catalogue pages add theirs with
`Catalogue.add`).

The language of a request: the `lang` cookie set by the vi/en switch (`/lang/vi`,
`/lang/en`), else the server's configured language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

LANGUAGES: tuple[str, ...] = ("vi", "en")
LANG_COOKIE = "lang"

Translate = Callable[..., str]


class Catalogue:
    def __init__(self, *parts: Mapping[str, str]) -> None:
        self._vi: dict[str, str] = {}
        for part in parts:
            self.add(part)

    def add(self, vi: Mapping[str, str]) -> None:
        """Add English id -> Vietnamese entries; one id translated two ways is a bug."""
        for msgid, text in vi.items():
            if self._vi.get(msgid, text) != text:
                raise ValueError(f"two Vietnamese texts for {msgid!r}")
            self._vi[msgid] = text

    def __contains__(self, msgid: object) -> bool:
        return msgid in self._vi

    def __contains__(self, msgid: object) -> bool:
        return msgid in self._vi

    def gettext(self, lang: str, msgid: str, **values: Any) -> str:
        text = self._vi.get(msgid, msgid) if lang == "vi" else msgid
        return text.format(**values) if values else text

    def translator(self, lang: str) -> Translate:
        def translate(msgid: str, **values: Any) -> str:
            return self.gettext(lang, msgid, **values)
        return translate


STAFF_VI: dict[str, str] = {
    # base and navigation
    "Skip to content": "Chuyển đến nội dung",
    "Language": "Ngôn ngữ",
    "Main menu": "Trình đơn chính",
    "Stations": "Trạm",
    "Alerts": "Cảnh báo",
    "Catalogue": "Tra cứu sách",
    "Signed in as {name} ({role})": "Đang đăng nhập: {name} ({role})",
    "Sign out": "Đăng xuất",
    "Staff": "Cán bộ thư viện",
    "admin": "quản trị",
    "librarian": "thủ thư",
    "viewer": "người xem",
    # login
    "Staff sign-in": "Đăng nhập cho cán bộ thư viện",
    "User name": "Tên đăng nhập",
    "Password": "Mật khẩu",
    "Sign in": "Đăng nhập",
    "Wrong user name or password.": "Sai tên đăng nhập hoặc mật khẩu.",
    "Too many failed sign-ins. This account or computer is locked for {minutes} minutes; "
    "try again after {time}.":
        "Đăng nhập sai quá nhiều lần. Tài khoản hoặc máy này bị tạm khoá {minutes} phút; "
        "vui lòng thử lại sau {time}.",
    "The form has expired or did not come from this site. Please try again.":
        "Biểu mẫu đã hết hạn hoặc không đến từ trang này. Vui lòng thử lại.",
    "Your session has ended. Please sign in again.":
        "Phiên làm việc đã hết hạn. Vui lòng đăng nhập lại.",
    "You have signed out.": "Bạn đã đăng xuất.",
    "Your account may not do this.": "Tài khoản của bạn không được phép làm việc này.",
    "Forbidden": "Không được phép",
    "Not found": "Không tìm thấy",
    # stations
    "Live": "Trực tiếp",
    "Live updates paused: reconnecting…": "Mất kết nối cập nhật trực tiếp: đang kết nối lại…",
    "Live status is not available: the web is not connected to the broker.":
        "Không có trạng thái trực tiếp: trang web chưa kết nối được máy chủ MQTT.",
    "No station has reported yet.": "Chưa có trạm nào báo trạng thái.",
    "kiosk": "máy mượn trả",
    "gate": "cổng an ninh",
    "returnbox": "hộp trả sách",
    "desk": "bàn thủ thư",
    "station": "trạm",
    "online": "trực tuyến",
    "offline": "mất kết nối",
    "out_of_service": "tạm ngừng phục vụ",
    "unknown": "chưa rõ",
    "since {time}": "từ {time}",
    "Devices": "Thiết bị",
    "no devices": "không có thiết bị",
    "ok": "tốt",
    "fault": "lỗi",
    "absent": "không có",
    "Outbox": "Hàng đợi",
    "{count} waiting": "{count} yêu cầu chờ gửi",
    "Last transaction": "Giao dịch gần nhất",
    "none yet": "chưa có",
    "Version": "Phiên bản",
    "Lock": "Khoá",
    "Unlock": "Mở khoá",
    "Message to say": "Lời nhắn cho trạm",
    "Say": "Gửi lời nhắn",
    "Commands for {station}": "Lệnh cho {station}",
    "Sent “{cmd}” to {station}.": "Đã gửi lệnh “{cmd}” đến {station}.",
    "Could not send the command: {reason}": "Không gửi được lệnh: {reason}",
    "Unknown station.": "Không có trạm này.",
    "The message is empty or too long (at most {limit} characters).":
        "Lời nhắn trống hoặc quá dài (tối đa {limit} ký tự).",
    "the web is not connected to the broker": "trang web chưa kết nối được máy chủ MQTT",
    "lock": "khoá",
    "unlock": "mở khoá",
    "say": "lời nhắn",
    # alerts
    "Open alerts": "Cảnh báo chưa xử lý",
    "No open alerts.": "Không có cảnh báo nào.",
    "Time": "Thời gian",
    "Station": "Trạm",
    "Kind": "Loại",
    "Message": "Nội dung",
    "Acknowledge": "Xác nhận đã xử lý",
    "Acknowledged by {name} at {time}.": "{name} đã xác nhận lúc {time}.",
    "Alert acknowledged.": "Đã xác nhận cảnh báo.",
    "This alert was already acknowledged.": "Cảnh báo này đã được xác nhận trước đó.",
    "Recently acknowledged": "Mới xác nhận",
    "by {name} at {time}": "bởi {name} lúc {time}",
    "gate.alarm": "cổng báo động",
    "offline.conflict": "xung đột khi mất kết nối",
    "device.fault": "thiết bị lỗi",
    "returnbox.full": "hộp trả sách đầy",
    "returnbox.unreturned": "sách chưa trả được",
    # desk, readers, overdue lists (server/web/desk.py); the same words as the catalogue's
    # where both use one (Catalogue.add refuses two translations of one id)
    "Desk": "Bàn thủ thư",
    "Mode": "Chế độ",
    "Lend": "Cho mượn",
    "Return": "Trả sách",
    "Enter": "Nhập",
    "Scan a card or a book": "Quét thẻ bạn đọc hoặc sách",
    "Find a reader by name, class or card": "Tìm bạn đọc theo tên, lớp hoặc số thẻ",
    "Search": "Tìm",
    "No reader open. Scan a reader's card to lend; choose Return to take books back.":
        "Chưa mở bạn đọc nào. Quét thẻ bạn đọc để cho mượn; chọn Trả sách để nhận sách trả.",
    "The server did not answer. Please scan again.":
        "Máy chủ không trả lời. Vui lòng quét lại.",
    "Scan or type a card or book number.": "Hãy quét hoặc gõ số thẻ hay mã sách.",
    "That code is too long to be a card or a book.": "Mã này quá dài, không phải thẻ hay sách.",
    "Reader {name} ({card}).": "Bạn đọc {name} ({card}).",
    "No reader has the card {card}.": "Không có bạn đọc nào có thẻ {card}.",
    "Scan a reader's card first, then the books to lend.":
        "Hãy quét thẻ bạn đọc trước, rồi quét sách cho mượn.",
    "Lent “{title}” ({item}); due {due}.": "Đã cho mượn “{title}” ({item}); hạn trả {due}.",
    "Returned “{title}” ({item}).": "Đã nhận trả “{title}” ({item}).",
    "{days} days late.": "Trễ {days} ngày.",
    "Renewed “{title}” ({item}); now due {due}.": "Đã gia hạn “{title}” ({item}); hạn trả mới {due}.",
    "Not done: {reason}": "Chưa thực hiện được: {reason}",
    "Which loan? Open the reader first.": "Gia hạn sách nào? Hãy mở bạn đọc trước.",
    "Blocked: {reason}": "Thẻ bị khoá: {reason}",
    "No longer active (left the school).": "Thẻ không còn hiệu lực (đã rời trường).",
    "May not borrow: {count} overdue books.": "Không được mượn: có {count} cuốn quá hạn.",
    "Class {name}": "Lớp {name}",
    "student": "học sinh",
    "teacher": "giáo viên",
    "staff": "cán bộ, nhân viên",
    "On loan": "Đang mượn",
    "Title": "Tên sách",
    "ĐKCB": "Số ĐKCB",
    "Due": "Hạn trả",
    "Actions": "Thao tác",
    "overdue by {days} days": "quá hạn {days} ngày",
    "long loan": "mượn dài hạn",
    "Renew": "Gia hạn",
    "Nothing on loan.": "Không mượn cuốn nào.",
    "History": "Lịch sử mượn trả",
    "What": "Việc",
    "Lent": "Mượn",
    "Returned": "Trả",
    "Renewed": "Gia hạn",
    "due {date}": "hạn trả {date}",
    "No loans yet.": "Chưa mượn lần nào.",
    "Readers": "Bạn đọc",
    "{count} readers found.": "Tìm thấy {count} bạn đọc.",
    "Showing the first {limit}.": "Hiển thị {limit} người đầu tiên.",
    "Name": "Họ và tên",
    "Class": "Lớp",
    "Card": "Số thẻ",
    "Status": "Tình trạng",
    "active": "đang hoạt động",
    "blocked": "bị khoá",
    "inactive": "hết hiệu lực",
    "Overdue books": "Sách quá hạn",
    "All classes": "Tất cả các lớp",
    "Show": "Xem",
    "Print this page for the homeroom teachers: each class on its own page.":
        "In trang này cho giáo viên chủ nhiệm: mỗi lớp một trang.",
    "No overdue books.": "Không có sách quá hạn.",
    "Teachers and staff": "Giáo viên và cán bộ",
    "{count} books": "{count} cuốn",
    "1 book": "1 cuốn",
    "Overdue books on {date}": "Danh sách sách quá hạn ngày {date}",
    "Reader": "Bạn đọc",
    "Days late": "Số ngày quá hạn",
    # today (server/web/today.py)
    "Today": "Hôm nay",
    "Reports": "Báo cáo",
    "Intake": "Nhập sách",
    "Labels": "In nhãn",
    "Stocktake": "Kiểm kê",
    "Weeding": "Thanh lý",
    "This month ({month})": "Tháng này ({month})",
    "Loans": "Lượt mượn",
    "Returns": "Lượt trả",
    "Renewals": "Lượt gia hạn",
    "Visits": "Lượt vào thư viện",
    "Busiest stations": "Trạm bận nhất",
    "Top titles": "Sách được mượn nhiều nhất",
    "None yet.": "Chưa có.",
    "Loans and returns per day": "Lượt mượn và trả theo ngày",
    "{loans} loans, {returns} returns": "{loans} lượt mượn, {returns} lượt trả",
}
