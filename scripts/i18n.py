"""Keep the station's gettext catalogs in step with the code.

    python scripts/i18n.py           extract the messages of kiosk/, update vi.po and en.po,
                                     compile both .mo files
    python scripts/i18n.py --check   change nothing; exit 1 and say what is out of date

English is the msgid, so en.po is filled with the msgids themselves; new Vietnamese
entries are left empty for a person to translate (the check fails until they are).
Files are rewritten only when their content changes, so running it twice is a no-op.
"""

from __future__ import annotations

import argparse
import gettext
import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiosk.i18n import DOMAIN, KEYWORDS, LANGUAGES, LOCALE_DIR  # noqa: E402

SOURCES = ROOT / "kiosk"
METHOD_MAP = [("**/locale/**", "ignore"), ("**.py", "python")]
PROJECT = "thuvien"
COPYRIGHT = "the thuvien authors"


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo"


def extract() -> Catalog:
    """Every marked message of kiosk/, in the order the code lists them."""
    template = Catalog(project=PROJECT, copyright_holder=COPYRIGHT, domain=DOMAIN, fuzzy=False)
    for filename, _lineno, message, comments, context in extract_from_dir(
            SOURCES, METHOD_MAP, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",),
            strip_comment_tags=True):
        template.add(message, None, [(f"kiosk/{filename}", None)], auto_comments=comments,
                     context=context)
    return template


def _key(message: Message) -> tuple[str | None, object]:
    return message.context, message.id


def _read(path: Path, language: str) -> Catalog:
    if path.exists():
        with path.open("rb") as f:
            return read_po(f, locale=language, domain=DOMAIN)
    return Catalog(locale=language, domain=DOMAIN, project=PROJECT, version="0.1",
                   copyright_holder=COPYRIGHT, msgid_bugs_address="", last_translator=COPYRIGHT,
                   language_team=f"{language} <>", fuzzy=False)


def updated(language: str, template: Catalog) -> Catalog:
    catalog = _read(po_path(language), language)
    # Keep the catalog's own dates: only its messages should make a diff.
    template.creation_date = catalog.creation_date
    catalog.update(template, no_fuzzy_matching=True, update_header_comment=False)
    catalog.obsolete.clear()
    if language == "en":
        for message in catalog:
            if message.id:
                message.string = message.id  # English msgids are the English text
    return catalog


def po_bytes(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_po(out, catalog, width=96, include_lineno=False, ignore_obsolete=True)
    return out.getvalue()


def mo_bytes(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def untranslated(catalog: Catalog) -> list[str]:
    missing = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            label = message.id if isinstance(message.id, str) else message.id[0]
            missing.append(f"{message.context or ''}: {label}")
    return missing


def mo_matches(po: Catalog, mo_file: Path) -> bool:
    """True when the compiled file says exactly what the .po says (compared by meaning,
    not bytes, so another Babel version compiling the same .po still matches)."""
    if not mo_file.exists():
        return False
    with mo_file.open("rb") as f:
        compiled = gettext.GNUTranslations(f)
    expected = gettext.GNUTranslations(io.BytesIO(mo_bytes(po)))
    return compiled._catalog == expected._catalog  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; report what is stale")
    args = parser.parse_args(argv)
    template = extract()
    problems: list[str] = []
    for language in LANGUAGES:
        catalog = updated(language, template)
        new_po = po_bytes(catalog)
        po_file = po_path(language)
        po_stale = not po_file.exists() or po_file.read_bytes() != new_po
        mo_stale = not mo_matches(catalog, mo_path(language))
        if args.check:
            if po_stale:
                problems.append(f"{po_file.relative_to(ROOT)} is not up to date with the code")
            if mo_stale:
                problems.append(f"{mo_path(language).relative_to(ROOT)} is not compiled from its .po")
        else:
            po_file.parent.mkdir(parents=True, exist_ok=True)
            if po_stale:
                po_file.write_bytes(new_po)
                print(f"updated {po_file.relative_to(ROOT)}")
            if mo_stale:
                mo_path(language).write_bytes(mo_bytes(catalog))
                print(f"compiled {mo_path(language).relative_to(ROOT)}")
        problems += [f"{language}: untranslated {entry}" for entry in untranslated(catalog)]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
