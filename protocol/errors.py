"""Error codes of the protocol and their default messages for people."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_PATRON = "unknown_patron"
    WRONG_PIN = "wrong_pin"
    PATRON_BLOCKED = "patron_blocked"
    LIMIT_REACHED = "limit_reached"
    UNKNOWN_ITEM = "unknown_item"
    ITEM_NOT_LOANABLE = "item_not_loanable"
    ITEM_ON_LOAN = "item_on_loan"
    ITEM_NOT_ON_LOAN = "item_not_on_loan"
    RENEW_LIMIT = "renew_limit"
    INTERNAL = "internal"
    # Additions to v1 (docs/protocol.md): a station that does not know one shows `message`.
    NO_STOCKTAKE = "no_stocktake"


# The reply's `message` is for a person in the site's language; Vietnamese is the
# default and English the second language. Callers may pass a more specific message.
_MESSAGES: dict[str, dict[ErrorCode, str]] = {
    "vi": {
        ErrorCode.BAD_REQUEST: "Yêu cầu không hợp lệ.",
        ErrorCode.UNAUTHORIZED: "Trạm này không được phép thực hiện thao tác này.",
        ErrorCode.UNKNOWN_PATRON: "Không tìm thấy thẻ bạn đọc này.",
        ErrorCode.WRONG_PIN: "Mã PIN không đúng.",
        ErrorCode.PATRON_BLOCKED: "Thẻ bạn đọc đang bị khóa.",
        ErrorCode.LIMIT_REACHED: "Bạn đã mượn đủ số sách được phép.",
        ErrorCode.UNKNOWN_ITEM: "Không tìm thấy cuốn sách này trong thư viện.",
        ErrorCode.ITEM_NOT_LOANABLE: "Sách này không được mượn về nhà.",
        ErrorCode.ITEM_ON_LOAN: "Sách này đang được mượn.",
        ErrorCode.ITEM_NOT_ON_LOAN: "Sách này chưa được mượn.",
        ErrorCode.RENEW_LIMIT: "Sách này đã được gia hạn đủ số lần.",
        ErrorCode.INTERNAL: "Máy chủ thư viện gặp lỗi. Vui lòng báo cán bộ thư viện.",
        ErrorCode.NO_STOCKTAKE: "Chưa có đợt kiểm kê nào đang mở. Hãy mở đợt kiểm kê "
                                "trên máy chủ thư viện trước.",
    },
    "en": {
        ErrorCode.BAD_REQUEST: "The request is not valid.",
        ErrorCode.UNAUTHORIZED: "This station may not do that.",
        ErrorCode.UNKNOWN_PATRON: "This library card is not known.",
        ErrorCode.WRONG_PIN: "The PIN is wrong.",
        ErrorCode.PATRON_BLOCKED: "This library card is blocked.",
        ErrorCode.LIMIT_REACHED: "You have borrowed as many books as allowed.",
        ErrorCode.UNKNOWN_ITEM: "This book is not in the library's catalogue.",
        ErrorCode.ITEM_NOT_LOANABLE: "This book cannot be taken home.",
        ErrorCode.ITEM_ON_LOAN: "This book is already on loan.",
        ErrorCode.ITEM_NOT_ON_LOAN: "This book is not on loan.",
        ErrorCode.RENEW_LIMIT: "This book has been renewed as often as allowed.",
        ErrorCode.INTERNAL: "The library server had an error. Please tell the librarian.",
        ErrorCode.NO_STOCKTAKE: "No stocktake is open. Start one on the library server first.",
    },
}

LANGUAGES = tuple(_MESSAGES)


def default_message(code: ErrorCode | str, language: str = "vi") -> str:
    table = _MESSAGES.get(language, _MESSAGES["vi"])
    return table[ErrorCode(code)]


class ProtocolError(Exception):
    """A payload that breaks the contract.

    `request_id` is set when the payload carried a usable id, so that the receiver can
    answer it with a `bad_request` reply; otherwise the payload can only be logged and
    dropped (PROTOCOL.md).
    """

    def __init__(self, detail: str, request_id: str | None = None,
                 code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(detail)
        self.detail = detail
        self.request_id = request_id
        self.code = code
