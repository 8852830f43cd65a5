"""Aggregate mode: the same `server/` code run by a commune office (Phòng VH-XH) or a
province (Sở GD&ĐT) to collect every school's upward stream and build combined views.

- `config`: the aggregate's TOML config (the office, its database, its broker, the
  schools it expects).
- `models` + `schema`: its own tables on PostgreSQL (Alembic, own version table).
- `ingest`: the upward topics into the database, idempotently.
- `views`, `reports`: the combined figures and the downloadable report.
- `web`: the staff pages in aggregate mode.
"""
