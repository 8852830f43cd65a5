"""The aggregate database's tables, apart from a school's (all prefixed `agg_`).

- `agg_schools`: every school the office expects (from the config) or has heard from,
  with what the ingest keeps current about it (last message, newest entry, counts).
- `agg_entries`: the schools' upward ledger entries, primary key (site, seq): a replayed
  entry is stored once (INSERT ... ON CONFLICT DO NOTHING).
- `agg_monthly_loans`: checkouts per (site, local month, reader kind, grade), added to in
  the same transaction as the entries they count, so the views never scan the entries.
- `agg_snapshots`: the newest report snapshot per (site, report name, school year), with
  the few figures the views need taken out of its JSON at ingest time.
- `agg_counters`: what the ingest has seen (messages, malformed payloads, duplicates...).

The staff web's accounts live here too, in the school schema's own tables
(`staff_users`, `staff_sessions`, `login_throttle` of server.models), so that
server.web.accounts and server.web.auth serve the aggregate's web unchanged.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, Integer, MetaData, SmallInteger, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from server.models import NAMING, UtcDateTime

__all__ = ["AggregateBase", "Counter", "Entry", "MonthlyLoans", "NO_GRADE", "School", "Snapshot",
           "ACCOUNT_TABLES"]

# The school schema's tables the aggregate database also has (for staff sign-in).
ACCOUNT_TABLES: tuple[str, ...] = ("staff_users", "staff_sessions", "login_throttle")
# The grade of a reader whose grade is not known (a teacher, a class with no number).
NO_GRADE = -1

Json = JSON().with_variant(JSONB(), "postgresql")


class AggregateBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class School(AggregateBase):
    __tablename__ = "agg_schools"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    # From the config; None for a school that is not in the list.
    name: Mapped[str | None] = mapped_column(String(300))
    commune: Mapped[str | None] = mapped_column(String(200))
    levels: Mapped[str | None] = mapped_column(String(100))        # "primary,lower_secondary"
    listed: Mapped[bool] = mapped_column(Boolean, default=False)
    # From the school's own retained `upward/school` message.
    published_name: Mapped[str | None] = mapped_column(String(300))
    published_levels: Mapped[str | None] = mapped_column(String(100))
    software_version: Mapped[str | None] = mapped_column(String(40))
    first_seen_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    last_message_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    last_entry_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())   # newest station_at
    entries: Mapped[int] = mapped_column(BigInteger, default=0)
    max_seq: Mapped[int | None] = mapped_column(BigInteger)

    @property
    def display_name(self) -> str:
        return self.name or self.published_name or self.site

    @property
    def level_list(self) -> list[str]:
        text = self.levels if self.listed else (self.published_levels or self.levels)
        return [part for part in (text or "").split(",") if part]


class Entry(AggregateBase):
    __tablename__ = "agg_entries"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    op: Mapped[str] = mapped_column(String(16))
    item: Mapped[str] = mapped_column(String(64))
    item_kind: Mapped[str] = mapped_column(String(16))
    reader_kind: Mapped[str] = mapped_column(String(16))
    reader_class: Mapped[str | None] = mapped_column(String(32))
    reader_grade: Mapped[int | None] = mapped_column(SmallInteger)
    station: Mapped[str] = mapped_column(String(64))
    station_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    server_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    due: Mapped[dt.date | None] = mapped_column(Date)
    days_late: Mapped[int | None] = mapped_column(Integer)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    conflict: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class MonthlyLoans(AggregateBase):
    __tablename__ = "agg_monthly_loans"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)  # 202609, local
    reader_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    grade: Mapped[int] = mapped_column(SmallInteger, primary_key=True)     # NO_GRADE if unknown
    checkouts: Mapped[int] = mapped_column(BigInteger, default=0)


class Snapshot(AggregateBase):
    __tablename__ = "agg_snapshots"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)        # statistics, tt16
    school_year: Mapped[int] = mapped_column(Integer, primary_key=True)   # 2026 for 2026-2027
    generated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(Json)
    # Taken out of `data` at ingest (server.aggregate.ingest.snapshot_figures).
    copies: Mapped[int | None] = mapped_column(Integer)         # stock: every copy not withdrawn
    book_copies: Mapped[int | None] = mapped_column(Integer)    # books counted against students
    students: Mapped[int | None] = mapped_column(Integer)       # students with a school level
    loans: Mapped[int | None] = mapped_column(Integer)          # the school's own count
    tt16_level: Mapped[int | None] = mapped_column(SmallInteger)  # overall level 0/1/2


class Counter(AggregateBase):
    __tablename__ = "agg_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
