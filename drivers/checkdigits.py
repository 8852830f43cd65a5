"""Check digits of the codes found on library books and cards: pure functions, no I/O.

- GS1 mod 10 (weights 3, 1 from the right): EAN-13 (and ISBN-13, which is an EAN-13
  starting 978 or 979), EAN-8, UPC-A, ITF-14.
- ISBN-10: mod 11 with weights 10..2; a check value of 10 is written "X".
- Code 39 mod 43: the optional symbol check character of Code 39.

`is_valid_*` functions never raise: a misread (a wrong length, a letter in a number)
is simply not valid. `*_check_digit` functions compute the check digit of a body and
raise `ValueError` on a malformed body, since that is a programming error.
"""

from __future__ import annotations

CODE39_CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%"


def _digits(body: str, length: int | None, what: str) -> str:
    if not (body.isascii() and body.isdigit()) or (length is not None and len(body) != length):
        size = f"{length} " if length is not None else ""
        raise ValueError(f"{what} needs {size}digits, got {body!r}")
    return body


def gs1_check_digit(body: str) -> str:
    """The GS1 mod 10 check digit of `body` (any length): weights 3, 1, 3, ... from the right."""
    _digits(body, None, "a GS1 number body")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str(-total % 10)


def _valid_gs1(code: str, length: int) -> bool:
    return (len(code) == length and code.isascii() and code.isdigit()
            and gs1_check_digit(code[:-1]) == code[-1])


def ean13_check_digit(body: str) -> str:
    return gs1_check_digit(_digits(body, 12, "an EAN-13 body"))


def ean8_check_digit(body: str) -> str:
    return gs1_check_digit(_digits(body, 7, "an EAN-8 body"))


def upca_check_digit(body: str) -> str:
    return gs1_check_digit(_digits(body, 11, "a UPC-A body"))


def is_valid_ean13(code: str) -> bool:
    return _valid_gs1(code, 13)


def is_valid_ean8(code: str) -> bool:
    return _valid_gs1(code, 8)


def is_valid_upca(code: str) -> bool:
    return _valid_gs1(code, 12)


def is_valid_itf14(code: str) -> bool:
    return _valid_gs1(code, 14)


def is_valid_isbn13(code: str) -> bool:
    """An ISBN-13 is an EAN-13 in the "Bookland" prefixes 978 and 979 (hyphens allowed)."""
    code = code.replace("-", "")
    return code[:3] in ("978", "979") and is_valid_ean13(code)


def isbn10_check_digit(body: str) -> str:
    _digits(body, 9, "an ISBN-10 body")
    total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1)))
    check = -total % 11
    return "X" if check == 10 else str(check)


def is_valid_isbn10(code: str) -> bool:
    """Hyphens are allowed; the check character may be "X" (or "x")."""
    code = code.replace("-", "").upper()
    return (len(code) == 10 and code[:9].isascii() and code[:9].isdigit()
            and isbn10_check_digit(code[:9]) == code[9])


def isbn10_to_isbn13(isbn10: str) -> str:
    """The ISBN-13 of an ISBN-10: prefix 978 and a new check digit. Raises on an invalid ISBN-10."""
    if not is_valid_isbn10(isbn10):
        raise ValueError(f"not a valid ISBN-10: {isbn10!r}")
    body = "978" + isbn10.replace("-", "")[:9]
    return body + ean13_check_digit(body)


def isbn13_to_isbn10(isbn13: str) -> str:
    """The ISBN-10 of an ISBN-13. Only 978 ISBNs have one: 979 was never issued as ISBN-10."""
    code = isbn13.replace("-", "")
    if not is_valid_isbn13(code):
        raise ValueError(f"not a valid ISBN-13: {isbn13!r}")
    if not code.startswith("978"):
        raise ValueError(f"ISBN-13 {isbn13!r} has no ISBN-10: only the 978 prefix maps to ISBN-10")
    body = code[3:12]
    return body + isbn10_check_digit(body)


def code39_mod43_check_char(body: str) -> str:
    """The Code 39 mod 43 check character: the sum of character values, modulo 43."""
    try:
        total = sum(CODE39_CHARSET.index(ch) for ch in body)
    except ValueError:
        raise ValueError(f"not Code 39 data: {body!r}") from None
    return CODE39_CHARSET[total % 43]


def is_valid_code39_mod43(code: str) -> bool:
    """`code` ends with its mod 43 check character (at least one data character before it)."""
    if len(code) < 2 or any(ch not in CODE39_CHARSET for ch in code):
        return False
    return code39_mod43_check_char(code[:-1]) == code[-1]
