"""`thuvien backup` / `thuvien restore` on real SQLite files (and the local PostgreSQL)."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

import protocol
from protocol.configfile import load_toml
from server import db
from server.backup import BackupError, backup, restore, rotate, sqlite_holders
from server.circulation import Circulation
from server.config import ServerConfig
from server.seed import seed_demo
from thuvien.cli import main
from thuvien.demo import school_year_start, server_toml

SITE = "thcs-demo"


@pytest.fixture(scope="module")
def _demo_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("demo") / "thuvien.db"
    db.upgrade(f"sqlite:///{path}")
    engine = db.make_engine(f"sqlite:///{path}", "NORMAL")
    seed_demo(db.session_factory(engine), school_year_start=school_year_start())
    engine.dispose()
    return path.read_bytes()


@pytest.fixture
def demo(tmp_path: Path, _demo_bytes: bytes) -> tuple[Path, ServerConfig]:
    """A seeded demo database and its server config (as `thuvien demo` writes it)."""
    path = tmp_path / "thuvien.db"
    path.write_bytes(_demo_bytes)
    text = server_toml(path, 1883, web_port=None)
    config_path = tmp_path / "server.toml"
    config_path.write_text(text, encoding="utf-8")
    return path, load_toml(text, str(config_path), ServerConfig)


@contextlib.contextmanager
def opened(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection committed and closed at the end: an open one makes restore refuse."""
    connection = sqlite3.connect(path)
    try:
        with connection:
            yield connection
    finally:
        connection.close()


def clock_at(*seconds: int):  # type: ignore[no-untyped-def]
    moments = iter(dt.datetime(2026, 11, 21, 2, 30, tzinfo=dt.UTC) + dt.timedelta(seconds=s)
                   for s in seconds)
    return lambda: next(moments)


def ledger_request_ids(path: Path) -> set[tuple[str, str]]:
    with opened(path) as connection:
        return set(connection.execute("SELECT request_id, op FROM ledger_entries"))


def free_students_and_copies(path: Path, n: int) -> tuple[list[str], list[str]]:
    with opened(path) as connection:
        readers = [r for (r,) in connection.execute(
            "SELECT code FROM readers WHERE kind='student' AND status='active' ORDER BY id LIMIT ?", (n,))]
        copies = [c for (c,) in connection.execute(
            "SELECT barcode FROM copies WHERE kind='TN' AND status='available' AND barcode IS NOT NULL "
            "ORDER BY id LIMIT ?", (n,))]
    assert len(readers) == n and len(copies) == n
    return readers, copies


# --- under load ----------------------------------------------------------------------------

# Without the held snapshot the copy restarts at every commit and never ends: time out.
@pytest.mark.timeout(120)
def test_backup_under_load_keeps_every_committed_loan(demo: tuple[Path, ServerConfig],
                                                      tmp_path: Path) -> None:
    path, config = demo
    stations = 4
    readers, copies = free_students_and_copies(path, stations)
    done: list[tuple[float, str, str]] = []   # (monotonic end, request id, op) of ok replies
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def station(i: int) -> None:
        engine = db.make_engine(config.database.url, config.database.sqlite_synchronous)
        circulation = Circulation(db.session_factory(engine), config)
        try:
            while not stop.is_set():
                for op, args in (("loan.checkout", {"patron": readers[i], "item": copies[i]}),
                                 ("loan.return", {"item": copies[i]})):
                    request = protocol.Request(
                        id=f"kiosk-{i}-{uuid.uuid4().hex[:12]}", op=protocol.Op(op),
                        at=dt.datetime.now(dt.UTC), args=protocol.models.ARGS_BY_OP[protocol.Op(op)](**args))
                    reply, _ = circulation.handle(request, f"kiosk-{i}")
                    with lock:
                        if reply.ok:
                            done.append((time.monotonic(), request.id, op))
                        else:
                            failures.append(f"{op}: {reply.error}")
        finally:
            engine.dispose()

    threads = [threading.Thread(target=station, args=(i,)) for i in range(stations)]
    for thread in threads:
        thread.start()
    try:
        while len(done) < 200 and not failures:
            time.sleep(0.01)
        started = time.monotonic()
        # Small steps make the copy last long enough for lending to go on beside it.
        result = backup(config.database.url, SITE, tmp_path / "backups", keep=3, step_pages=4)
        finished = time.monotonic()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not failures, failures[:3]
    # The ledger names an operation without its "loan." prefix.
    before = {(rid, op.removeprefix("loan.")) for end, rid, op in done if end < started}
    during = [rid for end, rid, _ in done if started <= end < finished]
    assert during, "no station committed anything while the backup ran: not a test under load"

    target = tmp_path / "restored" / "thuvien.db"
    restored = restore(f"sqlite:///{target}", result.path)
    in_copy = ledger_request_ids(target)
    assert before <= in_copy, f"{len(before - in_copy)} committed operations missing from the backup"
    assert restored.ledger_entries == result.ledger_entries == len(in_copy)
    with opened(target) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute("DELETE FROM ledger_entries")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute("UPDATE ledger_entries SET station = 'x'")
    print(f"\nbackup under load: {result.ledger_entries} ledger entries, {result.size_bytes} bytes "
          f"in {result.seconds:.2f} s; {len(during)} operations committed during it")


# --- rotation, naming, gzip -----------------------------------------------------------------

def test_rotation_keeps_the_newest_and_never_the_new_one(demo: tuple[Path, ServerConfig],
                                                         tmp_path: Path) -> None:
    path, config = demo
    folder = tmp_path / "backups"
    folder.mkdir()
    stranger = folder / "notes.txt"
    stranger.write_text("not a backup")
    other_site = folder / "thuvien-other-school-20200101T000000Z-0001.sqlite3"
    other_site.write_bytes(b"x")
    made = [backup(config.database.url, SITE, folder, keep=3, now=clock_at(s)).path
            for s in (0, 10, 20, 30, 40)]
    ours = sorted(p for p in folder.iterdir() if p.name.startswith(f"thuvien-{SITE}-"))
    assert ours == made[-3:]
    assert stranger.exists() and other_site.exists()
    assert made[0].name == f"thuvien-{SITE}-20261121T023000Z-{db.head_revision()}.sqlite3"
    # A backup older by name than all kept ones is still never deleted by its own rotation.
    late = backup(config.database.url, SITE, folder, keep=1, now=clock_at(-3600))
    assert late.removed == (made[3], made[2])
    assert {p for p in folder.iterdir() if p.name.startswith("thuvien-thcs")} == {made[4], late.path}
    assert rotate(folder, SITE, 1) == (late.path,)
    assert not list(folder.glob(".backup-*"))  # no temporary left behind


def test_same_second_is_refused_not_overwritten(demo: tuple[Path, ServerConfig], tmp_path: Path) -> None:
    _path, config = demo
    first = backup(config.database.url, SITE, tmp_path, keep=5, now=clock_at(0))
    with pytest.raises(BackupError, match="already exists"):
        backup(config.database.url, SITE, tmp_path, keep=5, now=clock_at(0))
    assert first.path.exists()


def test_gzip_round_trip_through_the_cli(demo: tuple[Path, ServerConfig], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path, config = demo
    config_file = path.parent / "server.toml"
    assert main(["backup", "--config", str(config_file), "--to", str(tmp_path / "b"), "--gzip"]) == 0
    (made,) = (tmp_path / "b").iterdir()
    assert made.name.endswith(".sqlite3.gz")
    assert gzip.decompress(made.read_bytes())[:16] == b"SQLite format 3\x00"
    with opened(path) as connection:
        titles = connection.execute("SELECT count(*) FROM titles").fetchone()[0]
        connection.execute("DELETE FROM titles WHERE id NOT IN (SELECT title_id FROM copies)")
        connection.execute("UPDATE readers SET name = 'changed'")
    assert main(["restore", str(made), "--config", str(config_file), "--force"]) == 0
    out = capsys.readouterr().out
    assert "the replaced database is kept as" in out
    with opened(path) as connection:
        assert connection.execute("SELECT count(*) FROM titles").fetchone()[0] == titles
        assert connection.execute("SELECT count(*) FROM readers WHERE name = 'changed'").fetchone()[0] == 0
    (kept,) = path.parent.glob("thuvien.db.before-restore-*")
    with opened(kept) as connection:
        assert connection.execute("SELECT count(*) FROM readers WHERE name = 'changed'").fetchone()[0] > 0
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


# --- restore refusals -----------------------------------------------------------------------

def test_restore_refuses_to_overwrite_without_force(demo: tuple[Path, ServerConfig], tmp_path: Path) -> None:
    path, config = demo
    made = backup(config.database.url, SITE, tmp_path / "b", keep=2).path
    before = path.read_bytes()
    with pytest.raises(BackupError, match="--force"):
        restore(config.database.url, made)
    assert path.read_bytes() == before


def test_restore_refuses_while_another_process_holds_the_database(
        demo: tuple[Path, ServerConfig], tmp_path: Path) -> None:
    path, config = demo
    made = backup(config.database.url, SITE, tmp_path / "b", keep=2).path
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, sqlite3; c = sqlite3.connect(sys.argv[1]); "
         "c.execute('PRAGMA journal_mode=WAL'); c.execute('SELECT count(*) FROM readers').fetchone(); "
         "print('open', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        holders = sqlite_holders(path)
        assert any(f"process {holder.pid}:" in h for h in holders), holders
        with pytest.raises(BackupError, match=f"in use .*process {holder.pid}"):
            restore(config.database.url, made, force=True)
        # The -shm lock sees a holder even where /proc does not (another user's process).
        assert sqlite_holders(path, proc=tmp_path / "no-proc") == [
            "a process of another user has it open"]
    finally:
        holder.communicate("", timeout=10)
    assert sqlite_holders(path) == []
    assert not list(path.parent.glob("thuvien.db.before-restore-*"))


@pytest.mark.parametrize(("content", "message"), [
    (b"hello, this is no backup\n" * 10, "not a thuvien backup"),
    (b"SQLite format 3\x00" + os.urandom(4096), "not a usable SQLite database|integrity"),
    (gzip.compress(b"SQLite format 3\x00" + b"\x00" * 100)[:30], "damaged"),
    (b"PGDMP\x01\x0e\x00", "PostgreSQL dump"),
])
def test_junk_is_refused_and_nothing_replaced(demo: tuple[Path, ServerConfig], tmp_path: Path,
                                              content: bytes, message: str) -> None:
    path, config = demo
    junk = tmp_path / "elsewhere" / "junk.sqlite3"
    junk.parent.mkdir()
    junk.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(BackupError, match=message):
        restore(config.database.url, junk, force=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["elsewhere", "server.toml", "thuvien.db"]


def test_a_database_not_of_thuvien_is_refused(demo: tuple[Path, ServerConfig], tmp_path: Path) -> None:
    _path, config = demo
    other = tmp_path / "other.db"
    with opened(other) as connection:
        connection.execute("CREATE TABLE t (x)")
    with pytest.raises(BackupError, match="no schema revision"):
        restore(config.database.url, other, force=True)


def test_an_older_backup_is_upgraded_on_restore(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    db.upgrade(f"sqlite:///{old}", "0002")
    target = tmp_path / "new" / "thuvien.db"
    result = restore(f"sqlite:///{target}", old)
    assert result.upgraded_from == "0002"
    assert result.revision == db.head_revision() == db.current_revision(f"sqlite:///{target}")


def test_restore_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="cannot read"):
        restore(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "nothing.sqlite3")


# --- PostgreSQL -----------------------------------------------------------------------------

def libpq(url: str) -> str:
    """The URL as psql and pg_dump take it (no SQLAlchemy driver name)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def psql(url: str, sql: str) -> str:
    return subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", libpq(url), "-c", sql],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def pg_database(pg_url: str) -> str:
    """An empty database of this test's own on the suite's PostgreSQL (tests/pg.py)."""
    if shutil.which("pg_dump") is None:
        pytest.fail("pg_dump is not installed (apt-get install postgresql-client; ./run test does)")
    return pg_url


def pg_schema_sql() -> str:
    """The schema as SQL (alembic's offline mode): no Python PostgreSQL driver needed."""
    from alembic import command

    config = db.alembic_config("postgresql://")
    config.output_buffer = buffer = io.StringIO()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    command.upgrade(config, "head", sql=True)
    return buffer.getvalue()


def test_postgresql_round_trip(pg_database: str, tmp_path: Path) -> None:
    url = pg_database
    name = make_url(url).database
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", libpq(url)], input=pg_schema_sql(),
                   text=True, check=True, capture_output=True)
    psql(pg_database, """
        INSERT INTO readers (id, code, name, kind, status, created_at)
            VALUES (1, 'HS-1', 'Nguyễn Văn An', 'student', 'active', now());
        INSERT INTO titles (id, title, language) VALUES (1, 'Dế Mèn phiêu lưu ký', 'vi');
        INSERT INTO copies (id, title_id, accession_number, kind, status)
            VALUES (1, 1, 'TN.00001', 'TN', 'available');
        INSERT INTO ledger_entries (request_id, op, copy_id, reader_id, station, station_at,
                                    server_at, offline)
            SELECT 'r-' || n, CASE n % 2 WHEN 1 THEN 'checkout' ELSE 'return' END, 1, 1,
                   'kiosk-1', now(), now(), false FROM generate_series(1, 25) AS n;""")
    made = backup(url, SITE, tmp_path, keep=2)
    assert made.path.name.endswith(f"-{db.head_revision()}.pgdump")
    assert made.ledger_entries == 25

    psql(pg_database, "INSERT INTO titles (id, title, language) VALUES (2, 'after the backup', 'vi')")
    with pytest.raises(BackupError, match="--force"):
        restore(url, made.path)
    result = restore(url, made.path, force=True)
    assert result.ledger_entries == 25 and result.revision == db.head_revision()
    assert psql(pg_database, "SELECT count(*) FROM titles") == "1"
    assert psql(pg_database, "SELECT title FROM readers r, titles t WHERE r.code = 'HS-1'") \
        == "Dế Mèn phiêu lưu ký"
    with pytest.raises(subprocess.CalledProcessError):
        psql(pg_database, "DELETE FROM ledger_entries")  # the append-only trigger came back
    assert result.kept is not None and result.kept.exists()

    # Another session on the database (a running server) blocks the restore.
    holder = subprocess.Popen(["psql", "-X", "-d", libpq(url)], stdin=subprocess.PIPE, text=True,
                              stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while psql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        f"'{name}' AND pid != pg_backend_pid()") == "0" and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(BackupError, match="other session"):
            restore(url, made.path, force=True)
    finally:
        holder.communicate("\\q\n", timeout=10)

    junk = tmp_path / "junk.pgdump"
    junk.write_bytes(b"PGDMP" + b"\x00" * 50)
    with pytest.raises(BackupError, match="pg_restore"):
        restore(url, junk, force=True)
    assert psql(pg_database, "SELECT count(*) FROM ledger_entries") == "25"
