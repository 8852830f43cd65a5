"""The camera scanner on generated frames: the real OpenCV + zbar decode path, the real
capture thread; only the camera itself is scripted (tests/drivers/camera_images.py)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from pydantic import ValidationError

import camera_images as ci
from drivers import checkdigits
from drivers.base import SCANNERS, Read
from drivers.camera import (
    BadFrame,
    CameraScanner,
    CameraScannerConfig,
    Decoder,
    Roi,
    StillCamera,
)

ISBN = "978604123456" + checkdigits.ean13_check_digit("978604123456")  # a Vietnamese ISBN
ACCESSION = "GK-00123"  # an ĐKCB accession number on a Code 128 label


def ean_label() -> np.ndarray:
    return ci.barcode("ean13", ISBN)


def accession_label() -> np.ndarray:
    return ci.barcode("code128", ACCESSION)


def frame_with(*labels: ci.Placement, noise: float = 4.0) -> np.ndarray:
    return ci.noisy(ci.scene(*labels), noise)


def codes(decoder: Decoder, frame: np.ndarray) -> list[tuple[str, str]]:
    return sorted((s.symbology, s.code) for s in decoder.decode(frame))


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return Decoder()


# --- decoding -----------------------------------------------------------------------------

def test_clean_isbn(decoder: Decoder) -> None:
    assert codes(decoder, ci.scene(ci.Placement(ean_label()))) == [("EAN13", ISBN)]


def test_accession_number_in_code128(decoder: Decoder) -> None:
    assert codes(decoder, frame_with(ci.Placement(accession_label()))) == [("CODE128", ACCESSION)]


@pytest.mark.parametrize("angle", [10, 30, 45, 90, 150])
@pytest.mark.parametrize("label,expected", [(ean_label, ("EAN13", ISBN)),
                                            (accession_label, ("CODE128", ACCESSION))])
def test_rotated(label: Callable[[], np.ndarray], expected: tuple[str, str], angle: int) -> None:
    frame = frame_with(ci.Placement(label(), angle=angle), noise=6.0)
    assert codes(Decoder(), frame) == [expected]


def test_skewed_label_needs_the_deskew_pass() -> None:
    # zbar's horizontal and vertical scan lines cannot cross this wide label at 30 degrees.
    frame = frame_with(ci.Placement(accession_label(), angle=30), noise=6.0)
    assert codes(Decoder(enhance=False), frame) == []
    assert codes(Decoder(enhance=True), frame) == [("CODE128", ACCESSION)]


@pytest.mark.parametrize("sigma", [0.8, 1.2])
def test_blurred(decoder: Decoder, sigma: float) -> None:
    frame = ci.noisy(ci.blurred(ci.scene(ci.Placement(ean_label())), sigma), 2.0)
    assert codes(decoder, frame) == [("EAN13", ISBN)]


def test_low_contrast() -> None:
    faded = ci.low_contrast(ci.scene(ci.Placement(accession_label())), 128, 140)
    assert codes(Decoder(), ci.noisy(faded, 2.0)) == [("CODE128", ACCESSION)]


def test_very_low_contrast_needs_the_stretch() -> None:
    # Four grey levels between bar and space: zbar alone sees no edges.
    faded = ci.low_contrast(ci.scene(ci.Placement(ean_label())), 130, 134)
    assert codes(Decoder(enhance=False), faded) == []
    assert codes(Decoder(enhance=True), faded) == [("EAN13", ISBN)]


def test_two_codes_in_one_frame(decoder: Decoder) -> None:
    frame = frame_with(ci.Placement(ean_label(), (0.5, 0.25)),
                       ci.Placement(accession_label(), (0.5, 0.75)))
    assert codes(decoder, frame) == [("CODE128", ACCESSION), ("EAN13", ISBN)]


def test_region_of_interest() -> None:
    frame = frame_with(ci.Placement(ean_label(), (0.5, 0.2)),
                       ci.Placement(accession_label(), (0.5, 0.75)))
    lower_half = Decoder(roi=Roi(top=0.5))
    assert codes(lower_half, frame) == [("CODE128", ACCESSION)]
    # Boxes are in the whole frame's pixels, not the region's.
    (symbol,) = lower_half.decode(frame)
    left, top, width, height = symbol.box
    assert 240 <= top + height / 2 <= 480 and 0 <= left < 640
    upper_half = Decoder(roi=Roi(bottom=0.5))
    assert codes(upper_half, frame) == [("EAN13", ISBN)]
    corner = Decoder(roi=Roi(left=0.0, top=0.0, right=0.2, bottom=0.2))
    assert codes(corner, frame) == []


def test_wrong_ean_check_digit_is_never_reported(decoder: Decoder) -> None:
    wrong = ISBN[:12] + str((int(ISBN[12]) + 1) % 10)
    frame = ci.scene(ci.Placement(ci.barcode("ean13", wrong)))
    assert codes(decoder, frame) == []


def test_code39_mod43_checked_and_stripped() -> None:
    good = ci.scene(ci.Placement(ci.barcode("code39", "GK-00123Z")))
    bad = ci.scene(ci.Placement(ci.barcode("code39", "GK-00123Y")))
    strict = Decoder(["CODE39"], code39_mod43=True)
    assert codes(strict, good) == [("CODE39", "GK-00123")]
    assert codes(strict, bad) == []
    assert strict.stats.rejected == 1
    # Without the option the check character is data like any other.
    assert codes(Decoder(["CODE39"]), bad) == [("CODE39", "GK-00123Y")]


def test_qr_code(decoder: Decoder) -> None:
    frame = frame_with(ci.Placement(ci.qr("HS-2026-0008"), angle=20))
    assert codes(decoder, frame) == [("QRCODE", "HS-2026-0008")]


@pytest.mark.parametrize("text", ["Dế Mèn phiêu lưu ký",            # zbar guesses Shift JIS
                                  "HS-2026-0008 Nguyễn Văn Đức"])  # zbar guesses UTF-8
def test_qr_with_vietnamese_text(decoder: Decoder, text: str) -> None:
    frame = ci.scene(ci.Placement(ci.qr(text)))
    assert codes(decoder, frame) == [("QRCODE", text)]


def test_only_configured_symbologies() -> None:
    frame = frame_with(ci.Placement(ean_label(), (0.5, 0.25)),
                       ci.Placement(accession_label(), (0.5, 0.75)))
    assert codes(Decoder(["EAN13"]), frame) == [("EAN13", ISBN)]
    assert codes(Decoder(["QRCODE"]), frame) == []


def test_upca_and_ean8() -> None:
    upca = ci.scene(ci.Placement(ci.barcode("upca", "03600029145")))
    assert codes(Decoder(["UPCA"]), upca) == [("UPCA", "036000291452")]
    # zbar reads UPC-A through its EAN-13 decoder; a real EAN-13 must not leak through.
    assert codes(Decoder(["UPCA"]), ci.scene(ci.Placement(ean_label()))) == []
    ean8 = ci.scene(ci.Placement(ci.barcode("ean8", "9638507")))
    assert codes(Decoder(["EAN8"]), ean8) == [("EAN8", "96385074")]


def test_color_frames(decoder: Decoder) -> None:
    frame = ci.bgr(ci.scene(ci.Placement(ean_label())))
    assert codes(decoder, frame) == [("EAN13", ISBN)]
    bgra = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    assert codes(decoder, bgra) == [("EAN13", ISBN)]


@pytest.mark.parametrize("junk", [
    None, b"\x00\xff" * 100, np.zeros((0, 0), np.uint8), np.zeros((48, 64), np.float32),
    np.zeros((48, 64, 2), np.uint8), [[0, 255], [255, 0]],
])
def test_junk_frames_raise_bad_frame(junk: object) -> None:
    decoder = Decoder()
    with pytest.raises(BadFrame):
        decoder.decode(junk)
    assert decoder.stats.bad_frames == 1


def test_random_noise_decodes_nothing(decoder: Decoder) -> None:
    rng = np.random.default_rng(11)
    assert decoder.decode(rng.integers(0, 256, (480, 640), dtype=np.uint8)) == []


# --- config -------------------------------------------------------------------------------

def test_config_defaults_and_registry() -> None:
    config = CameraScannerConfig()
    assert config.symbologies == ("EAN13", "CODE128", "CODE39", "QRCODE")
    assert SCANNERS["camera"] is CameraScanner
    assert isinstance(CameraScanner.from_config(config), CameraScanner)
    assert CameraScannerConfig(device="2").device == 2
    assert CameraScannerConfig(device="/dev/v4l/by-id/usb-cam-video-index0").device \
        == "/dev/v4l/by-id/usb-cam-video-index0"


@pytest.mark.parametrize("bad", [
    {"symbologies": ["EAN13", "PDF417"]},
    {"symbologies": []},
    {"symbologies": ["EAN13", "EAN13"]},
    {"roi": {"left": 0.6, "right": 0.4}},
    {"roi": {"top": 1.5}},
    {"device": " "},
    {"device": -1},
    {"max_decodes_per_second": 0},
    {"reconnect_initial": 5, "reconnect_max": 1},
    {"resolution": "640x480"},
])
def test_config_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CameraScannerConfig(**bad)


# --- the scanner --------------------------------------------------------------------------

class Collector:
    def __init__(self) -> None:
        self.reads: list[Read] = []
        self.threads: set[str] = set()
        self.event = threading.Event()

    def __call__(self, read: Read) -> None:
        self.threads.add(threading.current_thread().name)
        self.reads.append(read)
        self.event.set()

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reads]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def scanner_on(camera: ci.ScriptedCamera, **config: object) -> CameraScanner:
    settings: dict[str, object] = {"max_decodes_per_second": 240, "reconnect_initial": 0.02,
                                   "reconnect_max": 0.1, **config}
    return CameraScanner(CameraScannerConfig(**settings), frame_source=camera, clock=camera.clock)


def test_scanner_reads_from_its_frame_source() -> None:
    two = frame_with(ci.Placement(ean_label(), (0.5, 0.25)), ci.Placement(accession_label(), (0.5, 0.75)))
    camera = ci.ScriptedCamera([ci.empty(), two, ci.empty()])
    scanner, reads = scanner_on(camera), Collector()
    assert scanner.state == "absent"
    scanner.start(reads)
    try:
        assert camera.drained.wait(10)
        assert scanner.state == "ok" and scanner.last_error == ""
        assert sorted(reads.codes) == sorted([ISBN, ACCESSION])
        assert all(r.source == "barcode" and r.at == 0.5 for r in reads.reads)
        assert reads.threads == {"scanner-scanner"}  # the scanner's thread, not the caller's
    finally:
        scanner.stop()
    assert scanner.state == "absent"
    scanner.stop()  # twice is fine


def test_same_code_once_per_window() -> None:
    frame = frame_with(ci.Placement(ean_label()))
    camera = ci.ScriptedCamera([frame] * 12, step=0.25)  # 3 seconds of the same book
    scanner, reads = scanner_on(camera, repeat_window=1.0), Collector()
    scanner.start(reads)
    try:
        assert camera.drained.wait(10)
    finally:
        scanner.stop()
    assert [r.at for r in reads.reads] == [0.25, 1.25, 2.25]
    assert scanner.duplicates == 9


def test_decode_rate_is_capped() -> None:
    camera = ci.ScriptedCamera([ci.scene()] * 100, step=0.01)  # 100 frames in one second
    scanner = scanner_on(camera, max_decodes_per_second=10)
    scanner.start(Collector())
    try:
        assert camera.drained.wait(10)
    finally:
        scanner.stop()
    assert camera.frames_read == 100
    assert scanner.stats.frames == 10


def test_unplug_and_replug() -> None:
    camera = ci.ScriptedCamera([frame_with(ci.Placement(ean_label()))])
    scanner, reads = scanner_on(camera), Collector()
    scanner.start(reads)
    try:
        assert camera.drained.wait(10) and reads.codes == [ISBN]
        camera.unplug()
        wait_for(lambda: scanner.check() == "fault")
        assert "no frames" in scanner.last_error
        opens = camera.opens
        wait_for(lambda: camera.opens >= opens + 2)  # it keeps trying, with backoff
        assert scanner.state == "fault" and "no such device" in scanner.last_error
        camera.plug()
        camera.play(frame_with(ci.Placement(accession_label())))
        wait_for(lambda: len(reads.reads) == 2)
        assert scanner.check() == "ok" and scanner.last_error == ""
        assert reads.codes == [ISBN, ACCESSION]
    finally:
        scanner.stop()


def test_capture_error_is_a_fault_not_a_crash() -> None:
    camera = ci.ScriptedCamera([OSError("VIDIOC_DQBUF: No such device")] * 3
                               + [frame_with(ci.Placement(ean_label()))])
    faults: list[str] = []
    scanner, reads = scanner_on(camera), Collector()

    def on_read(read: Read) -> None:
        faults.append(scanner.last_error)
        reads(read)

    scanner.start(on_read)
    try:
        assert camera.drained.wait(10)
        assert reads.codes == [ISBN] and scanner.state == "ok"
        assert camera.opens == 2  # the fault closed the camera and it was opened again
    finally:
        scanner.stop()


def test_junk_frames_and_a_failing_handler_do_not_stop_the_scanner(caplog: pytest.LogCaptureFixture) -> None:
    good = frame_with(ci.Placement(ean_label()))
    camera = ci.ScriptedCamera(["junk", np.zeros((4, 4, 7), np.uint8), good,  # type: ignore[list-item]
                                frame_with(ci.Placement(accession_label()))])
    seen: list[str] = []

    def on_read(read: Read) -> None:
        seen.append(read.code)
        if read.code == ISBN:
            raise RuntimeError("the kiosk's handler failed")

    scanner = scanner_on(camera)
    scanner.start(on_read)
    try:
        assert camera.drained.wait(10)
    finally:
        scanner.stop()
    assert seen == [ISBN, ACCESSION]
    assert scanner.stats.bad_frames == 2 and scanner.state == "absent"


def test_missing_zbar_is_a_fault_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyzbar.pyzbar", None)  # as on a machine without it
    scanner = CameraScanner(CameraScannerConfig(), frame_source=ci.ScriptedCamera())
    scanner.start(Collector())
    try:
        assert scanner.check() == "fault"
        assert "pyzbar" in scanner.last_error and "libzbar0" in scanner.last_error
    finally:
        scanner.stop()


def test_missing_camera_device_is_a_fault() -> None:
    path = "/dev/v4l/by-id/usb-No_Such_Camera-video-index0"
    scanner = CameraScanner(CameraScannerConfig(device=path, reconnect_initial=0.05, reconnect_max=0.1))
    scanner.start(Collector())
    try:
        wait_for(lambda: scanner.check() == "fault")
        assert path in scanner.last_error
    finally:
        scanner.stop()
    assert scanner.state == "fault"  # stopping does not hide the fault it had


def test_still_camera_twin() -> None:
    twin = StillCamera(fps=50)
    scanner = CameraScanner(CameraScannerConfig(repeat_window=60, reconnect_initial=0.02,
                                                reconnect_max=0.05), frame_source=twin)
    reads = Collector()
    scanner.start(reads)
    try:
        wait_for(lambda: scanner.state == "ok")
        twin.show(frame_with(ci.Placement(ean_label())))
        assert reads.event.wait(10)
        time.sleep(0.3)  # the book stays in view: several more decodes, no new read
        assert reads.codes == [ISBN]
        twin.unplug()
        wait_for(lambda: scanner.check() == "fault")
        twin.plug()
        wait_for(lambda: scanner.check() == "ok")
    finally:
        scanner.stop()
