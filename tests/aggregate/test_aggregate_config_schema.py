"""The aggregate's config (errors naming file, line and field) and its own schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from protocol.configfile import ConfigError
from server.aggregate import schema
from server.aggregate.config import load
from server.aggregate.models import ACCOUNT_TABLES, AggregateBase
from server.models import Base

ROOT = Path(__file__).resolve().parents[2]

HEAD = """version = 1
name = "Phòng Văn hoá - Xã hội Phường An Hội"
level = "{level}"
{extra}
[database]
url = "postgresql+psycopg://thuvien@localhost/agg"
"""


def head(level: str, extra: str = "") -> str:
    return HEAD.format(level=level, extra=extra)


def _write(tmp_path: Path, text: str, csv: str | None = None) -> str:
    if csv is not None:
        (tmp_path / "schools.csv").write_text(csv, encoding="utf-8")
    path = tmp_path / "aggregate.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_example_config_loads() -> None:
    config = load(str(ROOT / "config" / "aggregate.example.toml"))
    assert (config.level, len(config.schools), config.client_id()) == ("province", 2, "thuvien-aggregate-ben-tre")
    assert config.schools[1].levels == ["primary"]  # `level = "primary"`


def test_schools_from_a_csv_beside_the_config(tmp_path: Path) -> None:
    path = _write(tmp_path, head("commune", 'schools_file = "schools.csv"') +
                  '[[schools]]\nsite = "mn-hoa-sen"\nname = "Trường Mầm non Hoa Sen"\nlevels = ["preschool"]\n',
                  "\ufeffsite,name,commune,levels\nth-an-hoi,Trường TH An Hội,,TH\n"
                  "thcs-an-hoi,\"Trường THCS An Hội, cơ sở 2\",Phường An Hội,thcs;thpt\n")
    config = load(path)
    assert [(s.site, s.commune, s.levels) for s in config.schools] == [
        ("mn-hoa-sen", "Phòng Văn hoá - Xã hội Phường An Hội", ["preschool"]),
        ("th-an-hoi", "Phòng Văn hoá - Xã hội Phường An Hội", ["primary"]),
        ("thcs-an-hoi", "Phường An Hội", ["lower_secondary", "upper_secondary"])]
    assert config.client_id() == "thuvien-aggregate-ph-ng-v-n-ho-x-h-i-ph-ng-an-h-i"


@pytest.mark.parametrize(("toml", "csv", "where", "message"), [
    (head("province") + '[[schools]]\nsite = "th-a"\nname = "A"\nlevels = ["primary"]\n',
     None, "aggregate.toml:7: schools.0.commune", "required at a province"),
    (head("district"), None, "aggregate.toml:3: level", "province"),
    (head("commune") + '[[schools]]\nsite = "TH A"\nname = "A"\nlevel = "primary"\n',
     None, "aggregate.toml:8: schools.0.site", "must be 1-64 characters"),
    (head("commune") + '[[schools]]\nsite = "th-a"\nname = "A"\nlevels = ["college"]\n',
     None, "aggregate.toml:10: schools.0.levels.0", "preschool"),
    (head("commune", 'schools_file = "schools.csv"'),
     "site,name,commune,levels\nth-a,A,,TH\nth-b,B,,college\n", "schools.csv:3: levels.0", "preschool"),
    (head("province", 'schools_file = "schools.csv"'),
     "site,name,commune,levels\nth-a,A,,TH\n", "schools.csv:2: commune", "required at a province"),
    (head("commune", 'schools_file = "schools.csv"'), "site,name\nth-a,A\n",
     "schools.csv:1:", "missing: levels"),
    (head("commune", 'schools_file = "schools.csv"') +
     '[[schools]]\nsite = "th-a"\nname = "A"\nlevels = ["primary"]\n',
     "site,name,commune,levels\nth-a,A again,,TH\n", "aggregate.toml:1: schools_file", "listed twice"),
])
def test_config_errors_name_file_line_and_field(tmp_path: Path, toml: str, csv: str | None,
                                                where: str, message: str) -> None:
    path = _write(tmp_path, toml, csv)
    with pytest.raises(ConfigError) as caught:
        load(path)
    text = str(caught.value)
    assert where in text and message in text, text


def test_the_schema_is_its_own(agg_url: str) -> None:
    # Its own version table: the school's `alembic_version` is not there to confuse.
    assert schema.current_revision(agg_url) == schema.head_revision() == "a0001"
    engine = schema.make_engine(agg_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert "aggregate_alembic_version" in tables and "alembic_version" not in tables
        assert {"agg_entries", "agg_monthly_loans", "agg_schools", "agg_snapshots", "agg_counters",
                *ACCOUNT_TABLES} <= tables
        assert not tables & (set(Base.metadata.tables) - set(ACCOUNT_TABLES))
        # The migration and the models agree, the account tables with the school's models.
        expected = MetaData()
        for table in [*AggregateBase.metadata.tables.values(),
                      *(Base.metadata.tables[name] for name in ACCOUNT_TABLES)]:
            table.to_metadata(expected)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": "aggregate_alembic_version"})
            diff = [d for d in compare_metadata(context, expected)
                    if not (d[0] == "remove_table" and d[1].name == "aggregate_alembic_version")]
        assert diff == []
    finally:
        engine.dispose()
