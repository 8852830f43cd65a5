"""TOML configuration text -> pydantic model, with errors that name file, line and field.

Both the server and the stations read TOML files; this is the one loader, kept here
because `protocol` is the only package both sides may import. It does no I/O: callers
read the file and pass its text.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file that cannot be used; `str()` is ready to print."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}:{p}" for p in problems))


_TABLE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-.]+(?:\s*\.\s*[A-Za-z0-9_\-"']+)*)\s*=""")


def _split_key(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each table and key path, with array-of-table indexes, to its 1-based line."""
    lines: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    array_counts: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if match := _TABLE.match(line):
            path = _split_key(match.group(2))
            if match.group(1) == "[[":
                index = array_counts.get(path, -1) + 1
                array_counts[path] = index
                table = (*path, index)
            else:
                table = path
            lines.setdefault(table, number)
            continue
        if match := _KEY.match(line):
            lines.setdefault((*table, *_split_key(match.group(1))), number)
    return lines


def _line_of(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    # The deepest path that the file spells out: a missing field is reported at its table.
    for end in range(len(loc), 0, -1):
        if (line := lines.get(tuple(loc[:end]))) is not None:
            return line
    return None


def _spelled_path(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> tuple[Any, ...]:
    """The error's path as the file spells it: without pydantic's union tags.

    A discriminated union adds its tag to the path (`devices.scanner.simulated.state`);
    a part that the file does not have, followed by one it does, is such a tag.
    """
    path: tuple[Any, ...] = ()
    for index, part in enumerate(loc):
        if isinstance(part, str) and part.startswith("function-"):
            continue
        following = loc[index + 1] if index + 1 < len(loc) else None
        if ((*path, part) not in lines and following is not None
                and (*path, following) in lines):
            continue
        path = (*path, part)
    return path


def load_toml(text: str, source: str, model: type[M]) -> M:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{match.group(1)}:{match.group(2)}" if match else "1"
        raise ConfigError(source, [f"{where}: not valid TOML: {exc}"]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = key_lines(text)
        problems = []
        for err in exc.errors(include_url=False):
            loc = _spelled_path(err["loc"], lines)
            if err["type"] in ("union_tag_invalid", "union_tag_not_found") or err["type"].endswith("_type"):
                # A wrong `type = ...` picks no model: point at the line that says it.
                loc = (*loc, "type") if (*loc, "type") in lines else loc
            field = ".".join(str(p) for p in loc) or "(file)"
            line = _line_of(loc, lines)
            problems.append(f"{line or 1}: {field}: {err['msg']}")
        raise ConfigError(source, problems) from None


def load_toml_file(path: str, model: type[M]) -> M:
    """Convenience for callers that have a path; the only I/O in this module."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(path, [f"1: cannot read the file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"1: the file is not UTF-8 text: {exc.reason}"]) from None
    return load_toml(text, path, model)


class MqttConfig(BaseModel):
    """How a program reaches the broker: the `[mqtt]` table of every config file."""

    model_config = ConfigDict(extra="forbid")

    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    # Secrets never live in the file: the name of an environment variable, or a file
    # (a systemd credential under $CREDENTIALS_DIRECTORY, for example).
    password_env: str | None = None
    password_file: str | None = None
    client_id: str | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)
    # TLS to the broker's 8883 listener, trusting the school's own CA (docs/security.md).
    tls: bool = False
    ca_file: str | None = None

    @model_validator(mode="after")
    def _tls_needs_a_ca(self) -> MqttConfig:
        if self.tls and not self.ca_file:
            raise ValueError("tls = true needs ca_file (the school's CA certificate)")
        return self

    def apply_tls(self, client: Any) -> None:
        """Turn TLS on for a paho client when this config asks for it."""
        if self.tls:
            import os

            client.tls_set(ca_certs=os.path.expandvars(self.ca_file or ""))

    def password(self) -> str | None:
        import os

        if self.password_env:
            return os.environ.get(self.password_env)
        if self.password_file:
            path = os.path.expandvars(self.password_file)
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        return None
