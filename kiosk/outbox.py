"""The station's durable outbox: requests accepted offline, waiting to reach the server.

One SQLite file (WAL, `synchronous=FULL`): `add` commits a request before it returns, so
a reader is told "recorded" only once the request survives a crash or a power cut.
Pending requests come back in the order they were accepted; each is marked done with a
summary of the server's reply once it has been replayed (or once a late reply to it
arrived). Done rows are kept a while for the librarian's questions, then pruned.

Thread-safe: one connection behind a lock (the session's thread adds, the replay thread
and the network thread mark done).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import Reply, Request

log = logging.getLogger("thuvien.kiosk.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    op        TEXT NOT NULL,
    request   TEXT NOT NULL,   -- the Request as JSON: replayed exactly as accepted
    at        TEXT NOT NULL,   -- the station's time of the request
    reader    TEXT,            -- a hashed reader key, for per-reader offline limits
    queued_at TEXT NOT NULL,
    done_at   TEXT,
    ok        INTEGER,
    summary   TEXT             -- the server's reply, summarised, once it came
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (done_at, seq);
CREATE INDEX IF NOT EXISTS outbox_reader ON outbox (reader, done_at);
"""


class OutboxError(Exception):
    """The outbox file cannot be opened or written: nothing can be accepted offline."""


@dataclass(frozen=True)
class Queued:
    seq: int
    request: Request
    reader: str | None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def summarize(reply: Reply) -> dict[str, Any]:
    """What the outbox keeps of a reply: enough to answer "what became of it?"."""
    if reply.ok:
        return {"ok": True, "result": reply.result}
    assert reply.error is not None
    return {"ok": False, "code": reply.error.code.value, "message": reply.error.message}


class Outbox:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we say BEGIN/COMMIT ourselves, one transaction per call.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on the disk (WAL fsync'd) before add() returns.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._pending = self._count_pending()
        try:
            os.chmod(self.path, 0o600)  # it names readers' cards: the station's eyes only
        except OSError:
            pass

    # --- writing ---

    def add(self, request: Request, reader: str | None = None) -> bool:
        """Commit `request` to the outbox; False if its id was already there."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO outbox (id, op, request, at, reader, queued_at) VALUES (?,?,?,?,?,?)",
                    (request.id, request.op.value, request.model_dump_json(), request.at.isoformat(),
                     reader, _now()))
            except sqlite3.IntegrityError:
                return False
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot write the outbox {self.path}: {exc}") from exc
            self._pending += 1
            return True

    def mark_done(self, request_id: str, reply: Reply) -> bool:
        """The server answered `request_id`: it leaves the queue. False if it was not pending."""
        with self._lock:
            try:
                # A mark lost in a power cut costs one more replay of an id the server
                # answers from its record, no more: no fsync for it (a replay of 10,000
                # requests would spend most of its time there). Adds stay FULL.
                self._db.execute("PRAGMA synchronous=NORMAL")
                try:
                    cursor = self._db.execute(
                        "UPDATE outbox SET done_at = ?, ok = ?, summary = ? WHERE id = ? AND done_at IS NULL",
                        (_now(), int(reply.ok), json.dumps(summarize(reply), ensure_ascii=False),
                         request_id))
                finally:
                    self._db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot write the outbox {self.path}: {exc}") from exc
            if cursor.rowcount:
                self._pending -= 1
            return bool(cursor.rowcount)

    def mark_done_many(self, replies: list[Reply]) -> int:
        """`mark_done` for a run of replies in one transaction (a replay answered in a
        burst); how many were pending."""
        if not replies:
            return 0
        now = _now()
        rows = [(now, int(reply.ok), json.dumps(summarize(reply), ensure_ascii=False), reply.id)
                for reply in replies]
        with self._lock:
            try:
                self._db.execute("PRAGMA synchronous=NORMAL")  # as in mark_done
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        marked = 0
                        for row in rows:
                            marked += self._db.execute(
                                "UPDATE outbox SET done_at = ?, ok = ?, summary = ?"
                                " WHERE id = ? AND done_at IS NULL", row).rowcount
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
                finally:
                    self._db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot write the outbox {self.path}: {exc}") from exc
            self._pending -= marked
            return marked

    def prune(self, older_than: dt.timedelta = dt.timedelta(days=7)) -> int:
        """Forget requests answered long ago (they name readers' cards)."""
        cutoff = (dt.datetime.now(dt.timezone.utc) - older_than).isoformat()
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM outbox WHERE done_at IS NOT NULL AND done_at < ?", (cutoff,))
            return cursor.rowcount

    # --- reading ---

    def pending(self, limit: int = 100, *, after: int = 0) -> list[Queued]:
        """The oldest pending requests, in the order they were accepted; with `after`,
        only those accepted after the request of that `seq` (a replay refilling its window)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, request, reader FROM outbox WHERE done_at IS NULL AND seq > ?"
                " ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        queued = []
        for seq, payload, reader in rows:
            try:
                queued.append(Queued(seq, Request.model_validate_json(payload), reader))
            except ValueError as exc:
                # Cannot happen unless the file was edited or damaged: set it aside with
                # a loud log rather than block every request behind it forever.
                log.error("outbox: row %d is unreadable and is set aside: %s", seq, exc)
                self._set_aside(seq, str(exc))
        return queued

    def _set_aside(self, seq: int, why: str) -> None:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE outbox SET done_at = ?, ok = 0, summary = ? WHERE seq = ? AND done_at IS NULL",
                (_now(), json.dumps({"ok": False, "code": "unreadable", "message": why[:500]}), seq))
            if cursor.rowcount:
                self._pending -= 1

    def first(self) -> Queued | None:
        rows = self.pending(1)
        return rows[0] if rows else None

    def __len__(self) -> int:
        """Pending requests: the `outbox` of the station's status."""
        return self._pending

    def pending_for(self, reader: str, op: str) -> int:
        """Requests of `op` this reader made offline that have not been replayed yet."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM outbox WHERE reader = ? AND op = ? AND done_at IS NULL",
                (reader, op)).fetchone()
        return int(count)

    def summary(self, request_id: str) -> dict[str, Any] | None:
        """The server's answer to a replayed request; None while it is pending or unknown."""
        with self._lock:
            row = self._db.execute("SELECT summary FROM outbox WHERE id = ?", (request_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def is_pending(self, request_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM outbox WHERE id = ? AND done_at IS NULL",
                                   (request_id,)).fetchone()
        return row is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _count_pending(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM outbox WHERE done_at IS NULL").fetchone()
        return int(count)
