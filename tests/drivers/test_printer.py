"""Receipt printer drivers: configs, the bytes of a job, real transports on this machine
(a file, a TCP socket, a pseudo-terminal), and failures that come back as results."""

from __future__ import annotations

import os
import random
import socket
import threading
import tty

import pytest
from PIL import Image, ImageChops, ImageDraw
from pydantic import ValidationError

from drivers.printer import (
    PRINTERS,
    FilePrinter,
    FilePrinterConfig,
    NetworkPrinter,
    NetworkPrinterConfig,
    ReceiptPrinter,
    SerialPrinter,
    SerialPrinterConfig,
    SimulatedPrinter,
    SimulatedPrinterConfig,
    UsbPrinter,
    UsbPrinterConfig,
    create_printer,
    encode_tcvn3,
    register,
    width_dots,
)
from escpos_reader import read_job
from kiosk.config import DevicesConfig


def picture(width: int, height: int, seed: int = 1) -> Image.Image:
    """A 1-bit picture no two rows alike: any shifted, dropped or inverted bit shows."""
    rng = random.Random(seed)
    image = Image.frombytes("1", (width, height), rng.randbytes(width * height // 8))
    ImageDraw.Draw(image).rectangle((0, 0, width - 1, height - 1), outline=0)
    return image


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a.convert("L"), b.convert("L")).getbbox() is None


# --- configs -------------------------------------------------------------------------

def test_the_type_key_picks_the_config() -> None:
    devices = DevicesConfig.model_validate({"printer": {
        "type": "usb", "vendor_id": "0416", "product_id": "0x5011", "out_ep": "0x03", "paper_width_mm": 58}})
    assert isinstance(devices.printer, UsbPrinterConfig)
    assert (devices.printer.vendor_id, devices.printer.product_id, devices.printer.out_ep) == (0x0416, 0x5011, 3)
    assert DevicesConfig().printer is None
    serial = DevicesConfig.model_validate({"printer": {"type": "serial", "device": "/dev/ttyUSB0"}}).printer
    assert isinstance(serial, SerialPrinterConfig) and serial.baudrate == 115200
    network = DevicesConfig.model_validate({"printer": {"type": "network", "host": "192.0.2.7"}}).printer
    assert isinstance(network, NetworkPrinterConfig) and network.port == 9100


@pytest.mark.parametrize(("table", "complaint"), [
    ({"type": "lpt"}, "unknown printer type; expected one of: usb, serial, network, file, simulated"),
    ({"path": "/dev/usb/lp0"}, "unknown printer type"),
    ({"type": "usb", "vendor_id": "zz", "product_id": 1}, "not a hexadecimal USB id"),
    ({"type": "file", "path": "/dev/usb/lp0", "paper_width_mm": 76}, "paper_width_mm"),
    ({"type": "file", "path": "/dev/usb/lp0", "profile": "NoSuchPrinter"}, "unknown python-escpos printer profile"),
    ({"type": "file", "path": "/dev/usb/lp0", "vietnamese": "tcvn3"}, "needs a `profile`"),
    ({"type": "file", "path": "/dev/usb/lp0", "profile": "POS-5890", "vietnamese": "tcvn3"}, "needs a `profile`"),
    ({"type": "network", "host": "x", "colour": "red"}, "colour"),
])
def test_a_bad_printer_table_names_the_problem(table: dict, complaint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DevicesConfig.model_validate({"printer": table})
    assert complaint in str(caught.value)


def test_tcvn3_is_accepted_for_a_profile_that_declares_it() -> None:
    config = FilePrinterConfig(path="/dev/usb/lp0", profile="TM-T20II", vietnamese="tcvn3")
    assert config.vietnamese == "tcvn3"


@pytest.mark.parametrize(("mm", "profile", "dots", "columns"), [
    (58, None, 384, 32), (80, None, 576, 48), (80, "TM-T88V", 512, 42), (58, "POS-5890", 384, 32)])
def test_dots_per_line(mm: int, profile: str | None, dots: int, columns: int) -> None:
    printer = SimulatedPrinter(SimulatedPrinterConfig(paper_width_mm=mm, profile=profile))
    assert printer.width_dots == dots == width_dots(printer.config)
    assert printer.columns == columns


def test_registry_has_one_driver_per_type() -> None:
    assert set(PRINTERS) == {"usb", "serial", "network", "file", "simulated"}
    assert type(create_printer(FilePrinterConfig(path="/dev/usb/lp0"))) is FilePrinter
    assert type(create_printer(SimulatedPrinterConfig())) is SimulatedPrinter
    assert type(create_printer(UsbPrinterConfig(vendor_id=1, product_id=2))) is UsbPrinter

    class Another(SimulatedPrinter):
        type_key = "simulated"

    with pytest.raises(ValueError, match="two printer drivers claim type 'simulated'"):
        register(Another)
    assert PRINTERS["simulated"] is SimulatedPrinter


# --- the job -------------------------------------------------------------------------

@pytest.mark.parametrize("mm", [58, 80])
def test_an_image_job_is_init_raster_bands_feed_cut(mm: int) -> None:
    printer = SimulatedPrinter(SimulatedPrinterConfig(paper_width_mm=mm))
    image = picture(printer.width_dots, 600)
    result = printer.print_image(image)
    assert result.ok and result.error is None and printer.state == "ok"
    assert result.bytes_sent == len(printer.output)

    job = read_job(printer.output)
    assert job.names == ["init", "raster", "raster", "raster", "feed", "cut"]
    assert [band.height for band in job.bands] == [256, 256, 88]  # bands for small buffers
    assert {band.width for band in job.bands} == {printer.width_dots}
    assert dict(job.commands)["cut"] == 1  # partial: the slip hangs until torn off
    assert same_pixels(job.bitmap(), image)
    # 8 header bytes per band, one bit per dot.
    assert result.bytes_sent == 2 + 3 * 8 + printer.width_dots // 8 * 600 + 3 + 3


@pytest.mark.parametrize(("cut", "commands", "code"), [
    ("full", ["init", "raster", "feed", "cut"], 0),
    ("partial", ["init", "raster", "feed", "cut"], 1),
    ("none", ["init", "raster", "feed"], None)])
def test_cut_modes(cut: str, commands: list[str], code: int | None) -> None:
    printer = SimulatedPrinter(SimulatedPrinterConfig(paper_width_mm=58, cut=cut))
    assert printer.print_image(picture(384, 40)).ok
    job = read_job(printer.output)
    assert job.names == commands
    assert dict(job.commands).get("cut") == code


def test_a_narrower_image_prints_left_aligned_and_a_wider_one_is_refused() -> None:
    printer = SimulatedPrinter(SimulatedPrinterConfig(paper_width_mm=58))
    narrow = picture(200, 32)
    assert printer.print_image(narrow).ok
    printed = read_job(printer.output).bitmap()
    assert same_pixels(printed.crop((0, 0, 200, 32)), narrow)

    printer.jobs.clear()
    wide = printer.print_image(picture(576, 32))
    assert not wide.ok and wide.error == "bad_job" and "576 dots wide" in wide.detail
    assert printer.jobs == []


def test_cut_alone_and_raw_jobs() -> None:
    printer = SimulatedPrinter()
    assert printer.cut().ok
    assert read_job(printer.output).names == ["feed", "cut"]
    empty = printer.print_raw(b"")
    assert (empty.ok, empty.error) == (False, "empty")
    assert printer.print_raw(b"\x1b@hello\n").ok
    assert printer.jobs[-1] == b"\x1b@hello\n"


def test_text_is_refused_unless_the_printer_does_tcvn3() -> None:
    result = SimulatedPrinter().print_text(["xin chào"])
    assert (result.ok, result.error) == (False, "bad_job")


def test_tcvn3_encoding() -> None:
    pages = {"TCVN-3-1": 30, "TCVN-3-2": 31}
    # Lower case on page 30 (VN3: ế D5, ư AD, ờ EA), capitals on page 31; ASCII on either.
    assert encode_tcvn3("Hết giờ", pages) == b"H\x1bt\x1e\xd5t gi\xea"
    assert encode_tcvn3("ĐƯỜNG", pages) == b"\x1bt\x1f\xa7\xad\xeaNG"
    # Decomposed input is composed first; control characters never reach the printer.
    assert encode_tcvn3("e\u0302\u0301\x1b@\x07", pages) == b"\x1bt\x1e\xd5@"
    assert encode_tcvn3("日本", pages) == b"??"


# --- twins, faults and real transports -------------------------------------------------

def test_a_simulated_fault_sets_state_fault_and_clears() -> None:
    printer = SimulatedPrinter()
    assert printer.state == "absent"  # nothing tried yet
    assert printer.probe() == "ok"

    printer.inject_fault()
    result = printer.print_image(picture(576, 16))
    assert (result.ok, result.error, printer.state) == (False, "io", "fault")
    assert "simulated fault" in (printer.last_error or "")
    assert printer.jobs == []
    assert printer.probe() == "fault"

    printer.inject_fault("not_found", "unplugged")
    assert printer.print_image(picture(576, 16)).error == "not_found"

    printer.clear_fault()
    assert printer.print_image(picture(576, 16)).ok
    assert (printer.state, printer.last_error) == ("ok", None)


def test_configured_fault_and_absence() -> None:
    faulty = create_printer(SimulatedPrinterConfig(state="fault"))
    assert faulty.print_image(picture(576, 8)).error == "io"
    missing = create_printer(SimulatedPrinterConfig(state="absent"))
    assert missing.print_image(picture(576, 8)).error == "not_found"
    assert missing.state == "fault"


def test_paper_out_stops_the_job_and_paper_low_warns() -> None:
    printer = SimulatedPrinter()
    printer.set_paper("out")
    result = printer.print_image(picture(576, 16))
    assert (result.ok, result.error, printer.state) == (False, "paper_out", "fault")
    assert printer.jobs == []
    printer.set_paper("low")
    result = printer.print_image(picture(576, 16))
    assert result.ok and result.paper_low and printer.state == "ok"


def test_jobs_from_two_threads_do_not_interleave() -> None:
    printer = SimulatedPrinter(SimulatedPrinterConfig(paper_width_mm=58))
    images = [picture(384, 300, seed) for seed in range(6)]
    threads = [threading.Thread(target=printer.print_image, args=(image,)) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(printer.jobs) == 6
    printed = [read_job(job).bitmap() for job in printer.jobs]
    for image in images:
        assert sum(same_pixels(image, p) for p in printed) == 1


def test_a_device_file_receives_the_job(tmp_path) -> None:
    device = tmp_path / "lp0"
    device.touch()
    printer = FilePrinter(FilePrinterConfig(path=str(device), paper_width_mm=58))
    image = picture(384, 64)
    result = printer.print_image(image)
    assert result.ok and printer.state == "ok"
    assert same_pixels(read_job(device.read_bytes()).bitmap(), image)


def test_a_missing_device_file_is_a_result_not_an_exception(tmp_path) -> None:
    printer = FilePrinter(FilePrinterConfig(path=str(tmp_path / "usb" / "lp0")))
    result = printer.print_image(picture(576, 16))
    assert (result.ok, result.error, printer.state) == (False, "not_found", "fault")
    assert "lp0" in result.detail
    assert printer.probe() == "fault"


def _listen() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    return server


def test_a_network_printer_receives_the_job() -> None:
    server = _listen()
    received = bytearray()

    def accept() -> None:
        connection, _ = server.accept()
        with connection:
            while chunk := connection.recv(65536):
                received.extend(chunk)

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        printer = NetworkPrinter(NetworkPrinterConfig(host="127.0.0.1", port=server.getsockname()[1],
                                                      timeout_s=5))
        image = picture(576, 300)
        result = printer.print_image(image)
        thread.join(timeout=10)
    finally:
        server.close()
    assert result.ok and printer.state == "ok"
    assert same_pixels(read_job(bytes(received)).bitmap(), image)
    assert len(received) == result.bytes_sent


def test_a_refused_connection_is_a_result_not_an_exception() -> None:
    server = _listen()
    port = server.getsockname()[1]
    server.close()  # nothing listens there now
    printer = NetworkPrinter(NetworkPrinterConfig(host="127.0.0.1", port=port, timeout_s=2))
    result = printer.print_image(picture(576, 16))
    assert (result.ok, result.error, printer.state) == (False, "not_found", "fault")
    assert "refused" in result.detail.lower()


def test_a_serial_printer_receives_the_job() -> None:
    pytest.importorskip("serial", reason="pyserial drives serial printers")
    controller, device = os.openpty()
    tty.setraw(controller)
    received = bytearray()
    try:
        printer = SerialPrinter(SerialPrinterConfig(device=os.ttyname(device), paper_width_mm=58, timeout_s=5))
        image = picture(384, 40)

        def drain() -> None:
            expected = 2 + 8 + 48 * 40 + 3 + 3
            while len(received) < expected:
                received.extend(os.read(controller, 65536))

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        result = printer.print_image(image)
        reader.join(timeout=10)
    finally:
        os.close(controller)
        os.close(device)
    assert result.ok, result
    assert same_pixels(read_job(bytes(received)).bitmap(), image)


def test_a_missing_serial_port_or_usb_printer_is_a_result(tmp_path) -> None:
    serial = SerialPrinter(SerialPrinterConfig(device=str(tmp_path / "ttyUSB9")))
    result = serial.print_image(picture(576, 8))
    assert not result.ok and result.error in ("not_found", "unavailable") and serial.state == "fault"
    # No USB printer is attached here; without pyusb the driver says what is missing.
    usb = UsbPrinter(UsbPrinterConfig(vendor_id=0x0416, product_id=0x5011, timeout_s=1))
    result = usb.print_image(picture(576, 8))
    assert not result.ok and result.error in ("not_found", "unavailable") and usb.state == "fault"
    assert "0416:5011" in result.detail


def test_an_unexpected_driver_error_is_a_result() -> None:
    class Broken(SimulatedPrinter):
        type_key = "broken"

        def _open(self):  # type: ignore[no-untyped-def]
            raise KeyError("firmware said something odd")

    printer: ReceiptPrinter = Broken()
    result = printer.print_image(picture(576, 8))
    assert (result.ok, result.error, printer.state) == (False, "not_found", "fault")
