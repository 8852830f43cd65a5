"""Fixtures for the web tests: a small library on a real SQLite file, the web app on it,
staff accounts, and (for browser tests) the whole server on a real Mosquitto with the
web served by uvicorn and a headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The e2e tests' small library (its config and data) is shared, not copied.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from web_fixtures import (  # noqa: E402  (needs the path above)
    PASSWORDS,
    LiveWeb,
    StaffApp,
    add_staff,
    make_library,
    start_live_web,
)


@pytest.fixture
def staff_app(tmp_path: Path) -> Iterator[StaffApp]:
    """The web app on a fresh library, with no broker, driven through Starlette's TestClient."""
    app = StaffApp.create(tmp_path)
    yield app
    app.close()


@pytest.fixture
def live_web(mosquitto, site: str, tmp_path: Path) -> Iterator[LiveWeb]:  # type: ignore[no-untyped-def]
    """The library server and its web, both running, on a real Mosquitto."""
    web = start_live_web(tmp_path, site, mosquitto.port)
    yield web
    web.stop()


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    from web_browser import launch

    with launch() as chromium:
        yield chromium


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(locale="vi-VN", viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


__all__ = ["PASSWORDS", "add_staff", "make_library"]
