"""The touch screen, driven like a person would, against the real server and Mosquitto.

Each test runs one scenario of `ui_scenarios.py` in a kiosk process (SDL's offscreen
window) and checks here what the library recorded.
"""

from __future__ import annotations



from kiosk.link import MqttLink
from protocol import CheckoutArgs, Op
from protocol.configfile import MqttConfig
from thuvien.broker import free_port


def test_a_reader_borrows_two_books_one_is_refused(ui_library, run_kiosk_scenario) -> None:
    report = run_kiosk_scenario("borrow", ui_library)
    assert report["borrowed"] == 2
    assert ui_library.ledger() == [("checkout", "TN00001", "HS-2025-0001", "kiosk-1", None),
                                   ("checkout", "TN00002", "HS-2025-0001", "kiosk-1", None)]


def test_a_reader_returns_a_late_book_without_a_card(ui_library, run_kiosk_scenario) -> None:
    # Borrowed eleven days ago (due after 8 days, Sundays and holidays skipped): late today.
    ui_library.clock.advance(days=-11)
    link = MqttLink(ui_library.site, "desk-1", "desk", MqttConfig(host="127.0.0.1", port=ui_library.port))
    assert link.start(wait=10)
    try:
        reply = link.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2025-0001", item="TN00001"))
        assert reply.ok, reply
    finally:
        link.stop()
    ui_library.clock.advance(days=11)
    report = run_kiosk_scenario("return_books", ui_library)
    (_, _, _, _, _), (op, item, card, station, days_late) = ui_library.ledger()
    assert (op, item, card, station) == ("return", "TN00001", "HS-2025-0001", "kiosk-1")
    assert report["days_late"] == days_late > 0


def test_inactivity_warns_with_a_countdown_then_logs_out(ui_library, run_kiosk_scenario) -> None:
    report = run_kiosk_scenario("inactivity", ui_library,
                                session={"idle_timeout_s": 1.0, "warning_s": 2.0})
    assert 0.9 <= report["warned_after"] < 2.5
    assert report["ended_after"] >= 2.9


def test_answering_the_warning_keeps_the_session(ui_library, run_kiosk_scenario) -> None:
    run_kiosk_scenario("still_here", ui_library, session={"idle_timeout_s": 1.5, "warning_s": 1.5})


def test_staff_mode_checks_the_pin_locks_and_restarts(ui_library, run_kiosk_scenario) -> None:
    report = run_kiosk_scenario("staff", ui_library)
    assert report["exit"] == 75
    assert ui_library.ledger_count() == 0


def test_the_server_locks_unlocks_and_speaks(ui_library, run_kiosk_scenario) -> None:
    run_kiosk_scenario("server_commands", ui_library)


def test_offline_screen_when_the_library_cannot_be_reached(run_kiosk_scenario) -> None:
    run_kiosk_scenario("offline", None, port=free_port(), link_wait=0)


def test_one_touch_switches_the_language_everywhere(ui_library, run_kiosk_scenario) -> None:
    report = run_kiosk_scenario("language", ui_library)
    assert report["printed_bytes"] > 1000  # a raster receipt went to the (simulated) printer
    assert ui_library.ledger_count() == 1


def test_keyboard_wedge_bursts_are_scans_and_typing_is_not(ui_library, run_kiosk_scenario) -> None:
    report = run_kiosk_scenario("wedge", ui_library, ui={"scanner_max_key_interval_ms": 50})
    assert report["reads"] == ["TN.00002"]  # accession numbers, as the server answers
    assert [item for _op, item, *_ in ui_library.ledger()] == ["TN00002"]


def test_typed_codes_are_reads_where_the_config_accepts_them(ui_library, run_kiosk_scenario) -> None:
    run_kiosk_scenario("wedge_typed", ui_library, ui={"accept_typed": True})


def test_every_button_is_a_large_enough_touch_target(ui_library, run_kiosk_scenario) -> None:
    report = run_kiosk_scenario("touch_targets", ui_library)
    assert report["buttons"] >= 40


def test_a_stack_on_the_rfid_pad_is_lent_and_locked(ui_library, run_kiosk_scenario) -> None:
    report = run_kiosk_scenario("rfid_pad", ui_library, rfid=True)
    assert report["afi"] == [0xC2, 0xC2, 0x07]
    assert sorted(ui_library.ledger()) == [("checkout", "TN00001", "HS-2025-0001", "kiosk-1", None),
                                           ("checkout", "TN00002", "HS-2025-0001", "kiosk-1", None)]
