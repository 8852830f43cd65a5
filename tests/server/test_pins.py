"""PINs are stored as salted scrypt hashes and checked in constant time."""

from __future__ import annotations

import pytest

from server.pins import hash_pin, verify_pin


def test_hash_and_verify() -> None:
    stored = hash_pin("2468")
    assert stored.startswith("scrypt$16384$8$1$") and "2468" not in stored
    assert verify_pin("2468", stored)
    assert not verify_pin("2469", stored)
    assert not verify_pin("02468", stored)


def test_each_hash_has_its_own_salt() -> None:
    first, second = hash_pin("1234"), hash_pin("1234")
    assert first != second
    assert verify_pin("1234", first) and verify_pin("1234", second)


def test_empty_pin_is_refused() -> None:
    with pytest.raises(ValueError):
        hash_pin("")


@pytest.mark.parametrize("stored", ["", "2468", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA",
                                    "scrypt$16384$8$1$!!!!$AAAA", "scrypt$16384$8$1$AAAA$"])
def test_a_damaged_stored_hash_is_an_error_not_a_wrong_pin(stored: str) -> None:
    with pytest.raises(ValueError):
        verify_pin("2468", stored)
