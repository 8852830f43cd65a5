"""Reporting upward (an addition to v1): what a school server publishes for the levels
above it (commune office, province), carried there by Mosquitto bridges.

Topics, all under the school's own site so a bridge (and the upper broker's ACL) can pin
a school to its own prefix:

| topic | QoS | retained | payload |
|---|---|---|---|
| `thuvien/v1/<site>/upward/ledger` | 1 | no | `UpwardLedgerBatch`: committed ledger entries, reduced |
| `thuvien/v1/<site>/upward/report/<name>/<year>` | 1 | yes | `UpwardReport`: a report snapshot for a school year |
| `thuvien/v1/<site>/upward/school` | 1 | yes | `UpwardSchool`: who the school is |

Nothing personal goes upward: a reader is reduced to their kind, class and grade (no
name, no code, no MOET id, no card). Entries are identified by `(site, seq)`: a consumer
that sees an entry twice (a replay after a restart, a bridge resending) counts it once.
`seq` is the school ledger's running number; the publisher resends from its last
acknowledged `seq` after a restart, so gaps close and duplicates are normal.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from protocol.topics import PREFIX, SiteName, check_name

__all__ = ["REPORT_NAMES", "UpwardEntry", "UpwardLedgerBatch", "UpwardReport", "UpwardSchool",
           "upward_filter", "upward_ledger", "upward_report", "upward_school", "parse_upward"]

# The snapshots a school publishes (the `json` form of these reports, issue #7).
REPORT_NAMES: tuple[str, ...] = ("statistics", "tt16")
MAX_BATCH = 200  # entries in one batch: ~235 bytes each keeps a payload under 64 KiB


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpwardEntry(_Model):
    """One ledger entry as the upper levels see it."""

    seq: int = Field(ge=1)
    op: Literal["checkout", "return", "renew"]
    item: str                       # the copy's ĐKCB (not personal)
    item_kind: str                  # GK, TK, NV, TN, TB
    reader_kind: Literal["student", "teacher", "staff"]
    reader_class: str | None = None  # lớp, e.g. 6A1
    reader_grade: int | None = None  # khối, e.g. 6
    station: str
    station_at: AwareDatetime       # when it happened (what the reports count by)
    server_at: AwareDatetime
    due: dt.date | None = None
    days_late: int | None = None
    offline: bool = False
    # Set when an offline replay conflicted; entries whose conflict changed no loan
    # (server.circulation.NOT_APPLIED) are published too, and counted by nobody.
    conflict: str | None = None


class UpwardLedgerBatch(_Model):
    v: Literal[1] = 1
    site: SiteName
    entries: list[UpwardEntry] = Field(min_length=1, max_length=MAX_BATCH)


class UpwardReport(_Model):
    v: Literal[1] = 1
    site: SiteName
    name: str                      # "statistics" or "tt16"
    school_year: int               # 2026 for 2026-2027
    generated_at: AwareDatetime
    data: dict[str, Any]           # the report's JSON snapshot, as `thuvien report NAME --format json`


class UpwardSchool(_Model):
    v: Literal[1] = 1
    site: SiteName
    school_name: str
    levels: list[str]              # preschool, primary, lower_secondary, upper_secondary
    software_version: str
    at: AwareDatetime


def upward_ledger(site: str) -> str:
    return f"{PREFIX}/{check_name(site, 'site')}/upward/ledger"


def upward_report(site: str, name: str, school_year: int) -> str:
    return f"{PREFIX}/{check_name(site, 'site')}/upward/report/{check_name(name, 'report')}/{school_year:d}"


def upward_school(site: str) -> str:
    return f"{PREFIX}/{check_name(site, 'site')}/upward/school"


def upward_filter(site: str = "+") -> str:
    """Everything one school (or, with "+", every school) reports upward."""
    return f"{PREFIX}/{site if site == '+' else check_name(site, 'site')}/upward/#"


def parse_upward(topic: str) -> tuple[str, str, str | None, int | None]:
    """(site, kind, report name, school year) of an upward topic; kind is "ledger",
    "report" or "school". Raises ValueError for anything else."""
    parts = topic.split("/")
    if parts[:2] != PREFIX.split("/") or len(parts) < 5 or parts[3] != "upward":
        raise ValueError(f"topic {topic!r} is not an upward topic")
    site = check_name(parts[2], "site")
    rest = parts[4:]
    if rest in (["ledger"], ["school"]):
        return site, rest[0], None, None
    if len(rest) == 3 and rest[0] == "report" and rest[2].isdigit():
        return site, "report", check_name(rest[1], "report"), int(rest[2])
    raise ValueError(f"topic {topic!r} is not an upward topic")
