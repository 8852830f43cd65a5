"""Playwright on Debian's Chromium (never `playwright install`), as STACK.md says."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def launch_chromium(playwright: Any, attempts: int = 5) -> Any:
    """Chromium, started again if it dies while starting: on a loaded machine Debian's
    build now and then traps (SIGTRAP) before its first window. Back-to-back tries have
    failed together on CI, so each waits longer than the last (1, 2, 4, 8 s)."""
    from playwright.sync_api import Error

    for attempt in range(1, attempts + 1):
        try:
            return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        except Error as exc:
            if attempt == attempts:
                raise
            print(f"chromium did not start (try {attempt} of {attempts}): {str(exc).splitlines()[0]}",
                  file=sys.stderr, flush=True)
            time.sleep(2 ** (attempt - 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def launch() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Any, base: str, name: str, password: str) -> None:
    page.goto(f"{base}/staff/login")
    page.get_by_label("Tên đăng nhập").fill(name)
    page.get_by_label("Mật khẩu").fill(password)
    page.get_by_role("button", name="Đăng nhập").click()
