"""`thuvien aggregate`: db upgrade, user add, report, and the server itself run as a
process until SIGTERM, ingesting from a real Mosquitto into a real PostgreSQL database."""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from openpyxl import load_workbook
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from protocol.configfile import ConfigError
from server.aggregate import schema
from server.aggregate.ingest import read_counters
from server.aggregate.models import Entry
from thuvien import aggregate_cli
from thuvien.broker import MosquittoBroker

import aggregate_sample as sample

ROOT = Path(__file__).resolve().parents[2]
# The lead wires `aggregate_cli.add_parser(sub)` into thuvien/cli.py; the same here.
MAIN = ("import sys, argparse\nfrom thuvien import aggregate_cli\nfrom thuvien.cli import _setup_logging\n"
        "parser = argparse.ArgumentParser(prog='thuvien')\nsub = parser.add_subparsers(dest='command')\n"
        "aggregate_cli.add_parser(sub)\nargs = parser.parse_args(sys.argv[1:])\n_setup_logging('INFO')\n"
        "sys.exit(args.func(args))\n")


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="thuvien")
    sub = parser.add_subparsers(dest="command", required=True)
    aggregate_cli.add_parser(sub)
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def _config_file(tmp_path: Path, url: str, port: int, web: bool = False) -> str:
    schools = "site,name,commune,levels\n" + "".join(
        f'{s.site},"{s.name}",{s.commune},{";".join(s.levels)}\n' for s in sample.SCHOOLS)
    (tmp_path / "schools.csv").write_text(schools, encoding="utf-8")
    path = tmp_path / "aggregate.toml"
    path.write_text(f'''version = 1
name = "Sở GD&ĐT Tỉnh Bến Tre"
level = "province"
schools_file = "schools.csv"
[database]
url = "{url}"
[mqtt]
host = "127.0.0.1"
port = {port}
client_id = "thuvien-aggregate-cli-{os.getpid()}-{time.monotonic_ns()}"
[web]
enabled = {"true" if web else "false"}
host = "127.0.0.1"
port = 0
''', encoding="utf-8")
    return str(path)


def test_upgrade_users_and_reports(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config_file(tmp_path, pg_url, 1883)
    assert run("aggregate", "--config", config, "--check-config") == 0
    assert "OK (province Sở GD&ĐT Tỉnh Bến Tre, 3 schools listed)" in capsys.readouterr().out
    # Before the schema exists, nothing pretends to work.
    assert run("aggregate", "report", "--config", config, "--year", "2026") == 1
    assert "thuvien aggregate db upgrade" in capsys.readouterr().err
    assert run("aggregate", "db", "upgrade", "--config", config) == 0
    assert "schema a0001" in capsys.readouterr().out
    monkeypatch.setenv("AGG_PW", "mat-khau-so-gd")
    assert run("aggregate", "user", "add", "so-gd", "--role", "admin", "--password-env", "AGG_PW",
               "--config", config) == 0
    assert run("aggregate", "user", "add", "so-gd", "--role", "viewer", "--password-env", "AGG_PW",
               "--config", config) == 1
    assert "already exists" in capsys.readouterr().err
    assert run("aggregate", "--config", config, "user", "list") == 0
    listed = capsys.readouterr().out
    assert "so-gd" in listed and "admin" in listed
    out = tmp_path / "bao-cao.xlsx"
    assert run("aggregate", "report", "--config", config, "--year", "2026", "--format", "xlsx",
               "--out", str(out)) == 0
    rows = list(load_workbook(io.BytesIO(out.read_bytes())).active.iter_rows(values_only=True))
    assert rows[1][0] == "BÁO CÁO TỔNG HỢP THƯ VIỆN TRƯỜNG HỌC TOÀN TỈNH"
    assert next(r for r in rows if r[0] == "Số trường trong danh sách")[1] == 3
    assert run("aggregate", "report", "--config", config, "--year", "2026", "--format", "pdf",
               "--out", str(tmp_path / "r.pdf"), "--lang", "en") == 0
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_a_wrong_config_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('version = 1\nname = "X"\nlevel = "province"\n[database]\nurl = 5\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.toml:5: database.url"):
        run("aggregate", "--config", str(path), "--check-config")


def test_the_server_runs_until_sigterm(pg_url: str, tmp_path: Path, upper_broker: MosquittoBroker) -> None:
    config = _config_file(tmp_path, pg_url, upper_broker.port, web=True)
    process = subprocess.Popen([sys.executable, "-c", MAIN, "aggregate", "--config", config, "--upgrade-db"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    engine = None
    try:
        deadline = time.monotonic() + 30
        while schema.current_revision(pg_url) != "a0001":
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        engine = schema.make_engine(pg_url)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"school-cli-{os.getpid()}")
        client.connect(upper_broker.host, upper_broker.port)
        client.loop_start()
        # Sent again until all is stored: the server may not have subscribed yet, and a
        # second copy counts for nothing.
        while read_counters(engine)["entries_new"] < 19:
            assert process.poll() is None and time.monotonic() < deadline
            for topic, payload, _ in sample.messages():
                if "ledger" in topic:
                    client.publish(topic, payload, qos=1).wait_for_publish(5)
            time.sleep(1.0)
        client.disconnect()
        client.loop_stop()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read() if process.stdout else ""
    assert "aggregate server for Sở GD&ĐT Tỉnh Bến Tre (province, 3 schools listed) running" in output
    assert "aggregate web on http://127.0.0.1:" in output
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Entry)) == 19
    engine.dispose()
