"""The web application: staff pages, the public catalogue, static files, the language switch.

`build_app(context)` is the whole ASGI app; `server.web.run.start_web` serves it. The
public catalogue (`server/web/opac.py`, when present) contributes `routes(context)`,
mounted at "/"; the staff pages live under "/staff".
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.web.auth import Auth
from server.web.context import STATIC, WebContext
from server.web.desk import DeskPages
from server.web.i18n import LANG_COOKIE, LANGUAGES
from server.web.staff import StaffPages
from server.web.records import RecordsPages
from server.web.records_stock import StockPages
from server.web.today import TodayPage

# The staff pages load nothing from elsewhere and run no inline script.
STAFF_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
             "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class SecurityHeaders:
    """Headers every response gets; the strict policy only on staff pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        staff = scope.get("path", "").startswith("/staff")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"same-origin"),
                            (b"x-frame-options", b"DENY")]
                if staff:
                    headers.append((b"content-security-policy", STAFF_CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _local_path(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def language_routes(ctx: WebContext) -> list[BaseRoute]:
    async def switch(request: Request) -> Response:
        code = request.path_params["code"]
        response = RedirectResponse(_local_path(request.query_params.get("next")), status_code=303)
        if code in LANGUAGES:
            response.set_cookie(LANG_COOKIE, code, max_age=365 * 24 * 3600, path="/",
                                samesite="lax", secure=ctx.web.cookie_secure)
        return response

    return [Route("/lang/{code}", switch, methods=["GET"])]


def catalogue_routes(ctx: WebContext) -> list[BaseRoute]:
    """The public catalogue's routes, or a front page that leads to the staff pages."""
    if importlib.util.find_spec("server.web.opac") is not None:
        opac: Any = importlib.import_module("server.web.opac")
        return list(opac.routes(ctx))

    async def front(_request: Request) -> Response:
        return RedirectResponse("/staff/stations", status_code=303)

    return [Route("/", front, methods=["GET"])]


def build_app(ctx: WebContext) -> Starlette:
    auth = Auth(ctx)
    staff = StaffPages(ctx, auth)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return ctx.render(request, "staff/message.html",
                          {"title": "Not found", "message": "Not found", "error": True},
                          status_code=status)

    routes: list[BaseRoute] = [
        *auth.routes(),
        *staff.routes(),
        *DeskPages(ctx, auth).routes(),
        *TodayPage(ctx, auth).routes(),
        *RecordsPages(ctx, auth).routes(),
        *StockPages(ctx, auth).routes(),
        *language_routes(ctx),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
        *catalogue_routes(ctx),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.add_middleware(SecurityHeaders)
    app.state.context = ctx
    return app
