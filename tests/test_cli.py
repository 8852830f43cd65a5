"""The `thuvien` command as an administrator meets it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def thuvien(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "thuvien.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_example_configs_are_valid() -> None:
    for name in ("server.example.toml", "station.example.toml"):
        run = thuvien("check-config", str(ROOT / "config" / name))
        assert run.returncode == 0, run.stderr
        assert "OK" in run.stdout


def test_a_bad_config_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "server.toml"
    bad.write_text('site = "truong-a"\nschool_name = "A"\n\n[database]\nurl = "sqlite:///x.db"\n'
                   'sqlite_synchronous = "SOMETIMES"\n', encoding="utf-8")
    run = thuvien("check-config", str(bad))
    assert run.returncode == 1
    assert f"{bad}:6: database.sqlite_synchronous:" in run.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text('site = "truong-a"\nschool_name = "A\n', encoding="utf-8")
    run = thuvien("server", "--config", str(broken), "--check-config")
    assert run.returncode == 1 and f"{broken}:2:" in run.stderr and "not valid TOML" in run.stderr


def test_db_upgrade_seed_and_a_server_that_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(f'site = "truong-a"\nschool_name = "A"\n[database]\n'
                      f'url = "sqlite:///{tmp_path / "lib.db"}"\n', encoding="utf-8")
    refused = thuvien("server", "--config", str(config))
    assert refused.returncode == 1 and "thuvien db upgrade" in refused.stderr

    upgraded = thuvien("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    assert "is at schema 0001" in upgraded.stdout

    seeded = thuvien("seed-demo", "--config", str(config))
    assert seeded.returncode == 0, seeded.stderr
    assert "400 học sinh" in seeded.stdout and "GV-0001" in seeded.stdout
    again = thuvien("seed-demo", "--config", str(config))
    assert again.returncode == 1 and again.stderr.strip()
