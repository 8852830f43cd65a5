"""Our kiosk on a SIP2 library system, end to end: the headless station with
`backend = "sip2://127.0.0.1:PORT"` against our own SIP2 server, which runs on the same
library, circulation core and broker as the MQTT stations. The reader sees the same
lines as on the MQTT backend, and the ledger (the database and its MQTT topic) shows
every loan and return."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from kiosk.cli import run_station
from kiosk.config import StationConfig
from kiosk.sip2_backend import Sip2Backend
from protocol import CheckoutArgs, ItemInfoArgs, ItemInfoResult, Op, RenewArgs, RenewResult, parse_model, topics
from protocol import LedgerEntry as LedgerMessage
from server import db
from server.models import LedgerEntry
from server.sip2 import Sip2Config, Sip2Server
from server.sip2.config import set_password
from server.sip2.server import mqtt_publisher

STATION, PASSWORD = "kiosk-sip2", "mat-khau-kiosk"

# A reader borrows two books (a reference book is refused), comes back with her MOET
# id card and sees them on loan, a blocked reader is told why, and the two books and
# an unknown code go back.
SCRIPT = ["HS-2025-0001", "TN00001", "TK00003", "TN00002", "xong",
          "7901234561", "xong", "HS-2025-0003", "xong",
          "tra", "TN00001", "TN00002", "TN09999", "xong"]


@pytest.fixture
def sip2_server(library: Any, tmp_path: Path) -> Iterator[Sip2Server]:
    library.register(STATION, "kiosk")
    accounts = tmp_path / "sip2-accounts"
    set_password(accounts, STATION, PASSWORD)
    service = library.server.service
    server = Sip2Server(Sip2Config(enabled=True, host="127.0.0.1", port=0, accounts_file=str(accounts)),
                        service.circulation, site=library.config.site,
                        library_name=library.config.school_name, publish=mqtt_publisher(service))
    server.start()
    yield server
    server.stop()


def station_config(library: Any, tmp_path: Path, name: str, backend: dict[str, Any] | str) -> StationConfig:
    return StationConfig.model_validate({
        "site": library.config.site, "station": name, "language": "vi", "backend": backend,
        "mqtt": {"host": "127.0.0.1", "port": library.broker.port},
        "offline": {"mode": "none", "outbox_path": str(tmp_path / f"{name}-outbox.db")},
        "voice": {"enabled": False},
    })


def run_script(config: StationConfig, lines: list[str]) -> str:
    """The headless station reading `lines` as its scanner, until its input ends."""
    out = io.StringIO()
    stop = threading.Event()
    done = threading.Thread(target=run_station, args=(config, stop),
                            kwargs={"stdin": io.StringIO("\n".join(lines) + "\n"), "stdout": out})
    done.start()
    done.join(60)
    stop.set()
    assert not done.is_alive(), "the station did not finish its script"
    return out.getvalue()


def ledger(library: Any, station: str) -> list[tuple[str, str]]:
    with db.session_factory(library.server.engine)() as session:
        rows = session.execute(select(LedgerEntry.op, LedgerEntry.request_id)
                               .where(LedgerEntry.station == station).order_by(LedgerEntry.seq))
        return [(op, request_id) for op, request_id in rows]


def test_the_kiosk_on_sip2_says_what_it_says_on_mqtt(library: Any, sip2_server: Sip2Server, tmp_path: Path,
                                                     raw: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    watcher = raw("ledger-watcher")
    watcher.subscribe(topics.ledger(library.config.site))
    over_mqtt = run_script(station_config(library, tmp_path, "kiosk-1", "mqtt"), SCRIPT)

    monkeypatch.setenv("KIOSK_SIP2_PASSWORD", PASSWORD)
    sip2 = {"url": f"sip2://127.0.0.1:{sip2_server.port}", "username": STATION,
            "password_env": "KIOSK_SIP2_PASSWORD", "location": "Thư viện"}
    over_sip2 = run_script(station_config(library, tmp_path, STATION, sip2), SCRIPT)

    assert "Dế Mèn phiêu lưu ký" in over_sip2 and "01/12/2026" in over_sip2, over_sip2
    assert "Không tìm thấy" in over_sip2  # the unknown code, in the library's words
    assert "Sách đang mượn:" in over_sip2, over_sip2  # her loans, listed with their titles
    assert over_sip2.replace(STATION, "kiosk-1") == over_mqtt

    # The ledger: two loans and two returns from each station, the same way.
    by_mqtt, by_sip2 = ledger(library, "kiosk-1"), ledger(library, STATION)
    assert [op for op, _ in by_sip2] == [op for op, _ in by_mqtt] == [
        "checkout", "checkout", "return", "return"], (by_mqtt, by_sip2)
    assert all(request_id.startswith("sip2-") for _, request_id in by_sip2)
    published = []
    while len(published) < 8:
        _topic, payload, _retained = watcher.next(timeout=5)
        published.append(parse_model(LedgerMessage, payload))
    assert sorted(entry.station for entry in published) == ["kiosk-1"] * 4 + [STATION] * 4


def test_renew_over_sip2_is_the_libraries_renewal(library: Any, sip2_server: Sip2Server, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIOSK_SIP2_PASSWORD", PASSWORD)
    config = station_config(library, tmp_path, STATION, {
        "url": f"sip2://127.0.0.1:{sip2_server.port}", "username": STATION,
        "password_env": "KIOSK_SIP2_PASSWORD"})
    backend = Sip2Backend.from_config(config)
    assert backend.start(wait=10)
    try:
        assert backend.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2025-0001", item="TN00003")).ok
        library.clock.advance(days=3)
        renewed = backend.request(Op.LOAN_RENEW, RenewArgs(patron="HS-2025-0001", item="TN00003"))
        assert renewed.ok, renewed
        due = renewed.result_as(RenewResult).due
    finally:
        backend.stop()
    # What the MQTT stations are told about the copy afterwards: the renewed loan.
    info = library.station("kiosk-2").request(Op.ITEM_INFO, ItemInfoArgs(item="TN00003"))
    assert info.result_as(ItemInfoResult).due == due
    assert [op for op, _ in ledger(library, STATION)] == ["checkout", "renew"]
