"""What every driver shares: device states, reads, the driver registry, and scanners.

A scanner turns what a device produces into `Read`s, handed to a callback on the
scanner's own thread, and reports its health as one of the protocol's device states
(with `last_error` saying why it faulted). Each driver owns a pydantic config picked by
its `type` key, so a station's `[devices.scanner]` table validates against exactly the
driver it names; a `Registry` per kind of device (scanners here, RFID readers, printers)
holds the drivers and builds that config type.

The two scanner drivers here need no hardware: `stdin` (a person typing, or a
keyboard-wedge scanner, which types the code and presses Enter) and `simulated` (fed by
tests and the demo). `ReconnectingScanner` is the read thread and hot-plug logic that
hardware scanners share; `MultiScanner` merges several scanners into one input.
Drivers import nothing of ours but this module.
"""

from __future__ import annotations

import abc
import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Generic, Literal, TextIO, TypeVar, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    model_validator,
)
from pydantic_core import PydanticCustomError

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


# --- the registry ----------------------------------------------------------------------

class DriverConfig(BaseModel):
    """The base of every driver's config; each driver adds `type: Literal["<key>"]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The device's key in the station's status (`devices: {"scanner": "ok"}`); kinds other
    # than the station's one scanner override the default.
    name: str = Field(default="scanner", pattern=r"^[a-z0-9_-]{1,32}$")


_DriverConfig = DriverConfig  # the name drivers used before the registry was shared


class HotplugConfig(DriverConfig):
    """The config of a device that can be unplugged and plugged back."""

    # Reopening a vanished device: the first wait in seconds, doubled after each failed
    # attempt up to the max.
    reconnect_initial: float = Field(default=0.5, gt=0, le=60)
    reconnect_max: float = Field(default=10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _backoff_order(self) -> HotplugConfig:
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must not be less than reconnect_initial")
        return self

DriverT = TypeVar("DriverT")


class Registry(Mapping[str, type[DriverT]], Generic[DriverT]):
    """The drivers of one kind of device, keyed by their `type`.

    A driver class has `type_key`, `config_model` and a `from_config(config)` classmethod
    and joins with the `register` decorator. The built-in driver modules are imported the
    first time the registry is looked at, each on its own: a module that fails to import
    is logged and its types stay unknown, the others work. Reading the registry as a
    mapping (`set(SCANNERS)`, `SCANNERS["stdin"]`) includes them.
    """

    def __init__(self, kind: str, *, builtin: Sequence[str] = (),
                 default_type: str | None = None) -> None:
        self.kind = kind                  # "scanner", "RFID reader": used in errors
        self.builtin = tuple(builtin)
        self.default_type = default_type  # what a config table without `type` means
        self.unavailable: dict[str, str] = {}  # module -> why it could not be imported
        self._drivers: dict[str, type[DriverT]] = {}
        self._tried: set[str] = set()
        self._lock = threading.RLock()
        self._union: tuple[tuple[str, ...], Any] | None = None

    def register(self, cls: type[DriverT]) -> type[DriverT]:
        key = getattr(cls, "type_key", None)
        if (not isinstance(key, str) or getattr(cls, "config_model", None) is None
                or not callable(getattr(cls, "from_config", None))):
            raise TypeError(f"{cls.__name__} is not a {self.kind} driver: it needs "
                            "`type_key`, `config_model` and `from_config`")
        with self._lock:
            if key in self._drivers:
                raise ValueError(f"two {self.kind} drivers claim type {key!r}")
            self._drivers[key] = cls
        return cls

    def load_builtins(self) -> None:
        with self._lock:
            for module in self.builtin:
                if module in self._tried:
                    continue
                self._tried.add(module)
                try:
                    importlib.import_module(module)
                except Exception as exc:  # one broken driver must not take the others down
                    self.unavailable[module] = f"{type(exc).__name__}: {exc}"
                    log.error("%s drivers in %s are unavailable: %s", self.kind, module,
                              self.unavailable[module])

    # the mapping: type key -> driver class
    def __getitem__(self, key: str) -> type[DriverT]:
        self.load_builtins()
        return self._drivers[key]

    def __iter__(self) -> Iterator[str]:
        self.load_builtins()
        # Built-ins in the order of their modules, whichever was imported first; then the rest.
        rank = {module: i for i, module in enumerate(self.builtin)}
        return iter(sorted(self._drivers, key=lambda key: rank.get(
            self._drivers[key].__module__, len(rank))))

    def __len__(self) -> int:
        self.load_builtins()
        return len(self._drivers)

    def _unknown(self, keys: Sequence[str]) -> str:
        message = f"unknown {self.kind} type; expected one of: " + ", ".join(keys)
        if self.unavailable:
            message += " (not loaded: " + "; ".join(
                f"{module}: {why}" for module, why in self.unavailable.items()) + ")"
        # pydantic formats custom messages with str.format-like placeholders.
        return message.replace("{", "(").replace("}", ")")

    def config_type(self) -> Any:
        """The config table's type: each registered driver's config, picked by `type`.

        The same object is returned until another driver registers, so models built on
        it at import time stay valid."""
        keys = tuple(self)
        with self._lock:
            if self._union is not None and self._union[0] == keys:
                return self._union[1]
            if not keys:
                raise LookupError(f"no {self.kind} driver is available")
            default = self.default_type

            def tag(value: Any) -> str | None:
                if isinstance(value, dict):
                    return value.get("type", default)
                return getattr(value, "type", None)

            error_type = self.kind.lower().replace(" ", "_") + "_type"
            if len(keys) == 1:
                # A union needs two members: check the lone driver's tag by hand.
                def lone(value: Any) -> Any:
                    if tag(value) != keys[0]:
                        raise PydanticCustomError(error_type, self._unknown(keys))
                    return value

                union: Any = Annotated[self._drivers[keys[0]].config_model, BeforeValidator(lone)]
            else:
                members = tuple(Annotated[self._drivers[k].config_model, Tag(k)] for k in keys)
                union = Annotated[Union[members],  # noqa: UP007 - a runtime tuple of members
                                  Discriminator(tag, custom_error_type=error_type,
                                                custom_error_message=self._unknown(keys))]
            self._union = (keys, union)
            return union

    def parse(self, data: Any) -> Any:
        """A config table (a dict) as the config of the driver its `type` names."""
        return TypeAdapter(self.config_type()).validate_python(data)

    def create(self, config: Any) -> DriverT:
        """The driver the config is for, made from it (not started or opened)."""
        kind = getattr(config, "type", None)
        try:
            cls = self[kind]
        except KeyError:
            raise ValueError(self._unknown(tuple(self)) + f"; got {kind!r}") from None
        return cls.from_config(config)  # type: ignore[attr-defined, no-any-return]


# --- scanners: configs, interface, registry --------------------------------------------

class StdinScannerConfig(DriverConfig):
    type: Literal["stdin"] = "stdin"


class SimulatedScannerConfig(DriverConfig):
    type: Literal["simulated"] = "simulated"
    # Lets a demo or test start a station with a faulty or missing scanner.
    state: DeviceState = "ok"


class Scanner(abc.ABC):
    """A device that reads codes. Reads arrive on the scanner's thread, never the caller's.

    A registered driver also has `type_key`, `config_model` and `from_config(config)`."""

    type_key: ClassVar[str]
    config_model: ClassVar[type[DriverConfig]]

    name: str
    last_error: str = ""  # why the state is "fault", in English, for the staff screen

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


# Built-in modules, imported when the registry is first looked at; the order is the
# order of the types in error messages.
SCANNERS: Registry[Scanner] = Registry(
    "scanner", default_type="stdin",  # a `[devices.scanner]` table without `type`: the keyboard
    builtin=("drivers.base", "drivers.serial_scanner", "drivers.evdev_scanner",
             "drivers.camera", "drivers.nfc"))
register = SCANNERS.register


def create_scanner(config: DriverConfig) -> Scanner:
    return SCANNERS.create(config)


def __getattr__(name: str) -> Any:
    # `ScannerConfig` is built on first use: it imports the driver modules, which import
    # this one.
    if name == "ScannerConfig":
        return SCANNERS.config_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- drivers -------------------------------------------------------------------------

def _clean(line: str) -> str:
    # Wedge scanners may send a BOM, CR before LF, a Tab or STX/ETX framing; none is code.
    return "".join(ch for ch in line.strip().lstrip("\ufeff") if ch.isprintable()).strip()


@register
class StdinScanner(Scanner):
    """Lines from a text stream (default: the terminal); each non-empty line is one read.

    A line being read cannot be interrupted: after `stop()`, lines still arriving are
    dropped, and the reading thread (a daemon) ends at the next line or at EOF. Bytes
    that are not text (line noise) are dropped with the lines they came with.
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

    def _readline(self, stream: TextIO) -> str:
        while True:
            try:
                return stream.readline()
            except UnicodeDecodeError as exc:
                # The decoder drops the chunk it failed on and goes on with the next.
                log.warning("scanner %s: dropped input that is not text: %s", self.name, exc)

    def _run(self, stream: TextIO, on_read: OnRead, on_eof: OnEof | None) -> None:
        try:
            # readline, not iteration: a pipe must deliver each line as soon as it arrives.
            while (line := self._readline(stream)) != "":
                if self._stopping.is_set():
                    return
                if code := _clean(line):
                    on_read(Read(code=code, source="barcode", at=self._clock()))
        except (OSError, ValueError) as exc:  # ValueError: a closed stream
            log.error("scanner %s stopped reading: %s", self.name, exc)
            self.last_error = f"stopped reading: {exc}"
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
        self.set_state(state)
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
        self.last_error = "simulated fault" if state == "fault" else ""

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


# --- what hardware scanners share ------------------------------------------------------

class DeviceUnavailable(Exception):
    """The device cannot be used now: absent, vanished, busy, or its library is missing.
    The message says why; it becomes the scanner's `last_error`."""


class ReconnectingScanner(Scanner):
    """A hardware scanner read by its own thread, which survives unplugging.

    A driver opens its device in `_connect`, returns the codes completed within a short
    wait from `_read_codes`, and raises `DeviceUnavailable` from either when the device
    is not there. Then the state is "fault" (with `last_error`) and the thread reopens
    the device after `reconnect_initial` seconds, doubling the wait after each failed
    attempt up to `reconnect_max`, until it is back ("ok"): no restart needed.
    """

    READ_WAIT = 0.1  # seconds one `_read_codes` may block, so `stop()` is prompt

    def __init__(self, *, name: str, reconnect_initial: float, reconnect_max: float,
                 source: str = "barcode", clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.last_error = ""
        self._source = source
        self._clock = clock
        self._initial = reconnect_initial
        self._max = max(reconnect_max, reconnect_initial)
        self._state: DeviceState = "absent"
        self._connected = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def _connect(self) -> None:
        """Open the device; `DeviceUnavailable` when it cannot be opened."""

    @abc.abstractmethod
    def _read_codes(self, timeout: float) -> list[str]:
        """The codes completed within about `timeout` seconds (often none);
        `DeviceUnavailable` when the device vanished."""

    @abc.abstractmethod
    def _disconnect(self) -> None:
        """Release the device; safe to call twice and on a device that vanished."""

    @property
    def state(self) -> DeviceState:
        return self._state

    def check(self) -> DeviceState:
        # The read thread reconnects by itself; the watch only looks.
        return self._state

    def start(self, on_read: OnRead, on_eof: OnEof | None = None) -> None:
        if self._thread is not None:
            raise RuntimeError(f"scanner {self.name!r} is already started")
        self._stopping.clear()
        self._try_connect()  # the state is known when `start` returns
        self._thread = threading.Thread(target=self._run, args=(on_read,),
                                        name=f"scanner-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        self._drop_connection()
        self._state = "absent"

    def _drop_connection(self) -> None:
        self._connected = False
        try:
            self._disconnect()
        except Exception:  # releasing a vanished device must not stop the scanner
            log.exception("scanner %s: closing the device failed", self.name)

    def _try_connect(self) -> bool:
        try:
            self._connect()
        except Exception as exc:  # DeviceUnavailable, or a driver bug: both are a fault
            self._drop_connection()
            self._fault(str(exc) if isinstance(exc, DeviceUnavailable)
                        else f"{type(exc).__name__}: {exc}")
            return False
        self._connected = True
        if self._state == "fault":
            log.info("scanner %s: ok again", self.name)
        self._state, self.last_error = "ok", ""
        return True

    def _fault(self, why: str) -> None:
        if self._state != "fault":  # one log line per fault, not one per retry
            log.error("scanner %s: fault: %s", self.name, why)
        self._state, self.last_error = "fault", why

    def _run(self, on_read: OnRead) -> None:
        wait = self._initial
        while not self._stopping.is_set():
            if not self._connected:
                if self._stopping.wait(wait):
                    return
                wait = self._initial if self._try_connect() else min(wait * 2, self._max)
                continue
            try:
                codes = self._read_codes(self.READ_WAIT)
            except Exception as exc:  # a vanished device, or a driver bug: reconnect
                if self._stopping.is_set():
                    return
                if not isinstance(exc, DeviceUnavailable):
                    log.exception("scanner %s: reading failed", self.name)
                self._drop_connection()
                self._fault(str(exc) if isinstance(exc, DeviceUnavailable)
                            else f"{type(exc).__name__}: {exc}")
                wait = self._initial
                continue
            for code in codes:
                if self._stopping.is_set():
                    return
                try:
                    on_read(Read(code=code, source=self._source, at=self._clock()))
                except Exception:  # the station's bug must not leave the scanner deaf
                    log.exception("scanner %s: handling the read %r failed", self.name, code)


class MultiScanner(Scanner):
    """Several scanners as one input: a kiosk's barcode scanner and its card reader.

    Reads come from any part; the input ends when every part has ended. The state is
    "fault" when any part faults, else "ok" when any part works, else "absent"; `parts`
    lets the device watch report each by its own name.
    """

    def __init__(self, parts: Sequence[Scanner], *, name: str = "scanner") -> None:
        names = [part.name for part in parts]
        if not parts:
            raise ValueError("a MultiScanner needs at least one scanner")
        if len(set(names)) != len(names):
            raise ValueError(f"scanners need distinct names to be told apart in the "
                             f"station's status; got {', '.join(names)}")
        self.name = name
        self.parts: tuple[Scanner, ...] = tuple(parts)
        self._note = ""

    @property
    def state(self) -> DeviceState:
        states = {part.state for part in self.parts}
        return "fault" if "fault" in states else "ok" if "ok" in states else "absent"

    @property
    def last_error(self) -> str:  # type: ignore[override]
        faults = "; ".join(f"{part.name}: {part.last_error or 'fault'}"
                           for part in self.parts if part.state == "fault")
        return faults or self._note

    @last_error.setter
    def last_error(self, why: str) -> None:
        self._note = why  # the device watch notes a check that failed

    def check(self) -> DeviceState:
        for part in self.parts:
            check = getattr(part, "check", None)
            if callable(check):
                try:
                    check()
                except Exception:  # one part's bug must not hide the others' state
                    log.exception("scanner %s: check failed", part.name)
        return self.state

    def start(self, on_read: OnRead, on_eof: OnEof | None = None) -> None:
        running = len(self.parts)
        lock = threading.Lock()

        def part_ended() -> None:
            nonlocal running
            with lock:
                running -= 1
                ended = running == 0
            if ended and on_eof is not None:
                on_eof()

        started: list[Scanner] = []
        try:
            for part in self.parts:
                part.start(on_read, part_ended)
                started.append(part)
        except BaseException:
            for part in started:
                part.stop()
            raise

    def stop(self) -> None:
        for part in self.parts:
            part.stop()
