"""The systemd units parse cleanly (systemd-analyze verify) and say what we mean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "systemd"
SERVER = UNITS / "thuvien-server.service"
STATION = UNITS / "thuvien-station@.service"
KIOSK = UNITS / "thuvien-kiosk@.service"
BACKUP = UNITS / "thuvien-backup.service"
BACKUP_TIMER = UNITS / "thuvien-backup.timer"
REAL_BINARY = "/opt/thuvien/.venv/bin/thuvien"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze") or (
        "/usr/bin/systemd-analyze" if Path("/usr/bin/systemd-analyze").exists() else None
    )
    if found is None:
        # Not a skip: CI installs systemd, and an unchecked unit file must not pass.
        pytest.fail("systemd-analyze is not installed (apt-get install systemd); cannot verify the units")
    return found


def copy_for_verify(unit: Path, dest: Path, name: str | None = None) -> Path:
    """A copy whose ExecStart runs /bin/true: verify insists that the binary exists."""
    text = unit.read_text(encoding="utf-8")
    text, count = re.subn(rf"^ExecStart={re.escape(REAL_BINARY)} ", "ExecStart=/bin/true ", text, flags=re.M)
    assert count == 1, f"{unit.name}: expected one ExecStart running {REAL_BINARY}"
    copy = dest / (name or unit.name)
    copy.write_text(text, encoding="utf-8")
    return copy


def verify(unit: Path) -> None:
    result = subprocess.run(
        # Only our unit's own problems: --recursive-errors=no keeps a broken unit elsewhere
        # on the machine (mosquitto.service, say) from failing this test.
        [systemd_analyze(), "verify", "--recursive-errors=no", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=unit.parent,
    )
    output = (result.stdout + result.stderr).strip()
    # verify exits 0 on unknown keys and unparsable values; it only prints them, naming
    # the file or the unit, so any line naming ours is a defect.
    ours = [line for line in output.splitlines() if "thuvien" in line or str(unit.parent) in line]
    assert result.returncode == 0, output
    assert not ours, "\n".join(ours)


def test_server_unit_verifies(tmp_path: Path) -> None:
    verify(copy_for_verify(SERVER, tmp_path))


def test_station_template_verifies(tmp_path: Path) -> None:
    verify(copy_for_verify(STATION, tmp_path))


def test_station_instance_verifies(tmp_path: Path) -> None:
    verify(copy_for_verify(STATION, tmp_path, "thuvien-station@kiosk-1.service"))


def test_kiosk_instance_verifies(tmp_path: Path) -> None:
    verify(copy_for_verify(KIOSK, tmp_path, "thuvien-kiosk@kiosk-1.service"))


def test_backup_service_and_timer_verify(tmp_path: Path) -> None:
    copy_for_verify(BACKUP, tmp_path)
    timer = tmp_path / BACKUP_TIMER.name
    timer.write_text(BACKUP_TIMER.read_text(encoding="utf-8"), encoding="utf-8")
    verify(tmp_path / BACKUP.name)
    verify(timer)  # finds the service it starts beside it


def test_backup_runs_nightly_as_thuvien() -> None:
    s = settings(BACKUP)
    assert s["Service.Type"] == ["oneshot"]
    assert s["Service.ExecStart"] == [f"{REAL_BINARY} backup --config /etc/thuvien/server.toml"]
    assert s["Service.User"] == ["thuvien"]
    assert s["Service.StateDirectory"] == ["thuvien"]
    assert s["Service.ProtectSystem"] == ["strict"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[f"Service.{key}"] == ["yes"]
    assert "Service.Restart" not in s  # a failed night shows as failed; the next night retries
    t = settings(BACKUP_TIMER)
    assert t["Timer.Persistent"] == ["true"]
    assert t["Timer.OnCalendar"] == ["*-*-* 02:30:00"]
    assert t["Timer.RandomizedDelaySec"] == ["1h"]
    assert t["Timer.Unit"] == ["thuvien-backup.service"]
    assert t["Install.WantedBy"] == ["timers.target"]


def test_kiosk_draws_on_the_console_without_a_desktop() -> None:
    s = settings(KIOSK)
    assert "SDL_VIDEODRIVER=kmsdrm" in s["Service.Environment"]
    assert s["Service.TTYPath"] == ["/dev/tty1"]
    assert s["Unit.Conflicts"] == ["getty@tty1.service"]
    assert {"video", "render", "input"} <= set(" ".join(s["Service.SupplementaryGroups"]).split())


def test_verify_catches_a_typo(tmp_path: Path) -> None:
    """The check above must be able to fail: a misspelt key is only a warning to systemd."""
    broken = copy_for_verify(SERVER, tmp_path)
    broken.write_text(broken.read_text().replace("Restart=on-failure", "Restrt=on-failure"))
    with pytest.raises(AssertionError, match="Restrt"):
        verify(broken)


def settings(unit: Path) -> dict[str, list[str]]:
    """'Section.Key' -> values, in order (systemd keys may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


@pytest.mark.parametrize(
    ("unit", "exec_start", "credential"),
    [
        (SERVER, f"{REAL_BINARY} server --config /etc/thuvien/server.toml", "thuvien-server-mqtt"),
        (STATION, f"{REAL_BINARY} kiosk --config /etc/thuvien/stations/%i.toml --headless", "%i-mqtt"),
        (KIOSK, f"{REAL_BINARY} kiosk --config /etc/thuvien/stations/%i.toml", "%i-mqtt"),
    ],
)
def test_units_run_as_thuvien_with_a_credential(unit: Path, exec_start: str, credential: str) -> None:
    s = settings(unit)
    assert s["Service.ExecStart"] == [exec_start]
    assert s["Service.User"] == ["thuvien"]
    assert s["Service.Restart"] == ["on-failure"]
    assert s["Service.RestartSec"] == ["2"]
    assert s["Service.StateDirectory"] == ["thuvien"]
    assert s["Service.LoadCredential"] == [f"mqtt-password:/etc/thuvien/credentials/{credential}"]
    assert "mosquitto.service" in s["Unit.After"][0].split()
    assert s["Install.WantedBy"] == ["multi-user.target"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[f"Service.{key}"] == ["yes"]
    assert s["Service.ProtectSystem"] == ["strict"]
    # The program sends no sd_notify yet: a watchdog would kill it every interval.
    assert "Service.WatchdogSec" not in s
    assert s.get("Service.Type", ["simple"]) == ["simple"]


def test_station_can_reach_its_devices() -> None:
    s = settings(STATION)
    assert {"dialout", "input", "plugdev"} <= set(" ".join(s["Service.SupplementaryGroups"]).split())
    assert "Service.PrivateDevices" not in s
