"""The combined views: per school, per commune office, for the whole office.

Plain functions over SQL aggregates, fast on thousands of schools and tens of millions of
entries because none of them reads `agg_entries`: loans come from the monthly rollup
(`agg_monthly_loans`, one row per site x month x reader kind x grade), copies, students
and the Thông tư 16 level from the figures taken out of the snapshots at ingest. A
province's view is three queries (schools, rollup by site and month, snapshot figures);
filters by commune and level are applied to the school list, in Python.

Counting rules
- Loans are checkouts by station time, in the office's time zone, over the school year
  1 September - 31 August, leaving out the entries whose conflict changed no loan
  (server.circulation.NOT_APPLIED), as the schools' own statistics count them.
- Copies and students are each school's newest `statistics` snapshot for the school
  year; copies per student is books against students with a school level (Thông tư 16
  counting, see server/reports/statistics.py), summed over schools before dividing.
- The Thông tư 16 level is the newest `tt16` snapshot's overall level (0 = not met).
- A listed school "has not reported" when it has no statistics snapshot for the year,
  or has sent no ledger entry for `reporting.stale_after_days` days (or never).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from server.aggregate.config import AggregateConfig
from server.aggregate.models import MonthlyLoans, School, Snapshot

__all__ = ["Filters", "GroupRow", "SchoolDetail", "SchoolRow", "Views", "build_views", "commune_rows",
           "month_label", "months_of_year", "school_detail", "total_row"]

REASONS = ("no_statistics", "no_tt16", "no_entries", "stale_entries")


@dataclass(frozen=True)
class Filters:
    school_year: int                 # 2026 for 2026-2027
    commune: str | None = None
    level: str | None = None         # preschool, primary, lower_secondary, upper_secondary

    @property
    def label(self) -> str:
        return f"{self.school_year}-{self.school_year + 1}"


def months_of_year(school_year: int) -> list[int]:
    """202609 ... 202708."""
    return [(school_year if month >= 9 else school_year + 1) * 100 + month
            for month in (9, 10, 11, 12, 1, 2, 3, 4, 5, 6, 7, 8)]


def month_label(month: int) -> str:
    return f"{month % 100}/{month // 100}"


@dataclass
class SchoolRow:
    site: str
    name: str
    commune: str | None
    levels: list[str]
    listed: bool
    loans: int = 0                        # checkouts in the school year, from the entries
    months: dict[int, int] = field(default_factory=dict)
    copies: int | None = None
    book_copies: int | None = None
    students: int | None = None
    school_loans: int | None = None       # the school's own count, from its snapshot
    tt16_level: int | None = None
    statistics_at: dt.datetime | None = None
    tt16_at: dt.datetime | None = None
    last_entry_at: dt.datetime | None = None
    last_message_at: dt.datetime | None = None
    entries: int = 0
    reasons: list[str] = field(default_factory=list)   # why it counts as not reported

    @property
    def per_student(self) -> float | None:
        if self.book_copies is None or not self.students:
            return None
        return self.book_copies / self.students

    @property
    def reported(self) -> bool:
        return not self.reasons


@dataclass
class GroupRow:
    name: str
    schools: int = 0
    listed: int = 0
    reported: int = 0
    loans: int = 0
    copies: int = 0
    book_copies: int = 0
    students: int = 0
    tt16: dict[int | None, int] = field(default_factory=lambda: {2: 0, 1: 0, 0: 0, None: 0})

    @property
    def per_student(self) -> float | None:
        return self.book_copies / self.students if self.students else None

    @property
    def not_reported(self) -> int:
        return self.listed - self.reported


@dataclass
class Views:
    filters: Filters
    schools: list[SchoolRow]
    months: list[tuple[int, int]]          # (yyyymm, checkouts) over the school year
    by_reader: list[tuple[str, int, int]]  # (reader kind, grade or NO_GRADE, checkouts)
    communes: list[str]                    # every commune, for the filter's choices
    generated_at: dt.datetime

    @property
    def total(self) -> GroupRow:
        return total_row(self.schools)

    @property
    def by_commune(self) -> list[GroupRow]:
        return commune_rows(self.schools)

    @property
    def not_reported(self) -> list[SchoolRow]:
        return [row for row in self.schools if row.listed and not row.reported]

    @property
    def unlisted(self) -> list[SchoolRow]:
        return [row for row in self.schools if not row.listed]


def _add(group: GroupRow, row: SchoolRow) -> None:
    group.schools += 1
    group.listed += row.listed
    group.reported += row.listed and row.reported
    group.loans += row.loans
    group.copies += row.copies or 0
    if row.book_copies is not None and row.students:
        group.book_copies += row.book_copies
        group.students += row.students
    group.tt16[row.tt16_level] = group.tt16.get(row.tt16_level, 0) + 1


def total_row(rows: Iterable[SchoolRow], name: str = "") -> GroupRow:
    total = GroupRow(name)
    for row in rows:
        _add(total, row)
    return total


def commune_rows(rows: Iterable[SchoolRow]) -> list[GroupRow]:
    groups: dict[str, GroupRow] = {}
    for row in rows:
        key = row.commune or ""
        _add(groups.setdefault(key, GroupRow(key)), row)
    return sorted(groups.values(), key=lambda group: (group.name == "", group.name))


def _selected(school: School, filters: Filters) -> bool:
    if filters.commune is not None and (school.commune or "") != filters.commune:
        return False
    return filters.level is None or filters.level in school.level_list


def build_views(sessions: sessionmaker[Session], config: AggregateConfig, filters: Filters,
                now: dt.datetime | None = None, *, site: str | None = None) -> Views:
    """Every selected school's row, the months and the loans by reader; `site` narrows
    it to one school (its page)."""
    now = now or dt.datetime.now(dt.UTC)
    stale_before = now - dt.timedelta(days=config.reporting.stale_after_days)
    months = months_of_year(filters.school_year)
    with sessions() as db:
        schools = list(db.scalars(select(School).order_by(School.commune, School.site)))
        communes = sorted({s.commune for s in schools if s.commune})
        rows: dict[str, SchoolRow] = {}
        for school in schools:
            if (school.site == site) if site is not None else _selected(school, filters):
                rows[school.site] = SchoolRow(
                    site=school.site, name=school.display_name, commune=school.commune,
                    levels=school.level_list, listed=school.listed,
                    last_entry_at=school.last_entry_at, last_message_at=school.last_message_at,
                    entries=school.entries)
        # Narrowed to the selected sites only when they are a part: a province's whole
        # list in an IN (...) would only slow the planner down.
        subset = list(rows) if len(rows) < len(schools) else None
        rollup = (select(MonthlyLoans.site, MonthlyLoans.month, func.sum(MonthlyLoans.checkouts))
                  .where(MonthlyLoans.month.between(months[0], months[-1]))
                  .group_by(MonthlyLoans.site, MonthlyLoans.month))
        figures = (select(Snapshot.site, Snapshot.name, Snapshot.generated_at, Snapshot.copies,
                          Snapshot.book_copies, Snapshot.students, Snapshot.loans, Snapshot.tt16_level)
                   .where(Snapshot.school_year == filters.school_year,
                          Snapshot.name.in_(("statistics", "tt16"))))
        if subset is not None:
            rollup = rollup.where(MonthlyLoans.site.in_(subset))
            figures = figures.where(Snapshot.site.in_(subset))
        for key, month, checkouts in (db.execute(rollup) if rows else ()):
            if (row := rows.get(key)) is not None:
                row.months[month] = int(checkouts)
                row.loans += int(checkouts)
        for key, name, generated_at, copies, book_copies, students, loans, level in (
                db.execute(figures) if rows else ()):
            if (row := rows.get(key)) is None:
                continue
            if name == "statistics":
                row.statistics_at, row.copies, row.book_copies = generated_at, copies, book_copies
                row.students, row.school_loans = students, loans
            else:
                row.tt16_at, row.tt16_level = generated_at, level
        by_reader = _by_reader(db, months, subset)
    for row in rows.values():
        if row.statistics_at is None:
            row.reasons.append("no_statistics")
        if row.tt16_at is None:
            row.reasons.append("no_tt16")
        if row.last_entry_at is None:
            row.reasons.append("no_entries")
        elif row.last_entry_at < stale_before:
            row.reasons.append("stale_entries")
    month_totals: dict[int, int] = defaultdict(int)
    for row in rows.values():
        for month, checkouts in row.months.items():
            month_totals[month] += checkouts
    ordered = sorted(rows.values(), key=lambda r: (not r.listed, r.commune or "", r.name, r.site))
    return Views(filters, ordered, [(month, month_totals[month]) for month in months], by_reader,
                 communes, now)


def _by_reader(db: Session, months: Sequence[int], sites: list[str] | None) -> list[tuple[str, int, int]]:
    query = (select(MonthlyLoans.reader_kind, MonthlyLoans.grade, func.sum(MonthlyLoans.checkouts))
             .where(MonthlyLoans.month.between(months[0], months[-1]))
             .group_by(MonthlyLoans.reader_kind, MonthlyLoans.grade)
             .order_by(MonthlyLoans.reader_kind, MonthlyLoans.grade))
    if sites is not None:
        if not sites:
            return []
        query = query.where(MonthlyLoans.site.in_(sites))
    return [(kind, int(grade), int(n)) for kind, grade, n in db.execute(query)]


@dataclass
class SchoolDetail:
    row: SchoolRow
    statistics: dict[str, Any] | None     # the newest snapshot's JSON
    tt16: dict[str, Any] | None
    by_reader: list[tuple[str, int, int]]
    software_version: str | None
    published_name: str | None


def school_detail(sessions: sessionmaker[Session], config: AggregateConfig, site: str, school_year: int,
                  now: dt.datetime | None = None) -> SchoolDetail | None:
    with sessions() as db:
        school = db.get(School, site)
        if school is None:
            return None
        snapshots = {name: data for name, data in db.execute(
            select(Snapshot.name, Snapshot.data).where(Snapshot.site == site,
                                                       Snapshot.school_year == school_year))}
        by_reader = _by_reader(db, months_of_year(school_year), [site])
        version, published = school.software_version, school.published_name
    row = build_views(sessions, config, Filters(school_year), now, site=site).schools[0]
    return SchoolDetail(row, snapshots.get("statistics"), snapshots.get("tt16"), by_reader,
                        version, published)
