"""The web's parts without HTTP: the catalogue, the station board, accounts, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from protocol import LedgerEntry, ProtocolError, Status
from protocol.configfile import MqttConfig
from server import db
from server.models import StaffUser
from server.web import accounts
from server.web.context import TEMPLATES
from server.web.i18n import STAFF_VI, Catalogue
from server.web.live import StationBoard, StationMonitor
from server.web.records import RECORDS_VI
from server.web.records_stock import STOCK_VI
from thuvien.cli import main
from web_fixtures import make_library

NOW = dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.timezone.utc)
_CALL = re.compile(r"""_\(\s*(["'])(.+?)\1""")


def test_every_staff_template_string_has_a_vietnamese_text() -> None:
    # The staff pages' parts each bring their dict; together they must not contradict.
    catalogue = Catalogue(STAFF_VI, RECORDS_VI, STOCK_VI)
    missing = []
    for path in [TEMPLATES / "base.html", *(TEMPLATES / "staff").glob("*.html")]:
        for _quote, msgid in _CALL.findall(path.read_text(encoding="utf-8")):
            if msgid not in catalogue:
                missing.append(f"{path.name}: {msgid}")
    assert not missing, missing


def test_catalogue_translates_formats_and_refuses_contradictions() -> None:
    catalogue = Catalogue({"since {time}": "từ {time}"})
    assert catalogue.gettext("vi", "since {time}", time="09:00") == "từ 09:00"
    assert catalogue.gettext("en", "since {time}", time="09:00") == "since 09:00"
    assert catalogue.gettext("vi", "not translated") == "not translated"
    catalogue.add({"since {time}": "từ {time}"})  # the same again is fine
    with pytest.raises(ValueError, match="two Vietnamese texts"):
        catalogue.add({"since {time}": "kể từ {time}"})


def test_board_follows_status_and_the_last_will() -> None:
    board = StationBoard()
    board.seed([("gate-1", "gate")], {"kiosk-1": NOW - dt.timedelta(hours=1)})
    assert [v.name for v in board.snapshot()] == ["gate-1", "kiosk-1"]
    assert board.get("gate-1").state == "unknown"

    online = Status(state="online", kind="kiosk", at=NOW, devices={"scanner": "ok", "printer": "fault"},
                    outbox=3, version="1.2")
    view = board.apply_status("kiosk-1", online, NOW + dt.timedelta(seconds=5), retained=False)
    assert (view.state, view.since, view.outbox, view.faulty) == ("online", NOW, 3, True)
    assert view.last_transaction == NOW - dt.timedelta(hours=1)

    will = Status.model_validate_json(b'{"v":1,"state":"offline"}')
    later = NOW + dt.timedelta(minutes=7)
    view = board.apply_status("kiosk-1", will, later, retained=False)
    # Offline since it was heard, and what the station last said is kept.
    assert (view.state, view.since, view.devices["scanner"], view.kind) == ("offline", later, "ok", "kiosk")
    again = board.apply_status("kiosk-1", will, later + dt.timedelta(minutes=1), retained=False)
    assert again.since == later  # the same state does not move "since"

    retained = board.apply_status("gate-1", will, later, retained=True)
    assert retained.state == "offline" and retained.since is None  # when? unknown


def test_board_keeps_the_newest_transaction() -> None:
    board = StationBoard()
    entry = {"seq": 1, "id": "r-1", "op": "checkout", "item": "TN.00001", "title": "Dế Mèn",
             "patron": "HS-1", "patron_kind": "student", "station": "kiosk-1",
             "station_at": NOW.isoformat(), "server_at": NOW.isoformat()}
    board.apply_ledger(LedgerEntry.model_validate(entry))
    older = {**entry, "seq": 2, "server_at": (NOW - dt.timedelta(hours=1)).isoformat()}
    assert board.apply_ledger(LedgerEntry.model_validate(older)).last_transaction == NOW


def test_monitor_rejects_junk_without_dying() -> None:
    monitor = StationMonitor("web-test", MqttConfig(host="127.0.0.1", port=1))
    got = []
    monitor.hub.publish = got.append  # type: ignore[method-assign]
    for topic, payload in [
        ("thuvien/v1/web-test/station/kiosk-1/status", b"\xff\xfe"),
        ("thuvien/v1/web-test/station/kiosk-1/status", b'{"v":1,"state":"exploded"}'),
        ("thuvien/v1/web-test/station/KIOSK/status", b'{"v":1,"state":"online"}'),
        ("thuvien/v1/web-test/ledger", b"[]"),
    ]:
        with pytest.raises(ProtocolError):
            monitor.handle(topic, payload)

    class Message:
        topic = "thuvien/v1/web-test/station/kiosk-1/status"
        payload = b"not json"
        retain = False

    monitor._on_message(None, None, Message())  # type: ignore[arg-type]  # logged, not raised
    assert got == [] and monitor.board.snapshot() == []
    monitor.handle("thuvien/v1/web-test/station/kiosk-1/status", b"")  # a cleared retained message
    monitor.handle("thuvien/v1/web-test/station/kiosk-1/status",
                   json.dumps({"v": 1, "state": "online", "kind": "kiosk"}).encode())
    assert got[-1][0] == "station" and got[-1][1].state == "online"


def test_accounts_check_their_input(tmp_path: Path) -> None:
    config = make_library(tmp_path)
    engine = db.make_engine(config.database.url)
    sessions = db.session_factory(engine)
    try:
        with sessions.begin() as session:
            for name, role, password, problem in [
                ("A", "admin", "long-enough", "user name"),
                ("ok-name", "boss", "long-enough", "role"),
                ("ok-name", "admin", "short", "8 to 256"),
            ]:
                with pytest.raises(accounts.AccountError, match=problem):
                    accounts.add_user(session, name, role, password, NOW)
            accounts.add_user(session, "co.lan", "librarian", "mat-khau-1", NOW)
            with pytest.raises(accounts.AccountError, match="already exists"):
                accounts.add_user(session, "co.lan", "viewer", "mat-khau-2", NOW)
        with sessions.begin() as session:
            user = accounts.get_user(session, "co.lan")
            assert user.password_hash.startswith("scrypt$16384$8$1$")
            token, _ = accounts.open_session(session, user, "10.0.0.1", NOW, dt.timedelta(hours=1))
            assert accounts.find_session(session, token, NOW) is not None
            accounts.set_password(session, "co.lan", "mat-khau-moi", NOW)
            # A new password ends the sessions opened with the old one.
            assert accounts.find_session(session, token, NOW) is None
            assert accounts.authenticate(session, "co.lan", "mat-khau-1", None, NOW).outcome == "wrong"
            assert accounts.authenticate(session, "co.lan", "mat-khau-moi", None, NOW).outcome == "ok"
        assert accounts.may("admin", "librarian") and not accounts.may("viewer", "librarian")
    finally:
        engine.dispose()


def _server_toml(tmp_path: Path) -> Path:
    config = make_library(tmp_path)
    path = tmp_path / "server.toml"
    path.write_text(f'site = "web-test"\nschool_name = "Trường THCS Thử nghiệm"\n'
                    f'[database]\nurl = "{config.database.url}"\n', encoding="utf-8")
    return path


def test_cli_adds_lists_and_changes_passwords(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    path = _server_toml(tmp_path)
    monkeypatch.setenv("ADMIN_PASSWORD", "bat-dau-2026")
    assert main(["user", "add", "admin", "--role", "admin", "--config", str(path),
                 "--password-env", "ADMIN_PASSWORD"]) == 0
    typed = iter(["thu-vien-1", "thu-vien-1"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt: next(typed))
    assert main(["user", "add", "co.lan", "--role", "librarian", "--config", str(path)]) == 0
    capsys.readouterr()
    assert main(["user", "list", "--config", str(path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listed] == [["admin", "admin"], ["co.lan", "librarian"]]

    # Mistakes are told in Vietnamese and English, with no traceback and no change.
    assert main(["user", "add", "admin", "--role", "viewer", "--config", str(path),
                 "--password-env", "ADMIN_PASSWORD"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["user", "passwd", "admin", "--config", str(path), "--password-env", "UNSET_VAR"]) == 1
    assert "UNSET_VAR" in capsys.readouterr().err
    mistyped = iter(["mot-hai-ba", "mot-hai-bon"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt: next(mistyped))
    assert main(["user", "passwd", "admin", "--config", str(path)]) == 1
    assert "không khớp" in capsys.readouterr().err

    monkeypatch.setenv("NEW_PASSWORD", "doi-mat-khau")
    assert main(["user", "passwd", "admin", "--config", str(path), "--password-env", "NEW_PASSWORD"]) == 0
    engine = db.make_engine(f"sqlite:///{tmp_path / 'library.db'}")
    try:
        with db.session_factory(engine).begin() as session:
            assert accounts.authenticate(session, "admin", "doi-mat-khau", None, NOW).outcome == "ok"
            assert session.scalars(select(StaffUser.name)).all() == ["admin", "co.lan"]
    finally:
        engine.dispose()


def test_cli_refuses_an_old_schema(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.upgrade(url, "0003")
    path = tmp_path / "server.toml"
    path.write_text(f'site = "web-test"\nschool_name = "T"\n[database]\nurl = "{url}"\n', encoding="utf-8")
    assert main(["user", "list", "--config", str(path)]) == 1
    assert "thuvien db upgrade" in capsys.readouterr().err
