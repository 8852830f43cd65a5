"""Cards this station has seen, for serving readers while the library is unreachable.

Each successful identify leaves the least that serving offline needs: the reader's kind,
whether the card was blocked, how many more books it could borrow, when it was seen,
and a key for the reader (to count their offline checkouts across cards). No name, no
class, no loans. Cards and reader ids are stored only as salted SHA-256 (a random salt
per station, kept in the same file): the file does not list who uses the library,
though a card number can still be tried against it by someone holding the file, so it
is kept 0600 like the outbox. Entries expire after `max_age` and the oldest go first
beyond `max_entries`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from protocol import IdentifyResult

log = logging.getLogger("thuvien.kiosk.cardcache")

Kind = Literal["student", "teacher", "staff"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cards (
    card       TEXT PRIMARY KEY,   -- sha256(salt + card), hex
    reader     TEXT NOT NULL,      -- sha256(salt + reader id), hex
    kind       TEXT NOT NULL,
    blocked    INTEGER NOT NULL,
    can_borrow INTEGER NOT NULL,
    seen_at    REAL NOT NULL       -- unix time
);
CREATE INDEX IF NOT EXISTS cards_seen ON cards (seen_at);
"""


@dataclass(frozen=True)
class CachedCard:
    reader: str      # the hashed reader key
    kind: Kind
    blocked: bool
    can_borrow: int  # at last sight
    seen_at: float


class CardCache:
    def __init__(self, path: str | Path, *, max_entries: int = 5000, max_age_s: float = 30 * 86400,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
        if row is None:
            salt = secrets.token_hex(16)
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('salt', ?)", (salt,))
            row = self._db.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
        self._salt = bytes.fromhex(row[0])
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass

    def key(self, code: str) -> str:
        """The salted hash of a card or reader id, as the cache stores it."""
        folded = code.strip().casefold().encode("utf-8")
        return hashlib.sha256(self._salt + folded).hexdigest()

    def remember(self, card: str, result: IdentifyResult) -> None:
        """A successful identify: keep what serving this card offline needs."""
        reader = self.key(result.patron.id)
        row = (reader, result.patron.kind, int(bool(result.blocks)), max(0, result.can_borrow),
               self._clock())
        with self._lock:
            # The reader's own id is a card too (the server finds readers by it): lending
            # after an identify whose card was a UID sends the id, and must find them.
            for code in {card.strip().casefold(), result.patron.id.strip().casefold()}:
                self._db.execute(
                    "INSERT OR REPLACE INTO cards (card, reader, kind, blocked, can_borrow, seen_at) "
                    "VALUES (?,?,?,?,?,?)", (self.key(code), *row))
            self._trim()

    def borrowed(self, card: str) -> None:
        """A live checkout went through: one fewer to borrow, as of now."""
        with self._lock:
            self._db.execute("UPDATE cards SET can_borrow = max(0, can_borrow - 1) "
                             "WHERE reader = (SELECT reader FROM cards WHERE card = ?)",
                             (self.key(card),))

    def forget(self, card: str) -> None:
        """The server no longer knows this card."""
        with self._lock:
            self._db.execute("DELETE FROM cards WHERE card = ?", (self.key(card),))

    def get(self, card: str) -> CachedCard | None:
        with self._lock:
            row = self._db.execute(
                "SELECT reader, kind, blocked, can_borrow, seen_at FROM cards WHERE card = ?",
                (self.key(card),)).fetchone()
        if row is None:
            return None
        reader, kind, blocked, can_borrow, seen_at = row
        if self._clock() - seen_at > self.max_age_s:
            return None
        return CachedCard(reader=reader, kind=cast(Kind, kind), blocked=bool(blocked),
                          can_borrow=int(can_borrow), seen_at=float(seen_at))

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM cards").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _trim(self) -> None:
        self._db.execute("DELETE FROM cards WHERE seen_at < ?", (self._clock() - self.max_age_s,))
        self._db.execute(
            "DELETE FROM cards WHERE card NOT IN (SELECT card FROM cards ORDER BY seen_at DESC LIMIT ?)",
            (self.max_entries,))
