"""Fixtures: the sample library on a real SQLite file, registered stations with SIP2
accounts, and our SIP2 server on a free port of 127.0.0.1."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The server tests' sample library (its readers, copies, rules and clock).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from circulation_sample import Library, WallClock, local, make_config, seed  # noqa: E402

from protocol import sip2  # noqa: E402
from server import stations  # noqa: E402
from server.circulation import Circulation  # noqa: E402
from server.config import ServerConfig  # noqa: E402
from server.db import make_engine, session_factory, upgrade  # noqa: E402
from server.sip2 import Sip2Config, Sip2Server  # noqa: E402
from server.sip2.config import set_password  # noqa: E402

KIOSK, KIOSK_PASSWORD = "kiosk-sip2", "mat-khau-kiosk"
DESK, DESK_PASSWORD = "desk-1", "mat-khau-quay"
GATE, GATE_PASSWORD = "gate-1", "mat-khau-cong"  # a gate may not speak SIP2
INSTITUTION = "thcs-nhut-tao"


@pytest.fixture(scope="session")
def _seeded(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("sip2-seed") / "thuvien.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    seed(session_factory(engine))
    for name, kind in ((KIOSK, "kiosk"), (DESK, "desk"), (GATE, "gate")):
        stations.register(engine, name, kind)
    engine.dispose()
    return path.read_bytes()


@pytest.fixture(scope="session")
def _accounts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sip2-accounts") / "sip2-accounts"
    for name, password in ((KIOSK, KIOSK_PASSWORD), (DESK, DESK_PASSWORD),
                           (GATE, GATE_PASSWORD)):
        set_password(path, name, password)
    return path


@pytest.fixture
def library(_seeded: bytes, tmp_path: Path) -> Iterator[Library]:
    path = tmp_path / "thuvien.db"
    path.write_bytes(_seeded)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    yield Library(url=url, engine=engine, sessions=session_factory(engine))
    engine.dispose()


@pytest.fixture
def clock() -> WallClock:
    return WallClock(local(2026, 10, 5))  # a Monday in the first term


@pytest.fixture
def server_config() -> ServerConfig:
    return make_config()


@pytest.fixture
def circulation(library: Library, server_config: ServerConfig, clock: WallClock) -> Circulation:
    return Circulation(library.sessions, server_config, clock)


StartServer = Callable[..., Sip2Server]


@pytest.fixture
def start_server(circulation: Circulation, server_config: ServerConfig,
                 _accounts: Path) -> Iterator[StartServer]:
    started: list[Sip2Server] = []

    def start(**overrides: Any) -> Sip2Server:
        values: dict[str, Any] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                                  "accounts_file": str(_accounts)}
        values.update(overrides)
        server = Sip2Server(Sip2Config(**values), circulation, site=server_config.site,
                            library_name=server_config.school_name)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sip2_server(start_server: StartServer) -> Sip2Server:
    return start_server()


class Client:
    """A bare SIP2 client on a real socket: our codec writes, raw bytes come back."""

    def __init__(self, port: int, *, encoding: str = "utf-8", terminator: bytes = b"\r",
                 sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=5)
        self.encoding = encoding
        self.terminator = terminator
        self._buffer = b""
        self.sequence = 0

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_raw(self) -> bytes:
        """One answer, its terminator included; b"" if the server closed."""
        while self.terminator not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self._buffer = self._buffer, b""
                return rest
            self._buffer += chunk
        cut = self._buffer.index(self.terminator) + len(self.terminator)
        frame, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return frame

    def ask_raw(self, data: bytes) -> bytes:
        self.send_raw(data)
        return self.read_raw()

    def encode(self, message: sip2.Message, *, sequence: int | None = None) -> bytes:
        if sequence is None:
            self.sequence = (self.sequence + 1) % 10
            sequence = self.sequence
        return sip2.encode(message, sequence=sequence, encoding=self.encoding)

    def ask(self, message: sip2.Message, **kwargs: Any) -> sip2.Message:
        raw = self.ask_raw(self.encode(message, **kwargs))
        assert raw, f"the server closed the connection after {message!r}"
        return sip2.decode(raw, self.encoding, strict=True)

    def login(self, name: str = KIOSK, password: str = KIOSK_PASSWORD) -> sip2.Message:
        return self.ask(sip2.LoginRequest(CN=name, CO=password, CP="Quay muon"))

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def connect(sip2_server: Sip2Server) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def _connect(server: Sip2Server | None = None, **kwargs: Any) -> Client:
        client = Client((server or sip2_server).port, **kwargs)
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        client.close()


@pytest.fixture
def kiosk(connect: Callable[..., Client]) -> Client:
    """A client logged in as the registered kiosk."""
    client = connect()
    assert client.login().ok == "1"
    return client
