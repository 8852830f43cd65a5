"""Check digits: published examples, and what a mod 10 / mod 11 check must catch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import checkdigits as cd



def bodies(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


@pytest.mark.parametrize("code", [
    "4006381333931",   # GS1's EAN-13 example
    "9780306406157",   # ISBN 0-306-40615-2 as ISBN-13
    "9786041234567",   # a Vietnamese (604) ISBN
    "5901234123457",
])
def test_valid_ean13(code: str) -> None:
    assert cd.is_valid_ean13(code)
    assert cd.ean13_check_digit(code[:12]) == code[12]


@pytest.mark.parametrize("code", [
    "4006381333932",   # wrong check digit
    "400638133393",    # too short
    "40063813339311",  # too long
    "40063813339A1",   # a letter
    "",
    "４００６３８１３３３９３１",  # full-width digits are digits to str.isdigit, not to a scanner
])
def test_invalid_ean13(code: str) -> None:
    assert not cd.is_valid_ean13(code)


def test_ean8_upca_itf14() -> None:
    assert cd.is_valid_ean8("96385074") and not cd.is_valid_ean8("96385075")
    assert cd.ean8_check_digit("9638507") == "4"
    assert cd.is_valid_upca("036000291452") and not cd.is_valid_upca("036000291453")
    assert cd.upca_check_digit("03600029145") == "2"
    assert cd.is_valid_itf14("15400141288763") and not cd.is_valid_itf14("15400141288764")


def test_isbn10_with_x() -> None:
    assert cd.is_valid_isbn10("0-306-40615-2")
    assert cd.is_valid_isbn10("080442957X") and cd.is_valid_isbn10("080442957x")
    assert cd.isbn10_check_digit("080442957") == "X"
    assert not cd.is_valid_isbn10("0804429570")
    assert not cd.is_valid_isbn10("X804429570")
    assert not cd.is_valid_isbn10("030640615")


def test_isbn_conversions() -> None:
    assert cd.isbn10_to_isbn13("0-306-40615-2") == "9780306406157"
    assert cd.isbn10_to_isbn13("080442957X") == "9780804429573"
    assert cd.isbn13_to_isbn10("978-0-306-40615-7") == "0306406152"
    assert cd.isbn13_to_isbn10("9780804429573") == "080442957X"
    with pytest.raises(ValueError, match="979"):
        cd.isbn13_to_isbn10("9791034304127")  # a valid 979 ISBN has no ISBN-10
    with pytest.raises(ValueError, match="ISBN-13"):
        cd.isbn13_to_isbn10("4006381333931")  # an EAN-13, not a book
    with pytest.raises(ValueError, match="ISBN-10"):
        cd.isbn10_to_isbn13("0306406153")


def test_isbn13_needs_bookland_prefix() -> None:
    assert cd.is_valid_isbn13("9791034304127")
    assert not cd.is_valid_isbn13("4006381333931")


def test_code39_mod43() -> None:
    # The check characters python-barcode appends, an independent implementation.
    assert cd.code39_mod43_check_char("GK-00123") == "Z"
    assert cd.code39_mod43_check_char("CODE39") == "W"
    assert cd.code39_mod43_check_char("TN00315") == "I"
    assert cd.is_valid_code39_mod43("GK-00123Z")
    assert not cd.is_valid_code39_mod43("GK-00123Y")
    assert not cd.is_valid_code39_mod43("Z")        # a check character alone
    assert not cd.is_valid_code39_mod43("gk-00123Z")  # lower case is not Code 39
    with pytest.raises(ValueError):
        cd.code39_mod43_check_char("a")


def test_malformed_bodies_raise() -> None:
    with pytest.raises(ValueError, match="12 digits"):
        cd.ean13_check_digit("12345")
    with pytest.raises(ValueError):
        cd.gs1_check_digit("")


@given(bodies(12))
def test_ean13_catches_every_single_digit_error(body: str) -> None:
    code = body + cd.ean13_check_digit(body)
    assert cd.is_valid_ean13(code)
    for i in range(13):
        for d in "0123456789":
            if d != code[i]:
                assert not cd.is_valid_ean13(code[:i] + d + code[i + 1:])


@given(bodies(9))
def test_isbn10_catches_single_errors_and_transpositions(body: str) -> None:
    code = body + cd.isbn10_check_digit(body)
    assert cd.is_valid_isbn10(code)
    for i in range(9):
        for d in "0123456789":
            if d != code[i]:
                assert not cd.is_valid_isbn10(code[:i] + d + code[i + 1:])
        swapped = code[:i] + code[i + 1] + code[i] + code[i + 2:]
        if swapped != code:
            assert not cd.is_valid_isbn10(swapped)


@given(bodies(9))
def test_isbn10_13_round_trip(body: str) -> None:
    isbn10 = body + cd.isbn10_check_digit(body)
    isbn13 = cd.isbn10_to_isbn13(isbn10)
    assert cd.is_valid_isbn13(isbn13) and isbn13.startswith("978")
    assert cd.isbn13_to_isbn10(isbn13) == isbn10


@given(st.text(alphabet=cd.CODE39_CHARSET, min_size=1, max_size=20))
def test_code39_round_trip(body: str) -> None:
    assert cd.is_valid_code39_mod43(body + cd.code39_mod43_check_char(body))
