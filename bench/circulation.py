"""Circulation benchmark: simulated stations against the real server over a real Mosquitto.

N stations (default 20), each a `kiosk.link.MqttLink` in its own thread, repeat
identify -> checkout -> return with their own reader and their own copies for a set
time, against the library server (its own process by default) on a SQLite file filled
with the demo school. The same run first measures the bare broker round trip (a paho
client publishing QoS 1 to a topic it subscribes to): the floor any request must pay.
One JSON object goes to stdout; progress goes to stderr. See bench/README.md.

    .venv/bin/python bench/circulation.py                 # 20 stations, 50 ms think time
    .venv/bin/python bench/circulation.py --think-ms 0    # saturation
    .venv/bin/python bench/circulation.py --breakdown     # + time per step inside the server
    .venv/bin/python bench/circulation.py --profile s.pstats  # + cProfile of the server path
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `python bench/circulation.py`
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

log = logging.getLogger("thuvien.bench")

OPS = ("patron.identify", "loan.checkout", "loan.return")
TARGET_P99_MS = 20.0
TARGET_CHECKOUT_OVER_ECHO = 10.0
SERVER_STOP_TIMEOUT_S = 10.0


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    # The same socket option as the station and the server (STACK.md: Nagle adds ~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- statistics -----------------------------------------------------------------------

def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of sorted values."""
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(s * 1000.0 for s in seconds)
    if not ordered:
        return {"count": 0}
    return {"count": len(ordered),
            "p50": round(percentile(ordered, 50), 3),
            "p95": round(percentile(ordered, 95), 3),
            "p99": round(percentile(ordered, 99), 3),
            "max": round(ordered[-1], 3),
            "mean": round(sum(ordered) / len(ordered), 3)}


# --- the library: config, database, and what each station may borrow ------------------

@dataclass
class Library:
    config_path: Path
    config: Any  # server.config.ServerConfig
    seeded: dict[str, int]


@dataclass
class StationPlan:
    name: str
    card: str           # the reader's code, as a card scan gives it
    items: list[str]    # barcodes of copies only this station touches


def prepare_library(workdir: Path, host: str, port: int, synchronous: str | None) -> Library:
    """The demo's server config, pointed at a fresh SQLite file filled by `seed_demo`."""
    from protocol.configfile import load_toml
    from server import db
    from server.config import ServerConfig
    from server.seed import seed_demo
    from thuvien.demo import school_year_start, server_toml

    text = server_toml(workdir / "library.db", port, web_port=None)
    text = re.sub(r'(?m)^site = ".*"$', 'site = "thcs-bench"', text, count=1)
    text = text.replace('host = "127.0.0.1"', f'host = "{host}"', 1)
    if synchronous:
        text = re.sub(r"(?m)^(url = .*)$", lambda m: f'{m.group(1)}\nsqlite_synchronous = "{synchronous}"',
                      text, count=1)
    config_path = workdir / "server.toml"
    config_path.write_text(text, encoding="utf-8")
    config = load_toml(text, str(config_path), ServerConfig)

    url = config.database.url
    db.upgrade(url)
    # Seeding is not what we measure: let it skip the per-commit fsync.
    engine = db.make_engine(url, "NORMAL")
    try:
        summary = seed_demo(db.session_factory(engine), school_year_start=school_year_start())
    finally:
        engine.dispose()
    seeded = {name: int(getattr(summary, name)) for name in ("titles", "copies", "students", "teachers", "staff")
              if isinstance(getattr(summary, name, None), int)}
    return Library(config_path=config_path, config=config, seeded=seeded)


def plan_stations(library: Library, stations: int, items_per_station: int) -> list[StationPlan]:
    """One active student with no loan per station, and copies no other station touches.

    Only short-loan kinds that students may borrow are used, and each cycle holds one
    copy at a time, so no loan limit, overdue block or race between stations can refuse.
    """
    from sqlalchemy import exists, select

    from server import db
    from server.models import Copy, CopyStatus, Loan, Reader, ReaderStatus

    rules = library.config.circulation
    kinds = [kind for kind in ("TN", "TK")
             if (policy := rules.policy_for("student", kind)) is not None
             and policy.max_items >= 1 and not policy.long_loan]
    if not kinds or rules.max_loans.get("student", 1) < 1:
        raise SystemExit("bench: the demo config lets students borrow neither TN nor TK books")
    engine = db.make_engine(library.config.database.url)
    try:
        with engine.connect() as connection:
            readers = connection.execute(
                select(Reader.code)
                .where(Reader.kind == "student", Reader.status == ReaderStatus.ACTIVE,
                       ~exists().where(Loan.reader_id == Reader.id))
                .order_by(Reader.id).limit(stations)).scalars().all()
            by_kind = {kind: connection.execute(
                select(Copy.barcode)
                .where(Copy.kind == kind, Copy.status == CopyStatus.AVAILABLE,
                       Copy.barcode.is_not(None), ~exists().where(Loan.copy_id == Copy.id))
                .order_by(Copy.id)).scalars().all() for kind in kinds}
    finally:
        engine.dispose()
    # Interleave the kinds so that every station lends both children's and reference books.
    copies = [code for group in zip(*by_kind.values(), strict=False) for code in group]
    if len(readers) < stations:
        raise SystemExit(f"bench: only {len(readers)} students without loans for {stations} stations")
    if len(copies) < stations * items_per_station:
        raise SystemExit(f"bench: only {len(copies)} free copies for {stations} stations "
                         f"x {items_per_station} items")
    plans = [StationPlan(name=f"bench-{i + 1:03d}", card=readers[i],
                         items=copies[i::stations][:items_per_station])
             for i in range(stations)]
    register_stations(library, [plan.name for plan in plans])
    return plans


def register_stations(library: Library, names: list[str]) -> None:
    """The server serves registered stations only: register the bench's kiosks."""
    from server import db, stations as registry

    engine = db.make_engine(library.config.database.url)
    try:
        for name in names:
            registry.register(engine, name, "kiosk")
    finally:
        engine.dispose()


# --- the server: its own process (default) or in this one -----------------------------

class BenchProcess:
    """A program the bench starts in its own session, its output in a log, stopped by
    SIGTERM (then killed)."""

    label = "the server"

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
        with open(self.log_path, "ab") as output:
            # Its own session: a Ctrl-C in the terminal is ours to handle, in order.
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                            stdout=output, stderr=output, start_new_session=True)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.label} exited with code {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _say(f"{self.label} (pid {process.pid}) ignored SIGTERM; killing it")
                process.kill()
                process.wait(timeout=SERVER_STOP_TIMEOUT_S)


class ServerProcess(BenchProcess):
    """`python -m thuvien.cli server` (or the instrumented twin below), stopped by SIGTERM."""

    def __init__(self, config_path: Path, workdir: Path, breakdown_file: Path | None,
                 profile_file: Path | None) -> None:
        if breakdown_file is None and profile_file is None:
            command = [sys.executable, "-m", "thuvien.cli", "--log-level", "WARNING",
                       "server", "--config", str(config_path)]
        else:
            command = [sys.executable, str(Path(__file__).resolve()), "--serve-instrumented", str(config_path)]
            if breakdown_file is not None:
                command += ["--breakdown-file", str(breakdown_file)]
            if profile_file is not None:
                command += ["--profile", str(profile_file)]
        super().__init__(command, workdir / "server.log")


class InprocServer:
    """`server.app.start_server` in this process: shares the GIL with the stations."""

    def __init__(self, config: Any, breakdown: Breakdown | None, profiler: Any | None) -> None:
        from server.app import start_server

        self.running = start_server(config, wait=10.0)
        if breakdown is not None:
            breakdown.install(self.running)
        if profiler is not None:
            install_profiler(self.running, profiler)
        self._stopped = False

    def check_alive(self) -> None:
        pass

    def log_tail(self, lines: int = 30) -> str:
        return ""

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.running.stop()


class Breakdown:
    """Wall time of each step of the server's request path, one row per request.

    Wraps, on the running server's own objects: the whole `LibraryService._handle`;
    `parse_request` (JSON + pydantic); `Circulation.handle` (one transaction: BEGIN
    IMMEDIATE, the look-ups, the rules, the inserts, COMMIT); the dialect's `do_commit`
    (the COMMIT itself, with its fsync under synchronous=FULL); `encode` of the reply
    and ledger entries; and paho's `publish` (queueing the reply and ledger messages).
    """

    STEPS = ("parse", "circulation", "commit", "encode", "publish")

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None

    def _timed(self, step: str, function: Callable[..., Any]) -> Callable[..., Any]:
        perf = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = perf()
            try:
                return function(*args, **kwargs)
            finally:
                row = self._current
                if row is not None:
                    row[step] += perf() - start
        return timed

    def install(self, running: Any) -> None:
        import server.service as service_module

        service = running.service
        handle = service._handle
        perf = time.perf_counter

        def timed_handle(topic: str, payload: bytes) -> None:
            row = {"at": time.time(), "op": "?", "total": 0.0, **dict.fromkeys(self.STEPS, 0.0)}
            self._current = row
            start = perf()
            try:
                handle(topic, payload)
            finally:
                row["total"] = perf() - start
                self._current = None
                self.rows.append(row)

        circulation_handle = self._timed("circulation", service.circulation.handle_request)

        def timed_circulation(request: Any, station: str) -> Any:
            if self._current is not None:
                self._current["op"] = request.op.value
            return circulation_handle(request, station)

        # Handling runs on paho's one network thread, so one "current row" is enough.
        service._handle = timed_handle
        service.circulation.handle_request = timed_circulation
        service_module.parse_request = self._timed("parse", service_module.parse_request)
        service_module.encode = self._timed("encode", service_module.encode)
        service.client.publish = self._timed("publish", service.client.publish)
        running.engine.dialect.do_commit = self._timed("commit", running.engine.dialect.do_commit)

    @staticmethod
    def summarize(rows: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
        rows = [row for row in rows if start <= row["at"] < end]
        out: dict[str, Any] = {}
        for op in ("all", *OPS):
            chosen = [row for row in rows if op == "all" or row["op"] == op]
            if not chosen:
                continue
            steps = {"total": [r["total"] for r in chosen]}
            for step in Breakdown.STEPS:
                steps[step] = [r[step] for r in chosen]
            # What is left in the transaction once the COMMIT is taken out: BEGIN, the
            # look-ups, the rules, the inserts, building the reply model.
            steps["sql_and_rules"] = [r["circulation"] - r["commit"] for r in chosen]
            steps["other"] = [r["total"] - r["parse"] - r["circulation"] - r["encode"] - r["publish"]
                              for r in chosen]
            out[op] = {step: summary_ms(values) for step, values in steps.items()}
        return out


def install_profiler(running: Any, profiler: Any) -> None:
    """cProfile on the server's request path only (it profiles the thread that enables it)."""
    service = running.service
    handle = service._handle

    def profiled(topic: str, payload: bytes) -> None:
        profiler.enable()
        try:
            handle(topic, payload)
        finally:
            profiler.disable()

    service._handle = profiled


def serve_instrumented(config_path: str, breakdown_file: str | None, profile_file: str | None) -> int:
    """The server process of `--breakdown` / `--profile`: `run_server`, instrumented."""
    import cProfile

    from server.app import start_server
    from server.config import load

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: stop.set())
    running = start_server(load(config_path))
    breakdown = Breakdown() if breakdown_file else None
    profiler = cProfile.Profile() if profile_file else None
    if breakdown is not None:
        breakdown.install(running)
    if profiler is not None:
        install_profiler(running, profiler)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        if breakdown is not None and breakdown_file:
            Path(breakdown_file).write_text(json.dumps(breakdown.rows), encoding="utf-8")
        if profiler is not None and profile_file:
            profiler.dump_stats(profile_file)
    return 0


# --- the bare broker round trip, and waiting for the server ----------------------------

class Probe:
    """A plain paho client with TCP_NODELAY: the echo floor and the server's status."""

    def __init__(self, host: str, port: int) -> None:
        self._connected = threading.Event()
        self._subscribed: dict[int, threading.Event] = {}
        self._handlers: dict[str, Callable[[bytes], None]] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"thuvien-bench-probe-{os.getpid()}", clean_session=True)
        self.client.on_socket_open = _no_delay
        self.client.on_connect = lambda *_a: self._connected.set()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise RuntimeError(f"the probe could not connect to the broker {host}:{port}")

    def _on_subscribe(self, _client: Any, _userdata: Any, mid: int, _codes: Any, _props: Any) -> None:
        self._subscribed.setdefault(mid, threading.Event()).set()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        handler = self._handlers.get(message.topic)
        if handler is not None:
            handler(bytes(message.payload))

    def subscribe(self, topic: str, handler: Callable[[bytes], None]) -> None:
        self._handlers[topic] = handler
        result, mid = self.client.subscribe(topic, qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None \
                or not self._subscribed.setdefault(mid, threading.Event()).wait(10):
            raise RuntimeError(f"could not subscribe to {topic}")

    def wait_server_online(self, site: str, since: float, server: Any, timeout: float = 30.0) -> None:
        """Until the server's retained status says online, stamped after we started it."""
        from protocol import ProtocolError, Status, parse_model, topics

        online = threading.Event()

        def on_status(payload: bytes) -> None:
            try:
                status = parse_model(Status, payload)
            except ProtocolError:
                return
            if status.state == "online" and status.at is not None and status.at.timestamp() >= since - 1:
                online.set()

        self.subscribe(topics.server_status(site), on_status)
        deadline = time.monotonic() + timeout
        while not online.wait(0.2):
            server.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not come online within {timeout:.0f} s\n{server.log_tail()}")

    def echo(self, seconds: float, min_samples: int, payload_size: int,
             pause: float = 0.0) -> list[float]:
        """Sequential QoS 1 publish -> own message back; the first 50 are a warm-up.

        With `pause`, each round trip follows an idle pause, as a station's requests do.
        """
        topic = f"thuvien-bench/echo/{os.getpid()}/{'paced' if pause else 'hot'}"
        arrived = threading.Event()
        expected = [b""]

        def on_echo(payload: bytes) -> None:
            if payload == expected[0]:
                arrived.set()

        self.subscribe(topic, on_echo)
        samples: list[float] = []
        perf = time.perf_counter
        end = perf() + seconds
        # min_samples is a goal, not a promise: a slow broker must not stall the run.
        give_up = end + 10.0 + min_samples * pause
        n = 0
        while (n < 50 + min_samples or perf() < end) and perf() < give_up:
            n += 1
            payload = f"{n:010d}".encode().ljust(payload_size, b".")
            expected[0] = payload
            arrived.clear()
            if pause and n > 50:
                time.sleep(pause)
            start = perf()
            self.client.publish(topic, payload, qos=1)
            if not arrived.wait(5):
                raise RuntimeError("the broker did not echo a message within 5 s")
            if n > 50:
                samples.append(perf() - start)
        self.client.unsubscribe(topic)
        return samples

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- the stations ----------------------------------------------------------------------

@dataclass
class Sample:
    op: str
    start: float        # time.perf_counter() when the request was sent
    seconds: float
    error: str | None   # None, an error code, or "timeout"


@dataclass
class StationRun:
    plan: StationPlan
    link: Any  # kiosk.link.MqttLink
    samples: list[Sample] = field(default_factory=list)
    failure: str | None = None


def connect_stations(plans: list[StationPlan], site: str, host: str, port: int,
                     timeout: float) -> list[StationRun]:
    from kiosk.link import MqttLink
    from protocol.configfile import MqttConfig

    runs: list[StationRun] = []
    try:
        for plan in plans:
            link = MqttLink(site, plan.name, "kiosk", MqttConfig(host=host, port=port),
                            request_timeout=timeout)
            runs.append(StationRun(plan, link))
            if not link.start(wait=10):
                raise RuntimeError(f"station {plan.name} could not connect to the broker")
    except BaseException:
        stop_stations(runs)
        raise
    return runs


def stop_stations(runs: list[StationRun]) -> None:
    # MqttLink logs its own clean disconnect as "lost the broker": not news here.
    logging.getLogger("thuvien.kiosk.link").setLevel(logging.ERROR)
    for run in runs:
        with contextlib.suppress(Exception):
            run.link.stop()


def station_loop(run: StationRun, think: float, stop_at: float, abort: threading.Event,
                 first_delay: float) -> None:
    """identify -> checkout -> return, each timed around `link.request`; finish each cycle."""
    from kiosk.backend import BackendUnavailable
    from protocol import CheckoutArgs, IdentifyArgs, Op, ReturnArgs

    perf = time.perf_counter
    plan, link, samples = run.plan, run.link, run.samples
    try:
        if first_delay and abort.wait(first_delay):
            return
        cycle = 0
        while perf() < stop_at and not abort.is_set():
            item = plan.items[cycle % len(plan.items)]
            cycle += 1
            for op, args in ((Op.PATRON_IDENTIFY, IdentifyArgs(card=plan.card)),
                             (Op.LOAN_CHECKOUT, CheckoutArgs(patron=plan.card, item=item)),
                             (Op.LOAN_RETURN, ReturnArgs(item=item))):
                start = perf()
                try:
                    reply = link.request(op, args)
                    error = None if reply.ok else (reply.error.code.value if reply.error else "?")
                except BackendUnavailable:
                    error = "timeout"
                samples.append(Sample(op.value, start, perf() - start, error))
                if think and abort.wait(think):
                    return
                if abort.is_set():
                    return
    except Exception as exc:  # reported, and counted as an error of the run
        run.failure = f"{type(exc).__name__}: {exc}"
        log.exception("station %s failed", plan.name)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(runs: list[StationRun], warmup: float, seconds: float, think: float, server: Any,
             pids: dict[str, int]) -> tuple[float, float, dict[str, float]]:
    """Run every station; returns the measured window (perf_counter start, end) and the
    share of one CPU core each process in `pids` used during it."""
    abort = threading.Event()
    begin = time.perf_counter()
    warm_until = begin + warmup
    stop_at = warm_until + seconds
    spread = random.Random(2026)
    threads = [threading.Thread(target=station_loop, name=run.plan.name, daemon=True,
                                args=(run, think, stop_at, abort, spread.uniform(0, think)))
               for run in runs]

    def sleep_until(moment: float) -> None:
        while (left := moment - time.perf_counter()) > 0:
            time.sleep(min(0.25, left))
            server.check_alive()

    cpu: dict[str, float] = {}
    try:
        for thread in threads:
            thread.start()
        sleep_until(warm_until)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        sleep_until(stop_at)
        for name, pid in pids.items():
            used, start = cpu_seconds(pid), before.get(name)
            if used is not None and start is not None:
                cpu[name] = round((used - start) / seconds, 3)
    except BaseException:
        abort.set()
        raise
    finally:
        for thread in threads:
            thread.join(timeout=30)
        abort.set()
    return warm_until, stop_at, cpu


# --- the run ---------------------------------------------------------------------------

def mosquitto_version() -> str | None:
    from thuvien.broker import mosquitto_binary

    binary = mosquitto_binary()
    if binary is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(binary), "-h"], capture_output=True, text=True, timeout=5)
        match = re.search(r"mosquitto version (\S+)", out.stdout + out.stderr)
        if match:
            return match.group(1)
    return None


def report(args: argparse.Namespace, runs: list[StationRun], window: tuple[float, float],
           echo: list[float], echo_paced: list[float] | None, library: Library,
           breakdown: dict[str, Any] | None,
           broker_info: dict[str, Any], cpu: dict[str, float]) -> dict[str, Any]:
    start, end = window
    all_samples = [s for run in runs for s in run.samples]
    measured = [s for s in all_samples if start <= s.start < end]
    errors: dict[str, int] = {}
    for sample in all_samples:  # warm-up included: every reply must be ok
        if sample.error is not None:
            errors[f"{sample.op}:{sample.error}"] = errors.get(f"{sample.op}:{sample.error}", 0) + 1
    for run in runs:
        if run.failure:
            errors[f"station:{run.failure}"] = errors.get(f"station:{run.failure}", 0) + 1
    ok = [s for s in measured if s.error is None]
    latency = {"all": summary_ms([s.seconds for s in ok])}
    for op in OPS:
        latency[op] = summary_ms([s.seconds for s in ok if s.op == op])
    echo_ms = summary_ms(echo)
    window_s = end - start
    circulation = sum(1 for s in ok if s.op in ("loan.checkout", "loan.return"))
    checkout_p50 = latency["loan.checkout"].get("p50")
    ratio = (round(checkout_p50 / echo_ms["p50"], 2)
             if checkout_p50 is not None and echo_ms.get("p50") else None)
    p99 = latency["all"].get("p99")
    result: dict[str, Any] = {
        "stations": args.stations,
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "think_ms": args.think_ms,
        "server": args.server,
        "transactions": len(measured),
        "tps": round(len(measured) / window_s, 1),
        "circulation_tps": round(circulation / window_s, 1),
        "cycles": sum(1 for s in measured if s.op == "loan.return"),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "latency_ms": latency,
        "echo_ms": echo_ms,
        "echo_paced_ms": summary_ms(echo_paced) if echo_paced is not None else None,
        "checkout_p50_over_echo_p50": ratio,
        "targets": {
            "p99_under_20ms": p99 is not None and p99 < TARGET_P99_MS,
            "checkout_p50_within_10x_echo": ratio is not None and ratio <= TARGET_CHECKOUT_OVER_ECHO,
        },
        # Share of one core used in the measured time: a server near 1.0 is the bottleneck
        # (it handles requests on one thread); bench_process is the stations (and, with
        # --server inproc, the server too).
        "cpu_cores_used": cpu,
        "sqlite_synchronous": library.config.database.sqlite_synchronous,
        "library": library.seeded,
        "broker": broker_info,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": args.loadavg_at_start,
                    "python": platform.python_version(),
                    "implementation": platform.python_implementation(),
                    "platform": platform.platform(), "sqlite": sqlite3.sqlite_version,
                    "paho": getattr(mqtt, "__version__", None) or _dist_version("paho-mqtt")},
        "at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if breakdown is not None:
        result["server_breakdown_ms"] = breakdown
    return result


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so that every `finally` below runs."""
    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from thuvien.broker import MosquittoBroker

    with contextlib.ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="thuvien-bench-"))
        if args.keep:
            _say(f"keeping {workdir}")
        else:
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)

        broker: MosquittoBroker | None = None
        if args.broker_port is None:
            broker = MosquittoBroker(host=args.broker_host)
            broker.start()
            cleanup.callback(broker.stop)
            broker_info = {"kind": "mosquitto", "version": mosquitto_version(), "own": True}
            port = broker.port
        else:
            port = args.broker_port
            broker_info = {"kind": "external", "own": False,
                           "note": "needs set_tcp_nodelay true (STACK.md)"}
        broker_info["url"] = f"mqtt://{args.broker_host}:{port}"

        _say("creating and seeding the library database ...")
        began = time.perf_counter()
        library = prepare_library(workdir, args.broker_host, port, args.sqlite_synchronous)
        plans = plan_stations(library, args.stations, args.items_per_station)
        _say(f"seeded {library.seeded} in {time.perf_counter() - began:.1f} s")

        probe = Probe(args.broker_host, port)
        cleanup.callback(probe.close)

        # --breakdown: timers in this process (inproc), or in the server's, which writes
        # its rows to a file when it stops (subprocess).
        inproc = args.server == "inproc"
        breakdown_rows = Breakdown() if args.breakdown and inproc else None
        breakdown_file = workdir / "breakdown.json" if args.breakdown and not inproc else None
        profile_file = Path(args.profile).resolve() if args.profile else None
        profiler = None
        if profile_file is not None and inproc:
            import cProfile

            profiler = cProfile.Profile()
        launched = time.time()
        server: ServerProcess | InprocServer
        if inproc:
            server = InprocServer(library.config, breakdown_rows, profiler)
        else:
            server = ServerProcess(library.config_path, workdir, breakdown_file, profile_file)
        cleanup.callback(server.stop)
        probe.wait_server_online(library.config.site, launched, server)
        _say(f"server ({args.server}) online")

        runs = connect_stations(plans, library.config.site, args.broker_host, port, args.timeout)
        cleanup.callback(stop_stations, runs)

        _say("measuring the bare broker echo ...")
        echo = probe.echo(args.echo_seconds, args.echo_samples, payload_size=256)
        echo_paced: list[float] | None = None
        if args.think_ms > 0:
            # The hot echo above is back to back; a station's request follows a pause, and
            # an idle CPU answers slower (cold caches, a halted vCPU): the same floor, paced.
            pause = args.think_ms / 1000.0
            echo_paced = probe.echo(0.0, max(20, min(100, int(3.0 / pause))), payload_size=256,
                                    pause=pause)
        _say(f"echo p50 {summary_ms(echo)['p50']} ms over {len(echo)} samples; "
             f"running {args.stations} stations for {args.warmup:g} + {args.seconds:g} s ...")

        wall_offset = time.time() - time.perf_counter()
        pids = {"bench_process": os.getpid()}
        if isinstance(server, ServerProcess):
            pids["server"] = server.process.pid
        if broker is not None and broker.pid is not None:
            pids["broker"] = broker.pid
        *window, cpu = run_load(runs, args.warmup, args.seconds, args.think_ms / 1000.0, server, pids)

        stop_stations(runs)
        server.stop()
        breakdown: dict[str, Any] | None = None
        if args.breakdown:
            if breakdown_rows is not None:
                rows = breakdown_rows.rows
            else:
                assert breakdown_file is not None
                if not breakdown_file.exists():
                    raise RuntimeError(f"the server wrote no breakdown\n{server.log_tail()}")
                rows = json.loads(breakdown_file.read_text(encoding="utf-8"))
            breakdown = Breakdown.summarize(rows, window[0] + wall_offset, window[1] + wall_offset)
        if profiler is not None and profile_file is not None:
            profiler.dump_stats(str(profile_file))
        if profile_file is not None:
            _say(f"server profile (warm-up included): {profile_file}; read it with "
                 f"python -m pstats {profile_file}")
        return report(args, runs, (window[0], window[1]), echo, echo_paced, library, breakdown,
                      broker_info, cpu)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/circulation.py",
        description="Simulated stations doing identify + checkout + return through a real "
                    "Mosquitto against the library server; prints one JSON object.")
    parser.add_argument("--stations", type=int, default=20, help="simulated stations (default 20)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time (default 20)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds run before the measured time, left out of the figures (default 1)")
    parser.add_argument("--think-ms", type=float, default=50.0,
                        help="pause of each station after each reply (default 50; 0 = saturation)")
    parser.add_argument("--items-per-station", type=int, default=3,
                        help="distinct copies each station lends in turn (default 3)")
    parser.add_argument("--broker-host", default="127.0.0.1")
    parser.add_argument("--broker-port", type=int, default=None,
                        help="use a running broker (default: start a private Mosquitto on a free port)")
    parser.add_argument("--server", choices=("subprocess", "inproc"), default="subprocess",
                        help="the server in its own process (default) or in this one")
    parser.add_argument("--sqlite-synchronous", choices=("FULL", "NORMAL"), default=None,
                        help="override the config's PRAGMA synchronous (default: the config's, FULL)")
    parser.add_argument("--breakdown", action="store_true",
                        help="time each step inside the server (parse, SQL, commit, publish)")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="cProfile the server's request handling into FILE (pstats format)")
    parser.add_argument("--timeout", type=float, default=5.0, help="request timeout in seconds (default 5)")
    parser.add_argument("--echo-seconds", type=float, default=2.0)
    parser.add_argument("--echo-samples", type=int, default=1000, help="at least this many echo samples")
    parser.add_argument("--json-out", default=None, help="also write the JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (DB, logs)")
    parser.add_argument("--serve-instrumented", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--breakdown-file", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_instrumented:
        return serve_instrumented(args.serve_instrumented, args.breakdown_file, args.profile)
    if args.stations < 1 or args.seconds <= 0 or args.think_ms < 0 or args.items_per_station < 1:
        raise SystemExit("bench: --stations and --items-per-station >= 1, --seconds > 0, --think-ms >= 0")
    # Other work on the machine skews the figures: say how busy it was.
    args.loadavg_at_start = [round(x, 2) for x in os.getloadavg()]
    # Twenty stations share this one process (real ones are separate machines): with the
    # default 5 ms GIL switch interval a station's thread waits for the others' turns, and
    # that wait would be counted as the server's latency.
    sys.setswitchinterval(0.0005)
    return run_and_print(run, args)


def run_and_print(run: Callable[[argparse.Namespace], dict[str, Any]], args: argparse.Namespace,
                  ok: Callable[[dict[str, Any]], bool] = lambda result: result["errors"] == 0) -> int:
    """Every benchmark's ending: run it, print its JSON (and `--json-out`), exit code.

    0 when `ok(result)` (by default: every request was answered), 1 when not, 2 when it
    could not run, 130 on Ctrl-C or SIGTERM (everything is stopped first).
    """
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with _terminate_as_interrupt():
            result = run(args)
    except KeyboardInterrupt:
        _say("interrupted; everything stopped")
        return 130
    except (RuntimeError, OSError) as exc:  # BrokerError is a RuntimeError
        _say(f"failed: {exc}")
        return 2
    print(json.dumps(result, ensure_ascii=False), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n",
                                       encoding="utf-8")
    return 0 if ok(result) else 1


if __name__ == "__main__":
    sys.exit(main())
