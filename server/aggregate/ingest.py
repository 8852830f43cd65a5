"""The schools' upward messages into the aggregate database, idempotently.

`Ingest.write(messages)` writes parsed messages in ONE transaction:
- ledger entries with `INSERT ... ON CONFLICT (site, seq) DO NOTHING RETURNING`: an
  entry seen again (a bridge resending, a school replaying after a restart) is stored
  and counted once; what RETURNING gives back is exactly what is new;
- the new checkouts added to the monthly rollup (`agg_monthly_loans`), leaving out the
  entries whose conflict changed no loan (server.circulation.NOT_APPLIED), so the
  rollup always equals a count over the stored entries;
- each site's bookkeeping (last message, newest entry, count) in `agg_schools`;
- report snapshots upserted, keeping the one with the newest `generated_at`;
- the counters (`agg_counters`).

Bad input never stops the ingest: a payload that does not parse (or does not fit the
columns) is logged, counted as `malformed` and acknowledged, so the broker does not
send it again. A batch the database refuses all the same is written again message by
message, so one bad message cannot hold up the good ones.

`ingest_batches(batches)` (pre-made `UpwardLedgerBatch`es) and `ingest_payloads([(topic,
payload)])` are the same path without MQTT, for the benchmarks. The MQTT side lives in
`server.aggregate.listener`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import Engine, case, func, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError

from protocol.upward import UpwardLedgerBatch, UpwardReport, UpwardSchool, parse_upward
from server.aggregate.config import AggregateConfig
from server.aggregate.models import NO_GRADE, Counter, Entry, MonthlyLoans, School, Snapshot
from server.circulation import NOT_APPLIED

log = logging.getLogger("thuvien.aggregate")

__all__ = ["Ingest", "Malformed", "Parsed", "WriteResult", "grade_of", "impersonal", "local_month",
           "parse_message", "read_counters", "snapshot_figures"]

NOT_APPLIED_VALUES: frozenset[str] = frozenset(conflict.value for conflict in NOT_APPLIED)
_LEADING_NUMBER = re.compile(r"^\s*(\d{1,2})")  # as server.reports.statistics reads a class
# Column sizes (server/aggregate/models.py): a value that does not fit is malformed.
_SIZES = {"item": 64, "item_kind": 16, "reader_class": 32, "station": 64, "conflict": 32}
_BIGINT = 2**63 - 1
_SMALLINT = 2**15 - 1


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Malformed(ValueError):
    """A message that cannot be stored; the text says why, for the log."""


@dataclass(frozen=True)
class Parsed:
    """One upward message, parsed; exactly one of batch, report, school is set."""

    site: str
    received_at: dt.datetime
    batch: UpwardLedgerBatch | None = None
    report: UpwardReport | None = None
    school: UpwardSchool | None = None

    @property
    def rows(self) -> int:
        return len(self.batch.entries) if self.batch is not None else 1


@dataclass
class WriteResult:
    new_entries: int = 0
    duplicates: int = 0
    snapshots_stored: int = 0
    snapshots_older: int = 0
    malformed: int = 0

    def add(self, other: WriteResult) -> None:
        for name in ("new_entries", "duplicates", "snapshots_stored", "snapshots_older", "malformed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def local_month(at: dt.datetime, zone: ZoneInfo) -> int:
    """202609 for a moment in September 2026, in the office's time zone."""
    local = at.astimezone(zone)
    return local.year * 100 + local.month


def grade_of(grade: int | None, class_name: str | None) -> int:
    """The reader's grade (khối), else the class name's leading number ("6A1" -> 6), as
    server.reports.statistics reads it; NO_GRADE when neither tells."""
    if grade is not None:
        return grade
    if class_name and (match := _LEADING_NUMBER.match(class_name)):
        return int(match.group(1))
    return NO_GRADE


def _check_fits(batch: UpwardLedgerBatch) -> None:
    for entry in batch.entries:
        for name, size in _SIZES.items():
            value = getattr(entry, name)
            if value is not None and len(value) > size:
                raise Malformed(f"entry seq {entry.seq}: {name} longer than {size} characters")
        if entry.seq > _BIGINT:
            raise Malformed(f"entry seq {entry.seq} is too large")
        if entry.reader_grade is not None and not 0 <= entry.reader_grade <= _SMALLINT:
            raise Malformed(f"entry seq {entry.seq}: reader_grade {entry.reader_grade} is out of range")
        if entry.days_late is not None and abs(entry.days_late) > 2**31 - 1:
            raise Malformed(f"entry seq {entry.seq}: days_late is out of range")


def parse_message(topic: str, payload: bytes, received_at: dt.datetime) -> Parsed | None:
    """A message of an upward topic, parsed and checked; None for an empty payload (a
    retained message being cleared). Raises Malformed for anything else unusable."""
    try:
        site, kind, name, year = parse_upward(topic)
    except ValueError as exc:
        raise Malformed(str(exc)) from None
    if not payload:
        return None
    try:
        if kind == "ledger":
            batch = UpwardLedgerBatch.model_validate_json(payload)
            parsed = Parsed(site, received_at, batch=batch)
            _check_fits(batch)
            found = batch.site
        elif kind == "report":
            report = UpwardReport.model_validate_json(payload)
            if (report.name, report.school_year) != (name, year):
                raise Malformed(f"the payload's report {report.name}/{report.school_year} is not "
                                f"the topic's {name}/{year}")
            parsed, found = Parsed(site, received_at, report=report), report.site
        else:
            school = UpwardSchool.model_validate_json(payload)
            parsed, found = Parsed(site, received_at, school=school), school.site
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(payload)"
        raise Malformed(f"{exc.error_count()} error(s), first {where}: {first['msg']}") from None
    # The topic is what the bridge and the broker's ACL pin to a school: a payload that
    # names another site is not believed.
    if found != site:
        raise Malformed(f"the payload's site {found!r} is not the topic's {site!r}")
    return parsed


def snapshot_figures(name: str, data: dict[str, Any]) -> dict[str, int | None]:
    """The figures the views need, out of a snapshot's JSON (statistics.py and tt16.py
    document the keys); None where the snapshot does not say."""
    figures: dict[str, int | None] = {"copies": None, "book_copies": None, "students": None,
                                      "loans": None, "tt16_level": None}
    try:
        if name == "statistics":
            stock = data.get("stock") or {}
            figures["copies"] = _int(stock.get("copies"))
            levels = (data.get("coverage") or {}).get("levels") or []
            if levels:
                # Copies per student as Thông tư 16 counts them: books (not equipment), the
                # shared stock divided among the levels, students who have a level.
                figures["students"] = sum(_int(level.get("students")) or 0 for level in levels)
                figures["book_copies"] = round(sum(float(level.get("copies") or 0) for level in levels))
            figures["loans"] = _int((data.get("loans") or {}).get("total"))
        elif name == "tt16":
            level = data.get("overall_level")
            figures["tt16_level"] = level if level in (0, 1, 2) and not isinstance(level, bool) else None
    except (AttributeError, TypeError, ValueError):
        log.warning("a %s snapshot does not have the expected shape; stored without figures", name)
    return figures


# Lists in a statistics snapshot that name readers; what the upper levels may see of them
# is the figure, never the person (protocol/upward.py: nothing personal goes upward).
_PERSONAL_LISTS = ("top_readers", "equipment_by_teacher")
_PERSONAL_KEYS = frozenset({"code", "name"})


def impersonal(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without readers' names and card codes, should a school send them."""
    if name != "statistics" or not any(isinstance(data.get(key), list) for key in _PERSONAL_LISTS):
        return data
    cleaned = dict(data)
    for key in _PERSONAL_LISTS:
        if isinstance(data.get(key), list):
            cleaned[key] = [{k: v for k, v in item.items() if k not in _PERSONAL_KEYS}
                            if isinstance(item, dict) else item for item in data[key]]
    return cleaned


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    number = int(value)
    return number if abs(number) <= 2**31 - 1 else None


def _transient(exc: DBAPIError) -> bool:
    """A failure worth retrying as it is (the connection, a lock), not a refusal of the data."""
    return isinstance(exc, OperationalError) or bool(exc.connection_invalidated)


def _later(column: Any, excluded: Any) -> Any:
    """The later of the stored and the new value, either may be NULL (GREATEST and
    SQLite's max() disagree on NULL: spelled out)."""
    return case((excluded.is_(None), column), (column.is_(None), excluded),
                (column < excluded, excluded), else_=column)


_ENTRY_TYPES: dict[str, str] = {
    "site": "varchar", "seq": "bigint", "op": "varchar", "item": "varchar", "item_kind": "varchar",
    "reader_kind": "varchar", "reader_class": "varchar", "reader_grade": "smallint",
    "station": "varchar", "station_at": "timestamp", "server_at": "timestamp", "due": "date",
    "days_late": "integer", "offline": "boolean", "conflict": "varchar", "received_at": "timestamp"}
_UNNEST_ENTRIES = text(
    f"INSERT INTO agg_entries ({', '.join(_ENTRY_TYPES)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{name} AS {kind}[])' for name, kind in _ENTRY_TYPES.items())}) "
    "ON CONFLICT (site, seq) DO NOTHING RETURNING site, seq")


class _RejectLog:
    """Logs malformed messages, at most `burst` a minute: a school stuck sending bad
    payloads must not fill the disk."""

    def __init__(self, burst: int = 20) -> None:
        self.burst = burst
        self._window = 0.0
        self._logged = 0
        self._hidden = 0

    def __call__(self, topic: str, reason: str) -> None:
        now = time.monotonic()
        if now - self._window >= 60:
            if self._hidden:
                log.warning("%d more malformed messages were not logged", self._hidden)
            self._window, self._logged, self._hidden = now, 0, 0
        if self._logged < self.burst:
            self._logged += 1
            log.warning("malformed upward message on %s: %s", topic, reason[:300])
        else:
            self._hidden += 1


class Ingest:
    """Writes parsed upward messages to the aggregate database (see the module's doc)."""

    def __init__(self, engine: Engine, config: AggregateConfig,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.engine = engine
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.clock = clock
        self.rejected = _RejectLog()
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ValueError(f"the aggregate database must be PostgreSQL (or SQLite for tests), not {dialect}")
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    # --- the expected schools -------------------------------------------------------

    def sync_schools(self) -> int:
        """Make `agg_schools` list exactly the config's schools as listed (the others stay,
        as not listed); returns how many are listed."""
        rows = [{"site": s.site, "name": s.name, "commune": s.commune, "levels": ",".join(s.levels),
                 "listed": True, "entries": 0} for s in self.config.schools]
        with self.engine.begin() as connection:
            connection.execute(update(School).where(School.listed.is_(True)).values(listed=False))
            if rows:
                insert = self._insert(School)
                connection.execute(insert.on_conflict_do_update(index_elements=[School.site], set_={
                    "name": insert.excluded.name, "commune": insert.excluded.commune,
                    "levels": insert.excluded.levels, "listed": True}), rows)
        return len(rows)

    # --- without MQTT (benchmarks, tests) -------------------------------------------

    def ingest_batches(self, batches: Iterable[UpwardLedgerBatch]) -> int:
        """Store pre-made ledger batches, `flush_rows` entries per transaction; returns
        the number of entries that were new."""
        now = self.clock()
        parsed = (Parsed(batch.site, now, batch=batch) for batch in batches)
        return sum(self.write(chunk).new_entries for chunk in self._chunks(parsed))

    def ingest_payloads(self, messages: Iterable[tuple[str, bytes]]) -> WriteResult:
        """Parse and store raw (topic, payload) messages as the MQTT path does."""
        total = WriteResult()
        malformed = 0

        def parsed() -> Iterator[Parsed]:
            nonlocal malformed
            for topic, payload in messages:
                try:
                    message = parse_message(topic, payload, self.clock())
                except Malformed as exc:
                    self.rejected(topic, str(exc))
                    malformed += 1
                    continue
                if message is not None:
                    yield message

        for chunk in self._chunks(parsed()):
            total.add(self.write(chunk, malformed=malformed))
            malformed = 0
        if malformed:
            total.add(self.write([], malformed=malformed))
        return total

    def _chunks(self, messages: Iterable[Parsed]) -> Iterator[list[Parsed]]:
        chunk: list[Parsed] = []
        rows = 0
        for message in messages:
            chunk.append(message)
            rows += message.rows
            if rows >= self.config.ingest.flush_rows:
                yield chunk
                chunk, rows = [], 0
        if chunk:
            yield chunk

    # --- one transaction ------------------------------------------------------------

    def write(self, messages: Sequence[Parsed], malformed: int = 0) -> WriteResult:
        """Store `messages` in one transaction. A transient database failure (the
        connection lost) raises; a refusal of the data is retried one message at a
        time, and the messages refused alone are counted as malformed."""
        try:
            return self._write(messages, malformed)
        except DBAPIError as exc:
            if _transient(exc):
                raise
            log.warning("the database refused a batch of %d messages (%s); writing them one by one",
                        len(messages), type(exc.orig).__name__ if exc.orig else exc)
        result = WriteResult()
        for message in messages:
            try:
                result.add(self._write([message], 0))
            except DBAPIError as exc:
                if _transient(exc):
                    raise
                kind = "ledger" if message.batch else "report" if message.report else "school"
                self.rejected(f"{message.site} ({kind})", f"refused by the database: {exc.orig}")
                malformed += 1
        result.add(self._write([], malformed))
        return result

    def _write(self, messages: Sequence[Parsed], malformed: int) -> WriteResult:
        result = WriteResult(malformed=malformed)
        entries: dict[tuple[str, int], dict[str, Any]] = {}
        reports: dict[tuple[str, str, int], UpwardReport] = {}
        schools: dict[str, UpwardSchool] = {}
        seen: dict[str, dt.datetime] = {}
        for message in messages:
            seen[message.site] = max(seen.get(message.site, message.received_at), message.received_at)
            if message.batch is not None:
                for entry in message.batch.entries:
                    key = (message.site, entry.seq)
                    if key in entries:
                        result.duplicates += 1
                        continue
                    entries[key] = {
                        "site": message.site, "seq": entry.seq, "op": entry.op, "item": entry.item,
                        "item_kind": entry.item_kind, "reader_kind": entry.reader_kind,
                        "reader_class": entry.reader_class, "reader_grade": entry.reader_grade,
                        "station": entry.station, "station_at": entry.station_at,
                        "server_at": entry.server_at, "due": entry.due, "days_late": entry.days_late,
                        "offline": entry.offline, "conflict": entry.conflict,
                        "received_at": message.received_at}
            elif message.report is not None:
                report = message.report
                key3 = (message.site, report.name, report.school_year)
                if key3 not in reports or reports[key3].generated_at < report.generated_at:
                    if key3 in reports:
                        result.snapshots_older += 1
                    reports[key3] = report
                else:
                    result.snapshots_older += 1
            elif message.school is not None:
                schools[message.site] = message.school

        with self.engine.begin() as connection:
            new_keys: list[tuple[str, int]] = []
            if entries:
                new_keys = self._insert_entries(connection, list(entries.values()))
            result.new_entries = len(new_keys)
            result.duplicates += len(entries) - len(new_keys)
            self._add_to_rollup(connection, [entries[key] for key in new_keys])
            self._touch_schools(connection, seen, [entries[key] for key in new_keys], schools)
            if reports:
                stored = self._store_reports(connection, list(reports.values()))
                result.snapshots_stored += stored
                result.snapshots_older += len(reports) - stored
            self._count(connection, {
                "messages": len(messages) + malformed, "malformed": malformed,
                "entries_new": result.new_entries, "entries_duplicate": result.duplicates,
                "snapshots_stored": result.snapshots_stored, "snapshots_older": result.snapshots_older,
                "school_messages": len(schools)})
        return result

    def _insert_entries(self, connection: Any, rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
        """Insert what is new among `rows`; returns the keys of the rows inserted."""
        if self.engine.dialect.name != "postgresql":
            insert = self._insert(Entry).on_conflict_do_nothing(
                index_elements=[Entry.site, Entry.seq]).returning(Entry.site, Entry.seq)
            return [(row[0], row[1]) for row in connection.execute(insert, rows)]
        # One statement over arrays (unnest): a multi-row VALUES of 2,000 rows x 16
        # columns costs more to build and parse than to run (about 2,500 rows/s).
        arrays: dict[str, list[Any]] = {name: [] for name in _ENTRY_TYPES}
        for row in rows:
            for name in _ENTRY_TYPES:
                value = row[name]
                if isinstance(value, dt.datetime):  # UtcDateTime's storage: naive UTC
                    value = value.astimezone(dt.UTC).replace(tzinfo=None)
                arrays[name].append(value)
        return [(row[0], row[1]) for row in connection.execute(_UNNEST_ENTRIES, arrays)]

    def _add_to_rollup(self, connection: Any, new: list[dict[str, Any]]) -> None:
        tally: Tally[tuple[str, int, str, int]] = Tally()
        for row in new:
            if row["op"] == "checkout" and row["conflict"] not in NOT_APPLIED_VALUES:
                tally[(row["site"], local_month(row["station_at"], self.zone), row["reader_kind"],
                       grade_of(row["reader_grade"], row["reader_class"]))] += 1
        if not tally:
            return
        insert = self._insert(MonthlyLoans)
        connection.execute(insert.on_conflict_do_update(
            index_elements=[MonthlyLoans.site, MonthlyLoans.month, MonthlyLoans.reader_kind,
                            MonthlyLoans.grade],
            set_={"checkouts": MonthlyLoans.checkouts + insert.excluded.checkouts}),
            [{"site": site, "month": month, "reader_kind": kind, "grade": grade, "checkouts": n}
             for (site, month, kind, grade), n in sorted(tally.items())])

    def _touch_schools(self, connection: Any, seen: dict[str, dt.datetime], new: list[dict[str, Any]],
                       schools: dict[str, UpwardSchool]) -> None:
        if not seen:
            return
        per_site: dict[str, dict[str, Any]] = {
            site: {"site": site, "listed": False, "entries": 0, "max_seq": None, "last_entry_at": None,
                   "first_seen_at": at, "last_message_at": at} for site, at in seen.items()}
        for row in new:
            mine = per_site[row["site"]]
            mine["entries"] += 1
            if mine["max_seq"] is None or row["seq"] > mine["max_seq"]:
                mine["max_seq"] = row["seq"]
            if mine["last_entry_at"] is None or row["station_at"] > mine["last_entry_at"]:
                mine["last_entry_at"] = row["station_at"]
        insert = self._insert(School)
        excluded = insert.excluded
        connection.execute(insert.on_conflict_do_update(index_elements=[School.site], set_={
            "entries": School.entries + excluded.entries,
            "max_seq": _later(School.max_seq, excluded.max_seq),
            "last_entry_at": _later(School.last_entry_at, excluded.last_entry_at),
            "last_message_at": _later(School.last_message_at, excluded.last_message_at),
            "first_seen_at": func.coalesce(School.first_seen_at, excluded.first_seen_at),
        }), [per_site[site] for site in sorted(per_site)])
        for site, school in sorted(schools.items()):
            connection.execute(update(School).where(School.site == site).values(
                published_name=school.school_name[:300], published_levels=",".join(school.levels)[:100],
                software_version=school.software_version[:40]))

    def _store_reports(self, connection: Any, reports: list[UpwardReport]) -> int:
        now = self.clock()
        rows = [{"site": r.site, "name": r.name, "school_year": r.school_year,
                 "generated_at": r.generated_at, "received_at": now, "data": impersonal(r.name, r.data),
                 **snapshot_figures(r.name, r.data)} for r in reports]
        insert = self._insert(Snapshot)
        excluded = insert.excluded
        statement = insert.on_conflict_do_update(
            index_elements=[Snapshot.site, Snapshot.name, Snapshot.school_year],
            set_={name: getattr(excluded, name) for name in (
                "generated_at", "received_at", "data", "copies", "book_copies", "students", "loans",
                "tt16_level")},
            # An older snapshot arriving late (a retained copy, a slow bridge) changes nothing.
            where=Snapshot.generated_at < excluded.generated_at,
        ).returning(Snapshot.site)
        return len(connection.execute(statement, rows).all())

    def _count(self, connection: Any, counts: dict[str, int]) -> None:
        rows = [{"name": name, "value": value} for name, value in sorted(counts.items()) if value]
        if not rows:
            return
        insert = self._insert(Counter)
        connection.execute(insert.on_conflict_do_update(
            index_elements=[Counter.name], set_={"value": Counter.value + insert.excluded.value}), rows)


@dataclass
class Counts:
    """The counters as read back (the web's ingest page, tests)."""

    values: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> int:
        return self.values.get(name, 0)


def read_counters(engine: Engine) -> Counts:
    from sqlalchemy import select

    with engine.connect() as connection:
        return Counts({name: value for name, value in connection.execute(select(Counter.name, Counter.value))})
