"""Translations of the station's words: gettext catalogs in `kiosk/locale/`, Vietnamese first.

Code carries English msgids, marked so that `scripts/i18n.py` can extract them:

    N_("Borrow books")                       a plain message
    NC_("hello.teacher", "Hello {name}!")    a message with a context: the same English
                                             may need different Vietnamese ("thầy/cô")
    NPC_("can_borrow", "{n} book", "{n} books")  with a plural (English has two forms,
                                             Vietnamese one)

The markers only return what they mark; translating happens when a screen or a voice
needs the sentence, in the language chosen at that moment (a kiosk switches language
with one touch, so nothing is translated at import time).
"""

from __future__ import annotations

import functools
import gettext as _gettext
import logging
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("thuvien.kiosk.i18n")

DOMAIN = "thuvien"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
# Each language as its speakers write it: what a language toggle shows.
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English"}


class Msg(NamedTuple):
    """A marked message: its context, its English singular and (if it counts) plural."""

    context: str | None
    singular: str
    plural: str | None = None


def N_(msgid: str) -> str:
    return msgid


def NC_(context: str, msgid: str) -> Msg:
    return Msg(context, msgid)


def NPC_(context: str, singular: str, plural: str) -> Msg:
    return Msg(context, singular, plural)


# The markers as Babel's extractor reads them (argument positions; "c" is the context).
KEYWORDS: dict[str, object] = {
    "N_": None,
    "NC_": ((1, "c"), 2),
    "NPC_": ((1, "c"), 2, 3),
}


def language_of(language: str | None) -> str:
    """A language we have catalogs for; anything else is the default, Vietnamese."""
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


@functools.cache
def translations(language: str) -> _gettext.NullTranslations:
    language = language_of(language)
    try:
        return _gettext.translation(DOMAIN, LOCALE_DIR, languages=[language])
    except OSError:
        # A missing .mo shows English msgids rather than no station at all.
        log.error("no compiled catalog for %r in %s; run scripts/i18n.py", language, LOCALE_DIR)
        return _gettext.NullTranslations()


def translate(message: Msg | str, language: str, count: int | None = None) -> str:
    """The message in `language`; `count` picks the plural form of a counting message."""
    catalog = translations(language)
    if isinstance(message, str):
        return catalog.gettext(message)
    if message.plural is not None:
        n = 1 if count is None else count
        if message.context is None:
            return catalog.ngettext(message.singular, message.plural, n)
        return catalog.npgettext(message.context, message.singular, message.plural, n)
    if message.context is None:
        return catalog.gettext(message.singular)
    return catalog.pgettext(message.context, message.singular)
