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
    for name in ("server.example.toml", "station.example.toml", "gate.example.toml",
                 "returnbox.example.toml"):
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
    from server.db import head_revision

    assert f"is at schema {head_revision()}" in upgraded.stdout and head_revision() != "0001"

    seeded = thuvien("seed-demo", "--config", str(config))
    assert seeded.returncode == 0, seeded.stderr
    assert "400 học sinh" in seeded.stdout and "GV-0001" in seeded.stdout
    again = thuvien("seed-demo", "--config", str(config))
    assert again.returncode == 1 and again.stderr.strip()


def test_import_readers_from_a_csv_with_a_preamble(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(f'site = "truong-a"\nschool_name = "A"\n[database]\n'
                      f'url = "sqlite:///{tmp_path / "lib.db"}"\n', encoding="utf-8")
    assert thuvien("db", "upgrade", "--config", str(config)).returncode == 0
    sheet = tmp_path / "hoc-sinh.csv"
    sheet.write_text("DANH SÁCH HỌC SINH\nTrường THCS A\n\n"
                     "STT;Mã định danh Bộ GD&ĐT;Họ và tên;Ngày sinh;Giới tính;Lớp học;Khối học\n"
                     "1;0101234567;Nguyễn Văn Tèo;01/02/2014;Nam;6A1;Khối 6\n"
                     "2;123;Lê Thị Hoa;02/03/2014;Nữ;6A1;Khối 6\n", encoding="utf-8")
    run = thuvien("import", "readers", str(sheet), "--config", str(config))
    assert run.returncode == 3, run.stderr  # imported, with a row not taken
    assert "1 mới / new" in run.stdout
    assert "dòng / row 6: Mã định danh phải có đúng 10 chữ số" in run.stdout
    again = thuvien("import", "readers", str(sheet), "--config", str(config))
    assert "0 mới / new" in again.stdout and "1 không đổi / unchanged" in again.stdout


def test_export_then_import_the_catalogue_as_marc(tmp_path: Path) -> None:
    source, target = tmp_path / "a.toml", tmp_path / "b.toml"
    for config, name in ((source, "a.db"), (target, "b.db")):
        config.write_text(f'site = "truong-a"\nschool_name = "A"\n[database]\n'
                          f'url = "sqlite:///{tmp_path / name}"\n', encoding="utf-8")
        assert thuvien("db", "upgrade", "--config", str(config)).returncode == 0
    assert thuvien("seed-demo", "--config", str(source)).returncode == 0
    marc = tmp_path / "catalogue.xml"
    exported = thuvien("export", "catalogue", str(marc), "--format", "marcxml", "--config", str(source))
    assert exported.returncode == 0, exported.stderr
    count = int(exported.stdout.split("exported ")[1].split()[0])
    assert count > 300
    imported = thuvien("import", "catalogue", str(marc), "--config", str(target))
    assert imported.returncode == 0, imported.stderr
    assert f"{count} đầu sách mới / new titles" in imported.stdout
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"not marc at all" * 10)
    refused = thuvien("import", "catalogue", str(junk), "--config", str(target))
    assert refused.returncode == 1 and refused.stderr.strip()


def test_import_teachers_from_a_csv(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(f'site = "truong-a"\nschool_name = "A"\n[database]\n'
                      f'url = "sqlite:///{tmp_path / "lib.db"}"\n', encoding="utf-8")
    assert thuvien("db", "upgrade", "--config", str(config)).returncode == 0
    sheet = tmp_path / "giao-vien.csv"
    sheet.write_text("DANH SÁCH GIÁO VIÊN\n\nSTT;Họ và tên;Ngày sinh;Giới tính;Tổ chuyên môn\n"
                     "1;Trần Thị Mai;12/05/1985;Nữ;Ngữ văn\n2;;01/01/1980;Nam;Toán\n", encoding="utf-8")
    run = thuvien("import", "teachers", str(sheet), "--config", str(config))
    assert run.returncode == 3, run.stderr  # one teacher in, one row without a name reported
    assert "1 mới / new" in run.stdout and "dòng / row 5" in run.stdout
