"""The public catalogue's search: titles by words, ISBN or ĐKCB, in Vietnamese.

On SQLite, an FTS5 table `catalogue_fts` (rowid = titles.id) indexes each title's title,
author and subject, and its ISBN as one token. It is kept current by triggers on
`titles` (created by migration 0005, or `install_index`), so every writer is covered:
the ORM, Core bulk inserts (the seed), an import script, even the sqlite3 shell.
The folding is split so that the triggers need no Python function: SQL's `replace()`
turns đ/Đ into d (the one Vietnamese letter FTS5 cannot fold), and the tokenizer
(`unicode61 remove_diacritics 2`) casefolds and strips every other mark; the query goes
through `server.folding.fold`, which does the same. `rebuild_index` refills the table
from `titles` (after a restore, or to repair it).

The kinds of a title's copies (withdrawn ones left out) are in the index too, in a
`kinds` column kept by triggers on `copies`: the kind filter is one more term of the
match, not a look-up per matching title. The copy triggers fire on a change of title,
kind or withdrawal only, so a loan (available <-> on_loan) never writes the index.
Availability is counted for the page's titles only.

Ranking, in tiers: the title (or the chosen field) starts with the query's words; holds
them in order; holds them all; then the words are in the title and the author; then
some only in the subject. Within a tier the shortest title comes first (a title equal to
the query before longer ones), then the newest. Every match of a tier holds the same
words, so this is the order bm25 would mostly give, without bm25's pass over the whole
list of every common word. A query matching up to `_FEW` titles is read once and ranked
in Python; a broader one asks the index tier by tier, ranks a broad tier within its
newest `_RANK_LIMIT` matches (older ones follow, newest first) and counts up to
`_COUNT_CAP`. Codes come before words: a query that is an ISBN (10 or 13 digits, hyphens
or not) or an accession number (TN.00315, TN00315) or a copy's barcode answers its title.

On PostgreSQL (the district server) there is no FTS5: the portable backend folds the
columns in SQL with `translate()` over every Vietnamese letter and matches each query
word with LIKE. It always reads current data and is a sequential scan: correct for a
school's catalogue, slower for a province's (a pg_trgm index on the same expression would
be the next step).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Connection, Engine, text

from server.folding import fold, fold_words
from server.models import CopyStatus

__all__ = [
    "Catalogue", "CopyLine", "Hit", "KINDS", "Results", "SearchQuery", "TitleRecord",
    "accession_candidates", "install_index", "isbn_forms", "rebuild_index",
]

KINDS: tuple[str, ...] = ("GK", "TK", "NV", "TN")
Field = Literal["all", "title", "author", "subject"]
Backend = Literal["fts5", "portable"]

FTS_TABLE = "catalogue_fts"
_TOKENIZER = "unicode61 remove_diacritics 2"
# A tier with more matches than this is ranked within its newest _RANK_LIMIT titles, the
# rest following newest first: reading a match costs microseconds, and a common word
# matches tens of thousands of titles whose order among themselves tells the reader little.
_RANK_LIMIT = 500
# Results up to this many are read at once and ranked in Python (same tiers, same order).
_FEW = 300
_MAX_QUERY_WORDS = 12
_MAX_PAGE = 500
_COUNT_CAP = 1000


def _sql_fold(column: str) -> str:
    return f"replace(replace(coalesce({column}, ''), 'đ', 'd'), 'Đ', 'D')"


def _sql_kinds(title_id: str) -> str:
    # The kinds of a title's copies that are not withdrawn, sorted so that an unchanged set
    # compares equal and the index row is left alone.
    return (f"coalesce((SELECT group_concat(kind, ' ') FROM (SELECT DISTINCT kind FROM copies "
            f"WHERE title_id = {title_id} AND status != 'withdrawn' ORDER BY kind)), '')")


def _fts_values(prefix: str) -> str:
    return (f"{prefix}.id, {_sql_fold(prefix + '.title')}, {_sql_fold(prefix + '.author')}, "
            f"{_sql_fold(prefix + '.subject')}, "
            f"replace(replace(coalesce({prefix}.isbn, ''), '-', ''), ' ', ''), "
            f"{_sql_kinds(prefix + '.id')}")


def _refresh_kinds(title_id: str) -> str:
    return (f"UPDATE {FTS_TABLE} SET kinds = {_sql_kinds(title_id)} "
            f"WHERE rowid = {title_id} AND kinds IS NOT {_sql_kinds(title_id)};")


_INSERT_ROW = f"INSERT INTO {FTS_TABLE}(rowid, title, author, subject, codes, kinds) SELECT "

SQLITE_DDL: tuple[str, ...] = (
    # prefix='2 3': search-as-you-type prefixes of 2 and 3 letters are read from their own
    # index instead of expanding every term that starts with them.
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
    f"title, author, subject, codes, kinds, tokenize='{_TOKENIZER}', prefix='2 3')",
    f"CREATE TRIGGER IF NOT EXISTS titles_fts_insert AFTER INSERT ON titles BEGIN "
    f"{_INSERT_ROW}{_fts_values('new')}; END",
    f"CREATE TRIGGER IF NOT EXISTS titles_fts_delete AFTER DELETE ON titles BEGIN "
    f"DELETE FROM {FTS_TABLE} WHERE rowid = old.id; END",
    f"CREATE TRIGGER IF NOT EXISTS titles_fts_update AFTER UPDATE OF id, title, author, subject, isbn "
    f"ON titles BEGIN DELETE FROM {FTS_TABLE} WHERE rowid = old.id; "
    f"{_INSERT_ROW}{_fts_values('new')}; END",
    # The kind filter reads the index, so the copies keep it current; a loan changes a
    # copy's status between available and on_loan, which no trigger here reacts to.
    f"CREATE TRIGGER IF NOT EXISTS copies_fts_insert AFTER INSERT ON copies BEGIN "
    f"{_refresh_kinds('new.title_id')} END",
    f"CREATE TRIGGER IF NOT EXISTS copies_fts_delete AFTER DELETE ON copies BEGIN "
    f"{_refresh_kinds('old.title_id')} END",
    f"CREATE TRIGGER IF NOT EXISTS copies_fts_update AFTER UPDATE OF title_id, kind, status ON copies "
    f"WHEN old.title_id IS NOT new.title_id OR old.kind IS NOT new.kind "
    f"OR (old.status = 'withdrawn') IS NOT (new.status = 'withdrawn') BEGIN "
    f"{_refresh_kinds('old.title_id')} {_refresh_kinds('new.title_id')} END",
)
SQLITE_DROP: tuple[str, ...] = (
    "DROP TRIGGER IF EXISTS copies_fts_update",
    "DROP TRIGGER IF EXISTS copies_fts_delete",
    "DROP TRIGGER IF EXISTS copies_fts_insert",
    "DROP TRIGGER IF EXISTS titles_fts_update",
    "DROP TRIGGER IF EXISTS titles_fts_delete",
    "DROP TRIGGER IF EXISTS titles_fts_insert",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
)


def install_index(connection: Connection) -> None:
    """Create the search index and its triggers (SQLite; nothing to do elsewhere), filled."""
    if connection.dialect.name != "sqlite":
        return
    for statement in SQLITE_DDL:
        connection.exec_driver_sql(statement)
    rebuild_index(connection)


def rebuild_index(connection: Connection) -> int:
    """Refill the index from `titles`; returns the number of titles indexed."""
    if connection.dialect.name != "sqlite":
        return 0
    connection.exec_driver_sql(f"DELETE FROM {FTS_TABLE}")
    connection.exec_driver_sql(f"{_INSERT_ROW}{_fts_values('titles')} FROM titles")
    # Merge the b-trees written row by row into one: fewer segments, faster queries.
    connection.exec_driver_sql(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')")
    return connection.exec_driver_sql(f"SELECT count(*) FROM {FTS_TABLE}").scalar_one()


# --- codes -----------------------------------------------------------------------------

_ISBN_CHARS = re.compile(r"^[0-9Xx\- ]+$")
_ACCESSION = re.compile(r"^([A-Za-z]{1,4})[.\- ]?(\d{1,10})$")
_ACCESSION_DIGITS = 5


def _isbn10_check(first9: str) -> str:
    total = sum((10 - i) * int(d) for i, d in enumerate(first9))
    check = (11 - total % 11) % 11
    return "X" if check == 10 else str(check)


def _isbn13_check(first12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def isbn_forms(query: str) -> tuple[str, ...]:
    """The ISBN-13 and ISBN-10 spellings of `query` if it is an ISBN, else ().

    A wrong check digit is still searched as typed: a reader copying from a worn cover
    should find the record if it was catalogued with the same typo.
    """
    query = query.strip()
    if not _ISBN_CHARS.match(query):
        return ()
    digits = query.replace("-", "").replace(" ", "").upper()
    if len(digits) == 13 and digits.isdigit():
        forms = [digits]
        if digits.startswith("978"):
            forms.append(digits[3:12] + _isbn10_check(digits[3:12]))
        return tuple(forms)
    if len(digits) == 10 and digits[:9].isdigit() and (digits[9].isdigit() or digits[9] == "X"):
        return (digits, "978" + digits[:9] + _isbn13_check("978" + digits[:9]))
    return ()


def accession_candidates(query: str) -> tuple[str, ...]:
    """How an accession number (ĐKCB) may be stored: TN.00315 and TN00315 for either input."""
    match = _ACCESSION.match(query.strip())
    if not match:
        return ()
    prefix, number = match.group(1).upper(), match.group(2)
    # Typed short ("tn 315"): also the register's usual five digits.
    numbers = dict.fromkeys([number, number.zfill(_ACCESSION_DIGITS)])
    return tuple(code for n in numbers for code in (f"{prefix}.{n}", f"{prefix}{n}"))


# --- queries and results ---------------------------------------------------------------

@dataclass(frozen=True)
class SearchQuery:
    text: str
    kind: str | None = None
    subject: str | None = None
    field: Field = "all"
    page: int = 1
    per_page: int = 20

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.field not in ("all", "title", "author", "subject"):
            raise ValueError(f"unknown field {self.field!r}")
        if not 1 <= self.page <= _MAX_PAGE:
            raise ValueError(f"page must be between 1 and {_MAX_PAGE}")
        if not 1 <= self.per_page <= 100:
            raise ValueError("per_page must be between 1 and 100")


@dataclass(frozen=True)
class Hit:
    title_id: int
    title: str
    author: str | None
    year: int | None
    subject: str | None
    call_number: str | None
    available: int = 0
    copies: int = 0


@dataclass(frozen=True)
class Results:
    query: SearchQuery
    hits: tuple[Hit, ...]
    total: int
    # "text", "isbn" or "accession": how the query was understood; "none" when empty.
    matched_by: str

    @property
    def more(self) -> bool:
        """Whether `total` is only a lower bound (the count stopped at its cap)."""
        return self.total > _COUNT_CAP

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


@dataclass(frozen=True)
class CopyLine:
    accession_number: str
    kind: str
    status: str           # a CopyStatus value
    location: str | None
    due_on: dt.date | None = None


@dataclass(frozen=True)
class TitleRecord:
    title_id: int
    title: str
    author: str | None
    publisher: str | None
    year: int | None
    isbn: str | None
    subject: str | None
    call_number: str | None
    language: str
    copies: tuple[CopyLine, ...] = field(default_factory=tuple)

    @property
    def available(self) -> int:
        return sum(1 for c in self.copies if c.status == CopyStatus.AVAILABLE)


def _fts_tiers(words: Sequence[str], field_name: Field, kind: str | None,
               subject: str | None) -> tuple[str, list[str]]:
    """The FTS5 match for every result, and its disjoint tiers in rank order.

    Tiers: the title (or the chosen field) starts with the query's words in order; holds
    them in order elsewhere; holds them all apart; then, searching everything, the words
    are in the title and the author; then some are only in the subject. Each word is
    quoted, so FTS5 operators typed by a reader (OR, NEAR, *, :) are words.
    """
    # Search as you type: the last word may be unfinished.
    star = "*" if words and len(words[-1]) >= 2 else ""
    terms = [f'"{w}"' for w in words]
    terms[-1] += star
    phrase, apart = f'"{" ".join(words)}"{star}', f"({' '.join(terms)})"
    column = "title" if field_name == "all" else field_name
    starts, inside, within = f"{column} : (^ {phrase})", f"{column} : ({phrase})", f"{column} : {apart}"
    tiers = [starts, f"({inside}) NOT ({starts})"]
    if len(words) > 1:
        tiers.append(f"({within}) NOT ({inside})")
    everything = within
    if field_name == "all":
        with_author, everything = f"{{title author}} : {apart}", f"{{title author subject}} : {apart}"
        tiers += [f"({with_author}) NOT ({within})", f"({everything}) NOT ({with_author})"]
    # Filters read the index too, so a filtered common word costs no more than the word.
    filters = ""
    if kind is not None:
        filters += f' AND kinds : "{kind.lower()}"'
    subject_words = fold_words(subject)[:_MAX_QUERY_WORDS] if subject else []
    if subject_words:
        filters += f' AND subject : (^ "{" ".join(subject_words)}")'
    return f"({everything}){filters}", [f"({tier}){filters}" for tier in tiers]


def _holds_run(have: Sequence[str], words: Sequence[str], last_prefix: bool, *,
               anchored: bool) -> bool:
    """Whether `have` holds `words` in a row (from its first word if `anchored`)."""
    n = len(words)
    for i in range(1 if anchored else len(have) - n + 1):
        run = have[i:i + n]
        if len(run) == n and list(run[:-1]) == list(words[:-1]) and (
                run[-1].startswith(words[-1]) if last_prefix else run[-1] == words[-1]):
            return True
    return False


def _holds_all(have: Sequence[str], words: Sequence[str], last_prefix: bool) -> bool:
    if not set(words[:-1]) <= set(have):
        return False
    return any(w.startswith(words[-1]) for w in have) if last_prefix else words[-1] in have


def _tier_key(words: Sequence[str], field_name: Field):  # type: ignore[no-untyped-def]
    """The sort key that orders (id, title, author, subject) rows as `_fts_tiers` does."""
    last_prefix = len(words[-1]) >= 2
    column = {"all": 1, "title": 1, "author": 2, "subject": 3}[field_name]

    def key(row: Sequence[object]) -> tuple[int, int, int]:
        have = fold_words(row[column])  # type: ignore[arg-type]
        if _holds_run(have, words, last_prefix, anchored=True):
            tier = 0
        elif _holds_run(have, words, last_prefix, anchored=False):
            tier = 1
        elif _holds_all(have, words, last_prefix) or field_name != "all":
            tier = 2
        elif _holds_all(have + fold_words(row[2]), words, last_prefix):  # type: ignore[arg-type]
            tier = 3
        else:
            tier = 4
        return tier, len(row[1] or ""), -int(row[0])  # type: ignore[arg-type]

    return key


_TRANSLATE_FROM, _TRANSLATE_TO = "", ""
_PUNCTUATION = "()[]{},.;:!?\"'/–—-_&+*#\t\n"


def _translate_map() -> tuple[str, str]:
    """The characters PostgreSQL's translate() must fold, and what they become.

    Every precomposed Latin letter Vietnamese uses, both cases, and A-Z, map to their
    lower-case base; combining marks (text stored decomposed) come last, past the end of
    the target, which translate() reads as "delete".
    """
    global _TRANSLATE_FROM, _TRANSLATE_TO
    if not _TRANSLATE_FROM:
        src, dst = [], []
        for code in [*range(0x41, 0x5B), *range(0xC0, 0x250), *range(0x1E00, 0x1F00)]:
            ch = chr(code)
            folded = fold(ch)
            if len(folded) == 1 and folded.isascii() and folded.isalpha() and folded != ch:
                src.append(ch)
                dst.append(folded)
        # Punctuation splits words, as the FTS5 tokenizer does.
        for ch in _PUNCTUATION:
            src.append(ch)
            dst.append(" ")
        marks = [chr(c) for c in range(0x300, 0x370)]
        _TRANSLATE_FROM, _TRANSLATE_TO = "".join(src + marks), "".join(dst)
    return _TRANSLATE_FROM, _TRANSLATE_TO


class Catalogue:
    """Searches and reads the catalogue for the OPAC; safe to share between requests."""

    def __init__(self, engine: Engine, backend: Backend | None = None) -> None:
        self._engine = engine
        self.backend: Backend = backend or ("fts5" if engine.dialect.name == "sqlite" else "portable")

    # -- search --------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> Results:
        with self._engine.connect() as db:
            ids, total, matched_by = self._codes(db, query)
            if matched_by == "none":
                words = fold_words(query.text)[:_MAX_QUERY_WORDS]
                if words:
                    matched_by = "text"
                    if self.backend == "fts5":
                        ids, total = self._fts(db, query, words)
                    else:
                        ids, total = self._portable(db, query, words)
            return Results(query, tuple(self._hits(db, ids)), total, matched_by)

    @staticmethod
    def _filters(title_id: str, *, kind: bool = True, subject: bool = True) -> str:
        """The kind and subject filters; `t` must be `titles` when `subject` is on."""
        # CAST: PostgreSQL must know a parameter's type, and `:x IS NULL` does not say it.
        sql = ""
        if kind:
            sql += (f" AND (CAST(:kind AS VARCHAR) IS NULL OR EXISTS (SELECT 1 FROM copies c "
                    f"WHERE c.title_id = {title_id} AND c.kind = :kind "
                    f"AND c.status != 'withdrawn'))")
        if subject:
            sql += " AND (CAST(:subject AS VARCHAR) IS NULL OR t.subject = :subject)"
        return sql

    def _codes(self, db: Connection, query: SearchQuery) -> tuple[list[int], int, str]:
        isbns = isbn_forms(query.text)
        params: dict[str, object] = {"kind": query.kind, "subject": query.subject}
        if isbns:
            if self.backend == "fts5":
                # The index holds each ISBN without hyphens as one token: no scan of titles.
                match = "codes : (" + " OR ".join(f'"{i}"' for i in isbns) + ")"
                sql = (f"SELECT t.id FROM {FTS_TABLE} f JOIN titles t ON t.id = f.rowid "
                       f"WHERE {FTS_TABLE} MATCH :match")
                params["match"] = match
            else:
                sql = "SELECT t.id FROM titles t WHERE replace(coalesce(t.isbn, ''), '-', '') IN :isbns"
            rows = db.execute(text(sql + self._filters("t.id") + " ORDER BY t.id").bindparams(
                *([_expanding("isbns")] if self.backend != "fts5" else [])),
                {**params, "isbns": list(isbns)}).scalars().all()
            if rows:
                return self._page(list(rows), query), len(rows), "isbn"
        codes = accession_candidates(query.text)
        if codes:
            barcode = query.text.strip()
            rows = db.execute(text(
                "SELECT DISTINCT t.id FROM copies k JOIN titles t ON t.id = k.title_id "
                # A withdrawn copy's number finds nothing: the public sees no weeded copies.
                "WHERE (k.accession_number IN :codes OR k.barcode = :barcode) AND k.status != 'withdrawn'"
                + self._filters("t.id") + " ORDER BY t.id").bindparams(_expanding("codes")),
                {**params, "codes": list(codes), "barcode": barcode}).scalars().all()
            if rows:
                return self._page(list(rows), query), len(rows), "accession"
        return [], 0, "none"

    @staticmethod
    def _page(ids: list[int], query: SearchQuery) -> list[int]:
        start = (query.page - 1) * query.per_page
        return ids[start:start + query.per_page]

    def _fts(self, db: Connection, query: SearchQuery, words: list[str]) -> tuple[list[int], int]:
        everything, tiers = _fts_tiers(words, query.field, query.kind, query.subject)
        # The subject must equal the filter's; the index only says it starts with it.
        join = " AND t.subject = :subject" if query.subject else ""
        base = f"FROM {FTS_TABLE} f JOIN titles t ON t.id = f.rowid{join} WHERE {FTS_TABLE} MATCH :match"
        params = {"subject": query.subject}
        # Counting stops past _COUNT_CAP: "1000+ results" reads as well and a common word
        # does not pay for counting a fifth of the catalogue. Only a subject needs titles.
        counted = base if query.subject else f"FROM {FTS_TABLE} f WHERE {FTS_TABLE} MATCH :match"
        start, need = (query.page - 1) * query.per_page, query.per_page
        # Most queries match a few hundred titles at most: read them once and rank them
        # here, rather than asking the index once a tier.
        few = db.execute(text(f"SELECT f.rowid, t.title, t.author, t.subject {base} "
                              f"ORDER BY f.rowid DESC LIMIT {_FEW + 1}"),
                         {**params, "match": everything}).all()
        if len(few) <= _FEW:
            ranked = sorted(few, key=_tier_key(words, query.field))
            return [row[0] for row in ranked[start:start + need]], len(few)
        total = db.execute(text(f"SELECT count(*) FROM (SELECT 1 {counted} LIMIT {_COUNT_CAP + 1})"),
                           {**params, "match": everything}).scalar_one()
        ids: list[int] = []
        for match in tiers if total else ():
            rows, size = self._tier(db, base, {**params, "match": match}, start, need)
            ids += rows
            need -= len(rows)
            if need == 0:
                break
            start = max(0, start - size)
        return ids, total

    @staticmethod
    def _tier(db: Connection, base: str, params: dict[str, object], start: int,
              need: int) -> tuple[list[int], int]:
        """Rows [start, start + need) of one tier, and the tier's size when it has fewer.

        Every match of a tier holds the same words in the same columns, so bm25 would
        order them by length alone, after reading the whole list of every word for its
        weight (tens of thousands of entries for a common one). The shortest title comes
        first (a title equal to the query before the longer ones), then the newest. A
        broad tier is ordered so within its newest _RANK_LIMIT matches; older ones follow,
        newest first.
        """
        newest = db.execute(text(f"SELECT f.rowid, length(t.title) {base} "
                                 f"ORDER BY f.rowid DESC LIMIT {_RANK_LIMIT + 1}"), params).all()
        ranked = sorted(newest[:_RANK_LIMIT], key=lambda row: (row[1], -row[0]))
        rows = [row[0] for row in ranked[start:start + need]]
        if len(newest) <= _RANK_LIMIT:
            return rows, len(ranked)
        floor = newest[_RANK_LIMIT - 1][0]
        rest = f"SELECT f.rowid {base} AND f.rowid < :floor"
        values = {**params, "floor": floor}
        if len(rows) < need:
            rows += db.execute(text(f"{rest} ORDER BY f.rowid DESC LIMIT :n OFFSET :o"),
                               {**values, "n": need - len(rows),
                                "o": max(0, start - _RANK_LIMIT)}).scalars().all()
        if len(rows) == need:
            return rows, start + need   # at least: the caller stops here
        # The tier ends before this page does: its exact size, for the next tier's offset.
        older = db.execute(text(f"SELECT count(*) FROM ({rest} LIMIT :cap)"),
                           {**values, "cap": start + need}).scalar_one()
        return rows, _RANK_LIMIT + older

    def _portable(self, db: Connection, query: SearchQuery, words: list[str]) -> tuple[list[int], int]:
        src, dst = _translate_map()
        columns = ["title", "author", "subject"] if query.field == "all" else [query.field]

        def folded(column: str) -> str:
            return f"translate(coalesce(t.{column}, ''), :src, :dst)"

        params: dict[str, object] = {"src": src, "dst": dst, "kind": query.kind,
                                     "subject": query.subject}
        where, score = [], []
        weight = {"title": 10, "author": 4, "subject": 2}
        for i, word in enumerate(words):
            # Whole words, and the last one as a prefix, as FTS5 matches them.
            last = i == len(words) - 1 and len(word) >= 2
            params[f"w{i}"] = f"% {_like_escape(word)}{'%' if last else ' %'}"
            hits = [f"(' ' || {folded(c)} || ' ') LIKE :w{i} ESCAPE '\\'" for c in columns]
            where.append("(" + " OR ".join(hits) + ")")
            score += [f"CASE WHEN {h} THEN {weight[c]} ELSE 0 END" for h, c in zip(hits, columns)]
        params["exact"] = " ".join(words)
        params["prefix"] = f"{_like_escape(' '.join(words))}%"
        boost = (f"CASE WHEN {folded('title')} = :exact THEN 1000 "
                 f"WHEN {folded('title')} LIKE :prefix ESCAPE '\\' THEN 500 ELSE 0 END")
        base = f"FROM titles t WHERE {' AND '.join(where)}{self._filters('t.id')}"
        total = db.execute(text(f"SELECT count(*) {base}"), params).scalar_one()
        rows = db.execute(text(
            f"SELECT t.id, ({boost} + {' + '.join(score)}) AS score {base} "
            f"ORDER BY score DESC, t.title, t.id LIMIT :n OFFSET :o"),
            {**params, "n": query.per_page, "o": (query.page - 1) * query.per_page}).all()
        return [r[0] for r in rows], total

    def _hits(self, db: Connection, ids: Sequence[int]) -> Iterable[Hit]:
        if not ids:
            return []
        rows = db.execute(text(
            "SELECT t.id, t.title, t.author, t.year, t.subject, t.call_number, "
            "(SELECT count(*) FROM copies c WHERE c.title_id = t.id AND c.status = 'available'), "
            "(SELECT count(*) FROM copies c WHERE c.title_id = t.id AND c.status != 'withdrawn') "
            "FROM titles t WHERE t.id IN :ids").bindparams(_expanding("ids")), {"ids": list(ids)}).all()
        by_id = {r[0]: Hit(*r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    # -- one title ---------------------------------------------------------------------------

    def title(self, title_id: int) -> TitleRecord | None:
        """A title with its copies (withdrawn ones left out), on-loan ones with their due date."""
        with self._engine.connect() as db:
            row = db.execute(text(
                "SELECT id, title, author, publisher, year, isbn, subject, call_number, language "
                "FROM titles WHERE id = :id"), {"id": title_id}).first()
            if row is None:
                return None
            copies = db.execute(text(
                "SELECT c.accession_number, c.kind, c.status, c.location, l.due_on "
                "FROM copies c LEFT JOIN loans l ON l.copy_id = c.id "
                "WHERE c.title_id = :id AND c.status != 'withdrawn' ORDER BY c.accession_number"),
                {"id": title_id}).all()
        lines = tuple(CopyLine(a, k, CopyStatus.ON_LOAN if due is not None else s, loc,
                               _as_date(due)) for a, k, s, loc, due in copies)
        return TitleRecord(*row, copies=lines)

    def subjects(self) -> list[str]:
        """The subjects (môn loại) in use, for the filter's list, in Vietnamese order."""
        from server.folding import vietnamese_key

        with self._engine.connect() as db:
            rows = db.execute(text("SELECT DISTINCT subject FROM titles WHERE subject IS NOT NULL")).scalars()
            return sorted((s for s in rows if s), key=vietnamese_key)


def _expanding(name: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _as_date(value: object) -> dt.date | None:
    # Raw SQL on SQLite returns the ISO string SQLAlchemy's Date type would have parsed.
    if value is None or isinstance(value, dt.date):
        return value  # type: ignore[return-value]
    return dt.date.fromisoformat(str(value))


def normalize_query(text_: str) -> str:
    """The query as typed, NFC and trimmed, for echoing back into the search box."""
    return unicodedata.normalize("NFC", text_ or "").strip()[:200]
