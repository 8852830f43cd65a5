"""The chaos test's parts shared by the test and its station program: the plan of the
library, the stations' journals, the server's config, and the audit of the ledger.

A station journals, as JSON lines appended with one write() each and fsync'd:

- `sent`: a checkout or return about to go out (its request id, before any send or
  outbox commit), so that a ledger entry of a station killed before it could tell its
  reader is still known to come from somewhere;
- `told`: an operation the station told its reader succeeded (`how`: "online", or
  "offline" once the outbox committed it); identifies too, with no id;
- `refused`: a checkout or return the reader was told was refused, and by whom (`by`):
  the server, the station before anything went out, or the station after its live try
  timed out (the limits of offline lending); none of them may be on the ledger;
- `uncertain`: a checkout or return sent that the reader heard nothing definite about
  (the server unreachable and the outbox not taking it): the station leaves that copy
  alone from then on, since it cannot know who holds it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SITE = "chaos"
UNKNOWN_CARD = "HS-9999-0001"
UNKNOWN_ITEM = "TN77777"
# Entries with these marks changed no loan (server.circulation.NOT_APPLIED, spelled out
# here so that the audit does not take the server's word for its own rule).
NOT_APPLIED = frozenset({"on_loan_to_other", "not_loanable", "not_on_loan", "lent_again"})
LEDGER_OPS = {"loan.checkout": "checkout", "loan.return": "return"}


# --- the plan ------------------------------------------------------------------------

@dataclass
class StationPlan:
    name: str
    readers: list[str]        # this station's readers' cards; the last one is blocked
    copies: list[str]         # barcodes of copies only this station lends
    outbox: str
    cards: str
    journal: str
    log: str


@dataclass
class ChaosPlan:
    site: str
    port: int
    seed: int
    max_ops: int              # per station, over all its lives
    shared: list[str]         # barcodes of copies every station lends and takes back
    stations: list[StationPlan] = field(default_factory=list)
    request_timeout_s: float = 1.5
    serving_s: float = 40.0   # stations spread their operations over this
    stop_file: str = ""
    drain_s: float = 60.0

    def station(self, name: str) -> StationPlan:
        return next(s for s in self.stations if s.name == name)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ChaosPlan:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        raw["stations"] = [StationPlan(**s) for s in raw["stations"]]
        return cls(**raw)


def make_plan(workdir: Path, *, port: int, seed: int, stations: int, max_ops: int,
              readers_per_station: int = 8, copies_per_station: int = 30,
              shared_copies: int = 24) -> ChaosPlan:
    plan = ChaosPlan(site=SITE, port=port, seed=seed, max_ops=max_ops,
                     shared=[f"TN00{n:03d}" for n in range(1, shared_copies + 1)],
                     stop_file=str(workdir / "stop"))
    for s in range(1, stations + 1):
        name = f"chaos-{s}"
        home = workdir / name
        plan.stations.append(StationPlan(
            name=name,
            readers=[f"HS-26{s:02d}-{r:04d}" for r in range(1, readers_per_station + 2)],
            copies=[f"TN{s + 10:02d}{n:03d}" for n in range(1, copies_per_station + 1)],
            outbox=str(home / "outbox.db"), cards=str(home / "cards.db"),
            journal=str(home / "journal.jsonl"), log=str(home / "station.log")))
    return plan


def accession(barcode: str) -> str:
    return f"{barcode[:2]}.{barcode[2:]}"


# --- the library ---------------------------------------------------------------------

def seed_library(url: str, plan: ChaosPlan) -> None:
    """A schema at head and the plan's readers, copies and registered stations."""
    from server import db
    from server import stations as registry
    from server.models import Copy, Reader, ReaderStatus, Title

    db.upgrade(url)
    engine = db.make_engine(url)
    now = dt.datetime.now(dt.timezone.utc)
    with db.session_factory(engine).begin() as session:
        title = Title(title="Dế Mèn phiêu lưu ký", author="Tô Hoài")
        session.add(title)
        session.flush()
        for station in plan.stations:
            for n, card in enumerate(station.readers):
                blocked = n == len(station.readers) - 1
                session.add(Reader(
                    code=card, name=f"Học sinh {card}", kind="student", class_name="6A1",
                    status=ReaderStatus.BLOCKED if blocked else ReaderStatus.ACTIVE,
                    block_reason="Làm mất sách" if blocked else None, created_at=now))
        for barcode in [*plan.shared, *(c for s in plan.stations for c in s.copies)]:
            session.add(Copy(title_id=title.id, kind="TN", accession_number=accession(barcode),
                             barcode=barcode, price=30000))
    for station in plan.stations:
        registry.register(engine, station.name, "kiosk", now=now)
    engine.dispose()


def server_config_text(site: str, url: str, port: int) -> str:
    # Limits low enough that readers meet them (refused online, a conflict offline).
    return f"""\
version = 1
site = "{site}"
school_name = "Trường THCS Hỗn loạn"
language = "en"

[database]
url = "{url}"

[mqtt]
host = "127.0.0.1"
port = {port}

[circulation]
max_loans = {{ student = 4, teacher = 10, staff = 5 }}
block_overdue_after_days = 0

[[circulation.policy]]
reader_kind = "student"
item_kind = "TN"
loan_days = 14
max_items = 4
renewals = 1
"""


# --- journals ------------------------------------------------------------------------

class Journal:
    """Append-only, one write() per record (a SIGKILL cannot tear it), fsync'd."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, **record: Any) -> None:
        record["t"] = round(time.time(), 3)
        os.write(self._fd, (json.dumps(record, ensure_ascii=False) + "\n").encode())
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def outbox_pending(path: str | Path) -> int:
    """Requests still waiting in a station's outbox (read beside the station, WAL)."""
    if not Path(path).exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT count(*) FROM outbox WHERE done_at IS NULL").fetchone()
    return int(count)


# --- the audit -----------------------------------------------------------------------

@dataclass
class Audit:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(message)


def audit(db_path: Path, plan: ChaosPlan) -> Audit:
    """Everything the stations told their readers against the server's SQLite file."""
    result = Audit()
    sent: dict[str, dict[str, Any]] = {}
    told: dict[str, dict[str, Any]] = {}
    refused: dict[str, dict[str, Any]] = {}
    told_counts: Counter[str] = Counter()
    for station in plan.stations:
        for record in read_journal(station.journal):
            kind = record["k"]
            if kind == "told":
                told_counts[f"{record['op']} {record['how']}"] += 1
            if "id" not in record:
                continue
            if kind == "sent":
                if record["id"] in sent:
                    result.fail(f"request id {record['id']} was made twice")
                sent[record["id"]] = {**record, "station": station.name}
            elif kind == "refused":
                refused[record["id"]] = {**record, "station": station.name}
            elif kind == "told":
                if record["id"] in told:
                    result.fail(f"request id {record['id']} was told twice")
                told[record["id"]] = {**record, "station": station.name}
    for request_id in told.keys() - sent.keys():
        result.fail(f"told {request_id} without journaling it as sent first")

    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    copies = {row["id"]: row for row in db.execute("SELECT id, barcode, status FROM copies")}
    ledger = db.execute("SELECT seq, request_id, op, copy_id, reader_id, station, offline, "
                        "conflict FROM ledger_entries ORDER BY seq").fetchall()
    alerts = [json.loads(row["data"]) for row in
              db.execute("SELECT data FROM alerts WHERE type = 'offline.conflict'")]
    processed = {row["request_id"]: json.loads(row["reply"]) for row in
                 db.execute("SELECT request_id, reply FROM processed_requests")}
    loans = {row["copy_id"]: row["reader_id"] for row in
             db.execute("SELECT copy_id, reader_id FROM loans")}
    db.close()

    by_id: dict[str, list[Any]] = defaultdict(list)
    for entry in ledger:
        by_id[entry["request_id"]].append(entry)
    alerts_by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for data in alerts:
        alerts_by_id[data["request_id"]].append(data)

    # None doubled, none invented: each entry's id once, and made by the station it names.
    for request_id, entries in by_id.items():
        if len(entries) > 1:
            result.fail(f"request {request_id} is on the ledger {len(entries)} times "
                        f"(seqs {[e['seq'] for e in entries]})")
        entry = entries[0]
        origin = sent.get(request_id)
        if origin is None:
            result.fail(f"ledger seq {entry['seq']} has request id {request_id} that no "
                        f"station made")
            continue
        if origin["station"] != entry["station"] or LEDGER_OPS[origin["op"]] != entry["op"] \
                or copies[entry["copy_id"]]["barcode"] != origin["item"]:
            result.fail(f"ledger seq {entry['seq']} ({entry['station']} {entry['op']} "
                        f"{copies[entry['copy_id']]['barcode']}) is not what {origin['station']} "
                        f"sent as {request_id} ({origin['op']} {origin['item']})")
        if request_id not in processed:
            result.fail(f"ledger seq {entry['seq']}: request {request_id} has no idempotency record")

    # None lost: each told success on the ledger once, or (an item or reader the library
    # does not know, a return of a copy never lent) its alert alone, as the protocol says.
    alert_only = 0
    for request_id, record in told.items():
        entries = by_id.get(request_id, [])
        if entries:
            if record["how"] == "online" and (entries[0]["offline"] or entries[0]["conflict"]):
                result.fail(f"{request_id} was told ok online but is on the ledger as offline "
                            f"or as a conflict ({entries[0]['conflict']})")
            continue
        lone = [a for a in alerts_by_id.get(request_id, []) if a.get("seq") is None]
        if lone:
            alert_only += 1
            continue
        result.fail(f"{record['station']} told its reader {record['op']} {record['item']} "
                    f"({request_id}, {record['how']}) succeeded, but the ledger has no entry "
                    f"and no alert explains it; the server's stored reply: "
                    f"{processed.get(request_id)}")

    # A reader told "no" took nothing away and left nothing.
    for request_id, record in refused.items():
        if by_id.get(request_id) or alerts_by_id.get(request_id):
            result.fail(f"{record['station']} told its reader {record['op']} {record['item']} "
                        f"({request_id}) was refused ({record['code']}), but the server "
                        f"recorded it")

    # Every conflict alerted once; every alert about a request a station made.
    conflicts: Counter[str] = Counter()
    for entry in ledger:
        if entry["conflict"] is None:
            continue
        conflicts[entry["conflict"]] += 1
        matching = [a for a in alerts_by_id.get(entry["request_id"], [])
                    if a.get("seq") == entry["seq"] and a.get("conflict") == entry["conflict"]]
        if len(matching) != 1:
            result.fail(f"ledger seq {entry['seq']} ({entry['conflict']}) has "
                        f"{len(matching)} offline.conflict alerts")
    for request_id, raised in alerts_by_id.items():
        if len(raised) > 1:
            result.fail(f"request {request_id} raised {len(raised)} offline.conflict alerts")
        if request_id not in sent:
            result.fail(f"offline.conflict alert for {request_id}, which no station made")
        for data in raised:
            if data.get("seq") is None:
                conflicts[f"{data['conflict']} (alert only)"] += 1
                if by_id.get(request_id):
                    result.fail(f"alert for {request_id} has no seq, but it is on the ledger")

    # The loans table is the ledger's applied entries, replayed.
    replayed: dict[int, int] = {}
    for entry in ledger:
        if entry["conflict"] in NOT_APPLIED:
            continue
        copy = entry["copy_id"]
        if entry["op"] == "checkout":
            if copy in replayed:
                result.fail(f"ledger seq {entry['seq']} lends copy {copy}, which is on loan")
            replayed[copy] = entry["reader_id"]
        elif entry["op"] == "return":
            if replayed.get(copy) != entry["reader_id"]:
                result.fail(f"ledger seq {entry['seq']} returns copy {copy} from reader "
                            f"{entry['reader_id']}, who does not hold it")
            replayed.pop(copy, None)
    if replayed != loans:
        diff = {c: (replayed.get(c), loans.get(c)) for c in replayed.keys() | loans.keys()
                if replayed.get(c) != loans.get(c)}
        result.fail(f"loans table differs from the ledger (copy: ledger, table): {diff}")
    for copy_id, row in copies.items():
        if (row["status"] == "on_loan") != (copy_id in loans):
            result.fail(f"copy {row['barcode']} has status {row['status']} but "
                        f"{'a' if copy_id in loans else 'no'} loan")

    told_ids_online = sum(1 for r in told.values() if r["how"] == "online")
    result.counts = {
        "told_ok": dict(sorted(told_counts.items())),
        "told_ok_online": told_ids_online,
        "told_ok_offline": len(told) - told_ids_online,
        "sent": len(sent),
        "ledger_entries": len(ledger),
        "ledger_offline": sum(1 for e in ledger if e["offline"]),
        "ledger_not_told": sum(1 for i in by_id if i not in told),
        "told_alert_only": alert_only,
        "refused": dict(sorted(Counter(f"{r['code']} by {r.get('by')}"
                                       for r in refused.values()).items())),
        "conflicts": dict(sorted(conflicts.items())),
        "offline_conflict_alerts": len(alerts),
        "loans_now": len(loans),
    }
    return result
