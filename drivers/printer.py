"""Receipt printers: ESC/POS thermal printers over USB, serial, network or a device file.

Three layers, as for the other devices:
- transport: python-escpos's printer classes, used only to open a connection, write
  bytes and close it again (`Usb`, `Serial`, `Network`, `File`; `Dummy` for the twin);
- job: the ESC/POS bytes of one print, built in full beforehand with an escpos `Dummy`
  (init, raster bands or encoded text, feed and cut), so a job is written in one piece
  and a test can read exactly what a printer would receive;
- device: `ReceiptPrinter`, which opens the transport for each job (a printer unplugged
  and plugged back between two receipts just works), reports `ok`/`fault`/`absent`, and
  never raises into the kiosk: every failure is a `PrintResult` with an error code.

Printing blocks for as long as the printer takes (a raster receipt is tens of KB: about
a second on USB or the network, far longer on a slow serial line); call it from a worker
thread, never the UI's. Jobs on one printer are serialized by a lock.

Vietnamese: see `kiosk/receipt.py` for why receipts are printed as raster images by
default. The opt-in `vietnamese = "tcvn3"` mode sends text in the TCVN-3 code pages of
python-escpos's capability database (ESC t 30/31 on Epson TM printers); it is accepted
only with a named profile that declares those pages.

Drivers import nothing of ours.
"""

from __future__ import annotations

import abc
import copy
import functools
import logging
import os
import stat
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal


def _escpos_cache_dir() -> None:
    # python-escpos pickles its capability database into a fresh temporary directory on
    # every import and never removes it; give it one private, lasting directory instead.
    if "ESCPOS_CAPABILITIES_PICKLE_DIR" in os.environ:
        return
    base = os.environ.get("CACHE_DIRECTORY") or os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    folder = Path(base.split(":")[0]).expanduser() / "thuvien-escpos"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return
    # The pickle is loaded on import: only from a folder nobody else can write to.
    if info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = str(folder)


_escpos_cache_dir()
_root_handlers = list(logging.getLogger().handlers)
from escpos import exceptions as escpos_errors  # noqa: E402
from escpos.capabilities import NotSupported, get_profile  # noqa: E402
from escpos.codepages import CodePages  # noqa: E402
from escpos.constants import CODEPAGE_CHANGE  # noqa: E402
from escpos.escpos import Escpos  # noqa: E402
from escpos.printer import Dummy, File, Network, Serial, Usb  # noqa: E402
from PIL import Image  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator  # noqa: E402

from drivers.base import Registry  # noqa: E402

# escpos.capabilities calls logging.basicConfig() on import, which would leave the
# station's own logging setup (done later, in main) without effect.
logging.getLogger().handlers[:] = _root_handlers

log = logging.getLogger("thuvien.drivers.printer")

PrinterState = Literal["ok", "fault", "absent"]  # the protocol's device states

# Dots across the printable width at 203 dpi: 48 mm of a 58 mm roll, 72 mm of an 80 mm roll.
PAPER_DOTS: dict[int, int] = {58: 384, 80: 576}
# Font A (12x24 dots) characters per line, for text mode.
FONT_A_DOTS = 12
# Rows per `GS v 0` command: cheap printers have small receive buffers and some reject
# tall raster images; 256-row bands cost 8 header bytes each and print on all of them.
RASTER_BAND_ROWS = 256
# Lines fed before the cut, so the last line clears the cutter (it sits above the head).
FEED_BEFORE_CUT = 5

# Why a print failed:
#   empty       nothing to print
#   bad_job     the content could not be made into a job (junk content, no font, too wide)
#   not_found   the printer could not be opened or reached (unplugged, no such device
#               file or port, connection refused, unknown host)
#   io          the printer was reached but the job did not get through (write failed
#               or timed out, connection dropped)
#   paper_out   the printer reports no paper (only printers with `paper_sensor` on)
#   unavailable this driver cannot run on this machine (pyusb or pyserial missing)
PrintError = Literal["empty", "bad_job", "not_found", "io", "paper_out", "unavailable"]


@dataclass(frozen=True)
class PrintResult:
    ok: bool
    error: PrintError | None = None
    detail: str = ""          # for the log and the staff screen, in English
    bytes_sent: int = 0
    paper_low: bool = False   # printed, but the near-end sensor is on: change the roll soon

    @classmethod
    def failed(cls, error: PrintError, detail: str) -> PrintResult:
        return cls(ok=False, error=error, detail=detail)


# --- configs -------------------------------------------------------------------------

def _hex_id(value: Any) -> Any:
    # `lsusb` prints ids as hex ("0416:5011"); TOML may give 0x0416 (an int) or "0416".
    if isinstance(value, str):
        try:
            return int(value.lower().removeprefix("0x"), 16)
        except ValueError:
            raise ValueError(f"not a hexadecimal USB id: {value!r}") from None
    return value


class _PrinterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The device's key in the station's status (`devices: {"printer": "ok"}`).
    name: str = Field(default="printer", pattern=r"^[a-z0-9_-]{1,32}$")
    paper_width_mm: Literal[58, 80] = 80
    # A python-escpos capability profile ("TM-T20II", "POS-5890", ...); None: generic.
    profile: str | None = None
    # "partial" leaves a hinge a child tears off; printers without a partial cutter cut fully.
    cut: Literal["full", "partial", "none"] = "partial"
    # How Vietnamese reaches the paper: a raster image (every ESC/POS printer) or text in
    # the TCVN-3 code pages (only printers whose profile declares them).
    vietnamese: Literal["raster", "tcvn3"] = "raster"
    # Seconds before a connection or write that hangs counts as a failure.
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                get_profile(value)
            except (KeyError, NotSupported):
                raise ValueError(f"unknown python-escpos printer profile {value!r}") from None
        return value

    @model_validator(mode="after")
    def _tcvn3_needs_profile(self) -> _PrinterConfig:
        if self.vietnamese == "tcvn3":
            pages = get_profile(self.profile).get_code_pages() if self.profile else {}
            if not {"TCVN-3-1", "TCVN-3-2"} <= set(pages):
                raise ValueError('vietnamese = "tcvn3" needs a `profile` whose code pages include '
                                 'TCVN-3 (e.g. "TM-T20II", "TM-T88V"); other printers: "raster"')
        return self


class _ReadableConfig(_PrinterConfig):
    # Ask for the paper sensor (DLE EOT 4) before each job. Many printers answer; one that
    # does not costs a timeout per job, so it is off until a station's printer is known.
    paper_sensor: bool = False


class UsbPrinterConfig(_ReadableConfig):
    type: Literal["usb"] = "usb"
    vendor_id: Annotated[int, Field(ge=0, le=0xFFFF)]
    product_id: Annotated[int, Field(ge=0, le=0xFFFF)]
    # Endpoints differ between models (`lsusb -v`): many clones write to 0x03 or 0x02.
    in_ep: Annotated[int, Field(ge=0x80, le=0x8F)] = 0x82
    out_ep: Annotated[int, Field(ge=0x00, le=0x0F)] = 0x01

    _hex = field_validator("vendor_id", "product_id", "in_ep", "out_ep", mode="before")(_hex_id)


class SerialPrinterConfig(_ReadableConfig):
    type: Literal["serial"] = "serial"
    device: str = Field(min_length=1)  # prefer /dev/serial/by-id/...: stable across reboots
    # A raster receipt is ~40 KB: about 4 s at 115200 baud, about 45 s at 9600.
    baudrate: Literal[9600, 19200, 38400, 57600, 115200] = 115200


class NetworkPrinterConfig(_ReadableConfig):
    type: Literal["network"] = "network"
    host: str = Field(min_length=1)
    port: int = Field(default=9100, ge=1, le=65535)


class FilePrinterConfig(_PrinterConfig):
    type: Literal["file"] = "file"
    path: str = Field(min_length=1)  # a device file such as /dev/usb/lp0 (write-only)


class SimulatedPrinterConfig(_PrinterConfig):
    type: Literal["simulated"] = "simulated"
    # Lets a demo or test start a station with a faulty or missing printer.
    state: PrinterState = "ok"


AnyPrinterConfig = (UsbPrinterConfig | SerialPrinterConfig | NetworkPrinterConfig | FilePrinterConfig
                    | SimulatedPrinterConfig)


# --- jobs: the bytes of one print ------------------------------------------------------

def width_dots(config: _PrinterConfig) -> int:
    """Dots per line: the paper's, or fewer where the profile says the head is narrower
    (the Epson TM-T88 family prints 512 dots on 80 mm paper)."""
    dots = PAPER_DOTS[config.paper_width_mm]
    if config.profile:
        known = get_profile(config.profile).profile_data["media"]["width"].get("pixels")
        if isinstance(known, int) and 0 < known < dots:
            return known
    return dots


def _job_writer(config: _PrinterConfig) -> Dummy:
    writer = Dummy(profile=config.profile)
    # escpos checks images against the profile's width (and prints a note when it is
    # unknown); give this writer's profile our width, on a copy: profile data is shared.
    data = copy.deepcopy(writer.profile.profile_data)
    data.setdefault("media", {}).setdefault("width", {})["pixels"] = width_dots(config)
    writer.profile.profile_data = data
    return writer


def _finish(writer: Dummy, config: _PrinterConfig) -> bytes:
    writer.print_and_feed(FEED_BEFORE_CUT)
    if config.cut != "none":
        writer._raw(_cut_command(writer, config.cut))
    return writer.output


def _cut_command(writer: Dummy, cut: str) -> bytes:
    # GS V 1 (partial) or GS V 0 (full), each falling back to the other as the profile allows.
    partial, full = b"\x1dV\x01", b"\x1dV\x00"
    can_partial, can_full = writer.profile.supports("paperPartCut"), writer.profile.supports("paperFullCut")
    if cut == "partial":
        return partial if can_partial else full if can_full else b""
    return full if can_full else partial if can_partial else b""


def image_job(image: Image.Image, config: _PrinterConfig) -> bytes:
    """Init, the image in `GS v 0` raster bands, feed, cut. Black pixels print."""
    if image.width > width_dots(config):
        raise ValueError(f"image is {image.width} dots wide; this printer prints {width_dots(config)}")
    if image.width == 0 or image.height == 0:
        raise ValueError("empty image")
    writer = _job_writer(config)
    writer.hw("INIT")
    writer.image(image, impl="bitImageRaster", fragment_height=RASTER_BAND_ROWS)
    return _finish(writer, config)


def text_job(lines: Sequence[str], config: _PrinterConfig) -> bytes:
    """Init, the lines in the TCVN-3 code pages (Font A), feed, cut."""
    pages = {name: int(slot) for name, slot in get_profile(config.profile).get_code_pages().items()}
    writer = _job_writer(config)
    writer.hw("INIT")
    writer._raw(b"".join(encode_tcvn3(line, pages) + b"\n" for line in lines))
    return _finish(writer, config)


def columns(config: _PrinterConfig) -> int:
    """Font A characters per line: 32 on 58 mm, 48 on 80 mm (42 on a 512-dot head)."""
    return width_dots(config) // FONT_A_DOTS


# TCVN 5712 VN3 in two code pages: page 1 holds the lower-case letters with their tones,
# page 2 the capitals (the ".VnTimeH" font of the 1990s). python-escpos's table writes the
# capital D with stroke as U+00D0 (Eth), which looks the same on paper.
_TCVN3_ALIASES = {"\u0110": "\u00d0"}


@functools.cache
def _tcvn3_tables() -> tuple[dict[str, int], dict[str, int]]:
    tables = []
    for name in ("TCVN-3-1", "TCVN-3-2"):
        chars = "".join(CodePages.get_encoding(name)["data"])
        tables.append({ch: 0x80 + i for i, ch in enumerate(chars) if ch != " "})
    return tables[0], tables[1]


def encode_tcvn3(text: str, pages: dict[str, int]) -> bytes:
    """Text as TCVN-3 bytes with `ESC t n` wherever the page changes; anything the two
    pages cannot show becomes "?", control characters are dropped."""
    lower, upper = _tcvn3_tables()
    out, page = bytearray(), None
    for ch in unicodedata.normalize("NFC", text):
        ch = _TCVN3_ALIASES.get(ch, ch)
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            continue
        if ord(ch) < 0x80:
            out.append(ord(ch))  # ASCII is the same on both pages
            continue
        name = "TCVN-3-1" if ch in lower else "TCVN-3-2" if ch in upper else None
        if name is None:
            out.append(ord("?"))
            continue
        if page != name:
            out += CODEPAGE_CHANGE + bytes([pages[name]])
            page = name
        out.append((lower if name == "TCVN-3-1" else upper)[ch])
    return bytes(out)


# --- interface and registry ----------------------------------------------------------

class _NotFound(Exception):
    """The transport could not be opened: the printer is not there or not reachable."""


class _Unavailable(Exception):
    """The transport's library is not installed."""


class ReceiptPrinter(abc.ABC):
    """An ESC/POS receipt printer. Every method returns or reports; none raises."""

    type_key: ClassVar[str]
    config_model: ClassVar[type[_PrinterConfig]]

    def __init__(self, config: _PrinterConfig) -> None:
        self.config = config
        self.name = config.name
        self._state: PrinterState = "absent"  # nothing tried yet
        self.last_error: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Any) -> ReceiptPrinter:
        return cls(config)

    @property
    def state(self) -> PrinterState:
        """"absent" until the printer is first tried; then "ok" or "fault" as the last
        attempt went."""
        return self._state

    @property
    def width_dots(self) -> int:
        return width_dots(self.config)

    @property
    def columns(self) -> int:
        return columns(self.config)

    @abc.abstractmethod
    def _open(self) -> Escpos:
        """An open connection to the printer; raise `_NotFound` or `_Unavailable`."""

    def _supports_status(self) -> bool:
        return bool(getattr(self.config, "paper_sensor", False))

    # --- what the kiosk calls ---

    def print_image(self, image: Image.Image) -> PrintResult:
        """Print a 1-bit (or any) image, left-aligned, then feed and cut."""
        try:
            job = image_job(image, self.config)
        except (ValueError, escpos_errors.Error) as exc:
            return PrintResult.failed("bad_job", f"cannot print this image: {exc}")
        return self.print_raw(job)

    def print_text(self, lines: Sequence[str]) -> PrintResult:
        """Print lines of text in the TCVN-3 code pages (needs `vietnamese = "tcvn3"`)."""
        if self.config.vietnamese != "tcvn3":
            return PrintResult.failed("bad_job", 'text printing needs vietnamese = "tcvn3"')
        return self.print_raw(text_job(lines, self.config))

    def cut(self) -> PrintResult:
        """Feed and cut (after paper was torn by hand, or a job that stopped halfway)."""
        writer = _job_writer(self.config)
        return self.print_raw(_finish(writer, self.config))

    def print_raw(self, job: bytes) -> PrintResult:
        """Send a complete ESC/POS job, as is."""
        if not job:
            return PrintResult.failed("empty", "nothing to print")
        with self._lock:
            result = self._send(bytes(job))
        self._state = "ok" if result.ok else "fault"
        self.last_error = None if result.ok else f"{result.error}: {result.detail}"
        if not result.ok:
            log.warning("printer %s: %s", self.name, self.last_error)
        elif result.paper_low:
            log.warning("printer %s: paper is running out", self.name)
        return result

    def probe(self) -> PrinterState:
        """Open and close the connection (and read the paper sensor, where configured)
        to learn the printer's state without printing."""
        with self._lock:
            result = self._send(b"")
        self._state = "ok" if result.ok else "fault"
        self.last_error = None if result.ok else f"{result.error}: {result.detail}"
        return self._state

    # --- one attempt ---

    def _send(self, job: bytes) -> PrintResult:
        try:
            connection = self._open()
        except _Unavailable as exc:
            return PrintResult.failed("unavailable", str(exc))
        except _NotFound as exc:
            return PrintResult.failed("not_found", str(exc))
        except Exception as exc:  # a driver bug or odd device must never stop the kiosk
            log.exception("printer %s: opening failed", self.name)
            return PrintResult.failed("not_found", f"cannot open the printer: {exc}")
        try:
            paper = self._paper_status(connection) if self._supports_status() else 2
            if paper == 0:
                return PrintResult.failed("paper_out", "the printer reports no paper")
            if job:
                connection._raw(job)
            return PrintResult(ok=True, bytes_sent=len(job), paper_low=paper == 1)
        except Exception as exc:  # OSError, USBError, SerialException, socket timeouts...
            return PrintResult.failed("io", f"the job did not get through: {type(exc).__name__}: {exc}")
        finally:
            self._close(connection)

    def _paper_status(self, connection: Escpos) -> int:
        # 2 plenty, 1 near end, 0 none; no answer (or garbage) counts as plenty.
        try:
            return connection.paper_status()
        except Exception as exc:
            log.info("printer %s: no answer to the paper status request (%s)", self.name, exc)
            return 2

    def _close(self, connection: Escpos) -> None:
        try:
            connection.close()
        except Exception as exc:
            log.info("printer %s: closing: %s", self.name, exc)


# Every printer driver is in this module: nothing to import lazily.
PRINTERS: Registry[ReceiptPrinter] = Registry("printer")
register = PRINTERS.register


def create_printer(config: AnyPrinterConfig) -> ReceiptPrinter:
    return PRINTERS.create(config)


def __getattr__(name: str) -> Any:
    # `PrinterConfig`, the `[devices.printer]` table's type: every registered driver's
    # config picked by `type`, built once the drivers below have registered.
    if name == "PrinterConfig":
        return PRINTERS.config_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- drivers -------------------------------------------------------------------------

def _opened(printer: Escpos, where: str) -> Escpos:
    try:
        printer.open()
    except escpos_errors.DeviceNotFoundError as exc:
        raise _NotFound(f"{where}: {exc}".replace("\n", " ")) from exc
    except RuntimeError as exc:  # escpos's word for "pyusb / pyserial is not installed"
        raise _Unavailable(f"{where}: {exc}") from exc
    if printer.device is None:
        raise _NotFound(f"{where}: not found")
    return printer


@register
class UsbPrinter(ReceiptPrinter):
    """A printer on USB as a vendor-class device, found by vendor and product id
    (needs pyusb and libusb-1.0, and udev access to the device)."""

    type_key = "usb"
    config_model = UsbPrinterConfig
    config: UsbPrinterConfig

    def _open(self) -> Escpos:
        c = self.config
        where = f"USB printer {c.vendor_id:04x}:{c.product_id:04x}"
        if not Usb.is_usable():
            raise _Unavailable(f"{where}: pyusb is not installed")
        return _opened(Usb(c.vendor_id, c.product_id, timeout=int(c.timeout_s * 1000),
                           in_ep=c.in_ep, out_ep=c.out_ep, profile=c.profile), where)


@register
class SerialPrinter(ReceiptPrinter):
    type_key = "serial"
    config_model = SerialPrinterConfig
    config: SerialPrinterConfig

    def _open(self) -> Escpos:
        c = self.config
        where = f"serial printer {c.device}"
        if not Serial.is_usable():
            raise _Unavailable(f"{where}: pyserial is not installed")
        printer = _opened(Serial(c.device, baudrate=c.baudrate, timeout=min(c.timeout_s, 2.0),
                                 profile=c.profile), where)
        # A printer holding flow control (paper out, cover open) must fail, not hang.
        printer.device.write_timeout = c.timeout_s  # type: ignore[union-attr]
        return printer


@register
class NetworkPrinter(ReceiptPrinter):
    type_key = "network"
    config_model = NetworkPrinterConfig
    config: NetworkPrinterConfig

    def _open(self) -> Escpos:
        c = self.config
        return _opened(Network(c.host, port=c.port, timeout=c.timeout_s, profile=c.profile),
                       f"network printer {c.host}:{c.port}")


@register
class FilePrinter(ReceiptPrinter):
    """A printer behind a device file: /dev/usb/lp0 from the kernel's usblp driver."""

    type_key = "file"
    config_model = FilePrinterConfig
    config: FilePrinterConfig

    def _open(self) -> Escpos:
        c = self.config
        return _opened(File(c.path, profile=c.profile), f"printer file {c.path}")


@register
class SimulatedPrinter(ReceiptPrinter):
    """The printer's twin: keeps every job's bytes; faults can be injected."""

    type_key = "simulated"
    config_model = SimulatedPrinterConfig
    config: SimulatedPrinterConfig

    def __init__(self, config: SimulatedPrinterConfig | None = None) -> None:
        super().__init__(config or SimulatedPrinterConfig())
        self.jobs: list[bytes] = []
        self._paper_level = 2
        self._fault: tuple[Literal["io", "not_found", "unavailable"], str] | None = None
        if self.config.state == "fault":
            self.inject_fault()
        elif self.config.state == "absent":
            self.inject_fault("not_found", "simulated printer is unplugged")

    @property
    def output(self) -> bytes:
        """Everything printed so far, as a printer would have received it."""
        return b"".join(self.jobs)

    def inject_fault(self, error: Literal["io", "not_found", "unavailable"] = "io",
                     detail: str = "simulated fault") -> None:
        """Every job (and probe) fails with `error` until `clear_fault()`: "not_found" is
        an unplugged printer, "io" one that stops answering."""
        self._fault = (error, detail)

    def clear_fault(self) -> None:
        self._fault = None

    def set_paper(self, paper: Literal["ok", "low", "out"]) -> None:
        self._paper_level = {"ok": 2, "low": 1, "out": 0}[paper]

    def _supports_status(self) -> bool:
        return True

    def _paper_status(self, connection: Escpos) -> int:
        if self._fault is not None:
            raise OSError(self._fault[1])
        return self._paper_level

    def _open(self) -> Escpos:
        if self._fault is not None and self._fault[0] != "io":
            raise (_NotFound if self._fault[0] == "not_found" else _Unavailable)(self._fault[1])
        return _SimulatedConnection(self)


class _SimulatedConnection(Dummy):
    def __init__(self, twin: SimulatedPrinter) -> None:
        super().__init__(profile=twin.config.profile)
        self._twin = twin

    def _raw(self, msg: bytes) -> None:
        if self._twin._fault is not None:
            raise OSError(self._twin._fault[1])
        super()._raw(msg)
        self._twin.jobs.append(msg)
