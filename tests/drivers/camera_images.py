"""Generated camera frames for the camera scanner's tests and benchmark.

Barcodes are drawn from python-barcode's module patterns (one '1' a dark module) and QR
codes from segno's matrix, at an exact number of pixels per module, then placed on a
640x480 grayscale frame, rotated, blurred, faded or mixed with noise as a cheap webcam
would. Everything is deterministic: noise comes from a seeded generator.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import segno
from barcode import codex, ean, itf, upc

from drivers.camera import CameraError

Frame = np.ndarray

WIDTH, HEIGHT = 640, 480
WHITE, BLACK = 255, 0


def _modules(kind: str, data: str) -> str:
    """The module pattern ('1' dark, '0' light) of a 1D symbol, without quiet zones."""
    if kind == "ean13":
        # no_checksum keeps a 13th digit as given, so a wrong check digit can be drawn.
        symbol = ean.EuropeanArticleNumber13(data, no_checksum=len(data) == 13)
    elif kind == "ean8":
        symbol = ean.EuropeanArticleNumber8(data, no_checksum=len(data) == 8)
    elif kind == "upca":
        symbol = upc.UniversalProductCodeA(data[:11])
    elif kind == "code128":
        symbol = codex.Code128(data)
    elif kind == "code39":
        # The data is drawn as given: append a mod 43 check character yourself.
        symbol = codex.Code39(data, add_checksum=False)
    elif kind == "i25":
        symbol = itf.ITF(data)
    else:
        raise ValueError(f"unknown barcode kind {kind!r}")
    (pattern,) = symbol.build()
    return pattern


def barcode(kind: str, data: str, *, module_px: int = 2, height_px: int = 80,
            quiet_modules: int = 10) -> Frame:
    """A 1D barcode on white, `module_px` pixels per module, with its quiet zones."""
    pattern = np.frombuffer(_modules(kind, data).encode("ascii"), dtype=np.uint8) == ord("1")
    row = np.where(np.repeat(pattern, module_px), BLACK, WHITE).astype(np.uint8)
    quiet = np.full(quiet_modules * module_px, WHITE, dtype=np.uint8)
    row = np.concatenate([quiet, row, quiet])
    return np.tile(row, (height_px, 1))


def qr(data: str, *, module_px: int = 4, border: int = 4) -> Frame:
    """A QR code on white, `module_px` pixels per module."""
    matrix = np.array([list(r) for r in segno.make_qr(data, error="m").matrix], dtype=np.uint8)
    img = np.where(matrix == 1, BLACK, WHITE).astype(np.uint8)
    img = np.pad(img, border, constant_values=WHITE)
    return np.kron(img, np.ones((module_px, module_px), dtype=np.uint8))


@dataclass(frozen=True)
class Placement:
    image: Frame
    center: tuple[float, float] = (0.5, 0.5)  # fractions of the frame
    angle: float = 0.0                         # degrees, counter-clockwise


def scene(*placements: Placement, size: tuple[int, int] = (WIDTH, HEIGHT),
          background: int = 235) -> Frame:
    """A grayscale frame with each image pasted (rotated) at its place.

    The background is a light grey desk, not pure white, as a camera sees it.
    """
    width, height = size
    frame = np.full((height, width), background, dtype=np.uint8)
    for p in placements:
        h, w = p.image.shape[:2]
        cx, cy = p.center[0] * width, p.center[1] * height
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), p.angle, 1.0)
        matrix[0, 2] += cx - w / 2
        matrix[1, 2] += cy - h / 2
        # Warp the image and a mask of it, so only the label (not its canvas) covers the desk.
        warped = cv2.warpAffine(p.image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                borderValue=WHITE)
        mask = cv2.warpAffine(np.full_like(p.image, 255), matrix, (width, height),
                              flags=cv2.INTER_NEAREST, borderValue=0)
        frame[mask > 0] = warped[mask > 0]
    return frame


def blurred(frame: Frame, sigma: float) -> Frame:
    return cv2.GaussianBlur(frame, (0, 0), sigma)


def low_contrast(frame: Frame, low: int, high: int) -> Frame:
    """Squeeze the levels 0..255 into low..high: a dim room, a glossy cover."""
    scaled = low + frame.astype(np.float32) * ((high - low) / 255.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def noisy(frame: Frame, sigma: float, seed: int = 7) -> Frame:
    rng = np.random.default_rng(seed)
    return np.clip(frame + rng.normal(0.0, sigma, frame.shape), 0, 255).astype(np.uint8)


def bgr(frame: Frame) -> Frame:
    """The grayscale frame as the 3-channel BGR image OpenCV's capture returns."""
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


def empty(size: tuple[int, int] = (WIDTH, HEIGHT), seed: int = 3) -> Frame:
    """A frame with no code: a desk with some texture, which costs the decoder the most."""
    return noisy(scene(size=size), 6.0, seed=seed)


class ScriptedCamera:
    """A frame source playing a script of frames, then waiting for more, as a camera
    facing an empty desk would, without burning a core.

    Each frame read advances `now` by `step` seconds: pass `clock=camera.clock` to the
    scanner so repeat windows and the decode rate are counted in frames, not wall time.
    `unplug()` makes reads return no frame and opens fail until `plug()`.
    """

    def __init__(self, frames: list[Frame | BaseException | None] | None = None, *,
                 step: float = 0.25) -> None:
        self.description = "scripted camera"
        self.step = step
        self.now = 0.0
        self.opens = 0
        self.frames_read = 0
        self.drained = threading.Event()  # the script is played and the scanner waits
        self._script: deque[Frame | BaseException | None] = deque(frames or [])
        self._plugged = True
        self._closed = False
        self._cond = threading.Condition()

    def clock(self) -> float:
        return self.now

    def open(self) -> None:
        with self._cond:
            self.opens += 1
            if not self._plugged:
                raise CameraError("scripted camera: no such device")
            self._closed = False

    def read(self) -> Frame | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if not self._plugged:
                    self._cond.wait(0.01)  # as a dead camera's read times out
                    return None
                if self._script:
                    item = self._script.popleft()
                    self.frames_read += 1
                    self.now = self.frames_read * self.step
                    if isinstance(item, BaseException):
                        raise item
                    return item
                self.drained.set()
                self._cond.wait()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def play(self, *frames: Frame | BaseException | None) -> None:
        with self._cond:
            self.drained.clear()
            self._script.extend(frames)
            self._cond.notify_all()

    def unplug(self) -> None:
        with self._cond:
            self._plugged = False
            self._cond.notify_all()

    def plug(self) -> None:
        with self._cond:
            self._plugged = True
            self._cond.notify_all()
