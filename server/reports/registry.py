"""Every report by name, for the CLI (`thuvien report NAME`) and the staff web.

A builder module declares its reports with `@report(...)`; `all_reports()` imports the
builder modules listed in `_MODULES` so both front ends see the same list.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.reports.document import Report, Text

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from server.config import ServerConfig

__all__ = ["ReportParams", "ReportSpec", "all_reports", "get_report", "render_report", "report"]

# The modules that declare reports (imported on first use).
_MODULES: tuple[str, ...] = ("server.weeding", "server.stocktake", "server.reports.registers",
                             "server.reports.statistics", "server.reports.tt16")


@dataclass(frozen=True)
class ReportParams:
    """What a librarian may choose for any report; a builder uses what applies to it.

    `school_year` is the year a school year starts in (2026 for 2026-2027); None means the
    current one. `since`/`until` narrow dated reports (inclusive). `options` carries a
    builder's own choices (for example {"reader_kind": "teacher"}).
    """

    school_year: int | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    options: dict[str, str] = field(default_factory=dict)


Builder = Callable[["sessionmaker[Session]", "ServerConfig", ReportParams], Report]


@dataclass(frozen=True)
class ReportSpec:
    name: str            # the CLI's and the URL's name: "register-individual"
    title: Text
    group: Text          # how the web groups them: registers, statistics, ...
    build: Builder
    formats: tuple[str, ...] = ("pdf", "xlsx")   # "json" too where a snapshot makes sense
    snapshot: Callable[..., dict[str, Any]] | None = None  # the JSON form, if any


_REPORTS: dict[str, ReportSpec] = {}


def report(name: str, title: Text, group: Text, *, formats: tuple[str, ...] = ("pdf", "xlsx"),
           snapshot: Callable[..., dict[str, Any]] | None = None) -> Callable[[Builder], Builder]:
    def declare(build: Builder) -> Builder:
        if name in _REPORTS and _REPORTS[name].build is not build:
            raise ValueError(f"two reports named {name!r}")
        _REPORTS[name] = ReportSpec(name, title, group, build, formats, snapshot)
        return build
    return declare


def all_reports() -> dict[str, ReportSpec]:
    for module in _MODULES:
        importlib.import_module(module)
    return dict(_REPORTS)


def render_report(spec: ReportSpec, fmt: str, sessions: sessionmaker[Session], config: ServerConfig,
                  params: ReportParams, language: str = "vi") -> bytes:
    """The report as the bytes of one file: pdf, xlsx or json (its snapshot). The CLI and
    the staff web both call this. It reads through read-only sessions, so a long report
    on SQLite never keeps the stations' writes waiting."""
    import json

    from server.db import read_only

    if fmt not in spec.formats:
        raise LookupError(f"{spec.name} không có dạng {fmt} / has no {fmt} form ({', '.join(spec.formats)})")
    readers = read_only(sessions)
    if fmt == "json":
        assert spec.snapshot is not None
        data = spec.snapshot(readers, config, params)
        return (json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n").encode("utf-8")
    report = spec.build(readers, config, params)
    lang = "en" if language == "en" else "vi"
    if fmt == "pdf":
        from server.reports.pdf import render_pdf_bytes
        return render_pdf_bytes(report, lang)
    from server.reports.xlsx import render_xlsx_bytes
    return render_xlsx_bytes(report, lang)


def get_report(name: str) -> ReportSpec:
    reports = all_reports()
    if name not in reports:
        raise KeyError(f"Không có báo cáo {name!r} / no report named {name!r}; "
                       f"có / there are: {', '.join(sorted(reports))}")
    return reports[name]
