"""A station's configuration file (TOML), validated by pydantic.

See `config/station.example.toml`; `thuvien check-config FILE` validates one.
"""

from __future__ import annotations

import codecs
import re
from functools import cached_property
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.base import ScannerConfig, StdinScannerConfig
from drivers.gpio import GpioConfig
from drivers.printer import PrinterConfig
from drivers.rfid.reader import reader_config_type
from protocol.configfile import MqttConfig, load_toml_file
from protocol.topics import SiteName, StationName

# Library card numbers (HS- students, GV- teachers, CB- staff) and 10-digit MOET ids;
# anything else a scanner reads is taken for an item.
DEFAULT_PATRON_PATTERN = r"^(?:(?:HS|GV|CB)-\d{4}(?:-\d{4})?|\d{10})$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionConfig(_Section):
    """The `[session]` table: how a checkout or return session behaves."""

    # Seconds with no input before the "are you still there?" warning...
    idle_timeout_s: float = Field(default=120, gt=0)
    # ...and how long the warning lasts before the session ends by itself.
    warning_s: float = Field(default=20, ge=0)
    # A scanner aimed at a book for a moment reads it several times: repeats of one
    # code within this window are one read (until the session changes mode).
    duplicate_window_s: float = Field(default=3.0, ge=0)
    request_timeout_s: float = Field(default=5.0, gt=0)
    # Matched case-insensitively against the whole code.
    patron_pattern: str = DEFAULT_PATRON_PATTERN
    # "stocktake": the station only counts the stock (a kiosk wheeled along the shelves
    # during kiểm kê); "circulation" lends and takes back, and staff may switch it to
    # stocktake for a while.
    mode: Literal["circulation", "stocktake"] = "circulation"

    @field_validator("patron_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @cached_property
    def patron_re(self) -> re.Pattern[str]:
        return re.compile(self.patron_pattern, re.IGNORECASE)


class StocktakeConfig(_Section):
    """The `[stocktake]` table: counting the stock (kiểm kê) at this station."""

    # Codes sent to the library in one request; an RFID pad's whole inventory goes at
    # once up to this many (the protocol takes at most 200).
    batch_size: int = Field(default=50, ge=1, le=200)
    # A batch goes this long after its first code: what a pad reads in one inventory,
    # or a scanner in a quick run, travels together. 0 sends each code at once.
    batch_wait_s: float = Field(default=0.3, ge=0, le=10)
    # A scanned code starting with this names the shelf being counted ("SHELF:Kệ 3").
    shelf_prefix: str = Field(default="SHELF:", min_length=1, max_length=32)
    # Shelves offered again, the last used first.
    recent_shelves: int = Field(default=6, ge=0, le=20)
    # Entered by staff on a circulation kiosk: the mode ends after this long untouched,
    # so a kiosk left behind serves readers again.
    idle_timeout_s: float = Field(default=600, gt=0)


class UiConfig(_Section):
    """The `[ui]` table: the touch screen."""

    school_name: str = "Thư viện trường"
    # A PNG shown on the idle screen; none shows the school name alone.
    logo: str | None = None
    fullscreen: bool = True
    # Window size when not full screen (development, screenshots).
    width: int = Field(default=800, ge=320)
    height: int = Field(default=480, ge=240)
    # Keystrokes of a keyboard-wedge scanner arrive faster than this apart; slower ones
    # are a person typing, ignored unless `accept_typed` (the demo, a desk with a keyboard).
    scanner_max_key_interval_ms: float = Field(default=50, gt=0)
    accept_typed: bool = False


class VoiceConfig(_Section):
    """The `[voice]` table: spoken prompts and short sounds."""

    enabled: bool = True
    # espeak-ng voices: aav/vi (northern), aav/vi-vn-x-south, aav/vi-vn-x-central.
    voice_vi: str = "aav/vi"
    voice_en: str = "en"
    rate: int = Field(default=150, ge=80, le=300)     # words per minute
    volume: float = Field(default=1.0, ge=0.0, le=1.0)
    sounds: bool = True


class RfidConfig(_Section):
    """The `[rfid]` table: what the library's RFID tags mean (ISO 28560)."""

    # The security bit of library tags: the AFI on loan and in stock. 0xC2/0x07 is the
    # ISO 28560 pair; older 3M installations use other pairs (set both to match).
    afi_on_loan: int = Field(default=0xC2, ge=0, le=255)
    afi_in_stock: int = Field(default=0x07, ge=0, le=255)
    # Which data model the tags carry; "auto" tells ISO 28560-3 from -2 by DSFID and content.
    data_model: Literal["auto", "28560-3", "28560-2"] = "auto"
    # User data blocks read from each tag (ISO 28560-3 needs 32 bytes: 8 blocks of 4).
    blocks: int = Field(default=8, ge=1, le=64)
    # Seconds between two inventories of the reader's field.
    poll_interval_s: float = Field(default=0.2, gt=0, le=10)
    # A tag missing from this many seconds of inventories has left the field.
    absent_after_s: float = Field(default=1.0, gt=0, le=60)

    @field_validator("afi_in_stock")
    @classmethod
    def _distinct(cls, value: int, info) -> int:  # type: ignore[no-untyped-def]
        if value == info.data.get("afi_on_loan"):
            raise ValueError("afi_in_stock must differ from afi_on_loan")
        return value


class GateConfig(_Section):
    """The `[gate]` table: a security gate (`kind = "gate"`)."""

    # Seconds the alarm outputs stay on for one alarm.
    alarm_s: float = Field(default=3.0, gt=0, le=60)
    # Outputs of `[devices.gpio]` switched on by an alarm; names the board lacks are skipped.
    alarm_outputs: list[str] = Field(default_factory=lambda: ["relay", "buzzer", "light_red"])
    # The input of a people counter (a light barrier); none: the gate does not count.
    counter_input: str | None = "counter"
    # Seconds between two `gate.visitors` events (sent only when someone passed).
    visitors_report_s: float = Field(default=300, ge=1)
    # Tags whose AFI is neither the on-loan nor the in-stock value (a shop's, a transit
    # card): "ignore" them, or "check" their data as if they were in stock.
    foreign_tags: Literal["ignore", "check"] = "ignore"
    # A tag with the in-stock AFI whose data cannot be read: alarm ("unreadable") or not.
    alarm_unreadable: bool = True
    # Seconds between two full `gate.sync`s besides those at each connection: the ledger
    # names a returned copy by its accession number only, so a tag carrying another id
    # of it leaves the on-loan set at the next sync.
    resync_s: float = Field(default=900, ge=10)


class ReturnboxConfig(_Section):
    """The `[returnbox]` table: a return box (`kind = "returnbox"`)."""

    # Seconds the green (returned) or red (not returned) light stays on.
    feedback_s: float = Field(default=2.0, gt=0, le=60)
    ok_output: str | None = "light_green"
    fail_output: str | None = "light_red"
    # The bin-full sensor of `[devices.gpio]`; none: the box cannot tell.
    bin_full_input: str | None = "bin_full"
    # The same barcode read again within this window is the same book still in the chute.
    duplicate_window_s: float = Field(default=10.0, ge=0)


class OfflineConfig(_Section):
    """The `[offline]` table: what a station does while the library cannot be reached.

    Accepted requests go to a durable outbox and are replayed, same ids, when the link
    returns (kiosk/offline.py). Gates decide locally and never lend: they ignore it.
    """

    # "none": refuse everything offline; "returns": take returns only; checkouts too.
    mode: Literal["none", "returns", "returns_and_checkouts"] = "returns"
    # The outbox's SQLite file; default <state>/<station>/outbox.db where <state> is
    # $STATE_DIRECTORY (systemd's StateDirectory=) or /var/lib/thuvien.
    outbox_path: str | None = None
    # Checkouts one reader may make offline until the outbox has been replayed.
    max_checkouts_per_reader: int = Field(default=3, ge=0, le=100)
    # Lend offline only to readers whose card this station saw online recently.
    known_readers_only: bool = True
    # The card cache (hashed cards, no names); default beside the outbox: cards.db.
    card_cache_path: str | None = None
    card_cache_size: int = Field(default=5000, ge=0, le=1_000_000)
    card_cache_days: float = Field(default=30, gt=0, le=3650)
    # How long a new write waits for the outbox to drain before it queues behind it.
    drain_wait_s: float = Field(default=5.0, ge=0, le=300)
    # Seconds to wait for each replayed request's reply, and the longest pause between
    # two failed replay attempts (the pause doubles from 0.5 s, with jitter).
    replay_timeout_s: float = Field(default=10.0, gt=0, le=300)
    retry_max_s: float = Field(default=30.0, ge=0.1, le=3600)
    # Replayed requests in flight at once: one station's requests reach the server in
    # order (one client, one topic, QoS 1), so a window keeps their order.
    replay_window: int = Field(default=32, ge=1, le=1000)


# SIP2 message terminators as a config file may spell them.
_TERMINATORS = {"\r": "\r", "\r\n": "\r\n", "cr": "\r", "crlf": "\r\n"}


class BackendConfig(_Section):
    """The `backend` setting: which library system the station's session talks to.

    `backend = "mqtt"` (the default): our library server, through the broker of
    `[mqtt]`. `backend = "sip2://host:port"`: any SIP2 library system (Koha, Evergreen,
    FOLIO, or our own server's SIP2 gateway); the options then go in a `[backend]`
    table with `url = "sip2://host:port"` (kiosk/sip2_backend.py).
    """

    url: str = "mqtt"
    # TLS to the ILS's SIP2 port; `ca_file` trusts a school's or vendor's own CA
    # (none: the system's trusted CAs).
    tls: bool = False
    ca_file: str | None = None
    # The ILS's character set: UTF-8 for Vietnamese names; the spec's default is CP850.
    encoding: str = "utf-8"
    # "\r" as the spec says ("CR"), or "\r\n" ("CRLF") as some systems send.
    terminator: str = "\r"
    # AY/AZ sequence numbers and checksums on every message.
    error_detection: bool = True
    # The 93 login (CN/CO); none: the ILS admits the station without one. Secrets never
    # live in the file: an environment variable, or a file (a systemd credential).
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    # AO institution id and CP location code sent with every message.
    institution: str = ""
    location: str = ""
    # Seconds to connect (and log in), and between two 99 status checks while idle.
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    status_interval_s: float = Field(default=60.0, ge=5, le=3600)
    # SIP2 does not say a reader's kind: these card patterns do (our card numbers by
    # default); anyone else is a student. A staff card may switch to stocktake only
    # where the backend counts stock, which SIP2 does not.
    staff_pattern: str = r"^CB-"
    teacher_pattern: str = r"^GV-"
    # How many more books a reader may borrow when the ILS gives no limit (CB).
    can_borrow_if_unknown: int = Field(default=3, ge=0, le=100)
    # The ILS's due-date format (strptime) when it is none of ISO 8601, YYYYMMDD or the
    # SIP2 18-character date; none: those three are tried.
    due_date_format: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, value: Any) -> Any:
        # `backend = "sip2://host:port"` is the table with only its url.
        return {"url": value} if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _known_url(cls, value: str) -> str:
        if value == "mqtt":
            return value
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "sip2" or not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ValueError('must be "mqtt" or "sip2://host:port"')
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown character encoding {value!r}") from None

    @field_validator("terminator")
    @classmethod
    def _known_terminator(cls, value: str) -> str:
        try:
            return _TERMINATORS[value.lower()]
        except KeyError:
            raise ValueError('must be "\\r" (CR) or "\\r\\n" (CRLF)') from None

    @field_validator("staff_pattern", "teacher_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> BackendConfig:
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        # Options that differ from their defaults, not merely given: a config dumped and
        # read back (a station handing its config to a child process) names them all.
        changed = [name for name, field in type(self).model_fields.items()
                   if name != "url" and getattr(self, name) != field.get_default(call_default_factory=True)]
        if self.url == "mqtt" and changed:
            raise ValueError(f"SIP2 options ({', '.join(changed)}) need url = \"sip2://host:port\"")
        return self

    @property
    def kind(self) -> Literal["mqtt", "sip2"]:
        return "mqtt" if self.url == "mqtt" else "sip2"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 0

    def password(self) -> str | None:
        """The login password from the environment or the credential file; None without."""
        import os

        if self.password_env:
            return os.environ.get(self.password_env)
        if self.password_file:
            with open(os.path.expandvars(self.password_file), encoding="utf-8") as handle:
                return handle.read().strip()
        return None


class DevicesConfig(_Section):
    scanner: ScannerConfig = Field(default_factory=StdinScannerConfig)  # type: ignore[valid-type]
    # A patron-card reader (NFC) beside the scanner; the station reads from both as one.
    card: ScannerConfig | None = None  # type: ignore[valid-type]
    # The HF RFID reader: a kiosk's pad, a gate's antennas, a return box's chute.
    rfid: reader_config_type() | None = None  # type: ignore[valid-type]
    # Named pins: a gate's relay, lights, buzzer and counter, a return box's sensors.
    gpio: GpioConfig | None = None
    printer: PrinterConfig | None = None


class StationConfig(_Section):
    version: Literal[1] = 1
    site: SiteName
    station: StationName
    kind: Literal["kiosk", "gate", "returnbox", "desk"] = "kiosk"
    language: Literal["vi", "en"] = "vi"
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    # "mqtt" (our server) or "sip2://host:port", alone or as a [backend] table.
    backend: BackendConfig = Field(default_factory=BackendConfig)
    session: SessionConfig = Field(default_factory=SessionConfig)
    stocktake: StocktakeConfig = Field(default_factory=StocktakeConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    voice: VoiceConfig = Field(default_factory=VoiceConfig)
    devices: DevicesConfig = Field(default_factory=DevicesConfig)
    rfid: RfidConfig = Field(default_factory=RfidConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    returnbox: ReturnboxConfig = Field(default_factory=ReturnboxConfig)
    offline: OfflineConfig = Field(default_factory=OfflineConfig)

    @model_validator(mode="after")
    def _sip2_is_for_kiosks(self) -> StationConfig:
        # A gate follows our ledger (gate.sync) and a return box its own outbox: neither
        # has anything to say to a SIP2 library system.
        if self.backend.kind == "sip2" and self.kind in ("gate", "returnbox"):
            raise ValueError(f'backend = "sip2://..." is for kiosks and desks, not a {self.kind}')
        return self


def load(path: str) -> StationConfig:
    return load_toml_file(path, StationConfig)
