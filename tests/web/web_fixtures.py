"""Builders for the web tests (imported by tests/web/conftest.py and the tests)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from clocks import WallClock
from e2e_library import START, fill, library_config
from server import db
from server.app import RunningServer, start_server
from server.config import ServerConfig
from server.web.app import build_app
from server.web.config import WebConfig
from server.web.context import WebContext
from server.web.run import WebHandle, start_web

PASSWORDS = {"admin": "quan-tri-2026", "thuthu": "thu-vien-2026", "xem": "chi-xem-2026"}
ROLES = {"admin": "admin", "thuthu": "librarian", "xem": "viewer"}


def make_library(tmp_path: Path, site: str = "web-test", port: int = 1883) -> ServerConfig:
    url = f"sqlite:///{tmp_path / 'library.db'}"
    db.upgrade(url)
    fill(url)
    return library_config(site, url, port)


def add_staff(sessions: Any, now: dt.datetime) -> None:
    from server.web.accounts import add_user

    with sessions.begin() as session:
        for name, password in PASSWORDS.items():
            add_user(session, name, ROLES[name], password, now)


@dataclass
class StaffApp:
    config: ServerConfig
    context: WebContext
    clock: WallClock
    engine: Any

    @classmethod
    def create(cls, tmp_path: Path, web: WebConfig | None = None) -> StaffApp:
        config = make_library(tmp_path)
        engine = db.make_engine(config.database.url)
        clock = WallClock(START)
        context = WebContext(config=config, web=web or WebConfig(),
                             sessions=db.session_factory(engine), engine=engine, clock=clock)
        add_staff(context.sessions, clock())
        return cls(config=config, context=context, clock=clock, engine=engine)

    def client(self, address: str = "10.0.0.5") -> TestClient:
        return TestClient(build_app(self.context), follow_redirects=False,
                          client=(address, 50000))

    def login(self, client: TestClient, name: str, password: str | None = None,
              next_page: str = "") -> Any:
        form = client.get("/staff/login")
        token = client.cookies.get("thuvien_login_csrf")
        assert token, "the login page set no CSRF cookie"
        assert f'value="{token}"' in form.text
        return client.post("/staff/login", data={
            "name": name, "password": PASSWORDS.get(name, "") if password is None else password,
            "csrf_token": token, "next": next_page})

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class LiveWeb:
    config: ServerConfig
    server: RunningServer
    web: WebHandle
    clock: WallClock
    tmp_path: Path

    @property
    def url(self) -> str:
        return self.web.url

    def stop(self) -> None:
        self.web.stop()
        self.server.stop()


def start_live_web(tmp_path: Path, site: str, port: int) -> LiveWeb:
    config = make_library(tmp_path, site, port)
    clock = WallClock(START)
    server = start_server(config)
    assert server.service.connected.wait(10), "the server could not connect to the broker"
    web = start_web(config, server.engine, host="127.0.0.1", port=0, mqtt=config.mqtt)
    assert web.context.monitor is not None and web.context.monitor.connected.wait(10)
    add_staff(web.context.sessions, web.context.clock())
    return LiveWeb(config=config, server=server, web=web, clock=clock, tmp_path=tmp_path)
