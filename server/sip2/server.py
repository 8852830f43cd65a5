"""The SIP2 server: TCP (optionally TLS), a thread per connection.

Why threads and not asyncio: every answer is a call into the circulation core, which is
synchronous (SQLAlchemy on a held connection) and serializes its transactions anyway;
under asyncio each call would go to a thread pool all the same. A school has a handful
of self-check machines, each holding one long connection, so a thread each (at most
`max_connections`) is the simple and honest shape. Reads have the idle timeout as their
socket timeout, so a silent machine frees its thread.

    server = Sip2Server(config.sip2, circulation, site=..., library_name=...)
    server.start()          # listening; server.port is the bound port
    ...
    server.stop()
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable

from protocol import encode as encode_json
from protocol import sip2, topics
from server.circulation import Circulation, Outcome
from server.models import StationKind
from server.sip2.config import Sip2Config
from server.sip2.handlers import Handlers, Publish
from server.sip2.session import Session
from server.stations import StationRegistry

log = logging.getLogger("thuvien.sip2")


def tls_context(config: Sip2Config) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def mqtt_publisher(service: object) -> Publish:
    """Publish what a SIP2 transaction committed (ledger entries, alerts) on the site's
    topics, as the MQTT service does: gates keep their on-loan set from the ledger."""
    client = service.client  # type: ignore[attr-defined]
    site = service.site  # type: ignore[attr-defined]

    def publish(outcome: Outcome) -> None:
        for entry in outcome.entries:
            client.publish(topics.ledger(site), encode_json(entry), qos=1)
        for alert in outcome.alerts:
            client.publish(topics.alert(site), encode_json(alert), qos=1)

    return publish


class Sip2Server:
    def __init__(self, config: Sip2Config, circulation: Circulation, *, site: str,
                 library_name: str = "", language: str = "vi",
                 stations: StationRegistry | None = None, publish: Publish | None = None,
                 station_kind: Callable[[str], StationKind | None] | None = None) -> None:
        self.config = config
        self.handlers = Handlers(circulation, config, site, library_name, language, publish)
        registry = stations or StationRegistry(circulation.engine)
        self._station_kind = station_kind or registry.kind
        self._tls = tls_context(config)
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self.sessions_served = 0

    @property
    def port(self) -> int:
        assert self._listener is not None, "not started"
        return self._listener.getsockname()[1]

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> None:
        listener = socket.create_server((self.config.host, self.config.port), reuse_port=False,
                                        backlog=64)
        listener.settimeout(0.5)  # so stop() is seen without a wake-up connection
        self._listener = listener
        self._accepter = threading.Thread(target=self._accept, name="sip2-accept", daemon=True)
        self._accepter.start()
        log.info("SIP2 server on %s:%d (%s, %s, %s)", self.config.host, self.port,
                 "TLS" if self._tls else "plain TCP", self.config.encoding,
                 self.config.terminator.upper())

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._accepter is not None:
            self._accepter.join(timeout)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("SIP2 accept failed")
                continue
            peer = f"{address[0]}:{address[1]}"
            with self._lock:
                full = len(self._connections) >= self.config.max_connections
            if full:
                log.warning("sip2 %s: refused, %d connections already", peer,
                            self.config.max_connections)
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn, peer),
                                      name=f"sip2-{peer}", daemon=True)
            with self._lock:
                self._connections.add(conn)
                self._threads.add(thread)
            thread.start()

    def _serve(self, conn: socket.socket, peer: str) -> None:
        session: Session | None = None
        reason = "closed by the client"
        raw = conn
        try:
            conn.settimeout(self.config.idle_timeout_seconds)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            log.info("sip2 %s: connected%s", peer, " (TLS)" if self._tls else "")
            session = Session(self.handlers, self.config, peer, self._station_kind)
            framer = sip2.Framer(self.config.max_message_bytes)
            while not session.closed and not self._stopping.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    break
                try:
                    frames = framer.feed(chunk)
                except sip2.FrameTooLong as exc:
                    reason = f"oversized message: {exc}"
                    break
                for frame in frames:
                    answer = session.receive(frame)
                    if answer is not None:
                        conn.sendall(answer)
                    if session.closed:
                        reason = "closed by the server"
                        break
        except TimeoutError:
            reason = f"idle for {self.config.idle_timeout_seconds:g} s"
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            reason = f"connection error: {exc}"
        except Exception:  # never let one connection take the server down
            log.exception("sip2 %s: unexpected error", peer)
            reason = "internal error"
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self._lock:
                self._connections.discard(raw)
                self._threads.discard(threading.current_thread())
                self.sessions_served += 1
            station = session.station if session is not None else None
            log.info("sip2 %s: session of %s ended after %d messages (%s)", peer,
                     station or "no station", session.messages if session else 0, reason)
