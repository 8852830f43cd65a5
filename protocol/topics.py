"""Topic builders and the one parser of topics (PROTOCOL.md, "Topics")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator

from protocol.errors import ProtocolError

PREFIX = "thuvien/v1"
NAME_RE = re.compile(r"^[a-z0-9-]{1,64}$")

StationChannel = Literal["status", "request", "reply", "event", "command"]
STATION_CHANNELS: tuple[str, ...] = ("status", "request", "reply", "event", "command")
SITE_CHANNELS: tuple[str, ...] = ("ledger", "alert")


def check_name(value: str, what: str = "name") -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"{what} {value!r} must be 1-64 characters of a-z, 0-9 and '-'")
    return value


# Config and payload fields that hold a site or station name, validated as topics need.
SiteName = Annotated[str, AfterValidator(lambda value: check_name(value, "site"))]
StationName = Annotated[str, AfterValidator(lambda value: check_name(value, "station"))]


def station_topic(site: str, station: str, channel: StationChannel) -> str:
    return f"{PREFIX}/{check_name(site, 'site')}/station/{check_name(station, 'station')}/{channel}"


def server_status(site: str) -> str:
    return f"{PREFIX}/{check_name(site, 'site')}/server/status"


def ledger(site: str) -> str:
    return f"{PREFIX}/{check_name(site, 'site')}/ledger"


def alert(site: str) -> str:
    return f"{PREFIX}/{check_name(site, 'site')}/alert"


def station_filter(site: str, channel: StationChannel) -> str:
    """Subscription filter for one channel of every station of a site."""
    return f"{PREFIX}/{check_name(site, 'site')}/station/+/{channel}"


@dataclass(frozen=True)
class Topic:
    site: str
    channel: str
    station: str | None = None  # None for the site's own topics (ledger, alert, server)


def parse(topic: str) -> Topic:
    parts = topic.split("/")
    if parts[:2] != PREFIX.split("/") or len(parts) < 4:
        raise ProtocolError(f"topic {topic!r} is not a thuvien v1 topic")
    site = parts[2]
    if not NAME_RE.match(site):
        raise ProtocolError(f"topic {topic!r} has an invalid site {site!r}")
    rest = parts[3:]
    if len(rest) == 3 and rest[0] == "station" and rest[2] in STATION_CHANNELS:
        if not NAME_RE.match(rest[1]):
            raise ProtocolError(f"topic {topic!r} has an invalid station {rest[1]!r}")
        return Topic(site=site, station=rest[1], channel=rest[2])
    if rest == ["server", "status"]:
        return Topic(site=site, channel="server_status")
    if len(rest) == 1 and rest[0] in SITE_CHANNELS:
        return Topic(site=site, channel=rest[0])
    raise ProtocolError(f"topic {topic!r} is not one of the protocol's topics")
