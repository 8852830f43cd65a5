"""scripts/web_screenshots.py: its table names every page, and it makes a real picture."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image
from starlette.routing import Mount, Route

from server.web.app import build_app
from web_fixtures import StaffApp

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "web_screenshots.py"
# GET routes that are no page of their own: redirects, a fragment, the live stream.
NOT_PAGES = {"/staff", "/staff/", "/staff/alerts/list", "/staff/live", "/lang/{code}",
             "/ban-doc/{rest:path}",
             # Downloads, not pages: PDF, Excel and JSON files.
             "/staff/reports/{name}.{fmt}", "/staff/labels/sheet.pdf", "/staff/cards/cards.pdf"}


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("web_screenshots_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_table_has_every_page_of_the_web(staff_app: StaffApp) -> None:
    shots = _script()
    names = [page.name for page in shots.PAGES]
    assert len(names) == len(set(names)), "two pages with one file name"
    samples = shots.Samples(base_url="http://x", staff_name="a", staff_password="b",
                            reader_card="HS-1", reader_pin="1234", title_id=7)
    paths = [page.path.format(**samples.values()).split("?")[0] for page in shots.PAGES]
    missing = []
    for route in build_app(staff_app.context).routes:
        if isinstance(route, Mount) or not isinstance(route, Route):
            continue
        if "GET" not in (route.methods or ()) or route.path in NOT_PAGES:
            continue
        if not any(route.path_regex.match(path) for path in paths):
            missing.append(route.path)
    assert not missing, f"pages with no screenshot: add them to PAGES in {SCRIPT.name}: {missing}"


def test_bad_choices_are_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    shots = _script()
    with pytest.raises(SystemExit, match="unknown page: nope"):
        shots.main(["--pages", "nope"])
    with pytest.raises(SystemExit, match="unknown language: fr"):
        shots.main(["--languages", "fr"])
    with pytest.raises(SystemExit, match="WIDTHxHEIGHT"):
        shots.main(["--sizes", "big"])


def test_one_page_on_a_phone_from_the_running_library(tmp_path: Path) -> None:
    # In a process of its own, as a person runs it: the browser tests of this session
    # keep Playwright's own event loop in this one.
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--pages", "reader-loans",
                          "--sizes", "390x844", "--languages", "en"],
                         capture_output=True, text=True, timeout=240, cwd=SCRIPT.parents[1])
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reader-loans-390x844-en.png"]
    with Image.open(tmp_path / "reader-loans-390x844-en.png") as image:
        assert image.size == (390, 844)
        colours = image.convert("RGB").getcolors(maxcolors=4096)
    # A page with text on it, not a blank or an error: many colours (anti-aliased text)
    # and mostly white background.
    assert colours is not None and len(colours) > 20
    assert max(colours)[1] == (255, 255, 255)


def test_the_pictures_are_there_and_the_readme_shows_them() -> None:
    shots = _script()
    root = SCRIPT.parents[1]
    folder = root / "docs" / "screenshots" / "web"
    expected = {f"{page.name}-{size}-{language}.png" for page in shots.PAGES
                for size in shots.SIZES for language in page.languages}
    missing = sorted(expected - {p.name for p in folder.glob("*.png")})
    assert not missing, f"run scripts/web_screenshots.py: missing {missing}"
    readme = (root / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"\]\((docs/screenshots/web/[^)]+\.png)\)", readme)
    assert len(shown) >= 8
    assert all((root / path).is_file() for path in shown), shown
