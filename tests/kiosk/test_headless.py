"""The terminal station: what a person typing (or a wedge scanner) sees, against the real rules."""

from __future__ import annotations

import datetime as dt
import io
import os
import string
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import TypeAdapter

from drivers import SCANNERS, Read, ScannerConfig, SimulatedScanner, StdinScanner, create_scanner
from kiosk.config import SessionConfig, StationConfig
from kiosk.headless import command_of, render, run_headless
from kiosk.messages import MESSAGES, format_date, given_name, text
from kiosk.session import (
    Ignored,
    InactivityWarning,
    ItemBorrowed,
    ItemRefused,
    ItemReturned,
    PatronIdentified,
    PatronRefused,
    SessionEnded,
)
from protocol import CheckoutArgs, CheckoutResult, IdentifyArgs, LoanLine, Op, ReturnArgs

DE_MEN = "Dế Mèn phiêu lưu ký"


def station(**session: Any) -> StationConfig:
    return StationConfig(site="thcs-thu-nghiem", station="kiosk-1", session=SessionConfig(**session))


def run(lines: str, backend, language: str | None = None, **session: Any) -> str:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    run_headless(station(**session), backend, StdinScanner(io.StringIO(lines)), out,
                 language=language)  # type: ignore[arg-type]
    return out.getvalue()


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


# --- whole sessions at the terminal ----------------------------------------------------

def test_borrow_return_and_quit_at_the_terminal(backend, library) -> None:
    reference_only = library.refusal(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2024-0001", item="TK00003"))
    not_on_loan = library.refusal(Op.LOAN_RETURN, ReturnArgs(item="TN00003"))
    out = run("TN00001\n"
              "HS-2024-0001\n"
              "TN00001\n"
              "TN00001\n"       # the scanner's repeat: one loan, one line
              "TK00003\n"
              "xong\n"
              "Trả\n"
              "TN00003\n"
              "thoat\n"
              "HS-2024-0002\n",  # after quitting: never read
              backend)
    assert out.startswith("Thư viện - trạm kiosk-1\n  Library - station kiosk-1\n")
    assert "Gõ \"tra\" để trả sách, \"xong\" khi đã xong, \"thoat\" để thoát." in out
    expected = [
        "⚠ Hãy quét thẻ thư viện trước khi mượn sách. Muốn trả sách thì chọn Trả sách nhé.",
        "Xin chào An! Em có thể mượn thêm 3 cuốn.",
        "Hãy quét từng cuốn sách muốn mượn.",
        "✔ Đã mượn: Dế Mèn phiêu lưu ký. Hạn trả: 19/09/2026",
        f"✖ Chưa mượn được TK00003: {reference_only}",
        "Lần này đã mượn 1 cuốn:",
        "  • Dế Mèn phiêu lưu ký - Hạn trả: 19/09/2026",
        "Hẹn gặp lại nhé!",
        "» Trả sách: hãy quét từng cuốn sách cần trả.",
        f"✖ Chưa trả được TN00003: {not_on_loan}",
        "Chưa trả cuốn nào.",
        "Đã thoát. Hẹn gặp lại nhé!",
        "Tạm biệt! Hẹn gặp lại.",
    ]
    printed = out.splitlines()
    assert [line for line in printed if line in expected] == expected
    assert out.count("Đã mượn:") == 1
    assert "Bình" not in out
    assert library.loans_of("HS-2024-0001") == ["TN.00001"]


def test_end_of_input_finishes_the_session_first(backend, library) -> None:
    out = run("GV-0001\nTN00002\n", backend)
    assert "Xin chào thầy/cô Hà! Thầy/cô có thể mượn thêm 10 cuốn.\n" in out
    assert "✔ Đã mượn: Dế Mèn phiêu lưu ký. Hạn trả: 26/09/2026\n" in out
    assert out.endswith("Lần này đã mượn 1 cuốn:\n"
                        "  • Dế Mèn phiêu lưu ký - Hạn trả: 26/09/2026\n"
                        "Hẹn gặp lại nhé!\n\n"
                        "Tạm biệt! Hẹn gặp lại.\n  Goodbye! See you soon.\n")
    assert library.loans_of("GV-0001") == ["TN.00002"]


def test_a_blocked_reader_sees_why(backend) -> None:
    out = run("HS-2024-0003\nTN00001\n", backend)
    assert ("Xin chào Châu! Thẻ của em đang bị khóa nên chưa mượn được sách. Em vẫn trả sách được nhé.\n"
            "  ✖ Thư viện đang tạm khóa thẻ. Hãy gặp thầy cô thư viện nhé.\n") in out
    assert "✖ Chưa mượn được TN00001: Thẻ đang bị khóa nên chưa mượn được sách.\n" in out
    assert "Lần này chưa mượn cuốn nào.\n" in out


def test_an_unknown_card_shows_the_servers_sentence(backend, library) -> None:
    out = run("HS-9999-9999\n", backend)
    assert f"✖ {library.refusal(Op.PATRON_IDENTIFY, IdentifyArgs(card='HS-9999-9999'))}\n" in out


def test_a_late_return_says_how_late(backend, library) -> None:
    run("HS-2024-0001\nTN00001\nxong\n", backend)
    library.clock.advance(10)
    out = run("tra\nTN00001\ndone\n", backend)
    assert "✔ Đã trả: Dế Mèn phiêu lưu ký. Cảm ơn!\n  ⚠ Sách này trả muộn 3 ngày.\n" in out
    assert "Đã trả 1 cuốn. Cảm ơn!\nHẹn gặp lại nhé!\n" in out


def test_an_unreachable_server_is_said_plainly(network) -> None:
    network.down = True
    out = run("HS-2024-0001\n", network)
    assert "⚠ Chưa kết nối được với máy chủ thư viện. Hãy thử lại sau ít phút hoặc báo thầy cô thư viện nhé.\n" in out


def test_english_station(backend) -> None:
    out = run("HS-2024-0001\nTN00001\nquit\n", backend, language="en")
    assert "Hello An! You can borrow 3 more books.\nScan each book you want to borrow.\n" in out
    assert "✔ Borrowed: Dế Mèn phiêu lưu ký. Due: 19/09/2026\n" in out
    assert "Borrowed this time: 1\n  • Dế Mèn phiêu lưu ký - Due: 19/09/2026\nLogged out. See you soon!\n" in out


def test_stop_event_inactivity_and_a_simulated_scanner(backend, mono) -> None:
    scanner, stop, out = SimulatedScanner(), threading.Event(), io.StringIO()
    runner = threading.Thread(target=run_headless, args=(station(), backend, scanner, out),
                              kwargs={"stop": stop, "clock": mono, "tick_interval": 0.01})
    runner.start()
    try:
        wait_for(lambda: scanner.state == "ok")
        assert scanner.feed("HS-2024-0001")
        wait_for(lambda: "Xin chào An!" in out.getvalue())
        mono.advance(120)
        wait_for(lambda: "⚠ Còn ai ở đây không? Sau 20 giây máy sẽ tự kết thúc.\n" in out.getvalue())
        mono.advance(20)
        wait_for(lambda: "Lâu quá không thấy ai, máy đã tự kết thúc.\n" in out.getvalue())
        assert scanner.feed("GV-0001")
        wait_for(lambda: "Xin chào thầy/cô Hà!" in out.getvalue())
    finally:
        stop.set()
        runner.join(5)
    assert not runner.is_alive()
    assert out.getvalue().endswith("Đã thoát. Hẹn gặp lại nhé!\n\nTạm biệt! Hẹn gặp lại.\n  Goodbye! See you soon.\n")
    assert scanner.state == "absent" and not scanner.feed("TN00001")


# --- commands and rendering ------------------------------------------------------------

@pytest.mark.parametrize(("typed", "command"), [
    ("tra", "return"), ("Trả", "return"), ("TRẢ SÁCH", "return"), ("return", "return"),
    ("xong", "done"), ("Xong", "done"), ("done", "done"),
    ("thoat", "quit"), ("Thoát", "quit"), ("quit", "quit"), ("exit", "quit"),
    ("TN00001", None), ("HS-2024-0001", None), ("tran", None),
])
def test_commands_are_words_not_codes(typed: str, command: str | None) -> None:
    assert command_of(typed) == command


def test_render_greets_by_given_name_and_lists_loans() -> None:
    loans = (LoanLine(item="TN.00001", title=DE_MEN, due=dt.date(2026, 9, 19), overdue=True),)
    who = PatronIdentified("Nguyễn Thị Minh Khai", "student", "5A", loans, 2, ())
    assert render(who, "vi") == ("Xin chào Khai! Em có thể mượn thêm 2 cuốn.\n"
                                 "Sách đang mượn:\n"
                                 "  • Dế Mèn phiêu lưu ký - Hạn trả: 19/09/2026 (quá hạn!)\n"
                                 "Hãy quét từng cuốn sách muốn mượn.")
    full = PatronIdentified("Phạm Thu Hà", "teacher", None, (), 0, ())
    assert render(full, "vi") == "Xin chào thầy/cô Hà! Thầy/cô đã mượn đủ số sách được phép."


def test_render_uses_our_words_when_the_server_gave_none() -> None:
    assert render(PatronRefused("unknown_patron", None), "vi") == "✖ Không tìm thấy thẻ bạn đọc này."
    assert render(ItemRefused("TN00001", "internal", None), "vi") == \
        "✖ Chưa mượn được TN00001: Máy chủ thư viện trả lời không rõ. Hãy báo thầy cô thư viện nhé."
    assert render(ItemRefused("TN00001", "patron_blocked", None, ("new_rule",)), "en") == \
        "✖ Not borrowed TN00001: The card is blocked, so no book can be borrowed.\n  ✖ Please see the librarian."


def test_render_of_the_quiet_and_the_urgent() -> None:
    assert render(Ignored("TN00001", "duplicate")) == ""
    assert render(Ignored("HS-2024-0001", "same_card")) == "» Thẻ này đang được dùng rồi. Hãy quét sách nhé."
    assert render(InactivityWarning(19.2)) == "⚠ Còn ai ở đây không? Sau 20 giây máy sẽ tự kết thúc."
    assert render(ItemBorrowed("TN.00001", DE_MEN, dt.date(2026, 9, 19), 1)) == \
        "✔ Đã mượn: Dế Mèn phiêu lưu ký. Hạn trả: 19/09/2026"
    assert render(ItemReturned("TN.00001", DE_MEN, False, 0, 1)) == "✔ Đã trả: Dế Mèn phiêu lưu ký. Cảm ơn!"
    ended = SessionEnded("new_card", "borrow", borrowed=(
        CheckoutResult(item="TN.00001", title=DE_MEN, due=dt.date(2026, 9, 19)),))
    assert render(ended) == ("Lần này đã mượn 1 cuốn:\n  • Dế Mèn phiêu lưu ký - Hạn trả: 19/09/2026\n"
                             "Đã kết thúc lượt trước.")


def test_every_message_has_both_languages_with_the_same_fields() -> None:
    def fields(template: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}

    for key, table in MESSAGES.items():
        assert set(table) == {"vi", "en"}, key
        assert fields(table["vi"]) == fields(table["en"]), key
    assert text("item.borrowed", "fr", title="X", due="01/01/2027") == "Đã mượn: X. Hạn trả: 01/01/2027"


def test_names_and_dates_as_vietnamese_readers_write_them() -> None:
    assert given_name("Nguyễn Văn An") == "An"
    assert given_name("  Lê   Minh Châu ") == "Châu"
    assert given_name("") == ""
    assert format_date(dt.date(2026, 9, 5)) == "05/09/2026"


# --- the keyboard and its twin ---------------------------------------------------------

def test_stdin_scanner_reads_lines_as_a_wedge_types_them() -> None:
    stream = io.StringIO("\ufeffHS-2024-0001\r\n\n   \n TN00001\t\r\n\x02TN00002\x03\n")
    reads: list[Read] = []
    ended = threading.Event()
    scanner = StdinScanner(stream, clock=lambda: 42.0)
    assert scanner.state == "absent"
    scanner.start(reads.append, ended.set)
    assert ended.wait(5)
    assert reads == [Read("HS-2024-0001", "barcode", 42.0), Read("TN00001", "barcode", 42.0),
                     Read("TN00002", "barcode", 42.0)]
    assert scanner.state == "absent"  # the stream ended: nothing more will come


def test_stdin_scanner_delivers_each_line_of_a_pipe_as_it_arrives() -> None:
    read_end, write_end = os.pipe()
    reads: list[Read] = []
    ended = threading.Event()
    scanner = StdinScanner(os.fdopen(read_end, encoding="utf-8"))
    scanner.start(reads.append, ended.set)
    try:
        os.write(write_end, "TN00001\n".encode())
        wait_for(lambda: len(reads) == 1)
        assert scanner.state == "ok" and not ended.is_set()
    finally:
        os.close(write_end)
    assert ended.wait(5)
    assert [r.code for r in reads] == ["TN00001"]


def test_stdin_scanner_after_stop_drops_reads_and_does_not_report_eof() -> None:
    read_end, write_end = os.pipe()
    reads: list[Read] = []
    ended = threading.Event()
    scanner = StdinScanner(os.fdopen(read_end, encoding="utf-8"))
    scanner.start(reads.append, ended.set)
    scanner.stop()
    assert scanner.state == "absent"
    os.write(write_end, b"TN00001\n")
    os.close(write_end)
    time.sleep(0.2)
    assert reads == [] and not ended.is_set()


class FailingStream(io.StringIO):
    """A terminal that went away: the read fails as an unplugged device's does."""

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        raise OSError(5, "Input/output error")


def test_stdin_scanner_reports_a_failing_stream_as_a_fault() -> None:
    ended = threading.Event()
    scanner = StdinScanner(FailingStream())
    scanner.start(lambda read: None, ended.set)
    assert ended.wait(5)
    assert scanner.state == "fault"


def test_simulated_scanner_twin() -> None:
    reads: list[Read] = []
    ended: list[bool] = []
    scanner = SimulatedScanner(clock=lambda: 7.0)
    assert not scanner.feed("TN00001") and scanner.state == "absent"
    scanner.start(reads.append, lambda: ended.append(True))
    assert scanner.feed("TN00001", source="rfid") and reads == [Read("TN00001", "rfid", 7.0)]
    scanner.set_state("fault")
    assert scanner.state == "fault" and not scanner.feed("TN00002")
    scanner.set_state("ok")
    scanner.end()
    assert ended == [True] and scanner.state == "absent"


def test_every_registered_scanner_is_reachable_from_config() -> None:
    adapter = TypeAdapter(ScannerConfig)
    # The drivers of real devices need a port or a path: tests/drivers/test_registry.py.
    assert {"stdin", "simulated"} <= set(SCANNERS)
    for key in ("stdin", "simulated"):
        driver = SCANNERS[key]
        scanner = create_scanner(adapter.validate_python({"type": key, "name": "front"}))
        assert type(scanner) is driver and scanner.name == "front"
