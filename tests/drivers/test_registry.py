"""The driver registry shared by scanners, RFID readers and printers."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

import pytest
from pydantic import TypeAdapter, ValidationError

import drivers
from drivers.base import (
    SCANNERS,
    DriverConfig,
    Registry,
    SimulatedScannerConfig,
    StdinScannerConfig,
    _DriverConfig,
    create_scanner,
)
from drivers.printer import PRINTERS
from drivers.rfid.reader import RFID_READERS, reader_config_type
from kiosk.config import DevicesConfig


class LampConfig(DriverConfig):
    type: Literal["lamp"] = "lamp"
    watts: int = 5


class BellConfig(DriverConfig):
    type: Literal["bell"] = "bell"


class Device:
    type_key: ClassVar[str]
    config_model: ClassVar[type[DriverConfig]]

    def __init__(self, config: Any) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config: Any) -> Device:
        return cls(config)


class Lamp(Device):
    type_key = "lamp"
    config_model = LampConfig


class Bell(Device):
    type_key = "bell"
    config_model = BellConfig


@pytest.fixture
def registry() -> Registry[Device]:
    lights: Registry[Device] = Registry("signal light", default_type="lamp")
    lights.register(Lamp)
    lights.register(Bell)
    return lights


def test_configs_are_picked_by_type_and_made_into_drivers(registry: Registry[Device]) -> None:
    lamp = registry.parse({"type": "lamp", "watts": 7, "name": "door"})
    assert isinstance(lamp, LampConfig) and lamp.watts == 7
    assert isinstance(registry.parse({}), LampConfig)  # the default type
    assert isinstance(registry.parse({"type": "bell"}), BellConfig)
    made = registry.create(lamp)
    assert type(made) is Lamp and made.config is lamp
    assert dict(registry) == {"lamp": Lamp, "bell": Bell} and len(registry) == 2


def test_an_unknown_type_names_the_kind_and_the_known_types(registry: Registry[Device]) -> None:
    with pytest.raises(ValidationError,
                       match=r"unknown signal light type; expected one of: lamp, bell") as err:
        registry.parse({"type": "siren"})
    assert err.value.errors()[0]["type"] == "signal_light_type"
    with pytest.raises(ValidationError, match="Extra inputs"):
        registry.parse({"type": "bell", "watts": 3})
    with pytest.raises(ValueError, match="unknown signal light type.*got 'siren'"):
        registry.create(SimpleNamespace(type="siren"))


def test_registering_twice_or_a_class_that_is_not_a_driver_fails(registry: Registry[Device]) -> None:
    with pytest.raises(ValueError, match="two signal light drivers claim type 'lamp'"):
        registry.register(type("OtherLamp", (Lamp,), {}))
    with pytest.raises(TypeError, match="needs `type_key`, `config_model` and `from_config`"):
        registry.register(type("Half", (), {"type_key": "half"}))


def test_the_config_type_is_stable_until_a_driver_joins(registry: Registry[Device]) -> None:
    first = registry.config_type()
    assert registry.config_type() is first

    class HornConfig(DriverConfig):
        type: Literal["horn"] = "horn"

    registry.register(type("Horn", (Device,), {"type_key": "horn", "config_model": HornConfig}))
    widened = registry.config_type()
    assert widened is not first
    assert isinstance(TypeAdapter(widened).validate_python({"type": "horn"}), HornConfig)


def test_a_lone_driver_and_an_empty_registry() -> None:
    alone: Registry[Device] = Registry("bell")
    with pytest.raises(LookupError, match="no bell driver"):
        alone.config_type()
    alone.register(Bell)
    assert isinstance(alone.parse({"type": "bell"}), BellConfig)
    with pytest.raises(ValidationError, match="unknown bell type; expected one of: bell"):
        alone.parse({"type": "gong"})


@pytest.fixture
def driver_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Two built-in driver modules on disk: one imports, one is broken."""
    package = "h1_registry_builtin"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "good.py").write_text(textwrap.dedent("""
        from typing import Literal
        from drivers.base import DriverConfig
        from h1_registry_builtin.shared import SIGNALS

        class GongConfig(DriverConfig):
            type: Literal["gong"] = "gong"

        @SIGNALS.register
        class Gong:
            type_key = "gong"
            config_model = GongConfig

            @classmethod
            def from_config(cls, config):
                return cls()
    """))
    (tmp_path / package / "broken.py").write_text("import no_such_hardware_library\n")
    (tmp_path / package / "shared.py").write_text(textwrap.dedent("""
        from drivers.base import Registry
        SIGNALS = Registry("signal", builtin=("h1_registry_builtin.broken",
                                              "h1_registry_builtin.good"))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [m for m in sys.modules if m.startswith(package)]:
        del sys.modules[name]


def test_a_builtin_module_that_fails_to_import_leaves_the_others_working(
        driver_package: str, caplog: pytest.LogCaptureFixture) -> None:
    from h1_registry_builtin.shared import SIGNALS  # type: ignore[import-not-found]

    assert list(SIGNALS) == ["gong"]  # looking at the registry imports the built-ins
    assert "no_such_hardware_library" in SIGNALS.unavailable[f"{driver_package}.broken"]
    assert "signal drivers in h1_registry_builtin.broken are unavailable" in caplog.text
    assert type(SIGNALS.create(SIGNALS.parse({"type": "gong"}))).__name__ == "Gong"
    with pytest.raises(ValidationError, match=r"expected one of: gong \(not loaded: "
                                              r"h1_registry_builtin.broken: ModuleNotFoundError"):
        SIGNALS.parse({"type": "bell"})


# --- the three registries of the project ------------------------------------------------

def test_scanners_include_every_builtin_module_that_exists() -> None:
    assert {"stdin", "simulated", "serial", "evdev"} <= set(SCANNERS)
    assert list(SCANNERS)[:4] == ["stdin", "simulated", "serial", "evdev"]
    for key, driver in SCANNERS.items():
        assert driver.type_key == key
        assert driver.config_model.model_fields["type"].default == key


def test_every_scanner_type_is_reachable_from_the_config_union() -> None:
    adapter = TypeAdapter(drivers.ScannerConfig)
    assert drivers.ScannerConfig is SCANNERS.config_type()
    for key, driver in SCANNERS.items():
        # Each driver's own required fields are its business; the union must route to it.
        with pytest.raises(ValidationError) as err:
            adapter.validate_python({"type": key, "no_such_field": 1})
        assert err.value.errors()[0]["loc"][:1] == (key,), err.value.errors()
        assert driver.config_model.model_config.get("extra") == "forbid"
    assert isinstance(adapter.validate_python({}), StdinScannerConfig)
    with pytest.raises(ValidationError,
                       match="unknown scanner type; expected one of: stdin, simulated, serial, evdev"):
        adapter.validate_python({"type": "usb-magic"})


def test_the_old_names_still_work() -> None:
    assert _DriverConfig is DriverConfig
    assert type(create_scanner(SimulatedScannerConfig(name="front"))).__name__ == "SimulatedScanner"
    assert reader_config_type() is RFID_READERS.config_type()
    assert {"feig", "line", "simulated"} <= set(RFID_READERS)
    assert list(PRINTERS) == ["usb", "serial", "network", "file", "simulated"]
    from drivers.printer import PrinterConfig
    assert PrinterConfig is PRINTERS.config_type()


def test_a_station_may_add_a_card_reader_beside_its_scanner() -> None:
    devices = DevicesConfig.model_validate({"card": {"type": "simulated", "name": "card"}})
    assert isinstance(devices.scanner, StdinScannerConfig)
    assert isinstance(devices.card, SimulatedScannerConfig) and devices.card.name == "card"
    assert DevicesConfig().card is None
    with pytest.raises(ValidationError, match="unknown scanner type"):
        DevicesConfig.model_validate({"card": {"type": "magstripe"}})
