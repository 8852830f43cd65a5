"""GPIO through gpiozero: a gate's relay, lights and buzzer, a return box's sensors.

A station names its pins in `[devices.gpio]`: outputs (`relay`, `light_green`,
`light_red`, `buzzer`...) and inputs (`counter`, `bin_full`...), and the station code
only ever speaks of those names. Two drivers, picked by `type`:

- `gpiozero`: real pins through gpiozero's default pin factory (lgpio on a Pi 5,
  RPi.GPIO or lgpio on older Pis), or a factory named in the config;
- `simulated`: gpiozero's own `MockFactory`, the same gpiozero devices on mock pins, with
  `SimulatedGpio.drive` / `output` for tests and the demo.

gpiozero is imported only when the pins are opened: a station without it, or without
the pins (a laptop, a pin already taken), reports the state "fault" with `last_error`
and retries in `check()`; it never fails to start. Outputs on a faulty board are
no-ops that return False, so a gate without its relay still decides and reports.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from drivers.base import DeviceState

log = logging.getLogger("thuvien.drivers.gpio")

# BCM numbers (17) or any name gpiozero takes ("GPIO17", "BOARD11", "J8:11").
PinName = Annotated[int, Field(ge=0, le=53)] | Annotated[str, Field(pattern=r"^[A-Za-z0-9:]{1,16}$")]
PinKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class GpioError(Exception):
    """A pin the configuration does not name, or a board that cannot be used."""


# --- configs -------------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutputPinConfig(_Model):
    pin: PinName
    # False for relay boards that switch on a low level (most cheap opto-isolated ones).
    active_high: bool = True


class InputPinConfig(_Model):
    pin: PinName
    # True: the internal pull-up, the contact pulls the pin low when active (a switch to
    # ground); False: pull-down; None: an external resistor, and `active_state` says
    # which level is active.
    pull_up: bool | None = True
    active_state: bool | None = None
    # Seconds of contact bounce ignored after an edge (a light barrier needs none).
    bounce_time: float | None = Field(default=None, gt=0, le=5)

    @model_validator(mode="after")
    def _active_level_known(self) -> InputPinConfig:
        if self.pull_up is None and self.active_state is None:
            raise ValueError("an input without a pull resistor (pull_up = none) needs active_state")
        if self.pull_up is not None and self.active_state is not None:
            raise ValueError("active_state is only for inputs with pull_up = none; "
                             "the pull resistor already decides the active level")
        return self

    @property
    def active_level(self) -> bool:
        """The pin's level (True: high) when the input is active."""
        if self.pull_up is None:
            assert self.active_state is not None
            return self.active_state
        return not self.pull_up


class _GpioConfigBase(_Model):
    # The device's key in the station's status (`devices: {"gpio": "ok"}`).
    name: str = Field(default="gpio", pattern=r"^[a-z0-9_-]{1,32}$")
    outputs: dict[PinKey, OutputPinConfig] = Field(default_factory=dict)
    inputs: dict[PinKey, InputPinConfig] = Field(default_factory=dict)
    # Reopening the pins after a failure: first wait, doubled up to the max.
    reconnect_initial: float = Field(default=1.0, gt=0, le=60)
    reconnect_max: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _distinct(self) -> _GpioConfigBase:
        both = set(self.outputs) & set(self.inputs)
        if both:
            raise ValueError(f"{', '.join(sorted(both))}: a name is either an output or an input")
        pins = [str(p.pin) for p in self.outputs.values()] + [str(p.pin) for p in self.inputs.values()]
        doubles = sorted({p for p in pins if pins.count(p) > 1})
        if doubles:
            raise ValueError(f"pin {', '.join(doubles)} is used twice")
        return self


class GpiozeroConfig(_GpioConfigBase):
    type: Literal["gpiozero"] = "gpiozero"
    # "default" lets gpiozero choose (lgpio on a Pi 5); the others force one library.
    pin_factory: Literal["default", "lgpio", "rpigpio", "pigpio", "native"] = "default"


class SimulatedGpioConfig(_GpioConfigBase):
    type: Literal["simulated"] = "simulated"


def _gpio_type(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("type")
    return getattr(value, "type", None)


GpioConfig = Annotated[
    Annotated[GpiozeroConfig, Tag("gpiozero")] | Annotated[SimulatedGpioConfig, Tag("simulated")],
    Discriminator(_gpio_type, custom_error_type="gpio_type",
                  custom_error_message="unknown GPIO type; expected one of: gpiozero, simulated"),
]


# --- pin factories ----------------------------------------------------------------------------

def _named_factory(kind: str) -> Any:
    if kind == "default":
        return None  # gpiozero's own choice, made when the first device opens
    modules = {"lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
               "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
               "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
               "native": ("gpiozero.pins.native", "NativeFactory")}
    module_name, class_name = modules[kind]
    module = __import__(module_name, fromlist=[class_name])
    return getattr(module, class_name)()


def _mock_factory() -> Any:
    from gpiozero.pins.mock import MockFactory

    return MockFactory()


# --- the board ---------------------------------------------------------------------------------

Callback = Callable[[], None]


class GpioBoard:
    """The station's named pins. Safe to use from any thread.

    Input callbacks run on gpiozero's thread (on mock pins: the thread that drives the
    pin); a callback that raises is logged, never propagated into gpiozero.
    """

    type_key = "gpiozero"

    def __init__(self, config: GpiozeroConfig | SimulatedGpioConfig, *,
                 factory: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = config.name
        self.last_error = ""
        self._config = config
        self._factory_maker = factory or (lambda: _named_factory(getattr(config, "pin_factory", "default")))
        self._clock = clock
        self._lock = threading.RLock()
        self._factory: Any = None
        self._outputs: dict[str, Any] = {}
        self._inputs: dict[str, Any] = {}
        self._callbacks: dict[tuple[str, str], Callback] = {}
        self._generation: dict[str, int] = {}  # a pulse ends only if nothing came after it
        self._timers: set[threading.Timer] = set()
        self._state: DeviceState = "absent"
        self._wanted = False
        self._next_attempt = 0.0
        self._backoff = config.reconnect_initial

    @classmethod
    def from_config(cls, config: GpiozeroConfig) -> GpioBoard:
        return cls(config)

    # --- lifecycle ---

    @property
    def state(self) -> DeviceState:
        return self._state

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self._config.outputs)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self._config.inputs)

    def open(self) -> DeviceState:
        with self._lock:
            self._wanted = True
            self._next_attempt = self._clock()
            self._backoff = self._config.reconnect_initial
            self._connect_if_due()
            return self._state

    def check(self) -> DeviceState:
        with self._lock:
            if self._wanted and self._state == "fault":
                self._connect_if_due()
            return self._state

    def close(self) -> None:
        with self._lock:
            self._wanted = False
            for timer in list(self._timers):
                timer.cancel()
            self._timers.clear()
            self._release()
            self._state = "absent"

    def __enter__(self) -> GpioBoard:
        self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _connect_if_due(self) -> None:
        if self._clock() < self._next_attempt:
            return
        try:
            with warnings.catch_warnings(record=True) as fallbacks:
                # gpiozero warns once per factory it could not load; the reasons belong
                # in `last_error`, where the staff's device page shows them.
                warnings.simplefilter("always")
                self._build()
        except Exception as exc:  # ImportError, BadPinFactory, PinInvalidPin, GPIOPinInUse...
            self._release()
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            tried = "; ".join(str(w.message) for w in fallbacks)
            if tried:
                why = f"{why} ({tried})"
            if self._state != "fault" or why != self.last_error:
                log.error("gpio %s: cannot open the pins: %s", self.name, why)
            self.last_error = f"cannot open the pins: {why}"
            self._state = "fault"
            self._next_attempt = self._clock() + self._backoff
            self._backoff = min(self._backoff * 2, self._config.reconnect_max)
            return
        if self._state == "fault":
            log.info("gpio %s: ok again", self.name)
        self.last_error = ""
        self._state = "ok"
        self._backoff = self._config.reconnect_initial

    def _build(self) -> None:
        from gpiozero import DigitalInputDevice, DigitalOutputDevice

        self._release()  # what a failed output left open
        self._factory = self._factory_maker()
        for key, out in self._config.outputs.items():
            # initial_value=False: a relay must never click while a station starts.
            self._outputs[key] = DigitalOutputDevice(out.pin, active_high=out.active_high,
                                                     initial_value=False, pin_factory=self._factory)
        for key, inp in self._config.inputs.items():
            device = DigitalInputDevice(inp.pin, pull_up=inp.pull_up, active_state=inp.active_state,
                                        bounce_time=inp.bounce_time, pin_factory=self._factory)
            self._inputs[key] = device
        for (key, edge), callback in self._callbacks.items():
            self._attach(key, edge, callback)

    def _release(self) -> None:
        for device in [*self._outputs.values(), *self._inputs.values()]:
            try:
                device.close()
            except Exception as exc:  # closing must never stop the station
                log.debug("gpio %s: closing %s: %s", self.name, device, exc)
        self._outputs.clear()
        self._inputs.clear()
        factory, self._factory = self._factory, None
        close = getattr(factory, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:
                log.debug("gpio %s: closing the pin factory: %s", self.name, exc)

    # --- outputs ---

    def _output_key(self, key: str) -> str:
        if key not in self._config.outputs:
            raise GpioError(f"gpio {self.name}: no output called {key!r} "
                            f"(outputs: {', '.join(self._config.outputs) or 'none'})")
        return key

    def _set(self, key: str, active: bool) -> bool:
        device = self._outputs.get(key)
        if device is None:
            return False
        try:
            device.on() if active else device.off()
        except Exception as exc:
            self.last_error = f"output {key}: {type(exc).__name__}: {exc}"
            log.error("gpio %s: %s", self.name, self.last_error)
            self._state = "fault"
            self._next_attempt = self._clock() + self._backoff
            return False
        return True

    def on(self, key: str) -> bool:
        """Switch an output on; False when the board is not working."""
        with self._lock:
            key = self._output_key(key)
            self._generation[key] = self._generation.get(key, 0) + 1
            return self._set(key, True)

    def off(self, key: str) -> bool:
        with self._lock:
            key = self._output_key(key)
            self._generation[key] = self._generation.get(key, 0) + 1
            return self._set(key, False)

    def pulse(self, key: str, seconds: float) -> bool:
        """On now, off after `seconds` unless `on`/`off`/`pulse` came in between (a new
        alarm during an alarm extends it)."""
        if not seconds > 0:
            raise ValueError(f"a pulse lasts more than 0 seconds, not {seconds!r}")
        with self._lock:
            key = self._output_key(key)
            generation = self._generation.get(key, 0) + 1
            self._generation[key] = generation
            done = self._set(key, True)
            timer = threading.Timer(seconds, self._end_pulse, args=(key, generation))
            timer.daemon = True
            self._timers.add(timer)
            timer.start()
            return done

    def _end_pulse(self, key: str, generation: int) -> None:
        with self._lock:
            self._timers.discard(threading.current_thread())  # type: ignore[arg-type]
            if self._generation.get(key) == generation:
                self._set(key, False)

    # --- inputs and state ---

    def is_active(self, key: str) -> bool:
        """Whether an output is on or an input active; False when the board is not working."""
        with self._lock:
            if key not in self._config.outputs and key not in self._config.inputs:
                raise GpioError(f"gpio {self.name}: no pin called {key!r}")
            device = self._device(key)
            if device is None:
                return False
            try:
                return bool(device.is_active)
            except Exception as exc:
                self.last_error = f"{key}: {type(exc).__name__}: {exc}"
                return False

    def _device(self, key: str) -> Any:
        # Not `a or b`: whether a gpiozero device is truthy is not ours to rely on.
        if key in self._outputs:
            return self._outputs[key]
        return self._inputs.get(key)

    def when_activated(self, key: str, callback: Callback | None) -> None:
        self._on_edge(key, "when_activated", callback)

    def when_deactivated(self, key: str, callback: Callback | None) -> None:
        self._on_edge(key, "when_deactivated", callback)

    def _on_edge(self, key: str, edge: str, callback: Callback | None) -> None:
        with self._lock:
            if key not in self._config.inputs:
                raise GpioError(f"gpio {self.name}: no input called {key!r} "
                                f"(inputs: {', '.join(self._config.inputs) or 'none'})")
            if callback is None:
                self._callbacks.pop((key, edge), None)
            else:
                self._callbacks[(key, edge)] = callback
            if key in self._inputs:
                self._attach(key, edge, callback)

    def _attach(self, key: str, edge: str, callback: Callback | None) -> None:
        if callback is None:
            setattr(self._inputs[key], edge, None)
            return

        def guarded() -> None:
            try:
                callback()
            except Exception:
                log.exception("gpio %s: the %s callback of %s failed", self.name, edge, key)

        setattr(self._inputs[key], edge, guarded)


class SimulatedGpio(GpioBoard):
    """The board on gpiozero's mock pins; `drive` plays the sensors, `output` reads lamps."""

    type_key = "simulated"

    def __init__(self, config: SimulatedGpioConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, factory=_mock_factory, clock=clock)

    @classmethod
    def from_config(cls, config: SimulatedGpioConfig) -> SimulatedGpio:  # type: ignore[override]
        return cls(config)

    def pin(self, key: str) -> Any:
        """The `MockPin` behind a name (its `states` history is what tests read)."""
        with self._lock:
            device = self._device(key)
            if device is None:
                raise GpioError(f"gpio {self.name}: pin {key!r} is not open")
            return device.pin

    def drive(self, key: str, active: bool) -> None:
        """Make an input active or inactive, as its sensor would, at the right level."""
        config = self._config.inputs.get(key)
        if config is None:
            raise GpioError(f"gpio {self.name}: no input called {key!r}")
        pin = self.pin(key)
        # Not under the lock: mock pins call the callbacks on this thread.
        pin.drive_high() if config.active_level == active else pin.drive_low()

    def trigger(self, key: str, times: int = 1) -> None:
        """`times` activations of an input: a counter's light barrier broken and restored."""
        for _ in range(times):
            self.drive(key, True)
            self.drive(key, False)

    def output(self, key: str) -> bool:
        """Whether an output is on (its logical state, whatever `active_high` says)."""
        return self.is_active(self._output_key(key))


GPIO_DRIVERS: dict[str, type[GpioBoard]] = {"gpiozero": GpioBoard, "simulated": SimulatedGpio}


def create_gpio(config: GpiozeroConfig | SimulatedGpioConfig) -> GpioBoard:
    """The board for `config`, opened (a board that cannot open is "fault", not an error)."""
    board = GPIO_DRIVERS[config.type].from_config(config)  # type: ignore[arg-type]
    board.open()
    return board
