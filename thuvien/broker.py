"""An MQTT broker on a free local port for the demo, the tests and the benchmarks.

Production runs the system Mosquitto with config/mosquitto/thuvien.conf; this module
starts a private broker instead, so that nothing here depends on (or disturbs) a broker
that may already listen on 1883. Mosquitto is preferred: it is what schools run, and it
is the broker whose latency trap (Nagle's algorithm) we must reproduce and avoid. The
embedded amqtt broker is the fallback for a laptop where Mosquitto is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

__all__ = [
    "Broker",
    "BrokerError",
    "EmbeddedBroker",
    "MosquittoBroker",
    "embedded_available",
    "free_port",
    "mosquitto_available",
    "mosquitto_binary",
    "start_broker",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_POLL_S = 0.02
# Debian installs the broker in /usr/sbin, which is not on a normal user's PATH.
_MOSQUITTO_FALLBACK = Path("/usr/sbin/mosquitto")

BrokerKind = Literal["mosquitto", "embedded"]


class BrokerError(RuntimeError):
    """The broker could not be started (or is not installed)."""


@runtime_checkable
class Broker(Protocol):
    """What the demo, the tests and the benchmarks need from a broker."""

    @property
    def kind(self) -> BrokerKind: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def url(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that nothing listens on right now (the kernel picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _url(host: str, port: int) -> str:
    return f"mqtt://[{host}]:{port}" if ":" in host else f"mqtt://{host}:{port}"


def _accepts_tcp(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def mosquitto_binary() -> Path | None:
    """The Mosquitto executable, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    if _MOSQUITTO_FALLBACK.is_file() and os.access(_MOSQUITTO_FALLBACK, os.X_OK):
        return _MOSQUITTO_FALLBACK
    return None


def mosquitto_available() -> bool:
    return mosquitto_binary() is not None


def embedded_available() -> bool:
    try:
        import amqtt.broker  # noqa: F401
    except ImportError:
        return False
    return True


class _BrokerBase(ABC):
    """The address and context-manager plumbing shared by both brokers."""

    kind: BrokerKind

    def __init__(self, port: int | None, host: str) -> None:
        self._host = host
        # The port is fixed at construction so that restart() comes back on it.
        self._port = port if port is not None else free_port(host)

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return _url(self._host, self._port)

    @property
    @abstractmethod
    def running(self) -> bool: ...

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"


def _reap(process: subprocess.Popen[bytes], workdir: Path) -> None:
    """Last-resort cleanup if the owner never calls stop(): no orphan brokers."""
    if process.poll() is None:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_S)
    shutil.rmtree(workdir, ignore_errors=True)


class MosquittoBroker(_BrokerBase):
    """A private Mosquitto process with a generated config in a temporary directory."""

    kind: BrokerKind = "mosquitto"

    def __init__(
        self,
        port: int | None = None,
        host: str = DEFAULT_HOST,
        *,
        extra_config: str = "",
        persistent: bool = False,
        binary: str | Path | None = None,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        """`extra_config` is appended verbatim (password_file, acl_file, ...); it must
        not change log_dest, which start() reads to know the broker is up.

        `persistent` keeps QoS 1 queues and retained messages across restart() in
        the temporary directory, as the production broker does across reboots.
        """
        super().__init__(port, host)
        found = Path(binary) if binary is not None else mosquitto_binary()
        if found is None:
            raise BrokerError("Mosquitto is not installed (apt-get install mosquitto)")
        self._binary = found
        self._extra_config = extra_config
        self._persistent = persistent
        self._start_timeout = start_timeout
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def log_path(self) -> Path:
        return self._workdir() / "mosquitto.log"

    @property
    def config_path(self) -> Path:
        return self._workdir() / "mosquitto.conf"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _workdir(self) -> Path:
        if self._dir is None:
            raise BrokerError("the broker has not been started")
        return self._dir

    def config_text(self) -> str:
        workdir = self._workdir()
        lines = [
            "# Generated by thuvien.broker for a private test/demo broker.",
        ]
        if os.geteuid() == 0:
            # Run as root, Mosquitto drops to the 'mosquitto' user, which cannot write
            # our 0700 temp dir; naming the current user keeps it as is.
            lines.append(f"user {getpass.getuser()}")
        lines += [
            f"listener {self._port} {self._host}",
            "allow_anonymous true",
            # Without it every small publish waits ~40 ms on Nagle (docs STACK.md).
            "set_tcp_nodelay true",
        ]
        if self._persistent:
            lines += [
                "persistence true",
                f"persistence_location {workdir}/",
                # Save after every change, so that even kill() loses next to nothing.
                "autosave_on_changes true",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        lines += [
            f"log_dest file {workdir / 'mosquitto.log'}",
            # One type per line: Mosquitto reads only the first word of a log_type line.
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        text = "\n".join(lines) + "\n"
        if self._extra_config:
            text += "\n# extra_config\n" + self._extra_config.rstrip("\n") + "\n"
        return text

    def start(self) -> None:
        if self.running:
            return
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="thuvien-mosquitto-"))
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        try:
            self._spawn()
        except BaseException:
            self._cleanup_dir()
            raise

    def _spawn(self) -> None:
        workdir = self._workdir()
        # Only a "running" line written by this process counts (restart() reuses the log).
        log_offset = self._log_size()
        # Mosquitto says why it refused a config on stderr, before its log file opens.
        with open(workdir / "stderr.log", "ab") as stderr:
            process = subprocess.Popen(
                [str(self._binary), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=workdir,
                # Its own process group: a Ctrl-C in the demo's terminal is ours to handle.
                start_new_session=True,
            )
        self._process = process
        self._finalizer = weakref.finalize(self, _reap, process, workdir)
        deadline = time.monotonic() + self._start_timeout
        while True:
            if process.poll() is not None:
                message = self._failure(f"exited with code {process.returncode}")
                self._stop_process(graceful=False)
                raise BrokerError(message)
            # The "running" line proves the listener is ours: if the port were taken,
            # Mosquitto would exit before logging it, while a connect could reach the
            # other process.
            if self._logged_since(log_offset, " running") and _accepts_tcp(self._host, self._port):
                log.debug("mosquitto pid %d listening on %s", process.pid, self.url)
                return
            if time.monotonic() > deadline:
                self._stop_process(graceful=False)
                raise BrokerError(self._failure(f"did not listen within {self._start_timeout:g} s"))
            time.sleep(_POLL_S)

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _logged_since(self, offset: int, needle: str) -> bool:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return needle.encode() in f.read()
        except OSError:
            return False

    def _failure(self, what: str) -> str:
        workdir = self._workdir()
        parts = [f"mosquitto on {self.url} {what}"]
        for name in ("stderr.log", "mosquitto.log"):
            tail = _tail(workdir / name)
            if tail:
                parts.append(f"--- {name} (tail) ---\n{tail}")
        return "\n".join(parts)

    def _stop_process(self, *, graceful: bool) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if graceful:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    log.warning("mosquitto pid %d ignored SIGTERM; killing it", process.pid)
            if process.poll() is None:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: clients just lose the connection, nothing is saved.

        The work directory is kept so that restart() brings the broker back on the
        same port (with its persisted queue if `persistent`).
        """
        self._stop_process(graceful=False)

    def restart(self) -> None:
        """Stop (gracefully, if still running) and start again on the same port."""
        self._stop_process(graceful=True)
        if self._dir is None:
            self.start()
        else:
            self._spawn()

    def stop(self) -> None:
        self._stop_process(graceful=True)
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _quiet_amqtt_loggers() -> None:
    # amqtt logs every connection at INFO and its state machine (transitions) too;
    # leave alone any level the application has already chosen.
    for name in ("amqtt", "transitions"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


class EmbeddedBroker(_BrokerBase):
    """amqtt's pure-Python broker on its own asyncio loop in a background thread."""

    kind: BrokerKind = "embedded"

    def __init__(
        self,
        port: int | None = None,
        host: str = DEFAULT_HOST,
        *,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        if not embedded_available():
            raise BrokerError("amqtt is not installed (pip install 'thuvien[embedded-broker]')")
        super().__init__(port, host)
        self._start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None  # amqtt.broker.Broker; amqtt ships no type stubs

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._broker is not None

    def config(self) -> dict[str, Any]:
        """amqtt 0.12's config dict: one TCP listener, anonymous clients, no topic checks."""
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self._host}:{self._port}"}},
            # Naming the plugins replaces amqtt's defaults: no packet/event loggers, no
            # $SYS publisher, and no topic-check plugin (so topic filtering is off).
            # The legacy 'auth'/'topic-check' keys raise DeprecationWarning in 0.12.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

    def start(self) -> None:
        if self.running:
            return
        _quiet_amqtt_loggers()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=f"amqtt-broker-{self._port}", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._start_async(), loop).result(self._start_timeout)
        except BaseException as exc:
            self._stop_loop()
            if isinstance(exc, BrokerError):
                raise
            raise BrokerError(f"embedded broker on {self.url} failed to start: {exc!r}") from exc

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    async def _start_async(self) -> None:
        from amqtt.broker import Broker as AmqttBroker

        # amqtt binds the broker to the running loop at construction: build it here.
        broker = AmqttBroker(self.config())
        await broker.start()
        self._broker = broker

    def stop(self) -> None:
        loop, broker = self._loop, self._broker
        if loop is None:
            return
        if broker is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
            try:
                future.result(STOP_TIMEOUT_S)
            except Exception as exc:  # a failed shutdown must still free the port below
                log.warning("embedded broker shutdown failed: %r", exc)
        self._broker = None
        self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if loop.is_running():
            # Client handler tasks outlive Broker.shutdown(); cancel them so that no
            # socket stays open and the loop closes without "Task was destroyed" noise.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_other_tasks(), loop).result(STOP_TIMEOUT_S)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(STOP_TIMEOUT_S)
        if not loop.is_running():
            loop.close()
        self._loop, self._thread = None, None


async def _cancel_other_tasks() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def start_broker(
    prefer: str = "auto", port: int | None = None, *, host: str = DEFAULT_HOST
) -> Broker:
    """Start and return a broker: "auto" takes Mosquitto when installed, else amqtt."""
    if prefer not in ("auto", "mosquitto", "embedded"):
        raise ValueError(f"prefer must be 'auto', 'mosquitto' or 'embedded', not {prefer!r}")
    broker: Broker
    if prefer == "mosquitto" or (prefer == "auto" and mosquitto_available()):
        broker = MosquittoBroker(port, host)
    elif prefer == "embedded" or embedded_available():
        broker = EmbeddedBroker(port, host)
    else:
        raise BrokerError(
            "no MQTT broker available: install Mosquitto (apt-get install mosquitto) "
            "or amqtt (pip install 'thuvien[embedded-broker]')"
        )
    broker.start()
    return broker
