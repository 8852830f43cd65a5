"""The touch screen against a real library: the server and Mosquitto run here, the kiosk
(the real Kivy app, SDL's offscreen window) in a subprocess per scenario, because Kivy
allows one app per process.

The library is the end-to-end suite's (`tests/e2e/e2e_library.py`), plus a librarian
with a PIN for staff mode.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from clocks import WallClock  # noqa: E402
from e2e_library import START, fill, library_config  # noqa: E402
from server import db  # noqa: E402
from server.app import RunningServer, start_server  # noqa: E402
from server.models import Copy, LedgerEntry, Reader  # noqa: E402
from server.pins import hash_pin  # noqa: E402
from thuvien.broker import MosquittoBroker  # noqa: E402

DRIVER = HERE / "kiosk_driver.py"
STAFF_CARD, STAFF_PIN, STAFF_NAME = "CB-0001", "2468", "Đỗ Thị Lan"


@dataclass
class UiLibrary:
    site: str
    port: int
    clock: WallClock
    server: RunningServer

    def ledger(self) -> list[tuple[str, str, str, str, int | None]]:
        """(op, copy's barcode, reader's card, station, days late) of each entry, in order."""
        with db.session_factory(self.server.engine)() as session:
            rows = session.execute(
                select(LedgerEntry.op, Copy.barcode, Reader.code, LedgerEntry.station, LedgerEntry.days_late)
                .join(Copy, Copy.id == LedgerEntry.copy_id).join(Reader, Reader.id == LedgerEntry.reader_id)
                .order_by(LedgerEntry.seq)).all()
        return [(str(op), barcode, card, station, late) for op, barcode, card, station, late in rows]

    def ledger_count(self) -> int:
        with db.session_factory(self.server.engine)() as session:
            return session.scalar(select(func.count()).select_from(LedgerEntry)) or 0


@pytest.fixture
def ui_library(mosquitto: MosquittoBroker, site: str, tmp_path: Path) -> Iterator[UiLibrary]:
    url = f"sqlite:///{tmp_path / 'library.db'}"
    db.upgrade(url)
    fill(url)
    engine = db.make_engine(url)
    with db.session_factory(engine).begin() as session:
        session.add(Reader(code=STAFF_CARD, name=STAFF_NAME, kind="staff", pin_hash=hash_pin(STAFF_PIN),
                           created_at=START.astimezone(dt.timezone.utc)))
    engine.dispose()
    clock = WallClock(START)
    server = start_server(library_config(site, url, mosquitto.port), clock=clock)
    assert server.service.connected.wait(10), "the server could not connect to the broker"
    yield UiLibrary(site=site, port=mosquitto.port, clock=clock, server=server)
    server.stop()


@pytest.fixture
def run_kiosk_scenario(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run one scenario of `ui_scenarios.py` in a kiosk process; return what it reported."""
    def run(scenario: str, library: UiLibrary | None, *, port: int | None = None,
            timeout: float = 60, **options: Any) -> dict[str, Any]:
        out = tmp_path / f"{scenario}.json"
        args = {"scenario": scenario, "site": library.site if library else "test-offline",
                "port": port if port is not None else library.port if library else 1,
                "out": str(out), **options}
        env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy",
               "KIVY_WINDOW": "sdl2", "KIVY_NO_ARGS": "1", "KIVY_NO_CONSOLELOG": "1",
               "KIVY_NO_FILELOG": "1", "KIVY_HOME": str(tmp_path / "kivy-home")}
        process = subprocess.run([sys.executable, str(DRIVER), json.dumps(args)], env=env,
                                 capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
        report = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
        if report.get("error") or process.returncode != report.get("expected_exit", 0):
            pytest.fail(f"scenario {scenario} failed (exit {process.returncode}):\n"
                        f"{report.get('error', '')}\n--- output ---\n{process.stdout}\n{process.stderr[-6000:]}")
        return report

    return run
