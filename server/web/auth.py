"""Staff sign-in over HTTP: the session cookie, CSRF tokens, role checks, login and logout.

- The session cookie holds a random token (HttpOnly, SameSite=Lax, Secure under TLS or
  when `[web] cookie_secure`); the row behind it (`accounts`) expires after
  `[web] session_hours`.
- Every POST carries a `csrf_token` field. Signed in, it must equal the session's token
  (one per session, kept server-side). The login form, before any session exists, uses
  a double-submit cookie: a random value in a cookie and in the form, which another
  site can neither read nor set.
- `Auth.page(role)` guards a page (not signed in: to the login page; too low a role:
  403); `Auth.action(role)` guards a form POST the same way and checks its CSRF token.
"""

from __future__ import annotations

import datetime as dt
import hmac
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server.models import StaffUser
from server.web import accounts
from server.web.context import WebContext

SESSION_COOKIE = "thuvien_staff"
LOGIN_CSRF_COOKIE = "thuvien_login_csrf"
HOME = "/staff/stations"

Page = Callable[[Request, StaffUser], Awaitable[Response]]
Action = Callable[[Request, StaffUser, FormData], Awaitable[Response]]


def safe_next(value: str | None) -> str:
    """Where to go after login: only a page of ours, never another site (`//evil`)."""
    if value and value.startswith("/staff/") and not value.startswith("//") and "\\" not in value:
        return value
    return HOME


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


class Auth:
    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    # --- cookies -------------------------------------------------------------------

    def _secure(self, request: Request) -> bool:
        return self.ctx.web.cookie_secure or request.url.scheme == "https"

    def _set_cookie(self, response: Response, request: Request, name: str, value: str,
                    max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/staff", httponly=True,
                            samesite="lax", secure=self._secure(request))

    # --- who is asking -------------------------------------------------------------

    async def current(self, request: Request) -> StaffUser | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return None

        def look_up() -> tuple[Any, StaffUser] | None:
            with self.ctx.sessions.begin() as db:
                return accounts.find_session(db, token, self.ctx.clock())

        found = await run_in_threadpool(look_up)
        if found is None:
            return None
        row, user = found
        request.state.staff = user
        request.state.csrf_token = row.csrf_token
        return user

    def _to_login(self, request: Request) -> Response:
        target = f"/staff/login?next={quote(request.url.path)}"
        if request.cookies.get(SESSION_COOKIE):
            target += "&expired=1"
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/staff")
        return response

    def refuse(self, request: Request, message: str, status_code: int = 403) -> Response:
        return self.ctx.render(request, "staff/message.html",
                               {"title": "Forbidden", "message": message, "error": True},
                               status_code=status_code)

    # --- guards --------------------------------------------------------------------

    def page(self, needed: str = "viewer") -> Callable[[Page], Callable[[Request], Awaitable[Response]]]:
        def wrap(handler: Page) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                user = await self.current(request)
                if user is None:
                    return self._to_login(request)
                if not accounts.may(user.role, needed):
                    return self.refuse(request, "Your account may not do this.")
                return await handler(request, user)
            return endpoint
        return wrap

    def action(self, needed: str) -> Callable[[Action], Callable[[Request], Awaitable[Response]]]:
        def wrap(handler: Action) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                user = await self.current(request)
                if user is None:
                    return self._to_login(request)
                form = await request.form()
                if not _same(str(form.get("csrf_token", "")), request.state.csrf_token):
                    return self.refuse(request, "The form has expired or did not come from "
                                                "this site. Please try again.")
                if not accounts.may(user.role, needed):
                    return self.refuse(request, "Your account may not do this.")
                return await handler(request, user, form)
            return endpoint
        return wrap

    # --- login and logout ----------------------------------------------------------

    def _login_page(self, request: Request, *, error: str | None = None, notice: str | None = None,
                    error_values: dict[str, Any] | None = None, status_code: int = 200,
                    name: str = "", next_value: str | None = None) -> Response:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = self.ctx.render(request, "staff/login.html", {
            "login_csrf": token, "error": error, "error_values": error_values or {},
            "notice": notice,
            "next": safe_next(next_value or request.query_params.get("next")),
            "name": name,
        }, status_code=status_code)
        self._set_cookie(response, request, LOGIN_CSRF_COOKIE, token, max_age=None)
        return response

    async def login_form(self, request: Request) -> Response:
        if await self.current(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        notice = None
        if request.query_params.get("expired"):
            notice = "Your session has ended. Please sign in again."
        elif request.query_params.get("bye"):
            notice = "You have signed out."
        return self._login_page(request, notice=notice)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        next_value = str(form.get("next", ""))
        name = str(form.get("name", "")).strip().lower()[:64]
        password = str(form.get("password", ""))[:accounts.MAX_PASSWORD + 1]
        if not _same(str(form.get("csrf_token", "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
            return self._login_page(request, name=name, next_value=next_value, status_code=403, error=(
                "The form has expired or did not come from this site. Please try again."))
        client = client_address(request)
        now = self.ctx.clock()
        lifetime = dt.timedelta(hours=self.ctx.web.session_hours)

        def attempt() -> tuple[accounts.Login, str | None]:
            with self.ctx.sessions.begin() as db:
                result = accounts.authenticate(db, name, password, client, now)
                if result.outcome != "ok" or result.user is None:
                    return result, None
                token, _row = accounts.open_session(db, result.user, client, now, lifetime)
                return result, token

        result, token = await run_in_threadpool(attempt)
        if result.outcome == "locked" and result.locked_until is not None:
            minutes = math.ceil(accounts.LOCK_FOR.total_seconds() / 60)
            return self._login_page(request, name=name, next_value=next_value, status_code=429, error=(
                "Too many failed sign-ins. This account or computer is locked for {minutes} "
                "minutes; try again after {time}."), error_values={
                    "minutes": minutes, "time": self.ctx.local_time(result.locked_until, False)})
        if token is None:
            return self._login_page(request, name=name, next_value=next_value, status_code=401,
                                    error="Wrong user name or password.")
        response = RedirectResponse(safe_next(next_value), status_code=303)
        self._set_cookie(response, request, SESSION_COOKIE, token,
                         max_age=int(lifetime.total_seconds()))
        return response

    async def logout(self, request: Request) -> Response:
        user = await self.current(request)
        if user is None:
            return self._to_login(request)
        form = await request.form()
        if not _same(str(form.get("csrf_token", "")), request.state.csrf_token):
            return self.refuse(request, "The form has expired or did not come from this site. "
                                        "Please try again.")
        token = request.cookies.get(SESSION_COOKIE, "")

        def close() -> None:
            with self.ctx.sessions.begin() as db:
                accounts.close_session(db, token)

        await run_in_threadpool(close)
        response = RedirectResponse("/staff/login?bye=1", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/staff")
        return response

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/staff/login", self.login_form, methods=["GET"]),
            Route("/staff/login", self.login, methods=["POST"]),
            Route("/staff/logout", self.logout, methods=["POST"]),
        ]


def _same(given: str, expected: str | None) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), str(expected).encode())
