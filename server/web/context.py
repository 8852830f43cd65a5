"""What every page handler shares: the config, the database, the templates, the language.

`routes(context)` functions (the staff pages here, the catalogue in `opac.py`) receive one
`WebContext`; `context.render(request, "x.html", {...})` renders a template with what
`base.html` needs already in it: `_` (the request's translator), `lang`, `school_name`,
`path`, `staff` (the signed-in staff user or None) and `csrf_token`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from server.config import ServerConfig
from server.web.config import WebConfig
from server.web.i18n import LANG_COOKIE, LANGUAGES, STAFF_VI, Catalogue

if TYPE_CHECKING:
    from server.web.live import StationMonitor

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class WebContext:
    config: ServerConfig
    web: WebConfig
    sessions: sessionmaker[Session]
    engine: Engine
    clock: Callable[[], dt.datetime] = utc_now
    monitor: StationMonitor | None = None
    catalogue: Catalogue = field(default_factory=lambda: Catalogue(STAFF_VI))
    templates: Jinja2Templates = field(init=False)

    def __post_init__(self) -> None:
        self.zone = ZoneInfo(self.config.calendar.timezone)
        self.templates = Jinja2Templates(directory=str(TEMPLATES),
                                         context_processors=[self._base_values])
        self.templates.env.filters["local_time"] = self.local_time
        self.templates.env.globals["local_time"] = self.local_time
        self.templates.env.globals["languages"] = LANGUAGES

    # --- language and time ---------------------------------------------------------

    def language(self, request: Request) -> str:
        chosen = request.cookies.get(LANG_COOKIE)
        return chosen if chosen in LANGUAGES else self.config.language

    def local_time(self, when: dt.datetime | None, with_date: bool = True) -> str:
        """A time as the librarian reads it: the site's zone, day first (Vietnamese order)."""
        if when is None:
            return ""
        local = when.astimezone(self.zone)
        return local.strftime("%H:%M:%S %d/%m/%Y" if with_date else "%H:%M:%S")

    # --- rendering -----------------------------------------------------------------

    def _base_values(self, request: Request) -> dict[str, Any]:
        lang = self.language(request)
        return {
            "lang": lang,
            "_": self.catalogue.translator(lang),
            "school_name": self.config.school_name,
            "path": request.url.path,
            "staff": getattr(request.state, "staff", None),
            "csrf_token": getattr(request.state, "csrf_token", ""),
        }

    def render(self, request: Request, name: str, values: Mapping[str, Any] | None = None,
               status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        return self.templates.TemplateResponse(request, name, dict(values or {}),
                                               status_code=status_code,
                                               headers=dict(headers) if headers else None)

    def render_fragment(self, lang: str, name: str, values: Mapping[str, Any]) -> str:
        """A template rendered outside a request (for server-sent events)."""
        template = self.templates.env.get_template(name)
        return template.render({"lang": lang, "_": self.catalogue.translator(lang), **values})
