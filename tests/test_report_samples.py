"""docs/samples/: the script that makes the sample pages works, and every report has one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "docs" / "samples"
SCRIPT = ROOT / "scripts" / "report_samples.py"
MAX_BYTES = 160_000


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def _colours(png: Path) -> int:
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    return len(colours) if colours is not None else 1 << 16


def _dark_share(png: Path) -> float:
    with Image.open(png) as image:
        grey = image.convert("L")
        histogram = grey.histogram()
    return sum(histogram[:128]) / (grey.width * grey.height)


def test_the_script_renders_the_general_register(tmp_path: Path) -> None:
    run = _run("--out", str(tmp_path), "--only", "register-general")
    assert run.returncode == 0, run.stderr
    png = tmp_path / "register-general.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["register-general.pdf",
                                                          "register-general.png"]
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert 780 <= image.width <= 860 and 540 <= image.height <= 600  # A4 landscape at 70 dpi
    # Text and rules on white: many shades (antialiased glyphs), some ink, mostly paper.
    assert _colours(png) > 50
    assert 0.01 < _dark_share(png) < 0.5
    assert png.stat().st_size < MAX_BYTES
    # The demo library lived: the register's three parts all have a line.
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "register-general.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "SỔ ĐĂNG KÝ TỔNG QUÁT" in text
    assert re.search(r"SGD cấp phát \(Sở GD&ĐT\)\s+5\b", text), text     # part I: the equipment
    assert re.search(r"12/QĐ-THCS(\s+\d+){5}\s+6\s+", text), text          # part II: 6 withdrawn
    assert "Kiểm kê học kỳ I" in text                                       # part III


def test_an_unknown_sample_is_refused() -> None:
    run = _run("--out", "/nonexistent/never-written", "--only", "register-generl")
    assert run.returncode != 0
    assert "register-generl" in run.stderr and "labels" in run.stderr  # what there is
    assert not Path("/nonexistent/never-written").exists()


def test_every_report_has_a_committed_sample() -> None:
    from server.reports.registry import all_reports

    names = [*sorted(all_reports()), "labels", "cards"]
    missing = [name for name in names if not (SAMPLES / f"{name}.png").is_file()]
    assert not missing, (f"no sample page in docs/samples/ for {', '.join(missing)}: run "
                         f".venv/bin/python scripts/report_samples.py --only {','.join(missing)}")
    listed = (SAMPLES / "README.md").read_text(encoding="utf-8")
    for png in sorted(SAMPLES.glob("*.png")):
        assert f"({png.name})" in listed, f"docs/samples/README.md does not list {png.name}"
        assert png.stat().st_size < MAX_BYTES, f"{png.name} is {png.stat().st_size} bytes"
        assert _colours(png) > 50, f"{png.name} looks blank"
    for pdf in sorted(SAMPLES.glob("*.pdf")):
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size < MAX_BYTES
        assert f"({pdf.name})" in listed, f"docs/samples/README.md does not list {pdf.name}"
