"""The staff web in aggregate mode: the combined views with filters, and downloads.

Reused from the school's web: the sign-in (server.web.auth with server.web.accounts,
against the account tables of the aggregate database: admin/viewer accounts made with
`thuvien aggregate user add`), the base template, the styles, the language switch and
the security headers. Pages, all for any signed-in account:

    /staff/aggregate                  overview: totals, communes, months, not reported
    /staff/aggregate/schools          every school, with its freshness
    /staff/aggregate/schools/{site}   one school
    /staff/aggregate/ingest           what the ingest has seen
    /staff/aggregate/report.pdf|xlsx  the office's report, with the page's filters

Filters (query string): year (2026 for 2026-2027), commune, level.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from server import db as school_db
from server.aggregate.config import LEVELS, AggregateConfig
from server.aggregate.ingest import read_counters
from server.aggregate.models import School, Snapshot
from server.aggregate.reports import REASON_TEXTS, TT16_TEXTS, render, report_from_views
from server.aggregate.views import Filters, build_views, month_label, months_of_year, school_detail
from server.config import CalendarConfig, ServerConfig
from server.reports.period import year_of
from server.reports.statistics import LEVEL_NAMES, READER_KIND_NAMES
from server.web.app import SecurityHeaders, language_routes
from server.web.auth import Auth
from server.web.context import STATIC, WebContext, utc_now
from server.web.i18n import STAFF_VI, Catalogue
from server.web.run import WebHandle, serve_app

log = logging.getLogger("thuvien.aggregate.web")

__all__ = ["AGGREGATE_VI", "HOME", "aggregate_context", "build_aggregate_app", "start_aggregate_web"]

HOME = "/staff/aggregate"

AGGREGATE_VI: dict[str, str] = {
    "Overview": "Tổng quan",
    "Schools": "Trường học",
    "Ingest": "Tiếp nhận dữ liệu",
    "School year": "Năm học",
    "Commune": "Xã, phường",
    "Level": "Cấp học",
    "All": "Tất cả",
    "Show": "Xem",
    "Download PDF": "Tải PDF",
    "Download Excel": "Tải Excel",
    "Schools in the list": "Trường trong danh sách",
    "Reported in full": "Đã báo cáo đủ",
    "Not reported in full": "Chưa báo cáo đủ",
    "Not in the list": "Không có trong danh sách",
    "Loans in the school year": "Lượt mượn trong năm học",
    "Copies": "Bản sách",
    "Students": "Học sinh",
    "Copies per student": "Bản sách trên học sinh",
    "By commune": "Theo xã, phường",
    "Loans by month": "Lượt mượn theo tháng",
    "Loans by reader and grade": "Lượt mượn theo bạn đọc và khối lớp",
    "Month": "Tháng",
    "Loans": "Lượt mượn",
    "Readers": "Bạn đọc",
    "Grade": "Khối",
    "Total": "Tổng",
    "Schools that have not reported in full": "Trường chưa báo cáo đủ",
    "Every school has reported in full.": "Mọi trường đã báo cáo đủ.",
    "School": "Trường",
    "Missing": "Còn thiếu",
    "Newest loan record": "Lượt mượn trả mới nhất",
    "Last message": "Lần gửi gần nhất",
    "Statistics sent": "Gửi thống kê lúc",
    "Thông tư 16 level": "Mức độ theo Thông tư 16",
    "Thông tư 16 levels": "Mức độ theo Thông tư 16",
    "Level 2": "Mức độ 2",
    "Level 1": "Mức độ 1",
    "Not met": "Chưa đạt",
    "Not assessed": "Chưa tự đánh giá",
    "Reported": "Đã báo cáo",
    "never": "chưa bao giờ",
    "not in the list": "không có trong danh sách",
    "Nothing to show.": "Không có dữ liệu.",
    "Entries stored": "Số lượt mượn trả đã lưu",
    "Software version": "Phiên bản phần mềm",
    "Name the school publishes": "Tên trường tự khai",
    "No school by that code.": "Không có trường với mã này.",
    "Counter": "Bộ đếm",
    "Value": "Giá trị",
    "Messages received": "Tin nhận được",
    "Malformed messages (logged and skipped)": "Tin hỏng (đã ghi nhật ký và bỏ qua)",
    "New loan records": "Lượt mượn trả mới",
    "Loan records received again (counted once)": "Lượt mượn trả nhận lại (chỉ tính một lần)",
    "Report snapshots stored": "Bản báo cáo đã lưu",
    "Older report snapshots ignored": "Bản báo cáo cũ hơn (bỏ qua)",
    "School announcements": "Tin giới thiệu trường",
    "Loans counted by the school itself": "Lượt mượn do trường tự thống kê",
    "Thông tư 16 self-assessment": "Tự đánh giá theo Thông tư 16",
    "Group": "Nhóm",
    "Code": "Mã",
    "(unknown)": "(không rõ)",
}

COUNTER_LABELS: tuple[tuple[str, str], ...] = (
    ("messages", "Messages received"),
    ("malformed", "Malformed messages (logged and skipped)"),
    ("entries_new", "New loan records"),
    ("entries_duplicate", "Loan records received again (counted once)"),
    ("snapshots_stored", "Report snapshots stored"),
    ("snapshots_older", "Older report snapshots ignored"),
    ("school_messages", "School announcements"),
)


def _school_config(config: AggregateConfig) -> ServerConfig:
    # WebContext and Auth read a ServerConfig's name, language, time zone and [web] only:
    # the office's values in that shape let them serve the aggregate unchanged.
    return ServerConfig(site="aggregate", school_name=config.name, language=config.language,
                        calendar=CalendarConfig(timezone=config.timezone), web=config.web)


def _number(value: Any, lang: str = "vi") -> str:
    if value is None:
        return "–"
    text = f"{round(value):,}"
    return text.replace(",", ".") if lang == "vi" else text


def _ratio(value: float | None, lang: str = "vi") -> str:
    if value is None:
        return "–"
    text = f"{value:.2f}"
    return text.replace(".", ",") if lang == "vi" else text


def aggregate_context(config: AggregateConfig, engine: Engine,
                      clock: Callable[[], dt.datetime] = utc_now) -> WebContext:
    ctx = WebContext(config=_school_config(config), web=config.web,
                     sessions=school_db.session_factory(engine), engine=engine, clock=clock,
                     catalogue=Catalogue(STAFF_VI, AGGREGATE_VI))
    env = ctx.templates.env
    env.filters["num"] = _number
    env.filters["ratio"] = _ratio
    env.filters["month_label"] = month_label
    env.globals.update(level_names=LEVEL_NAMES, reader_kinds=READER_KIND_NAMES,
                       tt16_texts=TT16_TEXTS, reason_texts=REASON_TEXTS, all_levels=LEVELS,
                       office=config)
    return ctx


class AggregatePages:
    def __init__(self, ctx: WebContext, auth: Auth, config: AggregateConfig) -> None:
        self.ctx = ctx
        self.auth = auth
        self.config = config

    # --- filters --------------------------------------------------------------------

    def _years(self) -> list[int]:
        with self.ctx.sessions() as db:
            found = set(db.scalars(select(Snapshot.school_year).distinct()))
        current = year_of(self.ctx.clock().astimezone(self.ctx.zone).date())
        return sorted(found | {current, current - 1}, reverse=True)

    def _filters(self, request: Request) -> Filters:
        query = request.query_params
        current = year_of(self.ctx.clock().astimezone(self.ctx.zone).date())
        try:
            year = int(query.get("year", current))
        except ValueError:
            year = current
        if not 2000 <= year <= 2100:
            year = current
        commune = query.get("commune") or None
        level = query.get("level") or None
        return Filters(year, commune if commune and len(commune) <= 200 else None,
                       level if level in LEVELS else None)

    @staticmethod
    def _query(filters: Filters) -> str:
        parts = [f"year={filters.school_year}"]
        if filters.commune:
            parts.append(f"commune={quote(filters.commune)}")
        if filters.level:
            parts.append(f"level={filters.level}")
        return "&".join(parts)

    def _views(self, filters: Filters) -> Any:
        return build_views(self.ctx.sessions, self.config, filters, self.ctx.clock())

    def _page_values(self, filters: Filters, views: Any) -> dict[str, Any]:
        return {"filters": filters, "views": views, "years": self._years(), "communes": views.communes,
                "query": self._query(filters)}

    # --- pages ----------------------------------------------------------------------

    async def overview(self, request: Request, _user: Any) -> Response:
        filters = self._filters(request)

        def load() -> dict[str, Any]:
            views = self._views(filters)
            return {**self._page_values(filters, views), "total": views.total}

        return self.ctx.render(request, "aggregate/overview.html", await run_in_threadpool(load))

    async def schools(self, request: Request, _user: Any) -> Response:
        filters = self._filters(request)

        def load() -> dict[str, Any]:
            views = self._views(filters)
            return self._page_values(filters, views)

        return self.ctx.render(request, "aggregate/schools.html", await run_in_threadpool(load))

    async def school(self, request: Request, _user: Any) -> Response:
        filters = self._filters(request)
        site = request.path_params["site"]

        def load() -> Any:
            return school_detail(self.ctx.sessions, self.config, site, filters.school_year, self.ctx.clock())

        detail = await run_in_threadpool(load)
        if detail is None:
            return self.ctx.render(request, "aggregate/message.html",
                                   {"title": "Schools", "message": "No school by that code."},
                                   status_code=404)
        return self.ctx.render(request, "aggregate/school.html", {
            "filters": filters, "detail": detail, "row": detail.row, "years": await run_in_threadpool(self._years),
            "months": [(month, detail.row.months.get(month, 0)) for month in months_of_year(filters.school_year)],
            "query": self._query(filters)})

    async def ingest(self, request: Request, _user: Any) -> Response:
        def load() -> dict[str, Any]:
            counts = read_counters(self.ctx.engine)
            with self.ctx.sessions() as db:
                schools = list(db.scalars(select(School).order_by(School.last_message_at.desc().nulls_last(),
                                                                  School.site).limit(200)))
            return {"counters": [(label, counts[name]) for name, label in COUNTER_LABELS],
                    "schools": schools}

        return self.ctx.render(request, "aggregate/ingest.html", await run_in_threadpool(load))

    async def download(self, request: Request, _user: Any) -> Response:
        fmt = request.path_params["fmt"]
        if fmt not in ("pdf", "xlsx"):
            raise HTTPException(404)
        filters = self._filters(request)
        lang = self.ctx.language(request)

        def build() -> bytes:
            return render(report_from_views(self._views(filters), self.config), fmt,
                          "en" if lang == "en" else "vi")

        data = await run_in_threadpool(build)
        media = ("application/pdf" if fmt == "pdf"
                 else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        name = f"tong-hop-{filters.school_year}.{fmt}"
        return Response(data, media_type=media,
                        headers={"content-disposition": f'attachment; filename="{name}"'})

    def routes(self) -> list[BaseRoute]:
        page = self.auth.page("viewer")
        return [
            Route(HOME, page(self.overview), methods=["GET"]),
            Route(f"{HOME}/schools", page(self.schools), methods=["GET"]),
            Route(HOME + "/schools/{site}", page(self.school), methods=["GET"]),
            Route(f"{HOME}/ingest", page(self.ingest), methods=["GET"]),
            Route(HOME + "/report.{fmt}", page(self.download), methods=["GET"]),
        ]


def build_aggregate_app(ctx: WebContext, config: AggregateConfig) -> Starlette:
    auth = Auth(ctx)

    async def home(_request: Request) -> Response:
        return RedirectResponse(HOME, status_code=303)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return ctx.render(request, "aggregate/message.html",
                          {"title": "Not found", "message": "Not found", "error": True}, status_code=status)

    routes: list[BaseRoute] = [
        *auth.routes(),
        *AggregatePages(ctx, auth, config).routes(),
        *language_routes(ctx),
        # Where the school's pages would be (sign-in lands on /staff/stations): the overview.
        Route("/", home, methods=["GET"]),
        Route("/staff", home, methods=["GET"]),
        Route("/staff/stations", home, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.add_middleware(SecurityHeaders)
    app.state.context = ctx
    return app


def start_aggregate_web(config: AggregateConfig, engine: Engine, *, host: str | None = None,
                        port: int | None = None, clock: Callable[[], dt.datetime] = utc_now,
                        wait: float = 10.0) -> WebHandle:
    """Serve the aggregate's pages on a thread (as server.web.run.start_web does for a
    school); `port=0` picks a free port."""
    host = config.web.host if host is None else host
    port = config.web.port if port is None else port
    ctx = aggregate_context(config, engine, clock)
    handle = serve_app(build_aggregate_app(ctx, config), ctx, host, port, name="thuvien-aggregate-web",
                       wait=wait)
    log.info("aggregate web on http://%s:%d%s", host, handle.port, HOME)
    return handle
