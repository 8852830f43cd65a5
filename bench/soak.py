"""Soak: hours of station traffic compressed into minutes, with one long outage.

The real server (its own process) and N station processes, each a real
`kiosk.link.MqttLink` under the store-and-forward backend (`kiosk.offline`), doing
identify -> checkout -> return (and an item look-up) at `--rate` requests a second, over
a private Mosquitto. Part way through, the broker is killed: the stations keep serving
offline and queue `--outage-requests` requests between them in their outboxes, as fast
as they can; then the broker comes back and the outboxes replay. The replay rate is
measured. Memory (RSS) and open file descriptors of the server and of every station are
read from /proc after a warm-up and at the end. One JSON object goes to stdout; progress
goes to stderr. See bench/README.md.

    .venv/bin/python bench/soak.py                       # 5 minutes, 4 stations, 10,000 queued
    .venv/bin/python bench/soak.py --minutes 1 --outage-requests 2000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `python bench/soak.py`
    sys.path.insert(0, str(ROOT))

from bench.circulation import (  # noqa: E402
    ServerProcess,
    _say,
    plan_stations,
    prepare_library,
    run_and_print,
)

TARGET_REPLAYED = 10_000
TARGET_REPLAY_S = 60.0
# An offline checkout counts against its reader until replayed; the config allows 100.
OFFLINE_CHECKOUTS_PER_READER = 100
STATION_READY_TIMEOUT_S = 60.0


# --- /proc ---------------------------------------------------------------------------------

def proc_sample(pid: int) -> dict[str, int] | None:
    """RSS (kB) and open file descriptors of a live process; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            rss = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None
    return {"rss_kb": rss, "fds": fds}


def growth(start: dict[str, int] | None, end: dict[str, int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"start": start, "end": end}
    if start and end:
        out["growth"] = {key: end[key] - start[key] for key in start}
    return out


# --- a station process -------------------------------------------------------------------------

class Counts:
    def __init__(self) -> None:
        self.live_ok = 0
        self.offline_accepted = 0
        self.offline_answered = 0  # identify from the card cache
        # Accepted offline although the link was up: the server's answer came later than
        # the request timeout. Not lost (the outbox replays it) but slow: counted apart.
        self.timed_out_online = 0
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"live_ok": self.live_ok, "offline_accepted": self.offline_accepted,
                "offline_answered": self.offline_answered, "timed_out_online": self.timed_out_online,
                "errors": sum(self.errors.values()), "errors_by_kind": dict(self.errors)}


def station_worker(spec_path: str) -> int:
    """One station: reads commands on stdin, answers one JSON line per command on stdout."""
    import logging

    from kiosk.backend import AcceptedOffline, BackendUnavailable, CachedPatron
    from kiosk.config import StationConfig
    from kiosk.link import MqttLink
    from kiosk.offline import StoreAndForward
    from protocol import CheckoutArgs, IdentifyArgs, ItemInfoArgs, Op, Reply, ReturnArgs

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    config = StationConfig.model_validate(spec["config"])
    link = MqttLink(config.site, config.station, config.kind, config.mqtt,
                    request_timeout=config.session.request_timeout_s)
    forward = StoreAndForward.from_config(config, link)
    if spec.get("replay_window"):
        forward.replay_window = int(spec["replay_window"])
    counts = Counts()

    def say(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    def ask(op: Op, args: Any, *, offline_ok: bool) -> None:
        try:
            answer = forward.request(op, args)
        except BackendUnavailable as exc:
            counts.error(f"{op.value}: {type(exc).__name__}")
            return
        if isinstance(answer, AcceptedOffline):
            counts.offline_accepted += 1
            if not offline_ok:
                counts.timed_out_online += 1
        elif isinstance(answer, CachedPatron):
            counts.offline_answered += 1
        elif isinstance(answer, Reply) and answer.ok:
            counts.live_ok += 1
        else:
            code = answer.error.code.value if isinstance(answer, Reply) and answer.error else "?"
            counts.error(f"{op.value}: {code}")

    reader, items = spec["reader"], spec["items"]
    cycle = 0

    def one_cycle(offline_ok: bool) -> int:
        """identify, look up, lend, take back: four requests."""
        nonlocal cycle
        item = items[cycle % len(items)]
        cycle += 1
        ask(Op.PATRON_IDENTIFY, IdentifyArgs(card=reader), offline_ok=offline_ok)
        if link.connected.is_set():
            ask(Op.ITEM_INFO, ItemInfoArgs(item=item), offline_ok=offline_ok)
        ask(Op.LOAN_CHECKOUT, CheckoutArgs(patron=reader, item=item), offline_ok=offline_ok)
        ask(Op.LOAN_RETURN, ReturnArgs(item=item), offline_ok=offline_ok)
        return 4

    commands: queue.Queue[str] = queue.Queue()
    stop_traffic = threading.Event()
    rate = float(spec["rate"])

    def traffic() -> None:
        period = 4 / rate if rate > 0 else 0.0
        next_at = time.monotonic()
        while not stop_traffic.is_set():
            one_cycle(offline_ok=not link.connected.is_set())
            next_at += period
            stop_traffic.wait(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - 1.0)  # no catch-up burst after a stall

    def burst(count: int) -> int:
        """Queue `count` requests offline as fast as the outbox takes them: readers kept
        for the outage (never seen online) lend and take back this station's copies."""
        queued_before = len(forward.outbox)
        outage_readers = spec["outage_readers"]
        n = 0
        while len(forward.outbox) - queued_before < count:
            who = outage_readers[(n // (2 * OFFLINE_CHECKOUTS_PER_READER)) % len(outage_readers)]
            item = items[(n // 2) % len(items)]
            if n % 2 == 0:
                ask(Op.LOAN_CHECKOUT, CheckoutArgs(patron=who, item=item), offline_ok=True)
            else:
                ask(Op.LOAN_RETURN, ReturnArgs(item=item), offline_ok=True)
            n += 1
            if n > 2 * count + 100:
                break  # refusals: the errors say why
        return len(forward.outbox) - queued_before

    def watch_replay(timeout: float) -> dict[str, Any]:
        """From the broker's return to an empty outbox, polled every 10 ms."""
        start_wall = time.time()
        replayed_before = forward.replayed
        first = connected = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if connected is None and link.connected.is_set():
                connected = time.time()
            if first is None and forward.replayed > replayed_before:
                first = time.time()
            if not len(forward.outbox):
                break
            time.sleep(0.01)
        drained = time.time() if not len(forward.outbox) else None
        return {"restored_at": start_wall, "connected_at": connected, "first_answer_at": first,
                "drained_at": drained, "replayed": forward.replayed - replayed_before,
                "left": len(forward.outbox)}

    def read_commands() -> None:
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("quit")

    threading.Thread(target=read_commands, daemon=True).start()
    if not link.start(wait=10):
        say(event="error", why="the station could not connect to the broker")
        return 2
    forward.start()
    # Seen online once: the card cache knows the station's own reader.
    ask(Op.PATRON_IDENTIFY, IdentifyArgs(card=reader), offline_ok=False)
    say(event="ready", pid=os.getpid())
    runner: threading.Thread | None = None
    while True:
        command, _, arg = commands.get().partition(" ")
        if command == "run":
            stop_traffic.clear()
            runner = threading.Thread(target=traffic, name="traffic", daemon=True)
            runner.start()
            say(event="running")
        elif command == "pause":
            stop_traffic.set()
            if runner is not None:
                runner.join(30)
            say(event="paused", outbox=len(forward.outbox))
        elif command == "burst":
            started = time.monotonic()
            queued = burst(int(arg))
            say(event="queued", queued=queued, outbox=len(forward.outbox),
                seconds=round(time.monotonic() - started, 3))
        elif command == "replay":
            say(event="replay", **watch_replay(float(arg)))
        elif command == "report":
            say(event="report", outbox=len(forward.outbox), replayed=forward.replayed,
                refused_in_replay=_refused_in_outbox(forward.outbox.path), **counts.as_dict())
        elif command == "quit":
            break
    stop_traffic.set()
    forward.close()
    link.stop()
    return 0


def _refused_in_outbox(path: Path) -> int:
    """Replayed requests the server refused (conflicts): read from the file, read-only."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT count(*) FROM outbox WHERE done_at IS NOT NULL AND ok = 0").fetchone()
    return int(count)


@dataclass
class Station:
    name: str
    process: subprocess.Popen[str]
    pid: int = 0

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def answer(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        box: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: box.put(self.process.stdout.readline()),  # type: ignore[union-attr]
                         daemon=True).start()
        try:
            line = box.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"station {self.name} did not answer within {timeout:g} s") from None
        if not line:
            raise RuntimeError(f"station {self.name} exited with code {self.process.poll()}")
        return json.loads(line)

    def ask(self, command: str, timeout: float = 60.0) -> dict[str, Any]:
        self.send(command)
        return self.answer(timeout)


# --- the run ------------------------------------------------------------------------------------

def outage_readers(library: Any, exclude: set[str], count: int) -> list[str]:
    from sqlalchemy import exists, select

    from server import db
    from server.models import Loan, Reader, ReaderStatus

    engine = db.make_engine(library.config.database.url)
    try:
        with engine.connect() as connection:
            codes = connection.execute(
                select(Reader.code).where(Reader.kind == "student", Reader.status == ReaderStatus.ACTIVE,
                                          ~exists().where(Loan.reader_id == Reader.id))
                .order_by(Reader.id.desc()).limit(count + len(exclude))).scalars().all()
    finally:
        engine.dispose()
    chosen = [code for code in codes if code not in exclude][:count]
    if len(chosen) < count:
        raise SystemExit(f"soak: only {len(chosen)} students left for the outage, {count} needed")
    return chosen


def wait_server_online(host: str, port: int, site: str, server: ServerProcess,
                       timeout: float = 30.0) -> None:
    """Until the server's retained status says online: a station started before would
    find no one answering and serve offline for a while."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol import Status, parse_model, topics

    online = threading.Event()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        try:
            if message.payload and parse_model(Status, message.payload).state == "online":
                online.set()
        except Exception:
            pass

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-watch-{os.getpid()}")
    client.on_connect = lambda c, *_: c.subscribe(topics.server_status(site), 1)
    client.on_message = on_message
    client.connect(host, port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not online.wait(0.2):
            server.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not online within {timeout:g} s:\n{server.log_tail()}")
    finally:
        client.disconnect()
        client.loop_stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from thuvien.broker import MosquittoBroker

    workdir = Path(tempfile.mkdtemp(prefix="thuvien-soak-"))
    broker = MosquittoBroker(port=args.broker_port)
    server: ServerProcess | None = None
    stations: list[Station] = []
    total_s = args.minutes * 60
    try:
        broker.start()
        _say(f"broker on {broker.url}; seeding the library in {workdir}")
        library = prepare_library(workdir, broker.host, broker.port, None)
        plans = plan_stations(library, args.stations, args.items_per_station)
        share = math.ceil(args.outage_requests / args.stations)
        per_station = max(1, math.ceil(share / (2 * OFFLINE_CHECKOUTS_PER_READER)))
        spare = outage_readers(library, {p.card for p in plans}, per_station * args.stations)
        server = ServerProcess(library.config_path, workdir, None, None)
        site = library.config.site
        wait_server_online(broker.host, broker.port, site, server)
        for index, plan in enumerate(plans):
            spec = {
                "config": {
                    "site": site, "station": plan.name,
                    "mqtt": {"host": broker.host, "port": broker.port},
                    "session": {"request_timeout_s": args.request_timeout},
                    "offline": {"mode": "returns_and_checkouts", "known_readers_only": False,
                                "max_checkouts_per_reader": OFFLINE_CHECKOUTS_PER_READER,
                                "outbox_path": str(workdir / plan.name / "outbox.db"),
                                "drain_wait_s": 2, "retry_max_s": 5, "replay_timeout_s": 10},
                },
                "reader": plan.card, "items": plan.items, "rate": args.rate,
                "outage_readers": spare[index * per_station:(index + 1) * per_station],
                "replay_window": args.replay_window,
            }
            spec_path = workdir / f"{plan.name}.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            with open(workdir / f"{plan.name}.log", "ab") as log_file:
                process = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "--station-worker", str(spec_path)],
                    cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                    text=True, start_new_session=True)
            stations.append(Station(plan.name, process))
        for station in stations:
            ready = station.answer(STATION_READY_TIMEOUT_S)
            if ready.get("event") != "ready":
                raise RuntimeError(f"station {station.name}: {ready}")
            station.pid = int(ready["pid"])
        server.check_alive()
        _say(f"{len(stations)} stations ready; traffic for {args.minutes:g} min")

        started = time.monotonic()
        for station in stations:
            station.ask("run")
        warmup = min(args.warmup, total_s / 4)
        time.sleep(warmup)
        pids = {"server": server.process.pid, **{s.name: s.pid for s in stations}}
        first = {name: proc_sample(pid) for name, pid in pids.items()}

        # Traffic, then the outage, then traffic again to the end.
        time.sleep(max(0.0, total_s * args.outage_at - (time.monotonic() - started)))
        # Traffic stops first: the outage's queue is the burst's alone, sized exactly.
        for station in stations:
            station.ask("pause", timeout=args.request_timeout * 8 + 30)
        _say(f"outage: broker killed; each station queues {share} requests")
        broker.kill()
        outage_started = time.monotonic()
        for station in stations:
            station.send(f"burst {share}")
        queued = [station.answer(600) for station in stations]
        time.sleep(max(0.0, args.outage_seconds - (time.monotonic() - outage_started)))
        _say(f"{sum(q['outbox'] for q in queued)} queued; broker back after "
             f"{time.monotonic() - outage_started:.0f} s")
        restored_at = time.time()
        broker.restart()
        for station in stations:
            station.send(f"replay {args.replay_timeout}")
        replays = [station.answer(args.replay_timeout + 30) for station in stations]
        server.check_alive()
        for station in stations:
            station.ask("run")
        _say("replayed; traffic again to the end")
        time.sleep(max(0.0, total_s - (time.monotonic() - started)))
        for station in stations:
            station.ask("pause", timeout=args.request_timeout * 8 + 30)
        # Whatever the last seconds queued (a timeout) drains before the count.
        for station in stations:
            station.ask(f"replay {args.replay_timeout}", timeout=args.replay_timeout + 30)
        last = {name: proc_sample(pid) for name, pid in pids.items()}
        reports = {station.name: station.ask("report") for station in stations}
        server.check_alive()
        return summarize(args, queued, replays, reports, first, last, restored_at)
    finally:
        for station in stations:
            try:
                station.send("quit")
            except (OSError, ValueError):
                pass
        for station in stations:
            try:
                station.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                station.process.kill()
                station.process.wait(timeout=5)
        if server is not None:
            server.stop()
        broker.stop()
        if args.keep:
            _say(f"kept {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


def summarize(args: argparse.Namespace, queued: list[dict[str, Any]], replays: list[dict[str, Any]],
              reports: dict[str, dict[str, Any]], first: dict[str, Any], last: dict[str, Any],
              restored_at: float) -> dict[str, Any]:
    replayed = sum(r["replayed"] for r in replays)
    ends = [r["drained_at"] for r in replays]
    drained = all(ends) and not any(r["left"] for r in replays)
    replay: dict[str, Any] = {
        "queued": sum(q["queued"] for q in queued),
        "queue_seconds": max(q["seconds"] for q in queued),
        "replayed": replayed, "drained": drained, "window": args.replay_window or "default",
        "per_station": [
            {"queued": q["queued"], "replayed": r["replayed"],
             "connected_after_s": _after(r["connected_at"], restored_at),
             "first_answer_after_s": _after(r["first_answer_at"], restored_at),
             "drained_after_s": _after(r["drained_at"], restored_at)}
            for q, r in zip(queued, replays, strict=True)],
    }
    spans = [(r["first_answer_at"], r["drained_at"]) for r in replays
             if r["first_answer_at"] and r["drained_at"]]
    if drained and spans:
        # Time with some outbox replaying: a station still waiting to reconnect (paho's
        # backoff) or for its first reply does not count, the reconnection is reported apart.
        seconds = _union(spans)
        replay.update(seconds=round(seconds, 2),
                      rate_per_s=round(replayed / seconds, 1) if seconds > 0 else None,
                      restore_to_drained_s=round(max(ends) - restored_at, 2),
                      restore_to_first_answer_s=round(min(a for a, _ in spans) - restored_at, 2))
        replay["target_10000_in_60s"] = (replay["rate_per_s"] or 0) * TARGET_REPLAY_S >= TARGET_REPLAYED
    errors_by_kind: dict[str, int] = {}
    for report in reports.values():
        for kind, n in report["errors_by_kind"].items():
            errors_by_kind[kind] = errors_by_kind.get(kind, 0) + n
        if report["refused_in_replay"]:
            errors_by_kind["refused in replay"] = errors_by_kind.get("refused in replay", 0) \
                + report["refused_in_replay"]
    errors = sum(errors_by_kind.values())
    outboxes = {name: report["outbox"] for name, report in reports.items()}
    requests = {
        "live_ok": sum(r["live_ok"] for r in reports.values()),
        "offline_accepted": sum(r["offline_accepted"] for r in reports.values()),
        "offline_answered": sum(r["offline_answered"] for r in reports.values()),
        "timed_out_online": sum(r["timed_out_online"] for r in reports.values()),
        "replayed": sum(r["replayed"] for r in reports.values()),
    }
    requests["done"] = requests["live_ok"] + requests["offline_accepted"] + requests["offline_answered"]
    # Every request answered: each one accepted offline was replayed, none is left.
    answered = requests["replayed"] >= requests["offline_accepted"] and not any(outboxes.values())
    return {
        "benchmark": "soak",
        "minutes": args.minutes, "stations": args.stations, "rate_per_station": args.rate,
        "requests": requests, "errors": errors, "errors_by_kind": errors_by_kind,
        "all_answered": answered and drained,
        "replay": replay,
        "processes": {name: growth(first.get(name), last.get(name)) for name in first},
        "outbox_at_end": outboxes,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
    }


def _after(moment: float | None, origin: float) -> float | None:
    return round(moment - origin, 2) if moment else None


def _union(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        start = max(start, reach)
        if end > start:
            total += end - start
        reach = max(reach, end)
    return total


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the run")
    parser.add_argument("--stations", type=int, default=4, help="station processes")
    parser.add_argument("--rate", type=float, default=10.0, help="requests a second per station")
    parser.add_argument("--outage-requests", type=int, default=TARGET_REPLAYED,
                        help="requests queued across all stations during the outage")
    parser.add_argument("--outage-at", type=float, default=0.3,
                        help="when the broker is killed, as a fraction of the run")
    parser.add_argument("--outage-seconds", type=float, default=20.0,
                        help="least time the broker stays down (longer if the queueing takes longer)")
    parser.add_argument("--replay-window", type=int, default=0,
                        help="requests in flight during a replay (0: the station's default)")
    parser.add_argument("--replay-timeout", type=float, default=300.0,
                        help="longest wait for the outboxes to drain")
    parser.add_argument("--items-per-station", type=int, default=4)
    parser.add_argument("--request-timeout", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=15.0,
                        help="seconds of traffic before the first memory and file sample")
    parser.add_argument("--broker-port", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, databases)")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--station-worker", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.station_worker:
        return station_worker(args.station_worker)
    if args.stations < 1 or args.minutes <= 0 or args.rate < 0 or args.outage_requests < 0 \
            or not 0 < args.outage_at < 1:
        raise SystemExit("soak: --stations >= 1, --minutes > 0, --rate >= 0, 0 < --outage-at < 1")
    return run_and_print(run, args, ok=lambda result: result["errors"] == 0 and result["all_answered"])


if __name__ == "__main__":
    sys.exit(main())
