"""The station's config file: good files load, bad ones name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers import SimulatedScanner, StdinScanner, create_scanner
from kiosk.config import StationConfig, load
from protocol.configfile import ConfigError

GOOD = """\
version = 1
site = "thcs-nhut-tao"
station = "kiosk-1"
kind = "kiosk"
language = "vi"

[mqtt]
host = "127.0.0.1"
port = 1883

[session]
idle_timeout_s = 90
warning_s = 15

[devices.scanner]
type = "simulated"
state = "fault"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_good_file_loads(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD))
    assert (config.site, config.station, config.kind, config.language) == (
        "thcs-nhut-tao", "kiosk-1", "kiosk", "vi")
    assert (config.session.idle_timeout_s, config.session.warning_s) == (90, 15)
    assert config.session.duplicate_window_s == 3.0  # defaults fill the rest
    scanner = create_scanner(config.devices.scanner)
    assert isinstance(scanner, SimulatedScanner) and scanner.name == "scanner"


def test_the_smallest_file_gets_the_keyboard_and_the_card_pattern(tmp_path: Path) -> None:
    config = load(write(tmp_path, 'site = "s"\nstation = "k"\n'))
    assert isinstance(create_scanner(config.devices.scanner), StdinScanner)
    assert config.mqtt.host == "localhost"
    cards = ["HS-2024-0153", "hs-2024-0153", "GV-0007", "CB-0001", "7901234561"]
    items = ["TN00001", "TK.00003", "HS-20240", "790123456", "GV-00071", "9786040000000"]
    assert [c for c in cards if config.session.patron_re.fullmatch(c)] == cards
    assert [i for i in items if config.session.patron_re.fullmatch(i)] == []


def test_a_scanner_table_without_type_is_the_keyboard(tmp_path: Path) -> None:
    config = load(write(tmp_path, 'site = "s"\nstation = "k"\n[devices.scanner]\nname = "wedge"\n'))
    scanner = create_scanner(config.devices.scanner)
    assert isinstance(scanner, StdinScanner) and scanner.name == "wedge"


@pytest.mark.parametrize(("change", "line", "field", "words"), [
    # a wrong type
    (("idle_timeout_s = 90", 'idle_timeout_s = "long"'), 12, "session.idle_timeout_s", "number"),
    # an unknown key
    (("warning_s = 15", "warning_s = 15\nwarn_s = 5"), 14, "session.warn_s", "Extra inputs"),
    # a pattern that does not compile
    (("warning_s = 15", 'warning_s = 15\npatron_pattern = "^(HS-"'), 14, "session.patron_pattern",
     "regular expression"),
    # a station id the broker's ACLs could not use
    (('station = "kiosk-1"', 'station = "Kiosk 1"'), 3, "station", "a-z, 0-9"),
    (('site = "thcs-nhut-tao"', 'site = "thcs_nhut_tao"'), 2, "site", "a-z, 0-9"),
    (('kind = "kiosk"', 'kind = "robot"'), 4, "kind", "'kiosk'"),
    (('type = "simulated"', 'type = "usb-magic"'), 16, "devices.scanner.type", "stdin, simulated"),
    (("version = 1", "version = 2"), 1, "version", "1"),
])
def test_a_bad_file_names_the_file_the_line_and_the_field(
        tmp_path: Path, change: tuple[str, str], line: int, field: str, words: str) -> None:
    assert change[0] in GOOD
    path = write(tmp_path, GOOD.replace(change[0], change[1]))
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: {field}: "), message
    assert words in message


def test_a_missing_station_id_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, 'site = "s"\n')
    with pytest.raises(ConfigError, match=r"station\.toml:1: station: Field required"):
        load(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "nowhere.toml"))


def test_configs_are_strict_objects_too() -> None:
    with pytest.raises(ValueError):
        StationConfig(site="s", station="k", screen=True)  # type: ignore[call-arg]


def test_a_config_dumped_and_read_back_is_the_same_config() -> None:
    # A station hands its config to a child process as a dump: every field is then
    # given, defaults included, and must still validate (the SIP2 options once refused).
    from kiosk.config import StationConfig

    config = StationConfig.model_validate({"site": "thcs-a", "station": "kiosk-1"})
    assert StationConfig.model_validate(config.model_dump()) == config
    sip2 = StationConfig.model_validate({"site": "thcs-a", "station": "kiosk-1",
                                         "backend": {"url": "sip2://127.0.0.1:6001", "username": "k"}})
    assert StationConfig.model_validate(sip2.model_dump()) == sip2
