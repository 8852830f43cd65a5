"""Mosquitto bridge sections for the upward path (issue #8), and the upper broker's ACL.

A school's Mosquitto carries what its server publishes under
`thuvien/v1/<site>/upward/#` (server/upward.py) to the commune office's or the
province's broker over one bridge connection:

- `topic upward/# out 1 thuvien/v1/<site>/ thuvien/v1/<site>/`: only the school's own
  prefix is subscribed locally and published remotely, QoS 1, never anything inbound.
  The upper broker's ACL (`render_upper_acl`) lets the school's bridge login write
  under that prefix only, so a school cannot report in another school's name even with
  a hand-edited bridge.
- `cleansession false` and a stable `remote_clientid`: the upper broker keeps the
  bridge's session across reconnects; locally, what cannot go up waits in the bridge's
  queue (`max_queued_messages`, `max_queued_bytes`), saved with the broker's persistence.
- TLS with the upper level's CA when one is given, `bridge_insecure false` (the
  certificate's name is checked); the bridge's password is read from a file or the
  environment and written only into the generated file, mode 0600.
- `notifications`: the bridge's state, "1" or "0" (its last will upstairs), retained on
  `thuvien/v1/<site>/bridge/state`, so the upper level sees a school's link go down.

A commune broker chains: `render_bridge(chain=...)` forwards every school below it
(`thuvien/v1/+/upward/#`) to the province on one connection.

Checked against Mosquitto 2.0.11 (Debian 12): tests/test_bridge.py starts real brokers
with these files. Only the standard library and `protocol.topics` are imported here.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.topics import NAME_RE, PREFIX

__all__ = ["BridgeError", "BridgeSpec", "DEFAULT_CONF", "bridge_state_topic", "bridge_username",
           "read_password", "render_bridge", "render_upper_acl", "write_private"]

DEFAULT_CONF = "/etc/mosquitto/conf.d/thuvien-bridge.conf"
PASSWORD_ENV = "THUVIEN_BRIDGE_PASSWORD"
# While the link is down the school keeps publishing: a school year of a busy library is
# ~100,000 entries, ~500 batches; snapshots are a few a day. Generous, and bounded in
# bytes so a broken link can never fill a Pi's memory.
MAX_QUEUED_MESSAGES = 100_000
MAX_QUEUED_BYTES = 256 * 1024 * 1024
# Reconnect after 10 s, backing off (with jitter) to at most 5 minutes: a thousand schools
# coming back after a province outage do not all knock at once.
RESTART_BASE_S = 10
RESTART_CAP_S = 300
KEEPALIVE_S = 60
_PASSWORD_OK = re.compile(r"^[!-~]{1,256}$")  # printable ASCII, no space, one token


class BridgeError(Exception):
    """A refusal a person must read: Vietnamese first, then English."""

    def __init__(self, vi: str, en: str) -> None:
        self.vi = vi
        self.en = en
        super().__init__(f"{vi}\n{en}")


def _check_name(value: str, what_vi: str, what_en: str) -> str:
    if not NAME_RE.match(value):
        raise BridgeError(f"{what_vi} {value!r} không hợp lệ: chỉ dùng a-z, 0-9 và '-', tối đa 64 ký tự.",
                          f"{what_en} {value!r} is invalid: use 1-64 characters of a-z, 0-9 and '-'")
    return value


def bridge_username(name: str) -> str:
    """The upper broker's login of a school's (or a commune's) bridge."""
    return f"bridge-{name}"


def bridge_state_topic(name: str) -> str:
    return f"{PREFIX}/{name}/bridge/state"


@dataclass(frozen=True)
class BridgeSpec:
    """One bridge connection to the upper broker.

    `site` is the school whose upward topics go up; or, for a commune's broker, `chain`
    names the commune office (its connection, login and state topic) and every school
    below it goes up.
    """

    upper_host: str
    upper_port: int = 8883
    site: str | None = None
    chain: str | None = None
    cafile: str | None = None
    username: str | None = None
    password: str | None = None
    # Reconnect backoff: the first wait and the longest (Mosquitto adds jitter).
    restart_base_s: int = RESTART_BASE_S
    restart_cap_s: int = RESTART_CAP_S

    @property
    def name(self) -> str:
        name = self.chain if self.chain is not None else self.site
        assert name is not None
        return name


def _validate(spec: BridgeSpec) -> None:
    if (spec.site is None) == (spec.chain is None):
        raise BridgeError("Cần đúng một trong hai: mã trường (--config) hoặc --chain TÊN.",
                          "give exactly one of a school's site (--config) or --chain NAME")
    if spec.site is not None:
        _check_name(spec.site, "Mã trường", "site")
    if spec.chain is not None:
        _check_name(spec.chain, "Tên cấp trên", "chain name")
    if not spec.upper_host or any(c.isspace() or c == "#" for c in spec.upper_host):
        raise BridgeError(f"Địa chỉ máy chủ cấp trên {spec.upper_host!r} không hợp lệ.",
                          f"the upper host {spec.upper_host!r} is invalid")
    if not 1 <= spec.upper_port <= 65535:
        raise BridgeError(f"Cổng {spec.upper_port} không hợp lệ.", f"port {spec.upper_port} is invalid")
    if not 1 <= spec.restart_base_s <= spec.restart_cap_s <= 86400:
        raise BridgeError(f"Thời gian chờ kết nối lại {spec.restart_base_s},{spec.restart_cap_s} "
                          "không hợp lệ (1 <= đầu <= cuối).",
                          f"the restart timeout {spec.restart_base_s},{spec.restart_cap_s} is "
                          "invalid (1 <= base <= cap)")
    if spec.password is not None and spec.username is None:
        raise BridgeError("Có mật khẩu mà không có tên đăng nhập (--username).",
                          "a password without a username (--username)")
    if spec.password is not None and not _PASSWORD_OK.match(spec.password):
        # Mosquitto reads one token per value: a space or a line break would cut it.
        raise BridgeError("Mật khẩu cầu nối phải là ký tự ASCII in được, không có dấu cách.",
                          "the bridge password must be printable ASCII with no spaces")
    if spec.username is not None and not _PASSWORD_OK.match(spec.username):
        raise BridgeError(f"Tên đăng nhập {spec.username!r} không hợp lệ.",
                          f"the username {spec.username!r} is invalid")
    if spec.cafile is not None and (not spec.cafile or any(c.isspace() for c in spec.cafile)):
        raise BridgeError(f"Đường dẫn CA {spec.cafile!r} không hợp lệ (không được có dấu cách).",
                          f"the CA path {spec.cafile!r} is invalid (no spaces)")


def render_bridge(spec: BridgeSpec) -> str:
    """The conf.d file of one bridge connection (with the password, if any: keep it 0600)."""
    _validate(spec)
    name = spec.name
    chain = spec.chain is not None
    what = (f"every school below commune office {name}" if chain else f"school {name}")
    lines = [
        f"# Mosquitto bridge: {what} -> {spec.upper_host}:{spec.upper_port}.",
        "# Made by `thuvien bridge config`; make it again rather than edit it. It may hold the",
        "# bridge's password: keep it mode 0600. A bridge is read only at start:",
        "# systemctl restart mosquitto (a reload does not apply it).",
        "",
        "# -- While the link is down --------------------------------------------------------",
        "# What cannot go up waits in the bridge's queue, saved with the broker's persistence",
        "# (thuvien.conf: persistence true). These hold for every client of this broker: the",
        "# last value read wins, so this file raises thuvien.conf's 10000.",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        "# QoS 0 is never used upward; queueing it would only hold stale noise.",
        "queue_qos0_messages false",
        "",
        "# -- The connection ---------------------------------------------------------------",
        f"connection thuvien-upward-{name}",
        f"address {spec.upper_host}:{spec.upper_port}",
        "bridge_protocol_version mqttv311",
        "# The upper broker keeps this bridge's session (and QoS 1 state) across reconnects:",
        "# a stable client id, no clean session.",
        "cleansession false",
        f"remote_clientid thuvien-bridge-{name}",
        f"local_clientid thuvien-bridge-{name}-local",
        "start_type automatic",
        f"restart_timeout {spec.restart_base_s} {spec.restart_cap_s}",
        f"keepalive_interval {KEEPALIVE_S}",
        "# Tells a Mosquitto upstairs that this is a bridge (no loops); other brokers ignore it.",
        "try_private true",
        "# The link's state, 1 or 0 (the last will upstairs), retained where both sides see it.",
        "notifications true",
        f"notification_topic {bridge_state_topic(name)}",
    ]
    if spec.username is not None:
        lines.append(f"remote_username {spec.username}")
    if spec.password is not None:
        lines.append(f"remote_password {spec.password}")
    if spec.cafile is not None:
        lines += [
            "# TLS to the upper broker, trusting its CA; its certificate's name is checked.",
            f"bridge_cafile {spec.cafile}",
            "bridge_insecure false",
            "bridge_tls_version tlsv1.2",
        ]
    else:
        lines.append("# No TLS: only for a link inside one machine or a trusted network.")
    lines += ["", "# -- What goes up ---------------------------------------------------------------"]
    if chain:
        lines += [
            "# Every school below this commune office, as each school's bridge brought it here;",
            "# the province's ACL decides which schools this login may speak for.",
            f"topic {PREFIX}/+/upward/# out 1",
            f"topic {PREFIX}/+/bridge/state out 1",
        ]
    else:
        prefix = f"{PREFIX}/{name}/"
        lines += [
            "# Pinned to the school's own prefix (local and remote): the pattern cannot reach",
            "# another site's topics. Out only: nothing comes down this bridge.",
            f"topic upward/# out 1 {prefix} {prefix}",
        ]
    return "\n".join(lines) + "\n"


def render_upper_acl(sites: Sequence[str], communes: Mapping[str, Sequence[str]] | None = None,
                     readers: Iterable[str] = ("thuvien-aggregate",)) -> str:
    """The upper broker's ACL: each school's bridge login may write only under its own
    site; each commune's bridge login only under the sites listed for it; `readers`
    (the aggregate server, monitors) read everything upward."""
    communes = dict(communes or {})
    for site in sites:
        _check_name(site, "Mã trường", "site")
    for commune, below in communes.items():
        _check_name(commune, "Tên cấp trên", "commune")
        for site in below:
            _check_name(site, "Mã trường", "site")
    readers = sorted(set(readers))
    logins = [bridge_username(s) for s in sites] + [bridge_username(c) for c in communes]
    clash = sorted({login for login in logins if logins.count(login) > 1} | (set(readers) & set(logins)))
    if clash:
        raise BridgeError(f"Tên đăng nhập trùng nhau: {', '.join(clash)}.",
                          f"logins listed twice: {', '.join(clash)}")
    lines = [
        "# Mosquitto ACL of the upper broker (commune office or province), made by",
        "# `thuvien bridge acl`. Anything not granted here is denied.",
        "# Under MQTT 3.1.1 a forbidden publish is acknowledged and dropped silently, so a",
        "# school that tries another school's prefix just reports nothing there.",
        "",
        "# -- Schools ------------------------------------------------------------------------",
        "# Each school's bridge logs in as bridge-<site> and writes only under its own site.",
    ]
    for site in sites:
        lines += [f"user {bridge_username(site)}",
                  f"topic write {PREFIX}/{site}/upward/#",
                  f"topic readwrite {bridge_state_topic(site)}"]
    if not sites:
        lines.append("# (no school)")
    lines += ["", "# -- Commune offices that chain their schools' reports upward -------------------"]
    for commune, below in sorted(communes.items()):
        lines.append(f"user {bridge_username(commune)}")
        lines.append(f"topic readwrite {bridge_state_topic(commune)}")
        for site in below:
            lines += [f"topic write {PREFIX}/{site}/upward/#", f"topic write {bridge_state_topic(site)}"]
    if not communes:
        lines.append("# (none)")
    lines += ["", "# -- Readers: the aggregate server and monitors ---------------------------------"]
    for reader in readers:
        lines += [f"user {reader}", f"topic read {PREFIX}/+/upward/#", f"topic read {PREFIX}/+/bridge/state"]
    if not readers:
        lines.append("# (none)")
    return "\n".join(lines) + "\n"


def read_password(password_file: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The bridge's password from `password_file`, else $THUVIEN_BRIDGE_PASSWORD, else None."""
    env = os.environ if env is None else env
    if password_file:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise BridgeError(f"Không đọc được tệp mật khẩu {password_file}: {reason}.",
                              f"cannot read the password file {password_file}: {reason}") from None
        password = text.strip()
        if not password:
            raise BridgeError(f"Tệp mật khẩu {password_file} trống.",
                              f"the password file {password_file} is empty")
        return password
    return env.get(PASSWORD_ENV) or None


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, mode 0600. As root, the file is given to the
    `mosquitto` user when there is one: the broker reads its conf.d again after it has
    dropped root (a reload), and must still be able to open this file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: 0600
    except OSError as exc:
        raise BridgeError(f"Không ghi được {path}: {exc.strerror}.",
                          f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        if os.geteuid() == 0:
            with contextlib.suppress(KeyError):
                os.chown(tmp, pwd.getpwnam("mosquitto").pw_uid, grp.getgrnam("mosquitto").gr_gid)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise BridgeError(f"Không ghi được {path}: {exc.strerror}.",
                          f"cannot write {path}: {exc.strerror}") from None
