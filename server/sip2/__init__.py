"""The SIP2 gateway: other libraries' self-check machines on our circulation core.

protocol/sip2.py is the codec; here are the `[sip2]` config (config.py), the answers
(handlers.py), one connection's rules (session.py) and the TCP/TLS server (server.py).

The server is imported on first use: `server.config` imports `Sip2Config` from here,
and the server itself needs the circulation core, which needs the config.
"""

from typing import Any

from server.sip2.config import Sip2Config

__all__ = ["Sip2Config", "Sip2Server", "mqtt_publisher"]


def __getattr__(name: str) -> Any:
    if name in ("Sip2Server", "mqtt_publisher"):
        from server.sip2 import server

        return getattr(server, name)
    raise AttributeError(f"module 'server.sip2' has no attribute {name!r}")
