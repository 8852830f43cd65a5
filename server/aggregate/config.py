"""The aggregate server's configuration file (TOML), validated by pydantic.

See `config/aggregate.example.toml` for every field with a comment. The schools an
office expects are listed in the file (`[[schools]]`) or, for a province's thousands,
in a CSV file named by `schools_file` (columns site,name,commune,levels; relative to the
config file's folder). A school that publishes without being listed is still stored and
shown as "not in the list".

Errors name the file, the line and the field, for the TOML (protocol.configfile) and for
the CSV alike.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocol.configfile import ConfigError, MqttConfig, key_lines, load_toml_file
from protocol.topics import SiteName
from server.config import SchoolLevel
from server.web.config import WebConfig

__all__ = ["AggregateConfig", "IngestConfig", "SchoolEntry", "load", "parse_levels"]

OfficeLevel = Literal["province", "commune"]

# The short names offices use in their spreadsheets, accepted beside the config's names.
LEVEL_CODES: dict[str, str] = {"mn": "preschool", "th": "primary", "thcs": "lower_secondary",
                               "thpt": "upper_secondary"}
LEVELS: tuple[str, ...] = ("preschool", "primary", "lower_secondary", "upper_secondary")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_levels(value: Any) -> Any:
    """"primary;lower_secondary", "TH THCS" or a list -> a list of level names."""
    if isinstance(value, str):
        value = [part for part in value.replace(";", " ").replace(",", " ").replace("|", " ").split()]
    if isinstance(value, list):
        return [LEVEL_CODES.get(part.lower(), part) if isinstance(part, str) else part for part in value]
    return value


class SchoolEntry(_Section):
    """One school the office expects to hear from."""

    site: SiteName
    name: str = Field(min_length=1)
    # The commune office (phường/xã) the school belongs to; at a commune office it
    # defaults to the office itself.
    commune: str | None = None
    levels: list[SchoolLevel] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _level_or_levels(cls, data: Any) -> Any:
        # `level = "primary"` for the common single-level school.
        if isinstance(data, dict) and "level" in data and "levels" not in data:
            data = {**data, "levels": data["level"]}
            del data["level"]
        return data

    @field_validator("levels", mode="before")
    @classmethod
    def _levels(cls, value: Any) -> Any:
        return parse_levels(value)


class DatabaseConfig(_Section):
    # PostgreSQL: "postgresql+psycopg://thuvien@db.example/thuvien_province".
    url: str


class IngestConfig(_Section):
    # Entries are written in one transaction per this many rows, or this often,
    # whichever comes first.
    flush_rows: int = Field(default=2000, ge=1, le=100_000)
    flush_seconds: float = Field(default=0.2, gt=0, le=60)
    # Messages are acknowledged to the broker only once committed, so a crash loses
    # nothing. The broker sends no more than its `max_inflight_messages` (Mosquitto: 20)
    # unacknowledged messages: flush before reaching it.
    max_unacked: int = Field(default=16, ge=1, le=65535)


class ReportingConfig(_Section):
    # A school with no ledger entry for this many days is listed as not reporting
    # (besides the schools with no snapshot for the school year).
    stale_after_days: int = Field(default=14, ge=1, le=366)


class AggregateConfig(_Section):
    version: Literal[1] = 1
    name: str = Field(min_length=1)          # "Sở GD&ĐT Tỉnh X", "Phòng VH-XH Phường Y"
    level: OfficeLevel
    language: Literal["vi", "en"] = "vi"
    timezone: str = "Asia/Ho_Chi_Minh"       # months are counted in local time
    database: DatabaseConfig
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    reporting: ReportingConfig = Field(default_factory=ReportingConfig)
    schools_file: str | None = None
    schools: list[SchoolEntry] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (for example Asia/Ho_Chi_Minh)") from None
        return value

    @model_validator(mode="after")
    def _communes(self) -> AggregateConfig:
        # At a commune office every school is the office's; at a province `load` refuses
        # a school without its commune, naming the line.
        if self.level == "commune":
            for school in self.schools:
                if school.commune is None:
                    school.commune = self.name
        return self

    def client_id(self) -> str:
        """A stable MQTT client id: the broker keeps the session (and queues) under it."""
        if self.mqtt.client_id:
            return self.mqtt.client_id
        slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in self.name.lower())
        return f"thuvien-aggregate-{'-'.join(part for part in slug.split('-') if part)[:40]}"


def _read_schools_csv(path: Path, office: AggregateConfig) -> list[SchoolEntry]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's export may carry a BOM
    except OSError as exc:
        raise ConfigError(str(path), [f"1: cannot read the file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"1: the file is not UTF-8 text: {exc.reason}"]) from None
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [name for name in ("site", "name", "levels") if name not in header]
    if missing:
        raise ConfigError(str(path), [f"1: the header needs the columns site,name,commune,levels "
                                      f"(missing: {', '.join(missing)})"])
    schools: list[SchoolEntry] = []
    problems: list[str] = []
    for row in reader:
        line = reader.line_num
        values = {key.strip(): (value or "").strip() for key, value in row.items() if key is not None}
        if not any(values.values()):
            continue
        data: dict[str, Any] = {"site": values.get("site", ""), "name": values.get("name", ""),
                                "levels": values.get("levels", "")}
        commune = values.get("commune") or None
        if commune is None and office.level == "commune":
            commune = office.name
        if commune is None:
            problems.append(f"{line}: commune: required at a province")
            continue
        data["commune"] = commune
        try:
            schools.append(SchoolEntry.model_validate(data))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                field = ".".join(str(part) for part in err["loc"]) or "(row)"
                problems.append(f"{line}: {field}: {err['msg']}")
    if problems:
        raise ConfigError(str(path), problems)
    return schools


def load(path: str) -> AggregateConfig:
    config = load_toml_file(path, AggregateConfig)
    schools = list(config.schools)
    if config.schools_file:
        csv_path = Path(config.schools_file)
        if not csv_path.is_absolute():
            csv_path = Path(path).parent / csv_path
        schools += _read_schools_csv(csv_path, config)
    seen: dict[str, str] = {}
    problems: list[str] = []
    lines = key_lines(Path(path).read_text(encoding="utf-8"))
    for index, school in enumerate(schools):
        where = (f"{lines.get(('schools', index, 'site'), 1)}: schools.{index}.site"
                 if index < len(config.schools) else f"1: schools_file ({config.schools_file})")
        if school.commune is None:
            problems.append(f"{lines.get(('schools', index), 1)}: schools.{index}.commune: "
                            "required at a province")
        if school.site in seen:
            problems.append(f"{where}: site {school.site!r} is listed twice")
        seen[school.site] = school.name
    if problems:
        raise ConfigError(path, problems)
    return config.model_copy(update={"schools": schools})
