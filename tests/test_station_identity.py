"""`thuvien station add|list|remove|acl`: a real SQLite database, the real
mosquitto_passwd, the real CLI. The broker's side of it is tests/e2e/test_broker_acl_e2e.py."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from server import db
from server import stations as registry
from server.models import StationKind
from thuvien import stations as admin
from thuvien.cli import main

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "config" / "mosquitto" / "thuvien.conf"
ACL_EXAMPLE = REPO / "config" / "mosquitto" / "thuvien.acl.example"
SITE = "thcs-thu-nghiem"


@pytest.fixture
def server_toml(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'thuvien.db'}"
    db.upgrade(url)
    path = tmp_path / "server.toml"
    path.write_text(f'site = "{SITE}"\nschool_name = "Trường THCS Thử nghiệm"\n'
                    f'[database]\nurl = "{url}"\n[mqtt]\nusername = "thuvien-server"\n',
                    encoding="utf-8")
    return path


def _engine(server_toml: Path):  # type: ignore[no-untyped-def]
    return db.make_engine(f"sqlite:///{server_toml.parent / 'thuvien.db'}")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _add(server_toml: Path, name: str, kind: str, *extra: str, site: str = SITE) -> int:
    tmp = server_toml.parent
    return main(["station", "add", site, name, "--kind", kind, "--config", str(server_toml),
                 "--passwd-file", str(tmp / "thuvien.passwd"),
                 "--password-out", str(tmp / "credentials" / f"{name}-mqtt"), *extra])


# --- secrets and the password file ---------------------------------------------------------


def test_generated_passwords_are_long_random_and_shell_safe() -> None:
    passwords = {admin.generate_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", password), password


def test_write_secret_is_0600_in_a_0700_folder_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "credentials" / "kiosk-1-mqtt"
    admin.write_secret(target, "bí-mật-1")
    assert target.read_text(encoding="utf-8") == "bí-mật-1\n"
    assert _mode(target) == 0o600
    assert _mode(target.parent) == 0o700
    target.chmod(0o644)  # a careless edit: writing again must close it
    admin.write_secret(target, "bí-mật-2")
    assert target.read_text(encoding="utf-8") == "bí-mật-2\n"
    assert _mode(target) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["kiosk-1-mqtt"]


def test_write_secret_refuses_clearly_where_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(admin.StationAdminError) as caught:
        admin.write_secret(blocker / "kiosk-1-mqtt", "x")
    assert caught.value.vi.startswith("Không ghi được mật khẩu")
    assert "cannot write the password" in caught.value.en


def test_password_file_entries_are_added_rotated_and_deleted(tmp_path: Path) -> None:
    passwd = tmp_path / "thuvien.passwd"
    admin.set_broker_password(passwd, "kiosk-1", "một")
    assert _mode(passwd) == 0o640  # created by us, not 0644 by mosquitto_passwd -c
    admin.set_broker_password(passwd, "gate-1", "hai")
    first = passwd.read_text(encoding="utf-8")
    assert admin.broker_users(passwd) == {"kiosk-1", "gate-1"}
    assert "một" not in first and "hai" not in first  # only hashes
    admin.set_broker_password(passwd, "kiosk-1", "ba")
    lines = passwd.read_text(encoding="utf-8").splitlines()
    assert [line.split(":")[0] for line in lines].count("kiosk-1") == 1
    assert next(line for line in lines if line.startswith("kiosk-1:")) not in first  # a new hash
    assert admin.delete_broker_password(passwd, "kiosk-1") is True
    assert admin.delete_broker_password(passwd, "kiosk-1") is False
    assert admin.broker_users(passwd) == {"gate-1"}
    assert admin.broker_users(tmp_path / "missing") == set()


def test_a_missing_mosquitto_passwd_is_refused_before_anything_changes(
        server_toml: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(server_toml.parent))
    monkeypatch.setattr(admin, "_MOSQUITTO_PASSWD_FALLBACK", server_toml.parent / "nowhere")
    assert _add(server_toml, "kiosk-1", "kiosk") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("thuvien station: Chưa cài đặt mosquitto_passwd")
    assert "mosquitto_passwd is not installed" in err[1]
    assert registry.get(_engine(server_toml), "kiosk-1") is None
    assert not (server_toml.parent / "credentials").exists()


# --- the ACL -----------------------------------------------------------------------------


def test_acl_pins_stations_with_patterns_and_gives_the_ledger_to_gates_only() -> None:
    text = admin.render_acl("thcs-a", [("kiosk-1", "kiosk"), ("gate-2", "gate"), ("gate-1", "gate"),
                                       ("returnbox-1", "returnbox")], "thuvien-server", ["giam-sat"])
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "pattern write thuvien/v1/thcs-a/station/%u/request",
        "pattern write thuvien/v1/thcs-a/station/%u/status",
        "pattern write thuvien/v1/thcs-a/station/%u/event",
        "pattern read thuvien/v1/thcs-a/station/%u/reply",
        "pattern read thuvien/v1/thcs-a/station/%u/command",
        "pattern read thuvien/v1/thcs-a/server/status",
        "user thuvien-server", "topic readwrite thuvien/v1/thcs-a/#",
        "user gate-1", "topic read thuvien/v1/thcs-a/ledger",
        "user gate-2", "topic read thuvien/v1/thcs-a/ledger",
        "user giam-sat", "topic read thuvien/v1/thcs-a/#",
    ]


def test_acl_refuses_a_monitor_that_is_a_station_and_bad_names() -> None:
    with pytest.raises(admin.StationAdminError, match="cannot also be a monitor"):
        admin.render_acl("thcs-a", [("kiosk-1", "kiosk")], "thuvien-server", ["kiosk-1"])
    with pytest.raises(admin.StationAdminError, match="cannot also be a monitor"):
        admin.render_acl("thcs-a", [], "thuvien-server", ["thuvien-server"])
    with pytest.raises(admin.StationAdminError, match="site 'thcs/#' is invalid"):
        admin.render_acl("thcs/#", [], "thuvien-server")
    with pytest.raises(admin.StationAdminError, match="monitor 'Giám sát' is invalid"):
        admin.render_acl("thcs-a", [], "thuvien-server", ["Giám sát"])


def test_the_committed_acl_example_is_what_the_generator_writes() -> None:
    expected = admin.render_acl("thcs-nhut-tao", [("kiosk-1", "kiosk"), ("gate-1", "gate"),
                                                  ("returnbox-1", "returnbox")],
                                "thuvien-server", ["giam-sat"])
    assert ACL_EXAMPLE.read_text(encoding="utf-8") == expected
    assert admin.read_monitors(ACL_EXAMPLE) == ["giam-sat"]


def test_production_config_has_no_anonymous_access_and_plain_mqtt_on_loopback_only() -> None:
    directives = [line.split() for line in CONF.read_text(encoding="utf-8").splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    listeners = [d for d in directives if d[0] == "listener"]
    assert listeners == [["listener", "1883", "127.0.0.1"], ["listener", "8883"]]
    assert ["allow_anonymous", "false"] in directives
    assert ["allow_anonymous", "true"] not in directives
    assert ["password_file", "/etc/mosquitto/thuvien.passwd"] in directives
    assert ["acl_file", "/etc/mosquitto/thuvien.acl"] in directives
    # certfile and keyfile belong to the listener before them: the TLS one.
    after_tls = directives[directives.index(["listener", "8883"]):]
    assert ["certfile", "/etc/mosquitto/certs/thuvien-server.crt"] in after_tls
    assert ["keyfile", "/etc/mosquitto/certs/thuvien-server.key"] in after_tls
    assert ["tls_version", "tlsv1.2"] in after_tls
    assert not any(d[0] == "per_listener_settings" and d[1] == "true" for d in directives)


def test_no_secret_is_committed_in_configs_or_units() -> None:
    for path in [*(REPO / "config").rglob("*"), *(REPO / "systemd").glob("*")]:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"^\s*password\s*=", text, re.M), path
            assert not re.search(r"^\S+:\$7\$", text, re.M), path  # a Mosquitto hash line


# --- the command line, on a real database ---------------------------------------------------


def test_station_add_registers_writes_the_login_and_a_0600_credential(
        server_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp = server_toml.parent
    assert _add(server_toml, "kiosk-1", "kiosk") == 0
    out = capsys.readouterr().out
    credential = tmp / "credentials" / "kiosk-1-mqtt"
    password = credential.read_text(encoding="utf-8").strip()
    assert _mode(credential) == 0o600
    assert len(password) == 32 and password not in out  # never printed unless asked
    assert out.startswith("Đã đăng ký trạm kiosk-1 (kiosk) / Registered station kiosk-1 (kiosk)")
    assert "systemctl reload mosquitto" in out
    record = registry.get(_engine(server_toml), "kiosk-1")
    assert record is not None and record.kind is StationKind.KIOSK and record.active
    assert admin.broker_users(tmp / "thuvien.passwd") == {"kiosk-1"}


def test_station_add_again_rotates_the_password_and_may_change_the_kind(
        server_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp = server_toml.parent
    assert _add(server_toml, "desk-1", "kiosk") == 0
    first_password = (tmp / "credentials" / "desk-1-mqtt").read_text(encoding="utf-8")
    first_hash = (tmp / "thuvien.passwd").read_text(encoding="utf-8")
    capsys.readouterr()
    assert _add(server_toml, "desk-1", "desk", "--show-password") == 0
    out = capsys.readouterr().out.splitlines()
    second_password = (tmp / "credentials" / "desk-1-mqtt").read_text(encoding="utf-8")
    assert second_password != first_password
    assert (tmp / "thuvien.passwd").read_text(encoding="utf-8") != first_hash
    assert out[0].startswith("Đã đổi mật khẩu của trạm desk-1 (desk)")
    assert "kind changed: kiosk -> desk" in out[1]
    assert out[-1] == second_password.strip()  # --show-password: the last line, alone
    record = registry.get(_engine(server_toml), "desk-1")
    assert record is not None and record.kind is StationKind.DESK
    assert len(registry.list_stations(_engine(server_toml))) == 1


def test_show_password_alone_writes_no_credential_file(
        server_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp = server_toml.parent
    assert main(["station", "add", SITE, "returnbox-1", "--kind", "returnbox", "--config",
                 str(server_toml), "--passwd-file", str(tmp / "thuvien.passwd"),
                 "--show-password"]) == 0
    password = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", password)
    assert not Path("/etc/thuvien/credentials/returnbox-1-mqtt").exists()


@pytest.mark.parametrize(("argv_site", "name", "kind", "vi", "en"), [
    ("thcs-khac", "kiosk-1", "kiosk", "Mã trường thcs-khac khác với mã trong",
     "site thcs-khac is not the site of"),
    (SITE, "Kiosk 1", "kiosk", "Tên trạm 'Kiosk 1' không hợp lệ", "station 'Kiosk 1' is invalid"),
    (SITE, "kiosk-1", "robot", "Loại trạm 'robot' không hợp lệ", "unknown station kind 'robot'"),
    (SITE, "thuvien-server", "kiosk", "Tên thuvien-server đã dùng cho máy chủ",
     "thuvien-server is the server's or a monitor's login"),
])
def test_station_add_refusals_say_why_in_vietnamese_then_english_and_change_nothing(
        server_toml: Path, capsys: pytest.CaptureFixture[str],
        argv_site: str, name: str, kind: str, vi: str, en: str) -> None:
    assert _add(server_toml, name, kind, site=argv_site) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"thuvien station: {vi}"), err
    assert err[1].startswith(f"thuvien station: {en}"), err
    assert registry.list_stations(_engine(server_toml)) == []
    assert not (server_toml.parent / "thuvien.passwd").exists()


def test_station_add_on_an_old_database_says_to_upgrade(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.upgrade(url, "0002")
    toml = tmp_path / "server.toml"
    toml.write_text(f'site = "{SITE}"\nschool_name = "Trường"\n[database]\nurl = "{url}"\n',
                    encoding="utf-8")
    assert _add(toml, "kiosk-1", "kiosk") == 1
    err = capsys.readouterr().err
    assert "chưa được cập nhật" in err and f"thuvien db upgrade --config {toml}" in err


def test_station_list_remove_and_acl_follow_the_database(
        server_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp = server_toml.parent
    acl = tmp / "thuvien.acl"
    passwd = tmp / "thuvien.passwd"
    assert main(["station", "acl", "--config", str(server_toml), "--out", str(acl),
                 "--monitor", "giam-sat"]) == 0
    assert "user gate-1" not in acl.read_text(encoding="utf-8")
    for name, kind in [("kiosk-1", "kiosk"), ("gate-1", "gate"), ("gate-2", "gate")]:
        assert _add(server_toml, name, kind, "--acl-file", str(acl)) == 0
    text = acl.read_text(encoding="utf-8")
    assert "user gate-1\n" in text and "user gate-2\n" in text and "user kiosk-1\n" not in text
    assert "user giam-sat\n" in text  # kept from the first run
    assert _mode(acl) == 0o640
    # A monitor's name is not free for a station.
    assert _add(server_toml, "giam-sat", "kiosk", "--acl-file", str(acl)) == 1

    capsys.readouterr()
    assert main(["station", "remove", SITE, "gate-2", "--config", str(server_toml),
                 "--passwd-file", str(passwd), "--acl-file", str(acl)]) == 0
    assert "user gate-2" not in acl.read_text(encoding="utf-8")
    assert admin.broker_users(passwd) == {"kiosk-1", "gate-1"}
    assert main(["station", "list", "--config", str(server_toml), "--passwd-file", str(passwd)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("gate", "kiosk"))]
    assert [(r[0], r[1], r[2], r[-1]) for r in rows] == [
        ("gate-1", "gate", "active", "login"),
        ("gate-2", "gate", "inactive", "NO-LOGIN"),
        ("kiosk-1", "kiosk", "active", "login"),
    ]
    # Removing what was never there is an error; printed, the ACL goes to stdout.
    assert main(["station", "remove", SITE, "kiosk-9", "--config", str(server_toml),
                 "--passwd-file", str(passwd)]) == 1
    assert "Không có trạm kiosk-9" in capsys.readouterr().err
    assert main(["station", "acl", "--config", str(server_toml), "--site", SITE]) == 0
    printed = capsys.readouterr().out
    assert "user gate-1\n" in printed and "giam-sat" not in printed
    assert os.path.exists(acl)
