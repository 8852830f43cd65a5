"""OPAC search over a large catalogue: build time and query latency per kind of query.

    .venv/bin/python bench/search.py                    # 200,000 titles, 1,000,000 copies
    .venv/bin/python bench/search.py --titles 5000      # a quick run (5 copies per title)

Builds a SQLite file (WAL, as the server opens it) in a temporary folder: the schema from
the models, generated Vietnamese-like titles and authors inserted with Core executemany,
then the index with its triggers (`server.search.install_index`: fill + optimize).
Then runs each kind of query through `server.search.Catalogue.search`, the code the
OPAC page calls (count, ranked page of 20, availability of the page's titles), and
prints one JSON object: build times, and p50/p95/p99 in ms per kind. Target: p95 < 30 ms.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from server.db import make_engine  # noqa: E402
from server.folding import fold_words  # noqa: E402
from server.models import Base, Copy, Title  # noqa: E402
from server.search import KINDS, Catalogue, SearchQuery, install_index  # noqa: E402

TARGET_P95_MS = 30.0

# Syllables to build words from: initials x rhymes x tones gives Vietnamese-looking text
# with a realistic spread of common and rare words.
_INITIALS = ["", "b", "c", "ch", "d", "đ", "g", "gi", "h", "kh", "l", "m", "n", "ng", "nh",
             "ph", "qu", "r", "s", "t", "th", "tr", "v", "x"]
_RHYMES = ["a", "an", "ang", "anh", "ao", "ai", "ăn", "ăng", "âm", "ân", "âu", "e", "em", "en",
           "ê", "ên", "i", "im", "in", "inh", "o", "oa", "oan", "oang", "on", "ong", "ô", "ôi",
           "ông", "ơ", "ơi", "ơn", "u", "uân", "un", "ung", "uyên", "ư", "ưa", "ương", "ươi", "y"]
_TONES = ["", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323"]
_FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi",
           "Đỗ", "Hồ", "Ngô", "Dương", "Lý"]
_MIDDLE = ["Văn", "Thị", "Minh", "Ngọc", "Thanh", "Đức", "Hữu", "Thu", "Quang", "Xuân"]
_GIVEN = ["An", "Bình", "Châu", "Dũng", "Đạt", "Giang", "Hà", "Hải", "Hạnh", "Hùng", "Khoa",
          "Lan", "Linh", "Long", "Mai", "Nam", "Nga", "Phúc", "Quân", "Sơn", "Tâm", "Thảo",
          "Trang", "Tuấn", "Vy", "Yến"]
_SUBJECTS = ["Thiếu nhi", "Văn học Việt Nam", "Văn học nước ngoài", "Toán học", "Lịch sử",
             "Địa lí", "Khoa học tự nhiên", "Tin học", "Tiếng Anh", "Kỹ năng sống", "Từ điển"]


def _syllable(rng: random.Random) -> str:
    import unicodedata

    base = rng.choice(_INITIALS) + rng.choice(_RHYMES)
    tone = rng.choice(_TONES)
    if not tone:
        return base
    # The tone goes on the first vowel: good enough to look and fold like Vietnamese.
    decomposed = unicodedata.normalize("NFD", base)
    for i, ch in enumerate(decomposed):
        if ch in "aeiouy":
            j = i + 1
            while j < len(decomposed) and unicodedata.combining(decomposed[j]):
                j += 1
            return unicodedata.normalize("NFC", decomposed[:j] + tone + decomposed[j:])
    return base


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add(_syllable(rng))
    return sorted(words)


def _isbn13(rng: random.Random, serial: int) -> str:
    body = f"978604{serial:06d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def build(path: Path, titles: int, copies_per_title: float, rng: random.Random) -> dict[str, float]:
    engine = make_engine(f"sqlite:///{path}", sqlite_synchronous="NORMAL")
    Base.metadata.create_all(engine)
    vocabulary = _vocabulary(rng, 2500)
    # Zipf-like word choice: a few words are everywhere ("truyện", "của"), most are rare.
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(vocabulary))]
    started = time.perf_counter()
    title_rows, copy_rows = [], []
    counters = dict.fromkeys(KINDS, 0)
    for title_id in range(1, titles + 1):
        words = rng.choices(vocabulary, weights, k=rng.randint(2, 8))
        words[0] = words[0].capitalize()
        author = f"{rng.choice(_FAMILY)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}"
        title_rows.append({"id": title_id, "title": " ".join(words), "author": author,
                           "publisher": "NXB Giáo dục", "year": rng.randint(1990, 2026),
                           "isbn": _isbn13(rng, title_id), "subject": rng.choice(_SUBJECTS),
                           "call_number": f"{rng.randint(0, 999):03d} {words[0][0].upper()}",
                           "language": "vie"})
        kind = rng.choice(KINDS)
        n = max(1, round(rng.expovariate(1 / copies_per_title))) if copies_per_title else 0
        for _ in range(n):
            counters[kind] += 1
            number = f"{kind}.{counters[kind]:06d}"
            copy_rows.append({"title_id": title_id, "accession_number": number,
                              "barcode": number.replace(".", ""), "kind": kind,
                              "status": "available" if rng.random() < 0.8 else "on_loan",
                              "location": "Kho mở"})
    generated = time.perf_counter()
    with engine.begin() as db:
        db.execute(insert(Title), title_rows)
        for start in range(0, len(copy_rows), 50_000):
            db.execute(insert(Copy), copy_rows[start:start + 50_000])
    inserted = time.perf_counter()
    with engine.begin() as db:
        install_index(db)
    indexed = time.perf_counter()
    engine.dispose()
    return {"titles": len(title_rows), "copies": len(copy_rows),
            "generate_s": round(generated - started, 2), "insert_s": round(inserted - generated, 2),
            "index_s": round(indexed - inserted, 2),
            "db_mb": round(path.stat().st_size / 1e6, 1)}


def _queries(engine, rng: random.Random, per_kind: int) -> dict[str, list[SearchQuery]]:  # type: ignore[no-untyped-def]
    with engine.connect() as db:
        n = db.exec_driver_sql("SELECT max(id) FROM titles").scalar_one()
        sample = [db.exec_driver_sql("SELECT title, author, isbn FROM titles WHERE id = ?",
                                     (rng.randint(1, n),)).one() for _ in range(per_kind)]
        codes = db.exec_driver_sql(
            f"SELECT barcode FROM copies ORDER BY random() LIMIT {per_kind}").scalars().all()
    queries: dict[str, list[SearchQuery]] = {k: [] for k in
                                             ("words", "prefix", "author", "isbn", "accession", "filtered")}
    for (title, author, isbn), code in zip(sample, codes):
        words = fold_words(title)
        take = words[:min(len(words), rng.randint(2, 4))]
        queries["words"].append(SearchQuery(" ".join(take)))
        queries["prefix"].append(SearchQuery(f"{words[0]} {words[1][:2]}" if len(words[1]) > 2
                                             else f"{words[0]} {words[1]}"))
        queries["author"].append(SearchQuery(" ".join(fold_words(author)), field="author"))
        queries["isbn"].append(SearchQuery(f"{isbn[:3]}-{isbn[3:6]}-{isbn[6:12]}-{isbn[12]}"))
        queries["accession"].append(SearchQuery(code))
        queries["filtered"].append(SearchQuery(" ".join(take[:2]), kind=rng.choice(KINDS)))
    return queries


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"count": len(ordered), "p50": at(0.50), "p95": at(0.95), "p99": at(0.99),
            "max": round(ordered[-1], 3), "mean": round(statistics.fmean(ordered), 3)}


def run(titles: int, copies: int, per_kind: int, seed: int, keep: Path | None) -> dict[str, object]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        path = (keep or Path(tmp)) / "catalogue.db"
        if path.exists():
            path.unlink()
        print(f"building {titles} titles, about {copies} copies ...", file=sys.stderr)
        figures = build(path, titles, copies / titles if titles else 0, rng)
        engine = make_engine(f"sqlite:///{path}")
        catalogue = Catalogue(engine)
        queries = _queries(engine, rng, per_kind)
        latency: dict[str, dict[str, float]] = {}
        empty: dict[str, int] = {}
        for kind, batch in queries.items():
            catalogue.search(batch[0])  # warm the page cache for this kind
            samples, misses = [], 0
            for query in batch:
                started = time.perf_counter()
                results = catalogue.search(query)
                samples.append((time.perf_counter() - started) * 1000)
                misses += not results.hits
            latency[kind] = _percentiles(samples)
            empty[kind] = misses
            print(f"{kind}: p95 {latency[kind]['p95']} ms", file=sys.stderr)
        engine.dispose()
    worst = max(v["p95"] for v in latency.values())
    return {"build": figures, "latency_ms": latency, "no_result": empty,
            "target_p95_ms": TARGET_P95_MS, "worst_p95_ms": worst,
            "meets_target": worst < TARGET_P95_MS,
            "sqlite": _sqlite_version()}


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--titles", type=int, default=200_000)
    parser.add_argument("--copies", type=int, default=None, help="default: 5 per title")
    parser.add_argument("--queries", type=int, default=300, help="queries per kind")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", type=Path, default=None, help="build the file in this folder and keep it")
    args = parser.parse_args(argv)
    if args.titles < 10:
        parser.error("--titles must be at least 10")
    copies = args.copies if args.copies is not None else args.titles * 5
    print(json.dumps(run(args.titles, copies, args.queries, args.seed, args.keep), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
