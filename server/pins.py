"""Readers' PINs, stored only as salted scrypt hashes.

A hash reads `scrypt$<n>$<r>$<p>$<salt>$<key>` (salt and key in unpadded base64), so the
cost can be raised later without invalidating the PINs already set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# About 16 MiB and a few tens of milliseconds: a PIN has little entropy, so the
# hash must be slow to guess offline, yet a kiosk login must not feel slow.
_N, _R, _P = 2**14, 8, 1
_KEY_BYTES = 32
_SALT_BYTES = 16
_PREFIX = "scrypt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(pin: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=256 * n * r + 1024 * 1024)


def hash_pin(pin: str) -> str:
    if not pin:
        raise ValueError("a PIN cannot be empty")
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(pin, salt, _N, _R, _P, _KEY_BYTES)
    return f"{_PREFIX}${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def verify_pin(pin: str, stored: str) -> bool:
    """Whether `pin` matches `stored`; a malformed `stored` raises ValueError.

    A broken stored hash is a data error to report, not a wrong PIN to blame on the reader.
    """
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        raise ValueError("the stored PIN hash is not an scrypt hash made by hash_pin()")
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as exc:  # binascii.Error is a ValueError too
        raise ValueError(f"the stored PIN hash is damaged: {exc}") from None
    if not key or n < 2 or r < 1 or p < 1:
        raise ValueError("the stored PIN hash has impossible parameters")
    return hmac.compare_digest(_derive(pin, salt, n, r, p, len(key)), key)
