"""The `[sip2]` section of the server's config, and the SIP2 accounts file.

A SIP2 client (a self-check machine, a gate, our own kiosk on the SIP2 backend) logs in
with 93 as a registered station: CN is the station's name, CO its SIP2 password. The
passwords live in the accounts file, one `name:hash` a line, hashed with salted scrypt
as readers' PINs are (server/pins.py); `thuvien sip2 account NAME` writes a line. The
file is read at each login, so an added or removed account counts at once.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.pins import hash_pin, verify_pin

log = logging.getLogger("thuvien.sip2")

_NAME = re.compile(r"^[a-z0-9-]{1,64}$")


class Sip2Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "0.0.0.0"
    # 6001 is the port most SIP2 servers (Koha, Evergreen) and machines default to.
    port: int = Field(default=6001, ge=0, le=65535)
    # UTF-8 for Vietnamese; "cp850" is the spec's own, for machines that insist on it
    # (Vietnamese letters are then written without their marks).
    encoding: str = "utf-8"
    terminator: Literal["cr", "crlf"] = "cr"
    # `name:scrypt-hash` lines; required when enabled.
    accounts_file: str | None = None
    # TLS on the SIP2 port when both are given (PEM files).
    tls_cert: str | None = None
    tls_key: str | None = None
    max_message_bytes: int = Field(default=4096, ge=256, le=1_048_576)
    idle_timeout_seconds: float = Field(default=600.0, gt=0)
    max_connections: int = Field(default=64, ge=1, le=1024)
    # AO in every reply; the site's code when left out.
    institution_id: str | None = None
    # What 98 tells the client: how long it should wait for an answer, how often retry.
    timeout_seconds: int = Field(default=30, ge=0, le=999)
    retries: int = Field(default=3, ge=0, le=999)
    # Failed logins on one connection before it is closed.
    max_login_failures: int = Field(default=3, ge=1)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            name = codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (utf-8 or cp850)") from None
        if b"|" != "|".encode(name) or "\r".encode(name) != b"\r":
            raise ValueError(f"encoding {value!r} is not ASCII-compatible")
        return name

    @model_validator(mode="after")
    def _complete(self) -> Sip2Config:
        if self.enabled and not self.accounts_file:
            raise ValueError("[sip2] enabled needs accounts_file (made by `thuvien sip2 account`)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("[sip2] tls_cert and tls_key go together")
        return self

    @property
    def terminator_text(self) -> str:
        return "\r\n" if self.terminator == "crlf" else "\r"


class AccountsError(Exception):
    pass


def read_accounts(path: str | Path) -> dict[str, str]:
    """name -> hash; malformed lines are logged and skipped (never a crash at login)."""
    accounts: dict[str, str] = {}
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not _NAME.match(name) or not hashed.startswith("scrypt$"):
            log.error("%s line %d: not `station-name:scrypt$...`; ignored", path, number)
            continue
        accounts[name] = hashed
    return accounts


def check_password(path: str | Path, name: str, password: str) -> bool:
    """Whether `name` has an account with this password. Every failure is just False."""
    try:
        hashed = read_accounts(path).get(name)
    except OSError as exc:
        log.error("cannot read the SIP2 accounts file %s: %s", path, exc.strerror)
        return False
    if hashed is None or not password:
        return False
    try:
        return verify_pin(password, hashed)
    except ValueError as exc:
        log.error("the SIP2 account %s has a damaged hash: %s", name, exc)
        return False


def set_password(path: str | Path, name: str, password: str) -> None:
    """Add or replace `name`'s line; the file is written whole, mode 0600."""
    if not _NAME.match(name):
        raise AccountsError(f"{name!r} is not a station name (a-z, 0-9, -)")
    if len(password) < 8:
        raise AccountsError("a SIP2 password needs at least 8 characters")
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    lines = [line for line in lines if line.partition(":")[0].strip() != name]
    lines.append(f"{name}:{hash_pin(password)}")
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(temporary, path)


def remove_account(path: str | Path, name: str) -> bool:
    path = Path(path)
    if not path.exists():
        return False
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.partition(":")[0].strip() != name]
    if len(kept) == len(lines):
        return False
    path.write_text("\n".join(kept) + ("\n" if kept else ""), encoding="utf-8")
    return True
