"""A station's configuration file (TOML), validated by pydantic.

See `config/station.example.toml`; `thuvien check-config FILE` validates one.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.base import ScannerConfig, StdinScannerConfig
from drivers.printer import PrinterConfig
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


class DevicesConfig(_Section):
    scanner: ScannerConfig = Field(default_factory=StdinScannerConfig)
    printer: PrinterConfig | None = None


class StationConfig(_Section):
    version: Literal[1] = 1
    site: SiteName
    station: StationName
    kind: Literal["kiosk", "gate", "returnbox", "desk"] = "kiosk"
    language: Literal["vi", "en"] = "vi"
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    session: SessionConfig = Field(default_factory=SessionConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    voice: VoiceConfig = Field(default_factory=VoiceConfig)
    devices: DevicesConfig = Field(default_factory=DevicesConfig)


def load(path: str) -> StationConfig:
    return load_toml_file(path, StationConfig)
