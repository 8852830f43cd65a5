"""The school year a report covers.

A Vietnamese school year starts in September and ends in May; the register year runs
on to the next school year's start (the summer's intake and stocktake belong to the
year that is ending). `calendar.school_year` in the config, when given, is the current
year's exact dates; other years are taken as 1 September to 31 August.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from server.config import ServerConfig


@dataclass(frozen=True)
class SchoolYear:
    first: int              # 2026 for 2026-2027
    start: dt.date          # first day counted (inclusive)
    end: dt.date            # last day counted (inclusive)

    @property
    def label(self) -> str:
        return f"{self.first}-{self.first + 1}"


def year_of(day: dt.date) -> int:
    """The school year `day` belongs to: from 1 September on, the one starting that year."""
    return day.year if day.month >= 9 else day.year - 1


def school_year(config: ServerConfig, first: int | None = None, today: dt.date | None = None) -> SchoolYear:
    today = today or dt.date.today()
    configured = config.calendar.school_year
    if first is None:
        first = year_of(configured.start) if configured and configured.start <= today <= configured.end \
            else year_of(today)
    if configured is not None and year_of(configured.start) == first:
        # Loans stop at the configured end, the register year runs on to 31 August.
        return SchoolYear(first, min(configured.start, dt.date(first, 9, 1)),
                          max(configured.end, dt.date(first + 1, 8, 31)))
    return SchoolYear(first, dt.date(first, 9, 1), dt.date(first + 1, 8, 31))
