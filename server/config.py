"""The server's configuration file (TOML), validated by pydantic.

See `config/server.example.toml` for every field with a comment.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocol.configfile import MqttConfig, load_toml_file
from protocol.topics import SiteName
from protocol.upward import MAX_BATCH
from server.reports.layouts import LabelsConfig
from server.sip2.config import Sip2Config
from server.web.config import WebConfig

ReaderKind = Literal["student", "teacher", "staff"]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday",
                             "saturday", "sunday")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Section):
    url: str = "sqlite:///thuvien.db"
    # FULL fsyncs every commit: a power cut loses nothing the server has answered.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"


class BackupConfig(_Section):
    # Where `thuvien backup` writes; default: a `backups` folder beside the SQLite file.
    # Required for PostgreSQL.
    dir: str | None = None
    # The newest copies kept; older ones are deleted after each new backup.
    keep: int = Field(default=14, ge=1, le=1000)
    # gzip the SQLite copy (a PostgreSQL dump, -Fc, is compressed already).
    gzip: bool = False
    # Pages copied per step of SQLite's backup API, with a short pause between steps.
    step_pages: int = Field(default=256, ge=1)


class LoanPolicy(_Section):
    reader_kind: ReaderKind
    item_kind: str = Field(pattern=r"^[A-Z]{1,8}$")
    loan_days: int = Field(default=7, ge=1, le=366)
    max_items: int = Field(ge=0)
    renewals: int = Field(default=1, ge=0)
    # A long loan (mượn dài hạn) is due on the last open day of the school year.
    long_loan: bool = False


class CirculationConfig(_Section):
    policy: list[LoanPolicy] = Field(default_factory=list)
    # Short loans a reader may hold at once across all item kinds; long loans
    # (textbooks for the year) do not count here. A reader kind left out has no overall
    # cap; its per-kind max_items still apply.
    max_loans: dict[ReaderKind, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {"student": 3, "teacher": 10, "staff": 5})
    # A reader with any loan overdue by more than this many days is blocked.
    # Leave it out to let overdue loans never block.
    block_overdue_after_days: int | None = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_policy_per_pair(self) -> CirculationConfig:
        seen: set[tuple[str, str]] = set()
        for rule in self.policy:
            pair = (rule.reader_kind, rule.item_kind)
            if pair in seen:
                raise ValueError(f"two policies for reader_kind={pair[0]} item_kind={pair[1]}")
            seen.add(pair)
        return self

    def policy_for(self, reader_kind: str, item_kind: str) -> LoanPolicy | None:
        for rule in self.policy:
            if rule.reader_kind == reader_kind and rule.item_kind == item_kind:
                return rule
        return None


class ClosedPeriod(_Section):
    name: str
    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> ClosedPeriod:
        if self.end < self.start:
            raise ValueError(f"closed period {self.name!r} ends before it starts")
        return self


class SchoolYear(_Section):
    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> SchoolYear:
        if self.end <= self.start:
            raise ValueError("the school year must end after it starts")
        return self


class CalendarConfig(_Section):
    timezone: str = "Asia/Ho_Chi_Minh"
    closed_weekdays: list[Weekday] = Field(default_factory=lambda: ["sunday"])
    holidays: list[dt.date] = Field(default_factory=list)
    closed_periods: list[ClosedPeriod] = Field(default_factory=list)
    school_year: SchoolYear | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (for example Asia/Ho_Chi_Minh)") from None
        return value

    @field_validator("closed_weekdays")
    @classmethod
    def _not_every_day(cls, value: list[str]) -> list[str]:
        if len(set(value)) == 7:
            raise ValueError("the library cannot be closed every day of the week")
        return value


class StationsConfig(_Section):
    # Serve only the stations registered with `thuvien station add` (and each only with
    # what its kind may do). Off: any station in the topic is served, as before.
    require_registration: bool = True
    # How often the server reads the stations table again; a request from a station it
    # does not know reads it at once (at most once a second), so a new station is served
    # straight away and a removed one within this many seconds.
    refresh_seconds: float = Field(default=10.0, gt=0, le=3600)
    # An online request whose `at` is further than this from the server's clock raises
    # one `station.clock_skew` alert for that station (the request is still served).
    clock_skew_alert_seconds: float = Field(default=120.0, gt=0)


SchoolLevel = Literal["preschool", "primary", "lower_secondary", "upper_secondary"]


class AccessionKind(_Section):
    """One kind of copy with its ĐKCB prefix: GK.00001, TK.00001, ..."""

    prefix: str = Field(pattern=r"^[A-Z]{1,8}$")
    name_vi: str
    name_en: str
    # Teaching equipment (thiết bị dạy học) is lent through the same ledger as books.
    material: Literal["book", "equipment"] = "book"
    # Copies of this kind go in the textbook register (sổ đăng ký sách giáo khoa).
    textbook: bool = False


def _default_kinds() -> list[AccessionKind]:
    return [
        AccessionKind(prefix="GK", name_vi="Sách giáo khoa", name_en="Textbooks", textbook=True),
        AccessionKind(prefix="TK", name_vi="Sách tham khảo", name_en="Reference books"),
        AccessionKind(prefix="NV", name_vi="Sách nghiệp vụ", name_en="Teachers' professional books"),
        AccessionKind(prefix="TN", name_vi="Sách thiếu nhi", name_en="Children's books"),
        AccessionKind(prefix="TB", name_vi="Thiết bị dạy học", name_en="Teaching equipment",
                      material="equipment"),
    ]


class LibraryConfig(_Section):
    # The school's level(s): a multi-level school lists each (Thông tư 16 minimums are
    # per level).
    levels: list[SchoolLevel] = Field(default_factory=lambda: ["lower_secondary"], min_length=1)
    # ĐKCB numbers: prefix, separator, running number with this many digits (TK.00045).
    accession_separator: str = Field(default=".", max_length=1, pattern=r"^[.\-/]?$")
    accession_digits: int = Field(default=5, ge=3, le=8)
    kinds: list[AccessionKind] = Field(default_factory=_default_kinds, min_length=1)

    @model_validator(mode="after")
    def _unique_prefixes(self) -> LibraryConfig:
        prefixes = [kind.prefix for kind in self.kinds]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(f"a ĐKCB prefix is listed twice in library.kinds: {prefixes}")
        return self

    def kind(self, prefix: str) -> AccessionKind | None:
        return next((kind for kind in self.kinds if kind.prefix == prefix), None)

    def accession_number(self, prefix: str, running: int) -> str:
        return f"{prefix}{self.accession_separator}{running:0{self.accession_digits}d}"


class UpwardConfig(_Section):
    """`[upward]`: reporting to the commune office and the province (server/upward.py).

    The school server publishes its ledger, reduced to nothing personal, and retained
    report snapshots on its own broker; `thuvien bridge config` bridges them upward.
    """

    enabled: bool = False
    # How often the ledger after the cursor is looked for (and resent after an outage).
    interval_s: float = Field(default=2.0, gt=0, le=3600)
    # Entries per batch; a batch is cut smaller still when its payload would pass 60 KiB.
    batch_size: int = Field(default=200, ge=1, le=MAX_BATCH)
    # The statistics and Thông tư 16 snapshots are published at start and this often.
    reports_every_minutes: float = Field(default=60.0, gt=0, le=7 * 24 * 60)
    # The commune office (or district) this school reports to, for people reading the config.
    commune: str | None = Field(default=None, max_length=200)


class ServerConfig(_Section):
    version: Literal[1] = 1
    site: SiteName
    school_name: str
    language: Literal["vi", "en"] = "vi"
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    circulation: CirculationConfig = Field(default_factory=CirculationConfig)
    calendar: CalendarConfig = Field(default_factory=CalendarConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    stations: StationsConfig = Field(default_factory=StationsConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    library: LibraryConfig = Field(default_factory=LibraryConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    sip2: Sip2Config = Field(default_factory=Sip2Config)
    upward: UpwardConfig = Field(default_factory=UpwardConfig)


def load(path: str) -> ServerConfig:
    return load_toml_file(path, ServerConfig)
