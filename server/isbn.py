"""ISBN-10 and ISBN-13: check digits, and one stored form (ISBN-13, digits only).

The catalogue keeps every ISBN as 13 digits with no hyphens, so that the same book
catalogued once from an ISBN-10 and once from a hyphenated ISBN-13 is recognised as one
title. (The same arithmetic lives in `drivers/checkdigits.py`; the server does not import
drivers, so it is repeated here.)
"""

from __future__ import annotations

import re

__all__ = ["InvalidIsbn", "isbn10_check_digit", "isbn13_check_digit", "is_valid_isbn",
           "normalize_isbn"]

# Hyphens and spaces are how ISBNs are printed; nothing else may sit between the digits.
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015]")
_SHAPE = re.compile(r"^(?:\d{9}[\dX]|\d{13})$")


class InvalidIsbn(ValueError):
    """The text is not an ISBN: wrong length, a stray character, or a bad check digit."""


def isbn10_check_digit(first9: str) -> str:
    total = sum((10 - i) * int(d) for i, d in enumerate(first9))
    check = (11 - total % 11) % 11
    return "X" if check == 10 else str(check)


def isbn13_check_digit(first12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def normalize_isbn(text: str) -> str:
    """The ISBN-13 of `text` (an ISBN-10 or -13, hyphens and spaces allowed), digits only.

    Raises InvalidIsbn with the reason when `text` is not a valid ISBN.
    """
    code = _SEPARATORS.sub("", text).upper()
    if not _SHAPE.match(code):
        raise InvalidIsbn(f"{text!r} is not an ISBN: 10 or 13 digits expected "
                          "(the last of ten may be X)")
    if len(code) == 10:
        if isbn10_check_digit(code[:9]) != code[9]:
            raise InvalidIsbn(f"{text!r}: the ISBN-10 check digit should be "
                              f"{isbn10_check_digit(code[:9])}")
        body = "978" + code[:9]
        return body + isbn13_check_digit(body)
    if not code.startswith(("978", "979")):
        raise InvalidIsbn(f"{text!r}: an ISBN-13 begins with 978 or 979")
    if isbn13_check_digit(code[:12]) != code[12]:
        raise InvalidIsbn(f"{text!r}: the ISBN-13 check digit should be "
                          f"{isbn13_check_digit(code[:12])}")
    return code


def is_valid_isbn(text: str) -> bool:
    try:
        normalize_isbn(text)
    except InvalidIsbn:
        return False
    return True
