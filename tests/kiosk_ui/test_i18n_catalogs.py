"""The gettext catalogs: in step with the code, compiled, and complete in Vietnamese."""

from __future__ import annotations

import importlib.util
import re
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from kiosk.i18n import DOMAIN, LANGUAGES, LOCALE_DIR, NC_, translate
from kiosk.messages import MESSAGES, refusal, text
from protocol import ErrorCode

ROOT = Path(__file__).resolve().parents[2]


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("i18n_script", ROOT / "scripts" / "i18n.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():  # type: ignore[no-untyped-def]
    return _script()


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _read(language: str):  # type: ignore[no-untyped-def]
    with (LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as f:
        return read_po(f, locale=language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_in_the_code_is_translated_in_the_catalog(script, language: str) -> None:
    catalog = _read(language)
    in_po = {(m.context, m.id if isinstance(m.id, str) else m.id[0]): m for m in catalog if m.id}
    in_code = [(m.context, m.id if isinstance(m.id, str) else m.id[0]) for m in script.extract() if m.id]
    missing = [key for key in in_code if key not in in_po]
    assert not missing, f"run `python scripts/i18n.py` and translate: {missing}"
    empty = [key for key in in_code
             if not all(in_po[key].string if isinstance(in_po[key].string, tuple) else (in_po[key].string,))
             or in_po[key].fuzzy]
    assert not empty, f"untranslated in {language}.po: {empty}"
    stale = [key for key in in_po if key not in set(in_code)]
    assert not stale, f"in {language}.po but no longer in the code (run scripts/i18n.py): {stale}"


def test_the_catalogs_and_their_compiled_files_are_up_to_date(script) -> None:
    assert script.main(["--check"]) == 0, "run `python scripts/i18n.py` (see its messages above)"


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_every_placeholder(language: str) -> None:
    for message in _read(language):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for translated in strings:
            assert _fields(translated) == _fields(ids[-1]), (message.context, translated)


def test_vietnamese_is_the_default_and_english_is_one_word_away() -> None:
    assert text("ui.borrow") == "Mượn sách" and text("ui.borrow", "en") == "Borrow books"
    assert text("ui.return", "fr") == "Trả sách"
    assert text("can_borrow.student", "en", n=1) == "You can borrow 1 more book."
    assert text("can_borrow.student", "en", n=2) == "You can borrow 2 more books."
    assert text("can_borrow.student", "vi", n=1) == text("can_borrow.student", "vi", n=1).replace("1", "1")
    assert text("return.late", "en", days=1) == "1 day late" and text("return.late", "vi", days=3) == "Muộn 3 ngày"
    assert set(MESSAGES["warning.title"]) == set(LANGUAGES)
    # A message the catalogs do not know is shown in English rather than not at all.
    assert translate(NC_("no.such.key", "Hello"), "vi") == "Hello"


def test_every_error_code_of_the_protocol_has_words_in_both_languages() -> None:
    for code in ErrorCode:
        vi, en = text(f"error.{code.value}", "vi"), text(f"error.{code.value}", "en")
        assert vi and en and vi != en, code
        assert re.search(r"[àáạảãâầấậẩẫăằắặẳẵèéẹẻẽêềếệểễìíịỉĩòóọỏõôồốộổỗơờớợởỡùúụủũưừứựửữỳýỵỷỹđ]", vi.lower()), vi
    assert refusal("unknown_patron", None, "en") == "This library card is not known."
    assert refusal("unknown_patron", "Thẻ HS-9 không có.", "en") == "Thẻ HS-9 không có."  # the server's own
    assert refusal("a_code_from_the_future", None, "vi") == text("block.other", "vi")


def test_every_key_a_screen_asks_for_exists() -> None:
    from kiosk.messages import has

    kv_dir = ROOT / "kiosk" / "ui" / "kv"
    keys = set()
    for kv in kv_dir.glob("*.kv"):
        source = kv.read_text(encoding="utf-8")
        for call in re.findall(r"app\.tr\((.+?), app\.language", source):
            keys |= set(re.findall(r"'([a-z_]+\.[a-z_.]+)'", call))
    assert len(keys) > 30, keys
    assert not [key for key in keys if not has(key)]
