"""The `[web]` table of the server's configuration file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Off unless the config asks: a server opens a port for browsers only where its
    # operator said so (config/server.example.toml and the demo turn it on).
    enabled: bool = False
    # Every interface: the librarian's PC and the readers' phones are elsewhere on the
    # school's network. Put "127.0.0.1" behind a reverse proxy that terminates TLS.
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    # Mark the session cookie Secure. A request that arrives over https (directly, or
    # through a proxy on this machine that sets X-Forwarded-Proto) gets it regardless.
    cookie_secure: bool = False
    # A staff session ends this long after login, whatever is done meanwhile.
    session_hours: float = Field(default=12.0, gt=0, le=24 * 31)
