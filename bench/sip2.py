"""SIP2 benchmark: concurrent SIP2 clients lending and taking back through our SIP2 server.

N clients (default 20), each a thread holding one TCP connection logged in (93) as its
own registered kiosk, repeat checkout (11) -> checkin (09) of their own copies for a set
time, against our SIP2 server (server/sip2/) in its own process, on a SQLite file filled
with the demo school. Every message is timed around its send and its answer. One JSON
object goes to stdout; progress goes to stderr. See bench/README.md.

    .venv/bin/python bench/sip2.py                       # 20 clients, 20 s, no think time
    .venv/bin/python bench/sip2.py --clients 1           # one client: the unloaded latency
    .venv/bin/python bench/sip2.py --think-ms 2000       # self-check machines at a human pace
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import platform
import signal
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `python bench/sip2.py`
    sys.path.insert(0, str(ROOT))

from bench.circulation import (  # noqa: E402
    BenchProcess,
    Library,
    _say,
    cpu_seconds,
    prepare_library,
    register_stations,
    run_and_print,
    summary_ms,
)
from protocol import sip2  # noqa: E402

log = logging.getLogger("thuvien.bench.sip2")

PASSWORD = "bench-sip2-password"
INSTITUTION = "thcs-bench"


# --- who lends what ---------------------------------------------------------------------

@dataclass
class ClientPlan:
    name: str
    patrons: list[str]   # students with no loan, lent to in turn
    items: list[str]     # barcodes of copies only this client touches


def plan_clients(library: Library, clients: int, patrons_per_client: int,
                 items_per_client: int) -> list[ClientPlan]:
    """Students with no loan and copies no other client touches, of kinds students may
    borrow. Each checkout is followed by its checkin, so a student holds one copy at most
    and no loan limit or block can refuse."""
    from sqlalchemy import exists, select

    from server import db
    from server.models import Copy, CopyStatus, Loan, Reader, ReaderStatus

    rules = library.config.circulation
    kinds = sorted({policy.item_kind for policy in rules.policy
                    if policy.reader_kind == "student" and policy.max_items >= 1})
    engine = db.make_engine(library.config.database.url)
    try:
        with engine.connect() as connection:
            readers = connection.execute(
                select(Reader.code)
                .where(Reader.kind == "student", Reader.status == ReaderStatus.ACTIVE,
                       ~exists().where(Loan.reader_id == Reader.id))
                .order_by(Reader.id)).scalars().all()
            copies = connection.execute(
                select(Copy.barcode)
                .where(Copy.kind.in_(kinds), Copy.status == CopyStatus.AVAILABLE,
                       Copy.barcode.is_not(None), ~exists().where(Loan.copy_id == Copy.id))
                .order_by(Copy.id)).scalars().all()
    finally:
        engine.dispose()
    if len(readers) < clients * patrons_per_client:
        raise SystemExit(f"bench: only {len(readers)} students without loans for {clients} clients "
                         f"x {patrons_per_client} patrons")
    if len(copies) < clients * items_per_client:
        raise SystemExit(f"bench: only {len(copies)} free copies for {clients} clients "
                         f"x {items_per_client} items")
    plans = [ClientPlan(name=f"sip2-bench-{i + 1:03d}",
                        patrons=readers[i::clients][:patrons_per_client],
                        items=copies[i::clients][:items_per_client])
             for i in range(clients)]
    register_stations(library, [plan.name for plan in plans])
    return plans


def write_accounts(path: Path, plans: list[ClientPlan]) -> None:
    from server.sip2.config import set_password

    for plan in plans:
        set_password(path, plan.name, PASSWORD)


# --- the server: its own process ------------------------------------------------------

def serve(config_path: str, accounts: str, port_file: str) -> int:
    """The server process: our SIP2 server on the library of `config_path` until SIGTERM."""
    from server import db
    from server.circulation import Circulation
    from server.config import load
    from server.sip2 import Sip2Config, Sip2Server

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: stop.set())
    config = load(config_path)
    engine = db.make_engine(config.database.url, config.database.sqlite_synchronous)
    circulation = Circulation(db.session_factory(engine), config)
    server = Sip2Server(Sip2Config(enabled=True, host="127.0.0.1", port=0, accounts_file=accounts,
                                   institution_id=INSTITUTION, max_connections=1024),
                        circulation, site=config.site, library_name=config.school_name)
    server.start()
    Path(port_file + ".tmp").write_text(str(server.port), encoding="utf-8")
    os.replace(port_file + ".tmp", port_file)  # the bench reads it whole or not at all
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        engine.dispose()
    return 0


class Sip2ServerProcess(BenchProcess):
    label = "the SIP2 server"

    def __init__(self, config_path: Path, accounts: Path, workdir: Path) -> None:
        self.port_file = workdir / "sip2.port"
        super().__init__([sys.executable, str(Path(__file__).resolve()), "--serve", str(config_path),
                          "--accounts", str(accounts), "--port-file", str(self.port_file)],
                         workdir / "server.log")

    def wait_port(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.port_file.exists():
                return int(self.port_file.read_text(encoding="utf-8"))
            time.sleep(0.05)
        raise RuntimeError(f"the SIP2 server did not start within {timeout:g} s\n{self.log_tail()}")


# --- the clients ------------------------------------------------------------------------

@dataclass
class Sample:
    op: str             # "checkout" or "checkin"
    start: float        # time.perf_counter() when the message was sent
    seconds: float
    error: str | None   # None, "refused: <screen message>", "timeout", ...


@dataclass
class ClientRun:
    plan: ClientPlan
    samples: list[Sample] = field(default_factory=list)
    next_second_waits: int = 0
    failure: str | None = None


class Client:
    """A plain SIP2 client on one socket, with error detection, as a self-check machine."""

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer = sip2.Framer()
        self.frames: list[bytes] = []
        self.sequence = 0

    def ask(self, message: sip2.Message) -> sip2.Message:
        self.sequence = (self.sequence + 1) % 10
        self.sock.sendall(sip2.encode(message, sequence=self.sequence))
        while not self.frames:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.frames.extend(self.framer.feed(chunk))
        answer = sip2.decode(self.frames.pop(0))
        if answer.sequence != self.sequence:
            raise RuntimeError(f"answer to sequence {answer.sequence}, not {self.sequence}")
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def client_loop(run: ClientRun, port: int, timeout: float, think: float, stop: threading.Event,
                ready: threading.Barrier) -> None:
    """Log in, wait for the others, then checkout -> checkin over the client's copies and
    patrons in turn until `stop`; each cycle is finished."""
    perf = time.perf_counter
    plan = run.plan
    client: Client | None = None
    try:
        client = Client(port, timeout)
        if client.ask(sip2.LoginRequest(CN=plan.name, CO=PASSWORD)).ok != "1":
            raise RuntimeError(f"login of {plan.name} refused")
        ready.wait()
        sent: set[tuple[str, str, str]] = set()  # changes sent with this transaction date
        second = ""
        cycle = 0
        while not stop.is_set():
            item = plan.items[cycle % len(plan.items)]
            patron = plan.patrons[(cycle // len(plan.items) + cycle) % len(plan.patrons)]
            cycle += 1
            for op in ("checkout", "checkin"):
                # SIP2 dates have whole seconds, and the server takes the same transaction
                # with the same date for a retransmission: a repeat waits for the next second.
                now = dt.datetime.now().astimezone()
                key = (op, patron if op == "checkout" else "", item)
                if sip2.format_date(now) != second:
                    second, sent = sip2.format_date(now), set()
                if key in sent:
                    run.next_second_waits += 1
                    time.sleep(1.001 - time.time() % 1)
                    now = dt.datetime.now().astimezone()
                    second, sent = sip2.format_date(now), set()
                sent.add(key)
                if op == "checkout":
                    message = sip2.CheckoutRequest(transaction_date=now, AO=INSTITUTION, AA=patron,
                                                   AB=item, AC="")
                else:
                    message = sip2.CheckinRequest(transaction_date=now, AP="bench", AO=INSTITUTION,
                                                  AB=item, AC="")
                start = perf()
                try:
                    answer = client.ask(message)
                    error = None if answer.ok == "1" else f"refused: {' '.join(answer.getall('AF'))}"
                except TimeoutError:
                    error = "timeout"
                run.samples.append(Sample(op, start, perf() - start, error))
                if error == "timeout":
                    raise RuntimeError("no answer within the timeout; the conversation is lost")
            if think and stop.wait(think):
                return
    except Exception as exc:  # reported, and counted as an error of the run
        run.failure = f"{type(exc).__name__}: {exc}"
        log.exception("client %s failed", plan.name)
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.abort()
    finally:
        if client is not None:
            client.close()


def run_load(runs: list[ClientRun], port: int, args: argparse.Namespace,
             server: Sip2ServerProcess) -> tuple[float, float, dict[str, float]]:
    """Run every client; returns the measured window (perf_counter start, end) and the
    share of one CPU core each process used during it."""
    stop = threading.Event()
    ready = threading.Barrier(len(runs) + 1)
    threads = [threading.Thread(target=client_loop, name=run.plan.name, daemon=True,
                                args=(run, port, args.timeout, args.think_ms / 1000.0, stop, ready))
               for run in runs]
    cpu: dict[str, float] = {}
    try:
        for thread in threads:
            thread.start()
        try:
            ready.wait(timeout=60)  # every client logged in: now the clock starts
        except threading.BrokenBarrierError:
            failures = [run.failure for run in runs if run.failure]
            raise RuntimeError(f"the clients could not all log in: {failures[:3]}") from None
        begin = time.perf_counter()
        warm_until, stop_at = begin + args.warmup, begin + args.warmup + args.seconds
        time.sleep(max(0.0, warm_until - time.perf_counter()))
        pids = {"server": server.process.pid, "bench_process": os.getpid()}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        while (left := stop_at - time.perf_counter()) > 0:
            time.sleep(min(0.25, left))
            server.check_alive()
        for name, pid in pids.items():
            used, start = cpu_seconds(pid), before.get(name)
            if used is not None and start is not None:
                cpu[name] = round((used - start) / args.seconds, 3)
    finally:
        stop.set()
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.abort()
        for thread in threads:
            thread.join(timeout=30)
    return warm_until, stop_at, cpu


# --- the run ---------------------------------------------------------------------------

def report(args: argparse.Namespace, runs: list[ClientRun], window: tuple[float, float],
           library: Library, cpu: dict[str, float]) -> dict[str, Any]:
    start, end = window
    seconds = end - start
    samples = [s for run in runs for s in run.samples]
    measured = [s for s in samples if start <= s.start < end and s.error is None]
    errors: dict[str, int] = {}
    for sample in samples:  # warm-up included: every answer must be ok
        if sample.error is not None:
            kind = f"{sample.op}:{sample.error}"
            errors[kind] = errors.get(kind, 0) + 1
    for run in runs:
        if run.failure:
            errors[f"client:{run.failure}"] = errors.get(f"client:{run.failure}", 0) + 1
    checkouts = [s.seconds for s in measured if s.op == "checkout"]
    checkins = [s.seconds for s in measured if s.op == "checkin"]
    return {
        "clients": args.clients,
        "client_model": "threads",
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "think_ms": args.think_ms,
        "checkouts": len(checkouts),
        "checkins": len(checkins),
        "checkouts_per_s": round(len(checkouts) / seconds, 1),
        "transactions_per_s": round((len(checkouts) + len(checkins)) / seconds, 1),
        "latency_ms": {"checkout": summary_ms(checkouts), "checkin": summary_ms(checkins),
                       "all": summary_ms(checkouts + checkins)},
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        # A client that would repeat a transaction within one second (SIP2 dates have
        # whole seconds) waits for the next: should stay near 0 (see --items-per-client).
        "next_second_waits": sum(run.next_second_waits for run in runs),
        "cpu_cores_used": cpu,
        "server": {"process": "own", "transport": "plain TCP", "encoding": "utf-8",
                   "error_detection": True,
                   "sqlite_synchronous": library.config.database.sqlite_synchronous},
        "library": library.seeded,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": args.loadavg_at_start,
                    "python": platform.python_version(), "platform": platform.platform(),
                    "sqlite": sqlite3.sqlite_version},
        "at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="thuvien-bench-sip2-"))
    server: Sip2ServerProcess | None = None
    try:
        _say(f"seeding the demo library in {workdir}")
        # The MQTT port is never used: only the SIP2 server runs.
        library = prepare_library(workdir, "127.0.0.1", 1, args.sqlite_synchronous)
        plans = plan_clients(library, args.clients, args.patrons_per_client, args.items_per_client)
        accounts = workdir / "sip2-accounts"
        write_accounts(accounts, plans)
        server = Sip2ServerProcess(library.config_path, accounts, workdir)
        port = server.wait_port()
        _say(f"SIP2 server on 127.0.0.1:{port}; {args.clients} clients for {args.warmup:g} + "
             f"{args.seconds:g} s")
        runs = [ClientRun(plan) for plan in plans]
        start, end, cpu = run_load(runs, port, args, server)
        return report(args, runs, (start, end), library, cpu)
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            _say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/sip2.py",
        description="Concurrent SIP2 clients doing checkout + checkin against our SIP2 server; "
                    "prints one JSON object.")
    parser.add_argument("--clients", type=int, default=20, help="concurrent SIP2 clients (default 20)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time (default 20)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds run before the measured time, left out of the figures (default 1)")
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="pause of each client after each checkout + checkin (default 0: saturation)")
    parser.add_argument("--items-per-client", type=int, default=60,
                        help="distinct copies each client lends in turn (default 60)")
    parser.add_argument("--patrons-per-client", type=int, default=4,
                        help="distinct students each client lends to in turn (default 4)")
    parser.add_argument("--sqlite-synchronous", choices=("FULL", "NORMAL"), default=None,
                        help="override the config's PRAGMA synchronous (default: the config's, FULL)")
    parser.add_argument("--timeout", type=float, default=10.0, help="answer timeout in seconds (default 10)")
    parser.add_argument("--json-out", default=None, help="also write the JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (DB, logs)")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--accounts", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port-file", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve:
        return serve(args.serve, args.accounts, args.port_file)
    if (args.clients < 1 or args.seconds <= 0 or args.think_ms < 0 or args.items_per_client < 1
            or args.patrons_per_client < 1):
        raise SystemExit("bench: --clients, --items-per-client, --patrons-per-client >= 1, "
                         "--seconds > 0, --think-ms >= 0")
    args.loadavg_at_start = [round(x, 2) for x in os.getloadavg()]
    # The clients share this process (real machines are separate): a short GIL switch
    # interval keeps one client's wait for its turn out of the server's latency.
    sys.setswitchinterval(0.0005)
    return run_and_print(run, args)


if __name__ == "__main__":
    sys.exit(main())
