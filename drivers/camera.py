"""A camera as a barcode scanner: OpenCV captures, pyzbar (zbar) decodes.

Three layers, as for the other devices:
- frame source: where frames come from. `OpenCVCamera` (a V4L2 device index, a
  /dev/videoN path or a /dev/v4l/by-id path) is the hardware edge; `StillCamera` is its
  twin, showing whatever scene it is given; tests script their own sources.
- `Decoder`: one frame in, the codes in it out, limited to the configured symbologies and
  region of interest, with misreads (bad check digits) dropped and counted. It has no
  thread and no clock, so a benchmark can time it alone.
- `CameraScanner`: the capture thread, at most `max_decodes_per_second` decodes (frames
  in between are read and dropped, so the next decoded one is fresh), the same code
  reported once per `repeat_window`, and hot-plug: a camera that stops giving frames is
  "fault" with `last_error`, and is reopened with backoff until it is back.

cv2 and pyzbar are imported when a scanner starts, not with this module: a station
without them (or without libzbar0) gets a "fault" camera that says why, not a crash.

Preprocessing, measured on generated 640x480 frames (tests/drivers/camera_images.py),
not guessed:
- a 3x3 median filter before zbar: on a frame with sensor noise (sigma 6) it makes zbar
  3-4x faster (noise makes zbar try countless false edges) and decodes the same set of
  hard cases as the raw frame (low contrast, blur up to sigma 1.2 px at 2 px/module);
  a Gaussian 3x3 is as fast but loses codes of 2 px modules;
- only when that finds nothing: a contrast stretch for a frame whose levels span less
  than 48 of 256 and more than 6 sigmas of its own noise (zbar alone reads a span down to
  about 6 levels without noise; the stretch reaches 4; stretching plain sensor noise
  finds nothing and made an empty frame 3x slower), and one pass rotated to the dominant
  bar direction when the frame's gradients are coherent (a Code 128 label at 20-70
  degrees: zbar's horizontal and vertical scan lines cannot cross a wide, short label
  at those angles). On 32 hard generated cases (faded, noisy, skewed) these passes
  raise the codes read from 15 to 23.

Decode rate of `Decoder.decode`, 640x480, pinned to one core of the 2-core CI machine
(taskset; other test runs were loading the box, so the spread is wide), default
symbologies: one EAN-13 in a frame with sensor noise (sigma 6) 74-126 frames/s, the
same frame without noise 175-270; an empty noisy frame 82-105. zbar alone on the raw
noisy frames: 16-41 frames/s. The default `max_decodes_per_second` of 8 keeps the
camera near 10% of a core.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator, model_validator

from drivers import checkdigits
from drivers.base import DeviceState, OnEof, OnRead, Read, Scanner, register

try:  # another change renames the config base; accept either name
    from drivers.base import DriverConfig  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the base module's version
    from drivers.base import _DriverConfig as DriverConfig

log = logging.getLogger("thuvien.drivers.camera")

Symbology = Literal["EAN13", "EAN8", "UPCA", "CODE128", "CODE39", "I25", "QRCODE"]
DEFAULT_SYMBOLOGIES: tuple[Symbology, ...] = ("EAN13", "CODE128", "CODE39", "QRCODE")

# Below this spread between the 1st and 99th percentile of levels, a frame is faded
# enough that a stretch is worth a second decode (measured: see the module docstring).
LOW_CONTRAST_SPAN = 48
# Plain Gaussian noise spans about 4.7 sigma between its 1st and 99th percentile; a
# faded code worth a stretch spans more than this many noise sigmas.
NOISE_SPANS = 6.0
# A rotated pass only when the gradients agree on a direction this much (0..1) and the
# bars lean at least this far from zbar's horizontal and vertical scan lines.
MIN_COHERENCE = 0.25
MIN_SKEW_DEGREES = 12.0
FAILED_READS_BEFORE_FAULT = 3


class CameraError(Exception):
    """The camera cannot be opened or read, or the decoding libraries are missing."""


class BadFrame(ValueError):
    """A frame that is not an 8-bit image: a frame source's bug, never the code's."""


# --- config --------------------------------------------------------------------------------

class Roi(BaseModel):
    """The region of the frame searched for codes, as fractions of the frame (0 = left/top)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    left: float = Field(0.0, ge=0.0, lt=1.0)
    top: float = Field(0.0, ge=0.0, lt=1.0)
    right: float = Field(1.0, gt=0.0, le=1.0)
    bottom: float = Field(1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Roi:
        if self.right <= self.left or self.bottom <= self.top:
            raise ValueError("roi needs left < right and top < bottom")
        return self

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels, at least one pixel each way."""
        x0, y0 = int(self.left * width), int(self.top * height)
        x1 = max(x0 + 1, round(self.right * width))
        y1 = max(y0 + 1, round(self.bottom * height))
        return x0, y0, min(x1, width), min(y1, height)


class CameraScannerConfig(DriverConfig):
    type: Literal["camera"] = "camera"
    # A V4L2 index (0 = /dev/video0), a /dev/videoN path, or better a /dev/v4l/by-id/...
    # path, which names the same camera whichever USB port it is plugged into.
    device: NonNegativeInt | str = 0
    width: int = Field(640, ge=160, le=4096)
    height: int = Field(480, ge=120, le=4096)
    fps: float = Field(15.0, gt=0, le=120)
    symbologies: tuple[Symbology, ...] = Field(DEFAULT_SYMBOLOGIES, min_length=1)
    roi: Roi | None = None
    # The same code is reported once, then not again until this many seconds have passed.
    repeat_window: float = Field(2.0, ge=0.0, le=3600.0)
    max_decodes_per_second: float = Field(8.0, gt=0.0, le=240.0)
    # Code 39 labels printed with the optional mod 43 check character: verify and strip it.
    code39_mod43: bool = False
    # Interleaved 2 of 5 with a GS1 mod 10 check digit (ITF-14): verify it (it is kept).
    i25_mod10: bool = False
    # The extra passes for faded and skewed codes (see the module docstring).
    enhance: bool = True
    reconnect_initial: float = Field(0.5, gt=0.0, le=60.0)
    reconnect_max: float = Field(10.0, gt=0.0, le=600.0)

    @field_validator("device")
    @classmethod
    def _device(cls, value: int | str) -> int | str:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise ValueError("device must be an index or a path such as /dev/video0")
            if value.isdigit():
                return int(value)
        return value

    @field_validator("symbologies")
    @classmethod
    def _unique(cls, value: tuple[Symbology, ...]) -> tuple[Symbology, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each symbology once")
        return value

    @model_validator(mode="after")
    def _backoff(self) -> CameraScannerConfig:
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must not be below reconnect_initial")
        return self


# --- decoding ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Symbol:
    """One code found in a frame."""

    symbology: Symbology
    code: str
    box: tuple[int, int, int, int]  # left, top, width, height in the frame's pixels


@dataclass
class DecodeStats:
    frames: int = 0
    passes: int = 0            # zbar runs: one per frame, more when a fallback runs
    symbols: int = 0           # codes accepted
    rejected: int = 0          # misreads dropped: bad check digit, unreadable text
    bad_frames: int = 0        # not an image at all


def _import(module: str, hint: str) -> Any:
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:  # OSError: pyzbar without the libzbar0 library
        raise CameraError(f"cannot import {module}: {exc} ({hint})") from exc


def _libraries() -> tuple[Any, Any, Any]:
    cv2 = _import("cv2", "pip install opencv-python-headless")
    np = _import("numpy", "pip install numpy")
    pyzbar = _import("pyzbar.pyzbar", "apt-get install libzbar0; pip install pyzbar")
    return cv2, np, pyzbar


class Decoder:
    """Finds the codes in one frame (a numpy image, gray or BGR). Not thread-safe: one per thread."""

    def __init__(self, symbologies: Sequence[Symbology] = DEFAULT_SYMBOLOGIES, *,
                 roi: Roi | None = None, code39_mod43: bool = False, i25_mod10: bool = False,
                 enhance: bool = True) -> None:
        self._cv2, self._np, self._pyzbar = _libraries()
        self.symbologies = frozenset(symbologies)
        self.roi = roi
        self.code39_mod43 = code39_mod43
        self.i25_mod10 = i25_mod10
        self.enhance = enhance
        self.stats = DecodeStats()
        wanted = set(self.symbologies)
        if "UPCA" in wanted:
            wanted.add("EAN13")  # zbar finds UPC-A only through its EAN-13 decoder
        ZBarSymbol = self._pyzbar.ZBarSymbol
        self._zbar_symbols = [ZBarSymbol[name] for name in sorted(wanted)]

    @classmethod
    def from_config(cls, config: CameraScannerConfig) -> Decoder:
        return cls(config.symbologies, roi=config.roi, code39_mod43=config.code39_mod43,
                   i25_mod10=config.i25_mod10, enhance=config.enhance)

    def decode(self, frame: Any) -> list[Symbol]:
        """The accepted codes in `frame`, each once. Raises `BadFrame` for a non-image."""
        gray = self._gray(frame)
        self.stats.frames += 1
        x0 = y0 = 0
        if self.roi is not None:
            x0, y0, x1, y1 = self.roi.pixels(gray.shape[1], gray.shape[0])
            gray = gray[y0:y1, x0:x1]
        cv2 = self._cv2
        found = self._run(cv2.medianBlur(gray, 3))
        if not found and self.enhance:
            if self._worth_stretching(gray):
                found = self._run(self._stretch(gray))
            if not found:
                found = self._deskewed(gray)
        symbols: dict[tuple[str, str], Symbol] = {}
        for result in found:
            symbol = self._accept(result, x0, y0)
            if symbol is not None:
                symbols.setdefault((symbol.symbology, symbol.code), symbol)
        self.stats.symbols += len(symbols)
        return list(symbols.values())

    # steps
    def _gray(self, frame: Any) -> Any:
        np, cv2 = self._np, self._cv2
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.size == 0:
            self.stats.bad_frames += 1
            raise BadFrame(f"not an 8-bit image: {type(frame).__name__} "
                           f"{getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}")
        if frame.ndim == 2:
            return frame
        if frame.ndim == 3 and frame.shape[2] == 3:
            return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if frame.ndim == 3 and frame.shape[2] == 4:
            return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
        if frame.ndim == 3 and frame.shape[2] == 1:
            return frame[:, :, 0]
        self.stats.bad_frames += 1
        raise BadFrame(f"not a gray or BGR image: shape {frame.shape}")

    def _run(self, image: Any) -> list[tuple[Any, Callable[[int, int], tuple[float, float]]]]:
        self.stats.passes += 1
        results = self._pyzbar.decode(image, symbols=self._zbar_symbols)
        return [(r, _identity) for r in results]

    def _worth_stretching(self, gray: Any) -> bool:
        """A faded frame, but not one where sensor noise is all the contrast there is:
        stretching plain noise finds nothing and makes zbar 3-4x slower."""
        np = self._np
        low, high = np.percentile(gray[::4, ::4], (1, 99))
        span = float(high - low)
        if span >= LOW_CONTRAST_SPAN:
            return False
        rows = gray[::4].astype(np.int16)
        # Noise sigma from neighbouring pixels (median absolute difference, robust to edges).
        noise = 1.4826 * float(np.median(np.abs(np.diff(rows, axis=1)))) / math.sqrt(2.0)
        return span > NOISE_SPANS * noise

    def _stretch(self, gray: Any) -> Any:
        # Smoothing first: stretching a faded frame stretches its noise as well.
        smooth = self._cv2.GaussianBlur(gray, (3, 3), 0)
        low, high = self._np.percentile(smooth[::4, ::4], (1, 99))
        scale = 255.0 / max(float(high - low), 1.0)
        return self._cv2.convertScaleAbs(smooth, alpha=scale, beta=-float(low) * scale)

    def _deskewed(self, gray: Any) -> list[tuple[Any, Callable[[int, int], tuple[float, float]]]]:
        angle = self.bar_angle(gray)
        if angle is None:
            return []
        cv2, np = self._cv2, self._np
        h, w = gray.shape
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        # A canvas big enough for the whole rotated frame: nothing is cut off.
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        new_w, new_h = int(h * sin + w * cos) + 1, int(h * cos + w * sin) + 1
        matrix[0, 2] += new_w / 2 - w / 2
        matrix[1, 2] += new_h / 2 - h / 2
        rotated = cv2.warpAffine(cv2.medianBlur(gray, 3), matrix, (new_w, new_h),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inverse = cv2.invertAffineTransform(matrix)

        def back(x: int, y: int) -> tuple[float, float]:
            point = inverse @ np.array([x, y, 1.0])
            return float(point[0]), float(point[1])

        self.stats.passes += 1
        return [(r, back) for r in self._pyzbar.decode(rotated, symbols=self._zbar_symbols)]

    def bar_angle(self, gray: Any) -> float | None:
        """Degrees to rotate the frame by so the dominant bars stand upright; None when
        the gradients show no clear direction or the bars are already near an axis."""
        cv2, np = self._cv2, self._np
        small = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
        # The structure tensor: doubling the angle makes opposite gradients (both edges of
        # a bar) agree instead of cancel.
        jxx = float(np.sum(gx * gx - gy * gy))
        jxy = float(np.sum(2.0 * gx * gy))
        energy = float(np.sum(gx * gx + gy * gy))
        if energy <= 0.0 or math.hypot(jxx, jxy) / energy < MIN_COHERENCE:
            return None
        angle = 0.5 * math.degrees(math.atan2(jxy, jxx))  # the gradient's direction
        skew = (angle + 45.0) % 90.0 - 45.0                  # distance to the nearest axis
        if abs(skew) < MIN_SKEW_DEGREES:
            return None
        return angle

    def _accept(self, found: tuple[Any, Callable[[int, int], tuple[float, float]]],
                x0: int, y0: int) -> Symbol | None:
        result, back = found
        symbology = str(result.type)
        try:
            code = bytes(result.data).decode("utf-8")
        except UnicodeDecodeError:
            self._reject(symbology, repr(result.data), "not UTF-8 text")
            return None
        if symbology == "QRCODE":
            code = _undo_shift_jis_guess(code)
        if symbology == "EAN13" and "UPCA" in self.symbologies and code.startswith("0"):
            symbology, code = "UPCA", code[1:]
        if symbology not in self.symbologies:
            return None  # UPC-A's helper EAN-13 decoder found an EAN-13 nobody asked for
        code = "".join(ch for ch in code if ch.isprintable()).strip()
        checked = self._checked(symbology, code)
        if checked is None:
            return None
        return Symbol(symbology=symbology, code=checked, box=self._box(result, back, x0, y0))  # type: ignore[arg-type]

    def _checked(self, symbology: str, code: str) -> str | None:
        """The code as reported, or None for a misread (counted and logged)."""
        valid = {
            "EAN13": checkdigits.is_valid_ean13,
            "EAN8": checkdigits.is_valid_ean8,
            "UPCA": checkdigits.is_valid_upca,
        }.get(symbology)
        if not code:
            self._reject(symbology, code, "empty")
            return None
        if valid is not None and not valid(code):
            self._reject(symbology, code, "bad check digit")
            return None
        if symbology == "CODE39" and self.code39_mod43:
            if not checkdigits.is_valid_code39_mod43(code):
                self._reject(symbology, code, "bad mod 43 check character")
                return None
            return code[:-1]
        if symbology == "I25" and self.i25_mod10 and not (
                code.isdigit() and checkdigits.gs1_check_digit(code[:-1] or "x") == code[-1]):
            self._reject(symbology, code, "bad mod 10 check digit")
            return None
        return code

    def _reject(self, symbology: str, code: str, why: str) -> None:
        self.stats.rejected += 1
        log.info("camera: dropped %s %r: %s", symbology, code, why)

    @staticmethod
    def _box(result: Any, back: Callable[[int, int], tuple[float, float]],
             x0: int, y0: int) -> tuple[int, int, int, int]:
        rect = result.rect
        corners = [back(x, y) for x, y in ((rect.left, rect.top),
                                            (rect.left + rect.width, rect.top + rect.height),
                                            (rect.left, rect.top + rect.height),
                                            (rect.left + rect.width, rect.top))]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        left, top = int(min(xs)) + x0, int(min(ys)) + y0
        return left, top, int(max(xs) - min(xs)), int(max(ys) - min(ys))


def _undo_shift_jis_guess(text: str) -> str:
    """zbar guesses Shift JIS for a QR code's bytes without an ECI header, and turns
    UTF-8 Vietnamese ("Dế Mèn") into Japanese mojibake; undo it when the bytes it read
    are valid UTF-8, which Japanese Shift JIS text almost never is."""
    if text.isascii():
        return text
    try:
        return text.encode("shift_jis").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _identity(x: int, y: int) -> tuple[float, float]:
    return float(x), float(y)


# --- frame sources -------------------------------------------------------------------------

class FrameSource(Protocol):
    """Where frames come from. `read` returns None when the camera gave no frame (it was
    unplugged, or it stalled); `close` must also make a blocked `read` return soon."""

    description: str

    def open(self) -> None: ...  # raises CameraError

    def read(self) -> Any | None: ...

    def close(self) -> None: ...


class OpenCVCamera:
    """A V4L2 camera through OpenCV's VideoCapture: the hardware edge."""

    def __init__(self, device: int | str, *, width: int = 640, height: int = 480,
                 fps: float = 15.0) -> None:
        self.device = device
        self.width, self.height, self.fps = width, height, fps
        self.description = f"/dev/video{device}" if isinstance(device, int) else device
        self._capture: Any = None

    def open(self) -> None:
        cv2 = _import("cv2", "pip install opencv-python-headless")
        if isinstance(self.device, str) and self.device.startswith("/dev/") \
                and not os.path.exists(self.device):
            raise CameraError(f"no camera at {self.device} (unplugged?)")
        backend = cv2.CAP_V4L2 if isinstance(self.device, int) or self.device.startswith("/dev/") \
            else cv2.CAP_ANY
        capture = cv2.VideoCapture(self.device, backend)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open camera {self.description}")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        capture.set(cv2.CAP_PROP_FPS, self.fps)
        # One buffered frame: a decode then sees the book in front of the lens now.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture

    def read(self) -> Any | None:
        capture = self._capture
        if capture is None:
            return None
        ok, frame = capture.read()
        return frame if ok else None

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


class StillCamera:
    """The camera's twin: shows one scene (a numpy frame) at `fps` until told another.

    `unplug()` makes reads and opens fail as a pulled USB cable does; `plug()` undoes it.
    """

    def __init__(self, scene: Any | None = None, *, fps: float = 30.0,
                 description: str = "still camera") -> None:
        self.description = description
        self._scene = scene
        self._period = 1.0 / fps
        self._plugged = True
        self._closed = threading.Event()
        self._closed.set()

    def show(self, scene: Any | None) -> None:
        self._scene = scene

    def unplug(self) -> None:
        self._plugged = False

    def plug(self) -> None:
        self._plugged = True

    def open(self) -> None:
        if not self._plugged:
            raise CameraError(f"cannot open {self.description}: unplugged")
        self._closed.clear()

    def read(self) -> Any | None:
        if self._closed.wait(self._period) or not self._plugged:
            return None
        if self._scene is None:
            return _import("numpy", "pip install numpy").full((480, 640), 200, dtype="uint8")
        return self._scene

    def close(self) -> None:
        self._closed.set()


# --- the scanner ---------------------------------------------------------------------------

@register
class CameraScanner(Scanner):
    """Continuous capture and decoding on the scanner's own thread."""

    type_key: ClassVar[str] = "camera"
    config_model = CameraScannerConfig

    def __init__(self, config: CameraScannerConfig | None = None, *,
                 frame_source: FrameSource | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config if config is not None else CameraScannerConfig()
        self.name = self.config.name
        self.last_error = ""
        self.decoder: Decoder | None = None
        self._source = frame_source
        self._clock = clock
        self._state: DeviceState = "absent"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported: dict[tuple[str, str], float] = {}
        self._backoff = self.config.reconnect_initial
        self._next_attempt = 0.0
        self.duplicates = 0

    @classmethod
    def from_config(cls, config: CameraScannerConfig) -> CameraScanner:
        return cls(config)

    @property
    def state(self) -> DeviceState:
        return self._state

    def check(self) -> DeviceState:
        # The capture thread reopens the camera itself; nothing to do but report.
        return self._state

    @property
    def stats(self) -> DecodeStats:
        return self.decoder.stats if self.decoder is not None else DecodeStats()

    def start(self, on_read: OnRead, on_eof: OnEof | None = None) -> None:
        if self._thread is not None:
            raise RuntimeError(f"scanner {self.name!r} is already started")
        try:
            self.decoder = Decoder.from_config(self.config)
        except CameraError as exc:
            self._fault(str(exc))
            return  # nothing will ever decode: a permanent fault the status shows
        if self._source is None:
            c = self.config
            self._source = OpenCVCamera(c.device, width=c.width, height=c.height, fps=c.fps)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, args=(on_read,),
                                        name=f"scanner-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._source is not None:
            self._source.close()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        if self._state == "ok":
            self._state = "absent"

    # the capture thread
    def _run(self, on_read: OnRead) -> None:
        assert self._source is not None
        source = self._source
        is_open = False
        failures = 0
        next_decode = 0.0
        min_gap = 1.0 / self.config.max_decodes_per_second
        while not self._stopping.is_set():
            if not is_open:
                is_open = self._open(source)
                continue
            why = f"camera {source.description} gives no frames (unplugged?)"
            try:
                frame = source.read()
            except Exception as exc:  # a capture backend's error is a fault, never a crash
                frame, why = None, f"camera {source.description}: {exc}"
            if self._stopping.is_set():
                break
            if frame is None:
                failures += 1
                if failures >= FAILED_READS_BEFORE_FAULT:
                    source.close()
                    is_open, failures = False, 0
                    self._fault(why)
                    self._schedule_reopen()
                continue
            failures = 0
            now = self._clock()
            if now < next_decode:
                continue  # read and dropped: the camera's buffer stays fresh
            next_decode = now + min_gap
            self._decode(frame, now, on_read)
        source.close()

    def _open(self, source: FrameSource) -> bool:
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            self._stopping.wait(min(wait, 0.2))
            return False
        try:
            source.open()
        except CameraError as exc:
            self._fault(str(exc))
            self._schedule_reopen()
            return False
        except Exception as exc:  # a backend's surprise must not end the thread
            self._fault(f"cannot open camera {source.description}: {exc}")
            self._schedule_reopen()
            return False
        self._backoff = self.config.reconnect_initial
        if self._state == "fault":
            log.info("camera %s: ok again", self.name)
        self._state = "ok"
        self.last_error = ""
        return True

    def _decode(self, frame: Any, now: float, on_read: OnRead) -> None:
        assert self.decoder is not None
        try:
            symbols = self.decoder.decode(frame)
        except BadFrame as exc:
            if self.decoder.stats.bad_frames == 1:
                log.error("camera %s: %s", self.name, exc)
            return
        except Exception:  # a decoder bug must not stop the camera for good
            log.exception("camera %s: decoding failed", self.name)
            return
        for symbol in symbols:
            key = (symbol.symbology, symbol.code)
            last = self._reported.get(key)
            if last is not None and now - last < self.config.repeat_window:
                self.duplicates += 1
                continue
            self._reported[key] = now
            try:
                on_read(Read(code=symbol.code, source="barcode", at=now))
            except Exception:
                log.exception("camera %s: the read handler failed on %r", self.name, symbol.code)
        self._forget(now)

    def _forget(self, now: float) -> None:
        if len(self._reported) > 256:  # a long day of books: keep only the live window
            window = self.config.repeat_window
            self._reported = {k: t for k, t in self._reported.items() if now - t < window}

    def _schedule_reopen(self) -> None:
        # Real time, not the injected clock: the wait before a reopen is a real wait.
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.config.reconnect_max)

    def _fault(self, why: str) -> None:
        if self._state != "fault" or why != self.last_error:
            log.error("camera %s: fault: %s", self.name, why)
        self._state = "fault"
        self.last_error = why
