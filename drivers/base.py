"""The device interface of the first slice: barcode scanners, their configs, their registry.

A scanner turns what a device produces into `Read`s, handed to a callback on the
scanner's own thread, and reports its health as one of the protocol's device states.
Each driver owns a pydantic config picked by its `type` key, so a station's
`[devices.scanner]` table validates against exactly the driver it names.

The two drivers here need no hardware: `stdin` (a person typing, or a keyboard-wedge
scanner, which types the code and presses Enter) and `simulated` (fed by tests and the
demo). Drivers import nothing of ours but this module.
"""

from __future__ import annotations

import abc
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

log = logging.getLogger("thuvien.drivers")

DeviceState = Literal["ok", "fault", "absent"]


@dataclass(frozen=True)
class Read:
    """One code read by a device: a barcode, an accession number, a card number."""

    code: str
    source: str = "barcode"
    at: float = field(default_factory=time.monotonic)  # monotonic seconds


OnRead = Callable[[Read], None]
OnEof = Callable[[], None]


# --- configs -------------------------------------------------------------------------

class _DriverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The device's key in the station's status (`devices: {"scanner": "ok"}`).
    name: str = Field(default="scanner", pattern=r"^[a-z0-9_-]{1,32}$")


class StdinScannerConfig(_DriverConfig):
    type: Literal["stdin"] = "stdin"


class SimulatedScannerConfig(_DriverConfig):
    type: Literal["simulated"] = "simulated"
    # Lets a demo or test start a station with a faulty or missing scanner.
    state: DeviceState = "ok"


def _scanner_type(value: Any) -> str | None:
    # A `[devices.scanner]` table without `type` means the keyboard, the default device.
    if isinstance(value, dict):
        return value.get("type", "stdin")
    return getattr(value, "type", None)


ScannerConfig = Annotated[
    Annotated[StdinScannerConfig, Tag("stdin")] | Annotated[SimulatedScannerConfig, Tag("simulated")],
    Discriminator(_scanner_type,
                  custom_error_type="scanner_type",
                  custom_error_message="unknown scanner type; expected one of: stdin, simulated"),
]


# --- interface and registry ----------------------------------------------------------

class Scanner(abc.ABC):
    """A device that reads codes. Reads arrive on the scanner's thread, never the caller's."""

    type_key: ClassVar[str]
    config_model: ClassVar[type[_DriverConfig]]

    name: str

    @abc.abstractmethod
    def start(self, on_read: OnRead, on_eof: OnEof | None = None) -> None:
        """Begin reading; `on_eof` is called once if the input ends for good (a closed
        stream). Hardware scanners never end: they fault, and report it in `state`."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop delivering reads; safe to call twice and before `start`."""

    @property
    @abc.abstractmethod
    def state(self) -> DeviceState: ...

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: Any) -> Scanner: ...


SCANNERS: dict[str, type[Scanner]] = {}


def register(cls: type[Scanner]) -> type[Scanner]:
    if cls.type_key in SCANNERS:
        raise ValueError(f"two scanner drivers claim type {cls.type_key!r}")
    SCANNERS[cls.type_key] = cls
    return cls


def create_scanner(config: StdinScannerConfig | SimulatedScannerConfig) -> Scanner:
    return SCANNERS[config.type].from_config(config)


# --- drivers -------------------------------------------------------------------------

def _clean(line: str) -> str:
    # Wedge scanners may send a BOM, CR before LF, a Tab or STX/ETX framing; none is code.
    return "".join(ch for ch in line.strip().lstrip("\ufeff") if ch.isprintable()).strip()


@register
class StdinScanner(Scanner):
    """Lines from a text stream (default: the terminal); each non-empty line is one read.

    A line being read cannot be interrupted: after `stop()`, lines still arriving are
    dropped, and the reading thread (a daemon) ends at the next line or at EOF.
    """

    type_key = "stdin"
    config_model = StdinScannerConfig

    def __init__(self, stream: TextIO | None = None, *, name: str = "scanner",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._stream = stream
        self._clock = clock
        self._state: DeviceState = "absent"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: StdinScannerConfig) -> StdinScanner:
        return cls(name=config.name)

    @property
    def state(self) -> DeviceState:
        return self._state

    def start(self, on_read: OnRead, on_eof: OnEof | None = None) -> None:
        if self._thread is not None:
            raise RuntimeError(f"scanner {self.name!r} is already started")
        stream = self._stream if self._stream is not None else sys.stdin
        self._state = "ok"
        self._thread = threading.Thread(target=self._run, args=(stream, on_read, on_eof),
                                        name=f"scanner-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._state == "ok":
            self._state = "absent"

    def _run(self, stream: TextIO, on_read: OnRead, on_eof: OnEof | None) -> None:
        try:
            # readline, not iteration: a pipe must deliver each line as soon as it arrives.
            while (line := stream.readline()) != "":
                if self._stopping.is_set():
                    return
                if code := _clean(line):
                    on_read(Read(code=code, source="barcode", at=self._clock()))
        except (OSError, ValueError) as exc:  # ValueError: a closed stream, bad encoding
            log.error("scanner %s stopped reading: %s", self.name, exc)
            self._state = "fault"
        else:
            if self._state == "ok":
                self._state = "absent"
        # Whatever ended the stream, it will produce nothing more.
        if on_eof is not None and not self._stopping.is_set():
            on_eof()


@register
class SimulatedScanner(Scanner):
    """The scanner's twin for tests and the demo: `feed(code)` is a read, at once."""

    type_key = "simulated"
    config_model = SimulatedScannerConfig

    def __init__(self, *, name: str = "scanner", state: DeviceState = "ok",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._configured: DeviceState = state
        self._clock = clock
        self._on_read: OnRead | None = None
        self._on_eof: OnEof | None = None

    @classmethod
    def from_config(cls, config: SimulatedScannerConfig) -> SimulatedScanner:
        return cls(name=config.name, state=config.state)

    @property
    def state(self) -> DeviceState:
        return self._configured if self._on_read is not None else "absent"

    def set_state(self, state: DeviceState) -> None:
        """Inject a fault (or a clear) as a real device would report it."""
        self._configured = state

    def start(self, on_read: OnRead, on_eof: OnEof | None = None) -> None:
        self._on_read, self._on_eof = on_read, on_eof

    def stop(self) -> None:
        self._on_read = self._on_eof = None

    def feed(self, code: str, source: str = "barcode") -> bool:
        """Deliver one read on the caller's thread; False if a stopped or faulty device
        would not have read it."""
        if self._on_read is None or self._configured != "ok":
            return False
        self._on_read(Read(code=code, source=source, at=self._clock()))
        return True

    def end(self) -> None:
        """The input ends for good, as EOF does on a stream."""
        on_eof = self._on_eof
        self.stop()
        if on_eof is not None:
            on_eof()
