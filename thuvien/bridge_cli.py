"""`thuvien bridge config|acl`: the school's Mosquitto bridged to the commune office or the
province (issue #8), made by server/bridge.py.

    thuvien bridge config --config /etc/thuvien/server.toml --upper-host mqtt.sgd.example.vn \\
        --cafile /etc/mosquitto/certs/upper-ca.crt --username bridge-thcs-nhut-tao \\
        --password-file /etc/thuvien/credentials/bridge-mqtt
    thuvien bridge config --chain phong-gd-quan-1 --upper-host ... (a commune's broker)
    thuvien bridge acl --sites thcs-a,thcs-b --commune phong-gd-quan-1=thcs-a,thcs-b

The password comes from --password-file or $THUVIEN_BRIDGE_PASSWORD and is written only
into the generated file (mode 0600), never into a file that is committed or shared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "cmd_acl", "cmd_config"]


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _commune(text: str) -> tuple[str, list[str]]:
    name, sep, sites = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"NAME=site1,site2 expected, got {text!r}")
    return name.strip(), _names(sites)


def _backoff(text: str) -> tuple[int, int]:
    base, _, cap = text.partition(",")
    try:
        return int(base), int(cap or base)
    except ValueError:
        raise argparse.ArgumentTypeError(f"BASE,CAP in seconds expected, got {text!r}") from None


def cmd_config(args: argparse.Namespace) -> int:
    from server.bridge import BridgeError, BridgeSpec, bridge_username, read_password, \
        render_bridge, write_private

    if (args.chain is None) == (args.config is None):
        print("thuvien bridge config: cần đúng một trong hai: --config (máy chủ của trường) "
              "hoặc --chain TÊN (trạm của cấp xã/phường)\n"
              "thuvien bridge config: give exactly one of --config (a school's server) or "
              "--chain NAME (a commune office's broker)", file=sys.stderr)
        return 2
    site = None
    if args.chain is None:
        from server.config import load

        site = load(args.config).site  # a ConfigError is printed by thuvien.cli.main
    try:
        password = read_password(args.password_file)
        name = args.chain or site
        assert name is not None
        username = args.username or (bridge_username(name) if password is not None else None)
        text = render_bridge(BridgeSpec(upper_host=args.upper_host, upper_port=args.upper_port,
                                        site=site, chain=args.chain, cafile=args.cafile,
                                        username=username, password=password,
                                        restart_base_s=args.restart_timeout[0],
                                        restart_cap_s=args.restart_timeout[1]))
        if args.out == "-":
            sys.stdout.write(text)
            return 0
        write_private(Path(args.out), text)
    except BridgeError as exc:
        print(f"thuvien bridge: {exc.vi}\nthuvien bridge: {exc.en}", file=sys.stderr)
        return 1
    what = f"chain {args.chain}" if args.chain else f"site {site}"
    print(f"Cầu nối / bridge ({what}) -> {args.upper_host}:{args.upper_port}: {args.out} (0600)")
    if args.cafile is None:
        print("Cảnh báo: không có TLS (--cafile) / warning: no TLS (--cafile)", file=sys.stderr)
    print("Khởi động lại Mosquitto để áp dụng: systemctl restart mosquitto\n"
          "Restart Mosquitto to apply it: systemctl restart mosquitto")
    return 0


def cmd_acl(args: argparse.Namespace) -> int:
    from server.bridge import BridgeError, render_upper_acl

    try:
        text = render_upper_acl(_names(args.sites or ""), dict(args.commune or []),
                                args.reader or ["thuvien-aggregate"])
    except BridgeError as exc:
        print(f"thuvien bridge: {exc.vi}\nthuvien bridge: {exc.en}", file=sys.stderr)
        return 1
    if args.out:
        from server.bridge import write_private

        try:
            write_private(Path(args.out), text)
        except BridgeError as exc:
            print(f"thuvien bridge: {exc.vi}\nthuvien bridge: {exc.en}", file=sys.stderr)
            return 1
        print(f"ACL: {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def add_parser(sub: Any) -> None:
    """The `bridge` subcommand group, for thuvien.cli.build_parser."""
    from server.bridge import DEFAULT_CONF, RESTART_BASE_S, RESTART_CAP_S

    bridge = sub.add_parser("bridge", help="bridge this broker upward (commune office, province)")
    commands = bridge.add_subparsers(dest="bridge_command", required=True)

    config = commands.add_parser("config", help="write the Mosquitto bridge section (conf.d)")
    config.add_argument("--config", help="the school server's config (server.toml): its site")
    config.add_argument("--chain", metavar="NAME",
                        help="a commune office's broker: forward every school below it (no --config)")
    config.add_argument("--upper-host", required=True, help="the upper broker's host name")
    config.add_argument("--upper-port", type=int, default=8883, help="default 8883 (TLS)")
    config.add_argument("--cafile", help="the upper broker's CA certificate (turns TLS on)")
    config.add_argument("--username", help="the login upstairs (default bridge-SITE when a "
                                           "password is given)")
    config.add_argument("--password-file", help="the login's password (else "
                                                "$THUVIEN_BRIDGE_PASSWORD)")
    config.add_argument("--restart-timeout", type=_backoff, default=(RESTART_BASE_S, RESTART_CAP_S),
                        metavar="BASE,CAP", help="reconnect after BASE seconds, backing off to CAP "
                        f"(default {RESTART_BASE_S},{RESTART_CAP_S})")
    config.add_argument("--out", default=DEFAULT_CONF,
                        help=f"the file to write, mode 0600 (default {DEFAULT_CONF}; - prints it)")
    config.set_defaults(func=cmd_config)

    acl = commands.add_parser("acl", help="the upper broker's ACL for the schools' bridges")
    acl.add_argument("--sites", help="the schools reporting to this broker: a,b,c")
    acl.add_argument("--commune", type=_commune, action="append", metavar="NAME=a,b",
                     help="a commune office's bridge and the schools it forwards (repeatable)")
    acl.add_argument("--reader", action="append", metavar="USER",
                     help="a login that reads everything upward (default thuvien-aggregate; repeatable)")
    acl.add_argument("--out", help="the ACL file to write (default: print it)")
    acl.set_defaults(func=cmd_acl)
