"""`thuvien station add|list|remove|acl`: each station's identity on the broker.

A station logs in to Mosquitto with its id as username and a password of its own. This
module registers the station with the server (server/stations.py), writes its entry in
Mosquitto's password file through the `mosquitto_passwd` binary (so the hash format is
always the one the installed broker reads), hands the password to the station as a
0600 file (a systemd credential), and writes the ACL that pins every station to its own
topics. docs/security.md is the walk-through.

Only the standard library is imported at module level: `thuvien --help` stays fast, and
the server's modules load only when a command needs the database.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import grp
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "AddResult",
    "StationAdminError",
    "add_parser",
    "add_station",
    "broker_users",
    "delete_broker_password",
    "generate_password",
    "list_registered",
    "read_monitors",
    "remove_station",
    "render_acl",
    "set_broker_password",
    "write_acl",
    "write_secret",
]

DEFAULT_PASSWD_FILE = "/etc/mosquitto/thuvien.passwd"
DEFAULT_CREDENTIALS_DIR = "/etc/thuvien/credentials"
KINDS = ("kiosk", "gate", "returnbox", "desk")
# 24 random bytes -> 32 URL-safe characters, 192 bits: beyond any online guessing, and
# free of characters that a shell, TOML or a systemd credential would mangle.
PASSWORD_BYTES = 24
_NAME = re.compile(r"^[a-z0-9-]{1,64}$")
_PASSWD_TIMEOUT_S = 30
# Debian installs it in /usr/bin; the fallback covers a PATH without it (cron, sudo -i).
_MOSQUITTO_PASSWD_FALLBACK = Path("/usr/bin/mosquitto_passwd")
_MONITORS_HEADER = "# monitors:"


class StationAdminError(Exception):
    """A refusal a person must read: Vietnamese first, then English."""

    def __init__(self, vi: str, en: str) -> None:
        self.vi = vi
        self.en = en
        super().__init__(f"{vi}\n{en}")


# --- secrets ---------------------------------------------------------------------------


def generate_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def write_secret(path: Path, secret: str) -> None:
    """Write `secret` to `path` with mode 0600, atomically: never a moment with a partly
    written or world-readable file. A missing parent folder is made with mode 0700."""
    path = Path(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: 0600
    except OSError as exc:
        raise StationAdminError(
            f"Không ghi được mật khẩu vào {path}: {exc.strerror}.",
            f"cannot write the password to {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StationAdminError(
            f"Không ghi được mật khẩu vào {path}: {exc.strerror}.",
            f"cannot write the password to {path}: {exc.strerror}") from None


# --- Mosquitto's password file -----------------------------------------------------------


def mosquitto_passwd_binary() -> str:
    found = shutil.which("mosquitto_passwd")
    if found:
        return found
    if _MOSQUITTO_PASSWD_FALLBACK.is_file() and os.access(_MOSQUITTO_PASSWD_FALLBACK, os.X_OK):
        return str(_MOSQUITTO_PASSWD_FALLBACK)
    raise StationAdminError(
        "Chưa cài đặt mosquitto_passwd: hãy chạy `apt-get install mosquitto` trên máy chủ.",
        "mosquitto_passwd is not installed: run `apt-get install mosquitto` on the server.")


def _mosquitto_group() -> int | None:
    try:
        return grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        return None


@contextlib.contextmanager
def _locked_passwd(passwd_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on the password file: two `station add` at once would
    otherwise each rewrite it from the same old copy, and one entry would be lost.
    mosquitto_passwd rewrites the file in place (same inode), so the lock holds."""
    if not passwd_file.parent.is_dir():
        raise StationAdminError(
            f"Thư mục {passwd_file.parent} không tồn tại: Mosquitto đã được cài đặt chưa?",
            f"the folder {passwd_file.parent} does not exist: is Mosquitto installed?")
    try:
        created = not passwd_file.exists()
        # Made here, not with `mosquitto_passwd -c` (which leaves it 0644 under the usual
        # umask): password hashes are for the broker's eyes only.
        fd = os.open(passwd_file, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError as exc:
        raise StationAdminError(
            f"Không mở được tệp mật khẩu {passwd_file}: {exc.strerror} (cần quyền root?).",
            f"cannot open the password file {passwd_file}: {exc.strerror} (run as root?)") from None
    try:
        if created:
            os.fchmod(fd, 0o640)
            gid = _mosquitto_group()
            if os.geteuid() == 0 and gid is not None:
                os.fchown(fd, 0, gid)  # the broker reads it after dropping to 'mosquitto'
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run_passwd(args: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=_PASSWD_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StationAdminError(
            f"Không chạy được mosquitto_passwd: {exc}.",
            f"mosquitto_passwd could not run: {exc}") from None


def set_broker_password(passwd_file: Path, username: str, password: str) -> None:
    """Add or replace `username`'s entry in Mosquitto's password file."""
    binary = mosquitto_passwd_binary()
    passwd_file = Path(passwd_file)
    with _locked_passwd(passwd_file):
        # -b puts the password on mosquitto_passwd's command line for the few
        # milliseconds it runs (readable in /proc by local users of the server): the
        # price of not re-implementing Mosquitto's hash format. docs/security.md says so.
        result = _run_passwd([binary, "-b", str(passwd_file), username, password])
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().replace(password, "***")
        raise StationAdminError(
            f"mosquitto_passwd không ghi được mật khẩu của {username}: {detail}",
            f"mosquitto_passwd could not set the password of {username}: {detail}")


def delete_broker_password(passwd_file: Path, username: str) -> bool:
    """Remove `username` from the password file; False when it had no entry."""
    passwd_file = Path(passwd_file)
    if username not in broker_users(passwd_file):
        return False
    binary = mosquitto_passwd_binary()
    with _locked_passwd(passwd_file):
        result = _run_passwd([binary, "-D", str(passwd_file), username])
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise StationAdminError(
            f"mosquitto_passwd không xoá được {username}: {detail}",
            f"mosquitto_passwd could not delete {username}: {detail}")
    return True


def broker_users(passwd_file: Path) -> set[str]:
    """The usernames that have an entry in a Mosquitto password file (none if missing)."""
    try:
        text = Path(passwd_file).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise StationAdminError(
            f"Không đọc được tệp mật khẩu {passwd_file}: {exc.strerror}.",
            f"cannot read the password file {passwd_file}: {exc.strerror}") from None
    return {line.split(":", 1)[0] for line in text.splitlines() if ":" in line}


# --- the ACL -------------------------------------------------------------------------------


def render_acl(site: str, stations: Iterable[tuple[str, str]], server_user: str,
               monitors: Iterable[str] = ()) -> str:
    """Mosquitto's ACL for one site: `stations` are (name, kind) of the active stations."""
    _check_name(site, "site")
    base = f"thuvien/v1/{site}"
    stations = list(stations)
    gates = sorted(name for name, kind in stations if kind == "gate")
    monitor_names = sorted(set(monitors))
    lines = [
        f"# Mosquitto ACL for thuvien site {site}, made by `thuvien station acl`.",
        "# Made again by `thuvien station add|remove --acl-file`: edit the stations, not this file.",
        f"{_MONITORS_HEADER} {', '.join(monitor_names)}".rstrip(),
        "#",
        "# Anything not granted here is denied. \"user\" names the MQTT login from the password",
        "# file (not the client id). Under MQTT 3.1.1 Mosquitto acknowledges a forbidden publish",
        "# and drops it silently; MQTT 5 clients get \"not authorized\" in the PUBACK.",
        "",
        "# -- Every station ----------------------------------------------------------------------",
        "# A station logs in with its station id as username, so %u pins it to its own topics:",
        "# it cannot send requests in another station's name nor read another station's replies.",
        f"pattern write {base}/station/%u/request",
        f"pattern write {base}/station/%u/status",
        f"pattern write {base}/station/%u/event",
        f"pattern read {base}/station/%u/reply",
        f"pattern read {base}/station/%u/command",
        "# Whether the server is up (retained, with its last will), to show \"offline\" on screen.",
        "# Every login needs it, and only a pattern applies to every user (topic lines before the",
        "# first \"user\" line are for anonymous clients), so Mosquitto 2.0 warns at start that",
        "# this pattern \"does not contain '%c' or '%u'\": expected, and harmless for a read.",
        f"pattern read {base}/server/status",
        "",
        "# -- The library server -----------------------------------------------------------------",
        "# Reads every station's requests, status and events; writes replies, commands, its own",
        "# status, the ledger and alerts. The staff web runs inside the server process.",
        f"user {server_user}",
        f"topic readwrite {base}/#",
        "",
        "# -- Gates ------------------------------------------------------------------------------",
        "# A gate keeps its local set of items on loan current from the ledger. The ledger names",
        "# the pupil who borrowed each book, so only gates get it, one block per gate: a %u",
        "# pattern cannot tell a gate from a kiosk. Kiosks and return boxes do not need it.",
    ]
    for gate in gates:
        _check_name(gate, "station")
        lines += [f"user {gate}", f"topic read {base}/ledger"]
    if not gates:
        lines.append("# (no gate registered)")
    lines += [
        "",
        "# -- Monitors ---------------------------------------------------------------------------",
        "# Read-only logins for staff tools and troubleshooting (mosquitto_sub): everything of",
        "# the site, including the ledger's personal data. The patterns above let them write",
        "# only under station/<their own name>/, which the server refuses: not a station.",
    ]
    for monitor in monitor_names:
        _check_name(monitor, "monitor")
        if monitor == server_user or any(monitor == name for name, _ in stations):
            raise StationAdminError(
                f"{monitor} đã là máy chủ hoặc một trạm, không thể là người theo dõi.",
                f"{monitor} is the server or a station; it cannot also be a monitor")
        lines += [f"user {monitor}", f"topic read {base}/#"]
    if not monitor_names:
        lines.append("# (none: `thuvien station acl --monitor NAME` adds one)")
    return "\n".join(lines) + "\n"


def read_monitors(acl_file: Path) -> list[str]:
    """The monitor users an earlier run wrote into `acl_file` (kept when it is made again)."""
    try:
        text = Path(acl_file).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StationAdminError(
            f"Không đọc được tệp ACL {acl_file}: {exc.strerror}.",
            f"cannot read the ACL file {acl_file}: {exc.strerror}") from None
    for line in text.splitlines():
        if line.startswith(_MONITORS_HEADER):
            return [name.strip() for name in line[len(_MONITORS_HEADER):].split(",") if name.strip()]
    return []


def write_acl(path: Path, text: str) -> None:
    """Replace the ACL file atomically (mode 0640, group mosquitto when we are root): the
    broker must never read half a file on a reload."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise StationAdminError(
            f"Không ghi được tệp ACL {path}: {exc.strerror}.",
            f"cannot write the ACL file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
        gid = _mosquitto_group()
        if os.geteuid() == 0 and gid is not None:
            os.chown(tmp, 0, gid)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StationAdminError(
            f"Không ghi được tệp ACL {path}: {exc.strerror}.",
            f"cannot write the ACL file {path}: {exc.strerror}") from None


# --- the server's database ------------------------------------------------------------------


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name):
        vi_what = {"site": "Mã trường", "station": "Tên trạm", "monitor": "Tên người theo dõi"}[what]
        raise StationAdminError(
            f"{vi_what} {name!r} không hợp lệ: chỉ dùng a-z, 0-9 và '-', tối đa 64 ký tự.",
            f"{what} {name!r} is invalid: use 1-64 characters of a-z, 0-9 and '-'")


@dataclass
class _Site:
    """The server config's site and an engine on its database, at the newest schema."""

    site: str
    server_user: str
    engine: Any  # sqlalchemy.Engine

    def close(self) -> None:
        self.engine.dispose()


def _open_site(config_path: str, site: str | None) -> _Site:
    from server import db
    from server.config import load

    config = load(config_path)  # a ConfigError is printed by thuvien.cli.main
    if site is not None and site != config.site:
        raise StationAdminError(
            f"Mã trường {site} khác với mã trong {config_path} ({config.site}).",
            f"site {site} is not the site of {config_path} ({config.site})")
    url = config.database.url
    revision, head = db.current_revision(url), db.head_revision()
    if revision != head:
        raise StationAdminError(
            f"Cơ sở dữ liệu {url} chưa được cập nhật (đang ở {revision}, cần {head}): "
            f"hãy chạy `thuvien db upgrade --config {config_path}`.",
            f"the database {url} is at schema {revision}, not {head}: "
            f"run `thuvien db upgrade --config {config_path}`")
    engine = db.make_engine(url, config.database.sqlite_synchronous)
    return _Site(site=config.site, server_user=config.mqtt.username or "thuvien-server",
                 engine=engine)


def list_registered(config_path: str, *, include_inactive: bool = True) -> list[Any]:
    from server import stations

    site = _open_site(config_path, None)
    try:
        return stations.list_stations(site.engine, include_inactive=include_inactive)
    finally:
        site.close()


def _regenerate_acl(site: _Site, acl_file: Path, monitors: Iterable[str] | None = None) -> None:
    from server import stations

    active = stations.list_stations(site.engine, include_inactive=False)
    keep = read_monitors(acl_file) if monitors is None else list(monitors)
    write_acl(acl_file, render_acl(site.site, [(s.name, s.kind.value) for s in active],
                                   site.server_user, keep))


@dataclass(frozen=True)
class AddResult:
    name: str
    kind: str
    password: str
    rotated: bool           # an active station: its old password no longer works
    previous_kind: str | None
    password_out: Path | None


def add_station(config_path: str, site: str, name: str, kind: str, *,
                passwd_file: Path = Path(DEFAULT_PASSWD_FILE),
                password_out: Path | None = None,
                acl_file: Path | None = None) -> AddResult:
    """Register (or re-register) a station and give it a new broker password."""
    from server import stations

    _check_name(name, "station")
    if kind not in KINDS:
        raise StationAdminError(
            f"Loại trạm {kind!r} không hợp lệ: chọn một trong {', '.join(KINDS)}.",
            f"unknown station kind {kind!r}: one of {', '.join(KINDS)}")
    # Refuse before anything changes: a station registered without a broker password
    # would be a half-done job.
    mosquitto_passwd_binary()
    if not Path(passwd_file).parent.is_dir():
        raise StationAdminError(
            f"Thư mục {Path(passwd_file).parent} không tồn tại: Mosquitto đã được cài đặt chưa?",
            f"the folder {Path(passwd_file).parent} does not exist: is Mosquitto installed?")
    opened = _open_site(config_path, site)
    try:
        reserved = {opened.server_user}
        if acl_file is not None:
            reserved |= set(read_monitors(acl_file))
        if name in reserved:
            raise StationAdminError(
                f"Tên {name} đã dùng cho máy chủ hoặc người theo dõi, không thể là một trạm.",
                f"{name} is the server's or a monitor's login; it cannot be a station")
        before = stations.get(opened.engine, name)
        password = generate_password()
        stations.register(opened.engine, name, kind)
        set_broker_password(passwd_file, name, password)
        if password_out is not None:
            write_secret(password_out, password)
        if acl_file is not None:
            _regenerate_acl(opened, acl_file)
    finally:
        opened.close()
    previous = before.kind.value if before is not None else None
    return AddResult(name=name, kind=kind, password=password,
                     rotated=before is not None and before.active,
                     previous_kind=previous if previous != kind else None, password_out=password_out)


def remove_station(config_path: str, site: str, name: str, *,
                   passwd_file: Path = Path(DEFAULT_PASSWD_FILE),
                   acl_file: Path | None = None) -> bool:
    """Stop serving a station and delete its broker login. False when it was not registered
    (its password entry, if any, is deleted all the same)."""
    from server import stations

    _check_name(name, "station")
    opened = _open_site(config_path, site)
    try:
        if name == opened.server_user:
            raise StationAdminError(
                f"{name} là tài khoản của máy chủ, không phải một trạm.",
                f"{name} is the server's login, not a station")
        known = stations.deactivate(opened.engine, name)
        deleted = delete_broker_password(passwd_file, name)
        if acl_file is not None:
            _regenerate_acl(opened, acl_file)
    finally:
        opened.close()
    if not known and not deleted:
        raise StationAdminError(
            f"Không có trạm {name} trong cơ sở dữ liệu lẫn tệp mật khẩu {passwd_file}.",
            f"no station {name} in the database nor in the password file {passwd_file}")
    return known


# --- the command line ---------------------------------------------------------------------------

_RELOAD_HINT = ("Nạp lại Mosquitto để áp dụng: systemctl reload mosquitto\n"
                "Reload Mosquitto to apply it: systemctl reload mosquitto")


def _print(lines: Iterable[str], out: IO[str] | None = None) -> None:
    print("\n".join(lines), file=out or sys.stdout)


def cmd_add(args: argparse.Namespace) -> int:
    password_out = args.password_out
    if password_out is None and not args.show_password:
        password_out = f"{DEFAULT_CREDENTIALS_DIR}/{args.station}-mqtt"
    result = add_station(args.config, args.site, args.station, args.kind,
                         passwd_file=Path(args.passwd_file),
                         password_out=Path(password_out) if password_out else None,
                         acl_file=Path(args.acl_file) if args.acl_file else None)
    verb_vi, verb_en = ("Đã đổi mật khẩu của", "New password for") if result.rotated \
        else ("Đã đăng ký", "Registered")
    lines = [f"{verb_vi} trạm {result.name} ({result.kind}) / {verb_en} station "
             f"{result.name} ({result.kind})"]
    if result.previous_kind:
        lines.append(f"Loại trạm: {result.previous_kind} -> {result.kind} / "
                     f"kind changed: {result.previous_kind} -> {result.kind}")
    lines.append(f"Tệp mật khẩu Mosquitto / Mosquitto password file: {args.passwd_file}")
    if result.password_out is not None:
        lines.append(f"Mật khẩu của trạm (0600) / the station's password (0600): {result.password_out}")
    if args.acl_file:
        lines.append(f"ACL: {args.acl_file}")
    elif result.kind == "gate":
        lines.append("Cổng cần đọc sổ mượn: hãy tạo lại ACL (thuvien station acl) / "
                     "a gate reads the ledger: make the ACL again (thuvien station acl)")
    lines.append(_RELOAD_HINT)
    _print(lines)
    if args.show_password:
        print(result.password)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    records = list_registered(args.config)
    if not records:
        print("Chưa có trạm nào / no station registered")
        return 0
    users = broker_users(Path(args.passwd_file)) if args.passwd_file else None
    for record in records:
        state = "active" if record.active else "inactive"
        login = "" if users is None else ("  login" if record.name in users else "  NO-LOGIN")
        print(f"{record.name:<24} {record.kind.value:<10} {state:<8} "
              f"{record.registered_at:%Y-%m-%d %H:%M}{login}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    known = remove_station(args.config, args.site, args.station,
                           passwd_file=Path(args.passwd_file),
                           acl_file=Path(args.acl_file) if args.acl_file else None)
    note = "" if known else " (chưa từng đăng ký / was not registered)"
    _print([f"Đã gỡ trạm {args.station} / removed station {args.station}{note}", _RELOAD_HINT])
    return 0


def cmd_acl(args: argparse.Namespace) -> int:
    opened = _open_site(args.config, args.site)
    try:
        if args.out:
            _regenerate_acl(opened, Path(args.out), args.monitor)
            _print([f"ACL: {args.out}", _RELOAD_HINT])
        else:
            from server import stations

            active = stations.list_stations(opened.engine, include_inactive=False)
            sys.stdout.write(render_acl(opened.site, [(s.name, s.kind.value) for s in active],
                                        opened.server_user, args.monitor or ()))
    finally:
        opened.close()
    return 0


def _guarded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except StationAdminError as exc:
            print(f"thuvien station: {exc.vi}\nthuvien station: {exc.en}", file=sys.stderr)
            return 1
    return run


def add_parser(sub: Any) -> None:
    """The `station` subcommand group, for thuvien.cli.build_parser."""
    station = sub.add_parser("station", help="a station's identity on the broker: add, list, remove, acl")
    commands = station.add_subparsers(dest="station_command", required=True)

    def common(parser: argparse.ArgumentParser, *, passwd: bool = True, acl: bool = True) -> None:
        parser.add_argument("--config", required=True, help="the server's config (server.toml)")
        if passwd:
            parser.add_argument("--passwd-file", default=DEFAULT_PASSWD_FILE,
                                help=f"Mosquitto's password file (default {DEFAULT_PASSWD_FILE})")
        if acl:
            parser.add_argument("--acl-file", help="also make this ACL file again "
                                "(for example /etc/mosquitto/thuvien.acl)")

    add = commands.add_parser("add", help="register a station and give it a new broker password")
    add.add_argument("site")
    add.add_argument("station")
    # No argparse `choices`: a wrong kind gets add_station's message, Vietnamese first.
    add.add_argument("--kind", required=True, help=" | ".join(KINDS))
    common(add)
    add.add_argument("--password-out", help="write the password here, mode 0600 (default "
                     f"{DEFAULT_CREDENTIALS_DIR}/STATION-mqtt unless --show-password)")
    add.add_argument("--show-password", action="store_true", help="print the password")
    add.set_defaults(func=_guarded(cmd_add))

    listing = commands.add_parser("list", help="the registered stations")
    listing.add_argument("--config", required=True, help="the server's config (server.toml)")
    listing.add_argument("--passwd-file", help="also say which stations have a broker login")
    listing.set_defaults(func=_guarded(cmd_list))

    remove = commands.add_parser("remove", help="stop serving a station and delete its broker login")
    remove.add_argument("site")
    remove.add_argument("station")
    common(remove)
    remove.set_defaults(func=_guarded(cmd_remove))

    acl = commands.add_parser("acl", help="write the broker ACL for the registered stations")
    acl.add_argument("--config", required=True, help="the server's config (server.toml)")
    acl.add_argument("--site", help="refuse unless the config is for this site")
    acl.add_argument("--out", help="the ACL file to write (default: print it)")
    acl.add_argument("--monitor", action="append", default=None, metavar="USER",
                     help="a read-only login (repeat for more); with --out, the file's are kept")
    acl.set_defaults(func=_guarded(cmd_acl))

