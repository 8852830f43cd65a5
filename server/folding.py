"""Vietnamese text folding for search, and Vietnamese name order for lists.

Students type without diacritics: `de men phieu luu ky` must find "Dế Mèn phiêu lưu ký".
Unicode decomposition strips the tone and vowel marks, but đ/Đ is a letter of its own
(U+0111, no decomposition), so it is mapped to d explicitly; that is why FTS5's
`remove_diacritics` alone is not enough and every indexed text and every query goes
through `fold` first.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["fold", "fold_words", "name_sort_key", "vietnamese_key"]

_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
# Letters with no decomposition that readers type as their plain look-alike.
_LETTERS = str.maketrans({"đ": "d", "Đ": "d", "ð": "d", "Ð": "d"})


def fold(text: str | None) -> str:
    """Casefold, đ->d, strip every combining mark, collapse whitespace."""
    if not text:
        return ""
    # NFC first so a decomposed input (NFD from a Mac keyboard) folds the same as a composed one.
    text = unicodedata.normalize("NFC", text).translate(_LETTERS).casefold()
    stripped = "".join(ch for ch in unicodedata.normalize("NFD", text)
                       if not unicodedata.combining(ch))
    return _SPACES.sub(" ", stripped).strip()


def fold_words(text: str | None) -> list[str]:
    """The folded words of a text: letters and digits only, punctuation dropped."""
    return _WORD.findall(fold(text).replace("_", " "))


# Vietnamese alphabetical order: a ă â b c d đ e ê g h i k l m n o ô ơ p q r s t u ư v x y.
# Each letter is its base plus an optional vowel mark (breve, circumflex, horn), or đ.
_BREVE, _CIRCUMFLEX, _HORN = "\u0306", "\u0302", "\u031b"
_VOWEL_MARKS = {_BREVE: 1, _CIRCUMFLEX: 2, _HORN: 3}
# Tones in dictionary order: ngang, huyền, hỏi, ngã, sắc, nặng.
_TONES = {"\u0300": 1, "\u0309": 2, "\u0303": 3, "\u0301": 4, "\u0323": 5}


def _letters(word: str) -> tuple[tuple[tuple[str, int], ...], tuple[int, ...]]:
    """(letter sequence, tone sequence) of one word; letters as (base, mark rank)."""
    letters: list[tuple[str, int]] = []
    tones: list[int] = []
    for ch in unicodedata.normalize("NFD", unicodedata.normalize("NFC", word).casefold()):
        if ch == "đ":
            letters.append(("d", 4))  # after plain d, before e
            continue
        if ch in _VOWEL_MARKS and letters:
            base, _ = letters[-1]
            letters[-1] = (base, _VOWEL_MARKS[ch])
            continue
        if ch in _TONES:
            tones.append(_TONES[ch])
            continue
        if unicodedata.combining(ch):
            continue
        letters.append((ch, 0))
    return tuple(letters), tuple(tones)


def vietnamese_key(text: str | None) -> tuple:
    """A sort key that orders words as a Vietnamese dictionary does.

    Letters first (ă after a, đ after d, ...), tones only to break ties, so "Ánh" sorts
    beside "Anh" instead of after every other word.
    """
    words = (text or "").split()
    parsed = [_letters(w) for w in words]
    return (tuple(p[0] for p in parsed), tuple(p[1] for p in parsed))


def name_sort_key(full_name: str | None) -> tuple:
    """Sort key for a person's name in Vietnamese class-list order.

    Vietnamese names are family name, middle names, given name ("Nguyễn Thị Mai"): lists
    sort by the given name (the last word), then by the family and middle names, then by
    the whole name verbatim so the order is total.
    """
    words = (full_name or "").split()
    if not words:
        return ((), (), "")
    given, rest = words[-1], " ".join(words[:-1])
    return (vietnamese_key(given), vietnamese_key(rest), full_name or "")
