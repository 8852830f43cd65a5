"""Issue #8's loopback: reports flow upward over bridged brokers into PostgreSQL.

Three real Mosquittos on free ports: school A's, school B's and the province's (TLS,
logins, the ACL made by `thuvien bridge acl`, persistence). Each school's broker is
bridged to the province by the section `thuvien bridge config` writes (TLS with the
province's CA, the bridge's own login). Two school servers (`start_server`, SQLite,
`[upward] enabled`) lend and return through real kiosk requests; one aggregate
server (`start_aggregate`: its ingest and MQTT listener, on a fresh PostgreSQL database)
listens on the province's broker with its own login. The province's broker is killed in the middle, both schools keep
lending, and it comes back. Then the province's figures must equal, exactly, what each
school counts itself: from its own ledger and from its own statistics report. And no
reader's name, code, MOET id or card reached the province.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from e2e_library import START, fill, library_config
from kiosk.link import MqttLink
from protocol import CheckoutArgs, Op, ReturnArgs
from protocol.configfile import MqttConfig
from server import db
from server.aggregate.config import AggregateConfig, DatabaseConfig, SchoolEntry
from server.aggregate.app import RunningAggregate, start_aggregate
from server.aggregate.schema import upgrade
from server.aggregate.views import Filters, build_views
from server.app import RunningServer, start_server
from server.circulation import NOT_APPLIED
from server.config import UpwardConfig
from server.models import LedgerEntry
from server.reports.registry import ReportParams, get_report
from thuvien.broker import MosquittoBroker
from thuvien.stations import set_broker_password

pytestmark = pytest.mark.timeout(420)

ROOT = Path(__file__).resolve().parents[2]
SCHOOL_YEAR = 2026  # START is 21/11/2026: the school year 2026-2027
AGGREGATE_LOGIN = "thuvien-aggregate"
# The bridges retry 10 s after a lost link (server/bridge.py RESTART_BASE_S), backing
# off: give the whole flow time to settle after the province's broker comes back.
SETTLE_S = 150.0
# What the fill() library holds about its readers: none of it may reach the province.
PERSONAL = ("HS-2025-0001", "HS-2025-0002", "HS-2025-0003", "GV-0001", "Nguyễn Văn An",
            "Trần Thị Bình", "Lê Minh Châu", "Phạm Thu Hà", "7901234561", "7901234562", "04A1B2C3")

# Circulation at each school: (op, item, patron). Run in three parts: bridge up,
# province down, province back. School B lends less than A, so the totals tell them apart.
LENDING: dict[str, list[list[tuple[str, str, str | None]]]] = {
    "a": [
        [("checkout", "TN00001", "HS-2025-0001"), ("checkout", "TK00001", "HS-2025-0001"),
         ("checkout", "TN00002", "HS-2025-0002"), ("checkout", "NV00001", "GV-0001"),
         ("return", "TN00001", None), ("return", "TK00001", None)],
        [("checkout", "TN00003", "HS-2025-0001"), ("return", "TN00002", None),
         ("checkout", "GK00001", "HS-2025-0002"), ("return", "NV00001", None),
         ("checkout", "TN00001", "HS-2025-0002"), ("return", "TN00003", None),
         ("checkout", "TK00002", "HS-2025-0001")],
        [("return", "TK00002", None), ("checkout", "TN00004", "GV-0001")],
    ],
    "b": [
        [("checkout", "TN00001", "HS-2025-0002"), ("checkout", "NV00001", "GV-0001"),
         ("return", "TN00001", None)],
        [("checkout", "TN00002", "HS-2025-0001"), ("checkout", "TK00001", "HS-2025-0002"),
         ("return", "NV00001", None), ("return", "TK00001", None)],
        [("checkout", "GK00001", "HS-2025-0001")],
    ],
}


def _wait(what: str, check: Callable[[], bool], timeout: float, every: float = 0.2,
          explain: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{explain()}")
        time.sleep(every)


def _log_tail(broker: MosquittoBroker, lines: int = 15) -> str:
    try:
        return "\n".join(broker.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except Exception as exc:  # noqa: BLE001  (only an explanation of a failure)
        return f"(no log: {exc})"


def _thuvien(*args: str) -> str:
    """The real command line, as an administrator types it."""
    result = subprocess.run([sys.executable, "-m", "thuvien.cli", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, f"thuvien {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """The province's CA, and its broker's certificate for 127.0.0.1 (as docs/security.md
    makes a school's)."""
    folder.mkdir()
    script = """
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 30 \
    -subj "/O=thuvien/CN=province CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout ca.key -out ca.crt
printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=serverAuth\\nsubjectAltName=DNS:localhost,IP:127.0.0.1\\n' > broker.ext
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -subj "/O=thuvien/CN=localhost" -keyout broker.key -out broker.csr
openssl x509 -req -sha256 -days 30 -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -extfile broker.ext -out broker.crt
"""
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return folder / "ca.crt", folder / "broker.crt", folder / "broker.key"


class RunningClock:
    """The server's clock: START, then running as time does. (A clock stopped at START
    would stamp every snapshot with the same `generated_at`, and the province keeps the
    first of equals, as it should for a resent copy.)"""

    def __init__(self, start: dt.datetime) -> None:
        self.start = start.astimezone(dt.timezone.utc)
        self.origin = time.monotonic()

    def __call__(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=time.monotonic() - self.origin)


@dataclass
class Province:
    broker: MosquittoBroker
    ca: Path
    passwd: Path
    folder: Path
    passwords: dict[str, Path] = field(default_factory=dict)

    def login(self, user: str) -> Path:
        """A login on the province's broker; its password in a file of its own."""
        secret = self.folder / f"{user}.password"
        secret.write_text(f"pw-{user}-{time.monotonic_ns()}\n", encoding="utf-8")
        secret.chmod(0o600)
        set_broker_password(self.passwd, user, secret.read_text(encoding="utf-8").strip())
        self.passwords[user] = secret
        return secret


@dataclass
class School:
    key: str
    site: str
    config: Any           # ServerConfig
    broker: MosquittoBroker
    server: RunningServer
    link: MqttLink

    def run(self, steps: list[tuple[str, str, str | None]]) -> None:
        for op, item, patron in steps:
            if op == "checkout":
                assert patron is not None
                reply = self.link.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron=patron, item=item))
            else:
                reply = self.link.request(Op.LOAN_RETURN, ReturnArgs(item=item))
            assert reply.ok, (self.site, op, item, reply)

    def ledger(self) -> Counter[str]:
        """The school's own count, from its ledger: entries by op, and `loans` (checkouts
        that changed a loan, as its statistics count them)."""
        counts: Counter[str] = Counter()
        with db.session_factory(self.server.engine)() as session:
            for op, conflict, n in session.execute(
                    select(LedgerEntry.op, LedgerEntry.conflict, func.count()).group_by(
                        LedgerEntry.op, LedgerEntry.conflict)):
                counts[op] += n
                counts["entries"] += n
                if op == "checkout" and conflict not in {c.value for c in NOT_APPLIED}:
                    counts["loans"] += n
        return counts

    def statistics_loans(self) -> int:
        spec = get_report("statistics")
        assert spec.snapshot is not None
        data = spec.snapshot(db.read_only(db.session_factory(self.server.engine)), self.config,
                             ReportParams(school_year=SCHOOL_YEAR))
        return int(data["loans"]["total"])


@pytest.fixture
def province(tmp_path: Path) -> Iterator[Province]:
    folder = tmp_path / "province"
    ca, cert, key = _certificates(folder)
    passwd = folder / "mosquitto.passwd"
    acl = folder / "mosquitto.acl"
    broker = MosquittoBroker(persistent=True, extra_config=(
        # The listener above becomes TLS, with logins and the generated ACL.
        f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
        # Queue for the aggregate's session what the bridges send while it catches up.
        "max_queued_messages 100000\n"))
    yield Province(broker=broker, ca=ca, passwd=passwd, folder=folder)
    broker.stop()


@pytest.fixture
def aggregate_url(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


def _school(key: str, site: str, tmp_path: Path, province: Province, stack: list[Any]) -> School:
    """A school's server on its own SQLite file and its own Mosquitto, bridged upward by
    the file `thuvien bridge config` writes."""
    folder = tmp_path / f"school-{key}"
    folder.mkdir()
    url = f"sqlite:///{folder / 'library.db'}"
    db.upgrade(url)
    fill(url)
    toml = folder / "server.toml"
    toml.write_text(f'site = "{site}"\nschool_name = "Trường THCS {key.upper()}"\n'
                    f'[database]\nurl = "{url}"\n', encoding="utf-8")
    password = province.passwords[f"bridge-{site}"]
    bridge = folder / "thuvien-bridge.conf"
    _thuvien("bridge", "config", "--config", str(toml), "--upper-host", "127.0.0.1",
             "--upper-port", str(province.broker.port), "--cafile", str(province.ca),
             "--password-file", str(password), "--out", str(bridge))
    broker = MosquittoBroker(persistent=True, extra_config=bridge.read_text(encoding="utf-8"))
    broker.start()
    stack.append(broker.stop)
    config = library_config(site, url, broker.port).model_copy(update={
        "school_name": f"Trường THCS {key.upper()}",
        # Snapshots every 3 s rather than hourly, so the last loans reach them soon.
        "upward": UpwardConfig(enabled=True, interval_s=0.2, reports_every_minutes=0.05)})
    server = start_server(config, clock=RunningClock(START))
    stack.append(server.stop)
    assert server.service.connected.wait(10), f"school {key}'s server could not reach its broker"
    assert server.upward is not None, "[upward] enabled, but start_server started no publisher"
    link = MqttLink(site, "kiosk-1", "kiosk", MqttConfig(host="127.0.0.1", port=broker.port),
                    request_timeout=10.0)
    assert link.start(wait=10), f"school {key}'s kiosk could not reach its broker"
    stack.append(link.stop)
    return School(key, site, config, broker, server, link)


def _province_figures(engine: Any) -> dict[str, Counter[str]]:
    """Per site: entries by op, and loans (the rollup the views read)."""
    figures: dict[str, Counter[str]] = {}
    with engine.connect() as connection:
        for site, op, n in connection.execute(text(
                "SELECT site, op, count(*) FROM agg_entries GROUP BY site, op")):
            mine = figures.setdefault(site, Counter())
            mine[op] += n
            mine["entries"] += n
        for site, loans in connection.execute(text(
                "SELECT site, sum(checkouts) FROM agg_monthly_loans GROUP BY site")):
            figures.setdefault(site, Counter())["loans"] = int(loans)
    return figures


def test_reports_flow_upward_through_an_outage(tmp_path: Path, province: Province,
                                               aggregate_url: str) -> None:
    stack: list[Any] = []
    try:
        _run(tmp_path, province, aggregate_url, stack)
    finally:
        for stop in reversed(stack):
            stop()


def _aggregate(url: str, province: Province, sites: dict[str, str], stack: list[Any]) -> RunningAggregate:
    """The aggregate server (its ingest and MQTT listener, no web) on the province's
    broker, with its own login over TLS."""
    config = AggregateConfig(
        name="Sở GD&ĐT Thử nghiệm", level="province", database=DatabaseConfig(url=url),
        mqtt=MqttConfig(host="127.0.0.1", port=province.broker.port, username=AGGREGATE_LOGIN,
                        password_file=str(province.passwords[AGGREGATE_LOGIN]), tls=True,
                        ca_file=str(province.ca)),
        schools=[SchoolEntry(site=site, name=f"Trường THCS {key.upper()}", commune="Phường Một",
                             levels=["lower_secondary"]) for key, site in sites.items()])
    running = start_aggregate(config, wait=10)
    stack.append(running.stop)
    assert running.listener.connected.is_set(), "the aggregate could not log in to the province's broker"
    return running


def _everything_arrived(schools: dict[str, School], engine: Any) -> bool:
    figures = _province_figures(engine)
    for school in schools.values():
        mine = school.ledger()
        theirs = figures.get(school.site, Counter())
        if theirs["entries"] != mine["entries"] or theirs["loans"] != mine["loans"]:
            return False
    with engine.connect() as connection:
        snapshot_loans = dict(connection.execute(text(
            "SELECT site, loans FROM agg_snapshots WHERE name = 'statistics' AND school_year = :year"),
            {"year": SCHOOL_YEAR}).all())
    return all(snapshot_loans.get(s.site) == s.ledger()["loans"] for s in schools.values())


def _explain(schools: dict[str, School], province: Province, engine: Any) -> str:
    with engine.connect() as connection:
        snapshots = connection.execute(text(
            "SELECT site, name, school_year, loans, generated_at FROM agg_snapshots")).all()
    parts = [f"province: {_province_figures(engine)}", f"snapshots: {snapshots}",
             f"province broker log:\n{_log_tail(province.broker)}"]
    for school in schools.values():
        upward = school.server.upward
        parts += [f"school {school.site}: ledger {dict(school.ledger())}, "
                  f"publisher cursor {getattr(upward, 'cursor', None)}, "
                  f"published {getattr(upward, 'entries_published', None)} entries, "
                  f"{getattr(upward, 'reports_published', None)} reports",
                  f"its broker's log:\n{_log_tail(school.broker)}"]
    return "\n".join(parts)


def _run(tmp_path: Path, province: Province, aggregate_url: str, stack: list[Any]) -> None:
    sites = {key: f"thcs-{key}-{os.getpid()}" for key in LENDING}
    # The province first: a login per school's bridge and one for the aggregate, and the
    # ACL `thuvien bridge acl` makes, read by its broker at start.
    for site in sites.values():
        province.login(f"bridge-{site}")
    province.login(AGGREGATE_LOGIN)
    (province.folder / "mosquitto.acl").write_text(
        _thuvien("bridge", "acl", "--sites", ",".join(sites.values()), "--reader", AGGREGATE_LOGIN),
        encoding="utf-8")
    province.broker.start()
    aggregate = _aggregate(aggregate_url, province, sites, stack)
    ingest, config = aggregate.ingest, aggregate.config
    schools = {key: _school(key, site, tmp_path, province, stack) for key, site in sites.items()}

    for school in schools.values():
        school.run(LENDING[school.key][0])
    # All of them, not just some: a batch still on its way (or in the ingest's buffer)
    # would land after the snapshot below and look like an entry that crossed a dead broker.
    _wait("the first loans at the province", lambda: all(
        _province_figures(ingest.engine).get(s.site, Counter())["entries"] == s.ledger()["entries"]
        for s in schools.values()), SETTLE_S)

    # The province's broker goes down (a crash: SIGKILL); the schools keep lending.
    province.broker.kill()
    before = _province_figures(ingest.engine)
    for school in schools.values():
        school.run(LENDING[school.key][1])
    # Each school's own broker took every entry (the publisher's cursor is at the end of
    # the ledger): what the province lacks now waits in the bridges' queues.
    _wait("the schools' brokers to take the entries made during the outage", lambda: all(
        s.server.upward is not None and s.server.upward.cursor == s.ledger()["entries"]
        for s in schools.values()), 30)
    assert _province_figures(ingest.engine) == before
    assert all(before[s.site]["entries"] < s.ledger()["entries"] for s in schools.values())
    province.broker.restart()
    for school in schools.values():
        school.run(LENDING[school.key][2])

    _wait("every entry and the newest snapshots at the province",
          lambda: _everything_arrived(schools, ingest.engine), SETTLE_S, every=0.5,
          explain=lambda: _explain(schools, province, ingest.engine))

    # The province's figures equal what each school counts itself, school by school and
    # in all: from the ledger, from the school's own statistics report, and in the views
    # the province's staff read.
    figures = _province_figures(ingest.engine)
    views = build_views(db.session_factory(ingest.engine), config, Filters(SCHOOL_YEAR))
    rows = {row.site: row for row in views.schools}
    total: Counter[str] = Counter()
    for school in schools.values():
        own = school.ledger()
        assert own["checkout"] == sum(1 for op, *_ in _flat(school.key) if op == "checkout")
        assert own["return"] == sum(1 for op, *_ in _flat(school.key) if op == "return")
        theirs = figures[school.site]
        for name in ("entries", "checkout", "return", "loans"):
            assert theirs[name] == own[name], (school.site, name, theirs, own)
        assert school.statistics_loans() == own["loans"] == rows[school.site].loans
        assert rows[school.site].school_loans == own["loans"]
        assert rows[school.site].entries == own["entries"]
        total.update(own)
    assert views.total.loans == total["loans"]
    assert sum(n for _month, n in views.months) == total["loans"]
    assert sum(f["checkout"] for f in figures.values()) == total["checkout"]
    assert sum(f["return"] for f in figures.values()) == total["return"]
    assert set(figures) == set(sites.values())
    # A replay after the outage counted once: the province holds each (site, seq) once.
    with ingest.engine.connect() as connection:
        seqs = {site: sorted(s for (s,) in connection.execute(
            text("SELECT seq FROM agg_entries WHERE site = :site"), {"site": site}))
            for site in sites.values()}
    for school in schools.values():
        with db.session_factory(school.server.engine)() as session:
            assert seqs[school.site] == sorted(session.scalars(select(LedgerEntry.seq)))

    # Nothing personal reached the province: no reader's name, code, MOET id or card, in
    # any column of any table of the aggregate's database.
    with ingest.engine.connect() as connection:
        tables = connection.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")).scalars().all()
        assert "agg_entries" in tables and "agg_snapshots" in tables
        dump = "\n".join(str(row[0]) for table in tables for row in connection.execute(
            text(f'SELECT t::text FROM "{table}" t')))
    assert "6A1" in dump  # the class did go up: the search below looks at real rows
    leaked = [value for value in PERSONAL if value in dump]
    assert not leaked, f"personal data at the province: {leaked}"


def _flat(key: str) -> list[tuple[str, str, str | None]]:
    return [step for part in LENDING[key] for step in part]
