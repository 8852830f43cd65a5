"""The staff pages: the live station grid with its commands, and the alerts.

Every page and stream needs a signed-in staff user; commands and acknowledgements need
a librarian or an admin. Forms work without JavaScript (post, then redirect back);
`static/staff.js` adds the live updates from `/staff/live` (server-sent events).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from server.models import Alert, LedgerEntry, Station, StaffUser
from server.web import accounts
from server.web.auth import Auth
from server.web.context import WebContext
from server.web.live import CommandError, StationBoard, StationView

SAY_LIMIT = 200
KEEPALIVE_S = 15.0
RECENT_ACKS = 10
COMMANDS = ("lock", "unlock", "say")


def seed_board(db: Session, board: StationBoard) -> None:
    """Registered stations and each one's last transaction, from the database."""
    registered = db.execute(select(Station.name, Station.kind).where(Station.active)).all()
    last = db.execute(select(LedgerEntry.station, func.max(LedgerEntry.server_at))
                      .group_by(LedgerEntry.station)).all()
    board.seed([(name, kind) for name, kind in registered],
               {name: when for name, when in last if when is not None})


def open_alerts(db: Session) -> list[Alert]:
    return list(db.scalars(select(Alert).where(Alert.acknowledged_at.is_(None))
                           .order_by(Alert.at.desc(), Alert.id.desc())))


def recent_acknowledged(db: Session) -> list[Alert]:
    return list(db.scalars(select(Alert).where(Alert.acknowledged_at.is_not(None))
                           .order_by(Alert.acknowledged_at.desc(), Alert.id.desc())
                           .limit(RECENT_ACKS)))


def acknowledge(db: Session, alert_id: int, who: str, now: dt.datetime) -> bool:
    """Mark an open alert as seen; False when it was already acknowledged or is unknown."""
    done = db.execute(update(Alert).where(Alert.id == alert_id, Alert.acknowledged_at.is_(None))
                      .values(acknowledged_by=who, acknowledged_at=now))
    return bool(done.rowcount)


class StaffPages:
    def __init__(self, ctx: WebContext, auth: Auth) -> None:
        self.ctx = ctx
        self.auth = auth

    # --- data ----------------------------------------------------------------------

    def _board(self) -> StationBoard:
        if self.ctx.monitor is not None:
            return self.ctx.monitor.board
        board = StationBoard()  # no broker: at least what the database knows
        with self.ctx.sessions() as db:
            seed_board(db, board)
        return board

    def _live(self) -> bool:
        return self.ctx.monitor is not None and self.ctx.monitor.connected.is_set()

    def _db(self, work: Any, *args: Any) -> Any:
        def run() -> Any:
            with self.ctx.sessions.begin() as db:
                return work(db, *args)
        return run_in_threadpool(run)

    # --- stations ------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/staff/stations", status_code=303)

    async def stations(self, request: Request, user: StaffUser,
                       *, notice: str | None = None, notice_values: dict[str, Any] | None = None,
                       error: str | None = None, status_code: int = 200) -> Response:
        board = await run_in_threadpool(self._board)
        sent = request.query_params.get("sent")
        station = request.query_params.get("station", "")
        if notice is None and sent in COMMANDS and board.get(station):
            notice, notice_values = "Sent “{cmd}” to {station}.", {"station": station, "cmd": sent}
        return self.ctx.render(request, "staff/stations.html", {
            "stations": board.snapshot(), "live": self._live(),
            "monitored": self.ctx.monitor is not None,
            "can_command": accounts.may(user.role, "librarian"),
            "notice": notice, "notice_values": notice_values or {}, "error": error,
            "say_limit": SAY_LIMIT,
        }, status_code=status_code)

    async def command(self, request: Request, user: StaffUser, form: FormData) -> Response:
        name = request.path_params["name"]
        cmd = str(form.get("cmd", ""))
        board = await run_in_threadpool(self._board)
        if board.get(name) is None:
            return await self.stations(request, user, error="Unknown station.", status_code=404)
        if cmd not in COMMANDS:
            return await self.stations(request, user, status_code=400,
                                       error="Could not send the command: {reason}",
                                       notice_values={"reason": cmd or "-"})
        args: dict[str, Any] = {}
        if cmd == "say":
            text = " ".join(str(form.get("text", "")).split())
            if not text or len(text) > SAY_LIMIT:
                return await self.stations(
                    request, user, status_code=400, notice_values={"limit": SAY_LIMIT},
                    error="The message is empty or too long (at most {limit} characters).")
            args["text"] = text
        monitor = self.ctx.monitor
        try:
            if monitor is None:
                raise CommandError("the web is not connected to the broker")
            await run_in_threadpool(monitor.send_command, name, cmd, args)
        except CommandError as exc:
            return await self.stations(request, user, status_code=503,
                                       error="Could not send the command: {reason}",
                                       notice_values={"reason": str(exc)})
        return RedirectResponse(f"/staff/stations?sent={cmd}&station={name}", status_code=303)

    # --- alerts --------------------------------------------------------------------

    async def _alert_values(self, user: StaffUser) -> dict[str, Any]:
        def load(db: Session) -> tuple[list[Alert], list[Alert]]:
            return open_alerts(db), recent_acknowledged(db)

        opened, acked = await self._db(load)
        return {"alerts": opened, "acknowledged": acked,
                "can_ack": accounts.may(user.role, "librarian")}

    async def alerts(self, request: Request, user: StaffUser) -> Response:
        values = await self._alert_values(user)
        notice = request.query_params.get("notice")
        values["notice"] = notice if notice in ("acked", "already") else None
        values["live"] = self._live()
        return self.ctx.render(request, "staff/alerts.html", values)

    async def alerts_list(self, request: Request, user: StaffUser) -> Response:
        return self.ctx.render(request, "staff/_alerts.html", await self._alert_values(user))

    async def acknowledge(self, request: Request, user: StaffUser, form: FormData) -> Response:
        try:
            alert_id = int(request.path_params["alert_id"])
        except ValueError:
            return self.auth.refuse(request, "Not found", status_code=404)
        done = await self._db(acknowledge, alert_id, user.name, self.ctx.clock())
        if self.ctx.monitor is not None:
            self.ctx.monitor.hub.publish(("alerts", None))
        return RedirectResponse(f"/staff/alerts?notice={'acked' if done else 'already'}",
                                status_code=303)

    # --- live stream ---------------------------------------------------------------

    async def live(self, request: Request, user: StaffUser) -> Response:
        monitor = self.ctx.monitor
        lang = self.ctx.language(request)
        card_values = {"can_command": accounts.may(user.role, "librarian"),
                       "csrf_token": request.state.csrf_token, "say_limit": SAY_LIMIT}

        def card(view: StationView) -> str:
            html = self.ctx.render_fragment(lang, "staff/_station.html", {"s": view, **card_values})
            return _sse("station", json.dumps({"name": view.name, "html": html}))

        async def stream() -> AsyncIterator[str]:
            if monitor is None:
                yield _sse("live", "0")
                return
            queue = monitor.hub.listen()
            try:
                yield "retry: 2000\n\n"
                yield _sse("live", "1" if monitor.connected.is_set() else "0")
                for view in monitor.board.snapshot():  # what a reconnecting page missed
                    yield card(view)
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if message is None:
                        return
                    kind, value = message
                    if kind == "station":
                        yield card(value)
                    elif kind == "alerts":
                        yield _sse("alerts", "changed")
                    elif kind == "live":
                        yield _sse("live", "1" if value else "0")
            finally:
                monitor.hub.forget(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # --- routes --------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        page, action = self.auth.page, self.auth.action
        return [
            Route("/staff", self.home, methods=["GET"]),
            Route("/staff/", self.home, methods=["GET"]),
            Route("/staff/stations", page("viewer")(self.stations), methods=["GET"]),
            Route("/staff/stations/{name}/command", action("librarian")(self.command),
                  methods=["POST"]),
            Route("/staff/alerts", page("viewer")(self.alerts), methods=["GET"]),
            Route("/staff/alerts/list", page("viewer")(self.alerts_list), methods=["GET"]),
            Route("/staff/alerts/{alert_id}/ack", action("librarian")(self.acknowledge),
                  methods=["POST"]),
            Route("/staff/live", page("viewer")(self.live), methods=["GET"]),
        ]


def _sse(event: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n"
