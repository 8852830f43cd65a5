"""`thuvien backup` and `thuvien restore`: online copies of the library database.

SQLite: the backup API copies the file page by page from a read transaction held open
for the whole copy. In WAL mode (server/db.py sets it) that snapshot blocks no writer,
and it keeps the copy from restarting: without it every commit between two steps makes
SQLite start the copy again, so under steady lending it may never finish (measured:
10 minutes without an end at a few thousand commits a second; with the snapshot, 0.7 s).

PostgreSQL: `pg_dump -Fc` (itself one consistent snapshot) and `pg_restore` in one
transaction; queries go through `psql`, so a backup host needs only the client tools.

Restore refuses while anything else has the database open: on SQLite, another process
holding the file (seen in /proc, and through SQLite's own lock on the -shm file, which
also sees processes of other users); on PostgreSQL, another session on the database.
The database itself is the ground truth, where the server's MQTT status may be stale
or unreachable and a `thuvien demo` or an import holds the file too.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import gzip
import os
import re
import shutil
import sqlite3
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from server import db

SQLITE_MAGIC = b"SQLite format 3\x00"
GZIP_MAGIC = b"\x1f\x8b"
PGDUMP_MAGIC = b"PGDMP"
LEDGER_TRIGGERS = ("ledger_entries_no_update", "ledger_entries_no_delete")
# SQLite's WAL-index "dead man switch" byte in the -shm file: every open connection
# holds a shared lock on it (documented in sqlite.org/walformat.html).
SHM_DMS_OFFSET = 128
NAME_RE = re.compile(r"^thuvien-(?P<site>[a-z0-9-]+)-(?P<stamp>\d{8}T\d{6}Z)-(?P<rev>[A-Za-z0-9_]+)"
                     r"\.(?P<kind>sqlite3|sqlite3\.gz|pgdump)$")


class BackupError(RuntimeError):
    """A backup or restore that could not be done; the message says why, in English."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    revision: str
    ledger_entries: int
    size_bytes: int
    seconds: float
    removed: tuple[Path, ...]


@dataclass(frozen=True)
class RestoreResult:
    target: str
    revision: str
    upgraded_from: str | None
    ledger_entries: int
    kept: Path | None


def backup_name(site: str, when: dt.datetime, revision: str, kind: str) -> str:
    stamp = when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"thuvien-{site}-{stamp}-{revision}.{kind}"


def default_backup_dir(url: str) -> Path:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database).resolve().parent / "backups"
    raise BackupError("set [backup] dir in the server config (or give --to DIR): "
                      "a PostgreSQL database has no folder of its own")


# --- backup -----------------------------------------------------------------------------

def backup(url: str, site: str, to: Path, *, keep: int, compress: bool = False,
           step_pages: int = 256, now: Callable[[], dt.datetime] | None = None) -> BackupResult:
    """Copy the database at `url` into `to`, then keep only the newest `keep` copies."""
    if keep < 1:
        raise BackupError("keep must be at least 1")
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    to.mkdir(parents=True, exist_ok=True)
    started = clock()
    timer = _monotonic()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path, revision, ledger = _backup_sqlite(_sqlite_path(parsed), site, to, started,
                                                compress=compress, step_pages=step_pages)
    elif parsed.get_backend_name() == "postgresql":
        path, revision, ledger = _backup_postgresql(parsed, site, to, started)
    else:
        raise BackupError(f"cannot back up a {parsed.get_backend_name()} database")
    seconds = _monotonic() - timer
    removed = rotate(to, site, keep, protect=path)
    return BackupResult(path=path, revision=revision, ledger_entries=ledger,
                        size_bytes=path.stat().st_size, seconds=seconds, removed=removed)


def _backup_sqlite(source: Path, site: str, to: Path, started: dt.datetime, *,
                   compress: bool, step_pages: int) -> tuple[Path, str, int]:
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    tmp = to / f".backup-{os.getpid()}.sqlite3.tmp"
    try:
        src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source}: {exc}") from exc
    try:
        src.execute("PRAGMA busy_timeout=5000")
        # The snapshot: everything committed before this BEGIN's first read is in the
        # copy, nothing after; the ledger count read here is the copy's.
        src.execute("BEGIN")
        revision = _sqlite_revision(src, source)
        ledger = src.execute("SELECT count(*) FROM ledger_entries").fetchone()[0]
        dest = sqlite3.connect(tmp, isolation_level=None)
        try:
            src.backup(dest, pages=step_pages, sleep=0.002)
            # A single self-contained file, not a WAL database wanting -wal/-shm beside it.
            dest.execute("PRAGMA journal_mode=DELETE")
        finally:
            dest.close()
        src.execute("COMMIT")
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"backing up {source} failed: {exc}") from exc
    finally:
        src.close()
    try:
        _check_sqlite_copy(tmp, expected_ledger=ledger)
        kind = "sqlite3"
        if compress:
            packed = tmp.with_name(tmp.name + ".gz")
            with tmp.open("rb") as raw, gzip.open(packed, "wb", compresslevel=6) as out:
                shutil.copyfileobj(raw, out, 1 << 20)
            tmp.unlink()
            tmp, kind = packed, "sqlite3.gz"
        final = _publish(tmp, to / backup_name(site, started, revision, kind))
    finally:
        tmp.unlink(missing_ok=True)
    return final, revision, ledger


def _backup_postgresql(url: URL, site: str, to: Path,
                       started: dt.datetime) -> tuple[Path, str, int]:
    tmp = to / f".backup-{os.getpid()}.pgdump.tmp"
    try:
        _run(["pg_dump", "--format=custom", "--file", str(tmp), _libpq_uri(url)], url, "pg_dump")
        revision, ledger = _pgdump_contents(tmp)
        final = _publish(tmp, to / backup_name(site, started, revision, "pgdump"))
    finally:
        tmp.unlink(missing_ok=True)
    return final, revision, ledger


def _publish(tmp: Path, final: Path) -> Path:
    """fsync the finished copy, then give it its name in one step, never over another."""
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    try:
        # link(), unlike rename(), refuses to replace a backup of the same second.
        os.link(tmp, final)
    except FileExistsError:
        raise BackupError(f"{final} already exists; try again in a second") from None
    tmp.unlink()
    _fsync_dir(final.parent)
    return final


def rotate(folder: Path, site: str, keep: int, protect: Path | None = None) -> tuple[Path, ...]:
    """Delete all but the newest `keep` backups of `site` in `folder`; never `protect`."""
    ours = sorted((path for path in folder.iterdir()
                   if (match := NAME_RE.match(path.name)) and match["site"] == site),
                  key=lambda path: NAME_RE.match(path.name)["stamp"], reverse=True)  # type: ignore[index]
    removed = [path for path in ours[keep:] if path != protect]
    for path in removed:
        path.unlink()
    if removed:
        _fsync_dir(folder)
    return tuple(removed)


# --- restore ----------------------------------------------------------------------------

def restore(url: str, file: Path, *, force: bool = False,
            now: Callable[[], dt.datetime] | None = None) -> RestoreResult:
    """Replace the database at `url` by the backup `file`, keeping what it replaces."""
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    stamp = clock().astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        with file.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise BackupError(f"cannot read {file}: {exc.strerror}") from exc
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if head.startswith(PGDUMP_MAGIC):
            raise BackupError(f"{file} is a PostgreSQL dump; the server's database is SQLite")
        if not (head.startswith(GZIP_MAGIC) or head == SQLITE_MAGIC):
            raise BackupError(f"{file} is not a thuvien backup (neither SQLite nor gzip)")
        return _restore_sqlite(_sqlite_path(parsed), file, gzipped=head.startswith(GZIP_MAGIC),
                               force=force, stamp=stamp)
    if backend == "postgresql":
        if not head.startswith(PGDUMP_MAGIC):
            raise BackupError(f"{file} is not a PostgreSQL dump (pg_dump -Fc)")
        return _restore_postgresql(parsed, file, force=force, stamp=stamp)
    raise BackupError(f"cannot restore into a {backend} database")


def _restore_sqlite(target: Path, file: Path, *, gzipped: bool, force: bool,
                    stamp: str) -> RestoreResult:
    holders = sqlite_holders(target)
    if holders:
        raise BackupError(f"{target} is in use ({'; '.join(holders)}): stop the server "
                          "(systemctl stop thuvien-server) and try again")
    if target.exists() and not force:
        raise BackupError(f"{target} exists: give --force to replace it "
                          "(it is kept as .before-restore-TIMESTAMP)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.restore-{os.getpid()}.tmp")
    try:
        try:
            with (gzip.open(file, "rb") if gzipped else file.open("rb")) as src, tmp.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except (OSError, EOFError, zlib.error) as exc:
            raise BackupError(f"{file} is damaged: {exc}") from exc
        revision = _check_sqlite_copy(tmp)
        upgraded_from = None
        head = db.head_revision()
        if revision != head:
            upgraded_from = revision
            db.upgrade(f"sqlite:///{tmp}")
            revision = _check_sqlite_copy(tmp)
        ledger = _sqlite_ledger_count(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        kept = _set_aside(target, stamp) if target.exists() else None
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    return RestoreResult(target=str(target), revision=revision, upgraded_from=upgraded_from,
                         ledger_entries=ledger, kept=kept)


def _set_aside(target: Path, stamp: str) -> Path:
    """Keep the database about to be replaced, whole: its WAL folded in first."""
    kept = target.with_name(f"{target.name}.before-restore-{stamp}")
    try:
        connection = sqlite3.connect(f"file:{target}?mode=rw", uri=True)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
    except sqlite3.Error:
        pass  # a damaged database is kept as it is, its -wal with it (below)
    os.link(target, kept)
    wal = Path(f"{target}-wal")
    if wal.exists():
        # Never leave the old WAL beside the restored file: SQLite would replay it into it.
        os.replace(wal, Path(f"{kept}-wal"))
    Path(f"{target}-shm").unlink(missing_ok=True)
    return kept


def _restore_postgresql(url: URL, file: Path, *, force: bool, stamp: str) -> RestoreResult:
    revision, _ledger = _pgdump_contents(file)
    head = db.head_revision()
    if revision not in db_revisions():
        raise BackupError(f"{file} holds schema {revision}, which this thuvien does not know "
                          f"(newest: {head}): restore it with the thuvien that made it")
    others = _psql(url, "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    if others != "0":
        raise BackupError(f"database {url.database} has {others} other session(s) open: stop the "
                          "server (systemctl stop thuvien-server) and try again")
    tables = _psql(url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    kept = None
    if tables != "0":
        if not force:
            raise BackupError(f"database {url.database} is not empty: give --force to replace it "
                              "(it is kept as a dump, .before-restore-TIMESTAMP)")
        kept = file.resolve().parent / f"{url.database}.before-restore-{stamp}.pgdump"
        _run(["pg_dump", "--format=custom", "--file", str(kept), _libpq_uri(url)], url, "pg_dump")
    _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges",
          "--single-transaction", "--exit-on-error", "--dbname", _libpq_uri(url), str(file)],
         url, "pg_restore")
    upgraded_from = None
    if revision != head:
        upgraded_from = revision
        db.upgrade(url.render_as_string(hide_password=False))
    restored = _psql(url, "SELECT version_num FROM alembic_version")
    ledger = int(_psql(url, "SELECT count(*) FROM ledger_entries"))
    return RestoreResult(target=url.render_as_string(hide_password=True), revision=restored,
                         upgraded_from=upgraded_from, ledger_entries=ledger, kept=kept)


# --- who holds the database -------------------------------------------------------------

def sqlite_holders(path: Path, proc: Path = Path("/proc")) -> list[str]:
    """Processes that have the SQLite database at `path` open, described for a person."""
    names = {str(Path(f"{path}{suffix}").resolve()) for suffix in ("", "-wal", "-shm")}
    found: list[str] = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # gone, or another user's (the -shm lock below still sees it)
        if _links(fds) & names:
            found.append(f"process {entry.name}: {_command_line(entry)}")
    if not found and _shm_locked(Path(f"{path}-shm")):
        found.append("a process of another user has it open")
    return found


def _links(fds: list[Path]) -> set[str]:
    targets = set()
    for fd in fds:
        try:
            targets.add(os.readlink(fd))
        except OSError:
            pass  # closed since the listing (the listing's own descriptor, for one)
    return targets


def _command_line(entry: Path) -> str:
    try:
        return (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _shm_locked(shm: Path) -> bool:
    try:
        fd = os.open(shm, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS_OFFSET)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, SHM_DMS_OFFSET)
        return False
    finally:
        os.close(fd)


# --- checks -----------------------------------------------------------------------------

def db_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
    return {revision.revision for revision in script.walk_revisions()}


def _check_sqlite_copy(path: Path, expected_ledger: int | None = None) -> str:
    """Integrity, a known schema, the append-only triggers; the schema revision."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open: {exc}") from exc
    try:
        result = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            raise BackupError(f"{path} fails the integrity check: {'; '.join(result[:5])}")
        revision = _sqlite_revision(connection, path)
        triggers = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        missing = [name for name in LEDGER_TRIGGERS if name not in triggers]
        if missing:
            raise BackupError(f"{path}: the ledger's append-only triggers are missing ({', '.join(missing)})")
        if expected_ledger is not None:
            count = connection.execute("SELECT count(*) FROM ledger_entries").fetchone()[0]
            if count != expected_ledger:
                raise BackupError(f"{path}: the copy holds {count} ledger entries, "
                                  f"the snapshot {expected_ledger}")
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a usable SQLite database: {exc}") from exc
    finally:
        connection.close()
    if revision not in db_revisions():
        raise BackupError(f"{path} holds schema {revision}, which this thuvien does not know "
                          f"(newest: {db.head_revision()}): restore it with the thuvien that made it")
    return revision


def _sqlite_revision(connection: sqlite3.Connection, path: Path) -> str:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        row = None
    if row is None:
        raise BackupError(f"{path} is not a thuvien database (no schema revision)")
    return str(row[0])


def _sqlite_ledger_count(path: Path) -> int:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(connection.execute("SELECT count(*) FROM ledger_entries").fetchone()[0])
    finally:
        connection.close()


def _pgdump_contents(dump: Path) -> tuple[str, int]:
    """The schema revision and ledger size inside a dump: proves pg_restore can read it."""
    def table_rows(table: str) -> list[str]:
        out = subprocess.run(["pg_restore", "--data-only", "--table", table, "--file", "-", str(dump)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise BackupError(f"{dump} cannot be read by pg_restore: {out.stderr.strip()}")
        rows, inside = [], False
        for line in out.stdout.splitlines():
            if line.startswith("COPY "):
                inside = True
            elif line == "\\.":
                inside = False
            elif inside:
                rows.append(line)
        return rows

    versions = table_rows("alembic_version")
    if len(versions) != 1:
        raise BackupError(f"{dump} is not a thuvien database (no schema revision)")
    return versions[0], len(table_rows("ledger_entries"))


# --- helpers ----------------------------------------------------------------------------

def _sqlite_path(url: URL) -> Path:
    if url.database in (None, "", ":memory:"):
        raise BackupError("an in-memory database cannot be backed up or restored")
    return Path(url.database)


def _libpq_uri(url: URL) -> str:
    # The password goes through PGPASSWORD, never on a command line `ps` shows.
    return url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)


def _pg_env(url: URL) -> dict[str, str]:
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return env


def _run(command: list[str], url: URL, what: str) -> None:
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not installed (apt-get install postgresql-client)")
    result = subprocess.run(command, capture_output=True, text=True, env=_pg_env(url), check=False)
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {result.stderr.strip()}")


def _psql(url: URL, query: str) -> str:
    if shutil.which("psql") is None:
        raise BackupError("psql is not installed (apt-get install postgresql-client)")
    result = subprocess.run(["psql", "--no-psqlrc", "--tuples-only", "--no-align",
                             "--set", "ON_ERROR_STOP=1", "--command", query, _libpq_uri(url)],
                            capture_output=True, text=True, env=_pg_env(url), check=False)
    if result.returncode != 0:
        raise BackupError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _monotonic() -> float:
    import time

    return time.monotonic()
