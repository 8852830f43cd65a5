"""GPIO through gpiozero, on gpiozero's own mock pins."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import TypeAdapter, ValidationError

from drivers.gpio import (
    GpioBoard,
    GpioConfig,
    GpioError,
    GpiozeroConfig,
    SimulatedGpio,
    SimulatedGpioConfig,
    create_gpio,
)

GATE_PINS = {
    "outputs": {"relay": {"pin": 17, "active_high": False}, "light_red": {"pin": 27},
                "buzzer": {"pin": 22}},
    "inputs": {"counter": {"pin": 23}, "bin_full": {"pin": 24, "pull_up": None, "active_state": True}},
}


@pytest.fixture
def board() -> SimulatedGpio:
    gpio = create_gpio(SimulatedGpioConfig.model_validate(GATE_PINS))
    assert isinstance(gpio, SimulatedGpio)
    yield gpio
    gpio.close()


def wait_until(condition, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def test_config_picks_the_driver_by_type() -> None:
    adapter = TypeAdapter(GpioConfig)
    assert isinstance(adapter.validate_python({"type": "gpiozero", **GATE_PINS}), GpiozeroConfig)
    assert isinstance(adapter.validate_python({"type": "simulated"}), SimulatedGpioConfig)
    with pytest.raises(ValidationError, match="unknown GPIO type"):
        adapter.validate_python({"type": "wiringpi"})


@pytest.mark.parametrize("bad, message", [
    ({"outputs": {"relay": {"pin": 17}}, "inputs": {"relay": {"pin": 18}}}, "either an output or an input"),
    ({"outputs": {"relay": {"pin": 17}, "buzzer": {"pin": 17}}}, "pin 17 is used twice"),
    ({"inputs": {"counter": {"pin": 23, "pull_up": None}}}, "needs active_state"),
    ({"inputs": {"counter": {"pin": 23, "pull_up": True, "active_state": True}}}, "only for inputs"),
    ({"outputs": {"relay": {"pin": 99}}}, "less than or equal to 53"),
    ({"outputs": {"relay": {"pin": 17, "colour": "red"}}}, "Extra inputs are not permitted"),
    ({"outputs": {"Relay!": {"pin": 17}}}, "String should match pattern"),
])
def test_bad_configs_are_refused_with_the_reason(bad: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SimulatedGpioConfig.model_validate(bad)


def test_outputs_switch_the_pins_at_their_active_level(board: SimulatedGpio) -> None:
    assert board.state == "ok" and board.last_error == ""
    # Nothing is on at start: a relay must not click while the station boots.
    assert not board.output("relay") and not board.output("light_red")
    assert board.pin("relay").state is True  # active low: off is a high pin
    assert board.on("relay") and board.output("relay")
    assert board.pin("relay").state is False
    assert board.on("light_red") and board.pin("light_red").state is True
    assert board.off("light_red") and not board.is_active("light_red")


def test_a_pulse_ends_by_itself_and_a_new_one_extends_it(board: SimulatedGpio) -> None:
    assert board.pulse("buzzer", 0.1)
    assert board.output("buzzer")
    board.pulse("buzzer", 0.4)  # a second alarm before the first ended
    assert wait_until(lambda: not board.output("buzzer"))
    # One on, one off: the second pulse did not flicker the buzzer, and the first one's
    # end did not cut it short (a slow machine only makes it longer).
    states = board.pin("buzzer").states
    assert [s.state for s in states] == [False, True, False]
    assert states[2].timestamp >= 0.4


def test_off_cancels_a_pulse(board: SimulatedGpio) -> None:
    board.pulse("light_red", 0.05)
    board.on("light_red")  # held on by hand: the pulse's end must not switch it off
    time.sleep(0.12)
    assert board.output("light_red")
    with pytest.raises(ValueError):
        board.pulse("light_red", 0)


def test_inputs_call_back_on_each_edge(board: SimulatedGpio) -> None:
    hits: list[str] = []
    board.when_activated("counter", lambda: hits.append("in"))
    board.when_deactivated("counter", lambda: hits.append("out"))
    board.trigger("counter", 3)
    assert hits == ["in", "out"] * 3
    # pull_up=True: active is a low pin (a contact to ground).
    board.drive("counter", True)
    assert board.pin("counter").state is False and board.is_active("counter")
    board.drive("bin_full", True)  # active_state=True: active is high
    assert board.pin("bin_full").state is True and board.is_active("bin_full")
    assert hits.count("in") == 4
    board.when_activated("counter", None)
    board.drive("counter", False)
    board.drive("counter", True)
    assert hits.count("in") == 4


def test_a_failing_callback_is_logged_not_raised(board: SimulatedGpio, caplog) -> None:
    def broken() -> None:
        raise RuntimeError("bug in the station")

    board.when_activated("counter", broken)
    board.trigger("counter")  # must not raise into gpiozero
    assert "callback of counter failed" in caplog.text


def test_unknown_names_are_clear_errors(board: SimulatedGpio) -> None:
    with pytest.raises(GpioError, match="no output called 'siren'.*relay, light_red, buzzer"):
        board.on("siren")
    with pytest.raises(GpioError, match="no input called 'door'"):
        board.when_activated("door", lambda: None)
    with pytest.raises(GpioError, match="no pin called 'door'"):
        board.is_active("door")


def test_callbacks_survive_a_reopen() -> None:
    gpio = SimulatedGpio(SimulatedGpioConfig.model_validate(GATE_PINS))
    hits: list[int] = []
    gpio.when_activated("counter", lambda: hits.append(1))  # registered before open
    assert gpio.open() == "ok"
    gpio.trigger("counter")
    gpio.close()
    assert gpio.state == "absent"
    assert not gpio.on("relay")  # closed: a no-op, not a crash
    gpio.open()
    gpio.trigger("counter")
    assert hits == [1, 1]
    gpio.close()


def test_real_pins_missing_is_a_fault_with_the_reason_and_no_crash() -> None:
    # This machine has no GPIO: gpiozero finds no pin factory (or no lgpio module).
    gpio = create_gpio(GpiozeroConfig.model_validate({"type": "gpiozero", **GATE_PINS}))
    assert gpio.state == "fault"
    assert gpio.last_error.startswith("cannot open the pins:")
    # gpiozero's reasons for each factory it tried are kept, not printed as warnings.
    assert "lgpio" in gpio.last_error and "RPi" in gpio.last_error
    assert not gpio.on("relay") and not gpio.pulse("relay", 0.1)
    assert not gpio.is_active("counter")
    gpio.close()
    forced = create_gpio(GpiozeroConfig(pin_factory="lgpio", outputs={"relay": {"pin": 17}}))
    assert forced.state == "fault" and "lgpio" in forced.last_error
    forced.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_board_that_failed_reopens_with_backoff() -> None:
    attempts: list[float] = []
    clock = Clock()
    working = threading.Event()

    def factory():
        from gpiozero.pins.mock import MockFactory

        attempts.append(clock.now)
        if not working.is_set():
            raise OSError("/dev/gpiochip0: no such device")
        return MockFactory()

    gpio = GpioBoard(GpiozeroConfig(outputs={"relay": {"pin": 17}}, reconnect_initial=1,
                                    reconnect_max=4), factory=factory, clock=clock)
    assert gpio.open() == "fault"
    assert "no such device" in gpio.last_error
    for now in (0.5, 1.0, 2.0, 3.0, 5.0):
        clock.now = now
        gpio.check()
    assert attempts == [0.0, 1.0, 3.0], "retries must back off: 1 s, then 2 s"
    working.set()
    clock.now = 7.0
    assert gpio.check() == "ok" and gpio.last_error == ""
    assert gpio.on("relay") and gpio.is_active("relay")
    gpio.close()
