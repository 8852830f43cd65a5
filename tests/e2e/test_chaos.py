"""The chaos test (issue #5): ten kiosks lend and take back books while the broker, the
server and the kiosks themselves are SIGKILLed and restarted at random; afterwards the
ledger holds exactly what the kiosks told their readers succeeded, each once, every
conflict has its alert, and every outbox is empty.

All on loopback: a real Mosquitto on a fixed port (killed and started again on it),
the real server as `python -m thuvien.cli server` on a SQLite file, and ten station
processes (chaos_station.py) with the real session, store and forward and MQTT link.

Seeded: THUVIEN_CHAOS_SEED picks the stations' readers and books and the moments of the
kills (what the machine's timing does with them differs from run to run).
THUVIEN_CHAOS_SECONDS (serving time, default 40) and THUVIEN_CHAOS_OPS (operations per
station at most, default 300) scale it; it prints its counts.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from chaos_tools import ChaosPlan, audit, make_plan, outbox_pending, seed_library, server_config_text
from thuvien.broker import MosquittoBroker

ROOT = Path(__file__).resolve().parents[2]
STATION_PROGRAM = Path(__file__).with_name("chaos_station.py")

SEED = int(os.environ.get("THUVIEN_CHAOS_SEED", "1"))
SERVING_S = float(os.environ.get("THUVIEN_CHAOS_SECONDS", "40"))
OPS_PER_STATION = int(os.environ.get("THUVIEN_CHAOS_OPS", "300"))
STATIONS = 10
KILLS = {"broker": 5, "server": 3, "station": 10}
DOWN_S = (0.5, 3.0)
# Bound on the end: every station drains its outbox and exits within this.
DRAIN_S = 60.0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


class Chaos:
    """The processes of the run and what was done to them."""

    def __init__(self, workdir: Path, plan_path: Path, plan: ChaosPlan, broker: MosquittoBroker,
                 server_config: Path) -> None:
        self.workdir = workdir
        self.plan_path = plan_path
        self.plan = plan
        self.broker = broker
        self.server_config = server_config
        self.server: subprocess.Popen[bytes] | None = None
        self.server_lives = 0
        self.stations: dict[str, subprocess.Popen[str]] = {}
        self.lives: dict[str, int] = {s.name: 0 for s in plan.stations}
        self.kills: dict[str, int] = {"broker": 0, "server": 0, "station": 0}
        self._logs: list[IO[Any]] = []

    # --- the server ---

    def start_server(self) -> None:
        self.server_lives += 1
        log = open(self.workdir / f"server-{self.server_lives}.log", "wb")
        self._logs.append(log)
        self.server = subprocess.Popen(
            [sys.executable, "-m", "thuvien.cli", "--log-level", "WARNING", "server",
             "--config", str(self.server_config)],
            cwd=ROOT, env={**_env(), "PYTHONFAULTHANDLER": "1"}, stdout=log,
            stderr=subprocess.STDOUT)

    def kill_server(self) -> None:
        assert self.server is not None
        self.server.kill()
        self.server.wait(10)
        self.server = None
        self.kills["server"] += 1

    def stop_server(self) -> int | None:
        if self.server is None:
            return None
        self.server.send_signal(signal.SIGTERM)
        try:
            return self.server.wait(15)
        except subprocess.TimeoutExpired:
            # Hung: SIGABRT makes faulthandler write every thread's stack to its log.
            self.server.send_signal(signal.SIGABRT)
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(10)
            return None
        finally:
            self.server = None

    # --- the stations ---

    def start_station(self, name: str) -> None:
        self.lives[name] += 1
        log = open(self.workdir / f"{name}-{self.lives[name]}.stderr", "w")
        self._logs.append(log)
        self.stations[name] = subprocess.Popen(
            [sys.executable, str(STATION_PROGRAM), str(self.plan_path), name, str(self.lives[name])],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=log, text=True)

    def kill_station(self, name: str) -> None:
        process = self.stations.pop(name)
        process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
        self.kills["station"] += 1

    def up_stations(self) -> list[str]:
        return sorted(name for name in self.stations)

    def cleanup(self) -> None:
        for process in [*self.stations.values(), *([self.server] if self.server else [])]:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        self.stations.clear()
        self.server = None
        for log in self._logs:
            log.close()


def _wait_server_online(port: int, site: str, timeout: float) -> bool:
    """True once the server's retained status on the broker says online."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol import topics

    online = threading.Event()

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        try:
            if json.loads(message.payload).get("state") == "online":
                online.set()
        except ValueError:
            pass

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chaos-watch")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topics.server_status(site), qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        return online.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def _schedule(rng: random.Random, serving_s: float) -> list[tuple[float, int, str]]:
    """(when, order, what) kills at seeded moments of the serving time."""
    events = []
    for target, count in KILLS.items():
        for _ in range(count):
            events.append((round(rng.uniform(2.0, serving_s - 4.0), 3), len(events), target))
    return sorted(events)


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Chaos]:
    broker = MosquittoBroker()  # its port is fixed now: restarts come back on it
    broker.start()
    plan = make_plan(tmp_path, port=broker.port, seed=SEED, stations=STATIONS,
                     max_ops=OPS_PER_STATION)
    plan.drain_s = DRAIN_S - 10
    plan.serving_s = SERVING_S - 2  # the last ones in before the stop, not after it
    plan_path = tmp_path / "plan.json"
    plan.save(plan_path)
    url = f"sqlite:///{tmp_path / 'library.db'}"
    seed_library(url, plan)
    server_config = tmp_path / "server.toml"
    server_config.write_text(server_config_text(plan.site, url, broker.port), encoding="utf-8")
    run = Chaos(tmp_path, plan_path, plan, broker, server_config)
    try:
        yield run
    finally:
        run.cleanup()
        broker.stop()


@pytest.mark.timeout(300)
def test_chaos_loses_nothing_doubles_nothing_and_alerts_every_conflict(chaos: Chaos,
                                                                        tmp_path: Path) -> None:
    began = time.monotonic()
    plan = chaos.plan
    chaos.start_server()
    assert _wait_server_online(plan.port, plan.site, 30), "the server did not come online"
    for station in plan.stations:
        chaos.start_station(station.name)
    # The outages begin once every station has met the library online.
    for name, process in chaos.stations.items():
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline() if ready else ""
        assert '"connected": true' in line, f"{name} did not start and connect: {line!r}"

    rng = random.Random(f"chaos/{SEED}")
    pending = _schedule(rng, SERVING_S)
    restarts: list[tuple[float, str, str]] = []  # (when, what, station)
    broker_down = server_down = False
    start = time.monotonic()
    while pending or restarts:
        now = time.monotonic() - start
        if restarts and restarts[0][0] <= now:
            _, what, name = heapq.heappop(restarts)
            if what == "broker":
                chaos.broker.restart()
                broker_down = False
            elif what == "server":
                chaos.start_server()
                server_down = False
            else:
                chaos.start_station(name)
            continue
        if pending and pending[0][0] <= now:
            _, _, what = pending.pop(0)
            down = rng.uniform(*DOWN_S)
            if what == "broker" and not broker_down:
                chaos.broker.kill()
                chaos.kills["broker"] += 1
                broker_down = True
                heapq.heappush(restarts, (now + down, "broker", ""))
            elif what == "server" and not server_down:
                chaos.kill_server()
                server_down = True
                heapq.heappush(restarts, (now + down, "server", ""))
            elif what == "station" and chaos.up_stations():
                name = rng.choice(chaos.up_stations())
                chaos.kill_station(name)
                heapq.heappush(restarts, (now + down, "station", name))
            else:
                # Already down: the kill comes a moment later instead of being lost.
                pending.append((now + 0.5, 99, what))
                pending.sort()
            continue
        time.sleep(0.02)
    while time.monotonic() - start < SERVING_S:
        time.sleep(0.1)
    serving = time.monotonic() - start

    # The end: stations stop serving, replay what they hold and exit.
    Path(plan.stop_file).touch()
    drain_began = time.monotonic()
    summaries: dict[str, dict[str, Any]] = {}
    failures = []
    for name, process in sorted(chaos.stations.items()):
        left = max(1.0, DRAIN_S - (time.monotonic() - drain_began))
        try:
            out, _ = process.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate(timeout=10)
            failures.append(f"{name} did not finish draining within {DRAIN_S:g} s")
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        summaries[name] = lines[-1] if lines else {}
        if process.returncode != 0:
            failures.append(f"{name} exited {process.returncode}: {summaries[name]}; see "
                            f"{plan.station(name).log}")
    chaos.stations.clear()
    drain = time.monotonic() - drain_began
    pending_left = {s.name: outbox_pending(s.outbox) for s in plan.stations}
    server_rc = chaos.stop_server()

    result = audit(tmp_path / "library.db", plan)
    figures = {
        "seed": SEED, **result.counts,
        "operations": sum(s.get("ops", 0) for s in summaries.values()),
        "replayed_in_last_lives": sum(s.get("replayed", 0) for s in summaries.values()),
        "kills": chaos.kills, "station_lives": sum(chaos.lives.values()),
        "server_lives": chaos.server_lives,
        "serving_s": round(serving, 1), "drain_s": round(drain, 1),
        "total_s": round(time.monotonic() - began, 1),
    }
    print("\nchaos:", json.dumps(figures, ensure_ascii=False, indent=1))

    # A hung server is the likeliest reason for stations that cannot drain: first.
    assert server_rc == 0, (f"the server did not stop cleanly ({server_rc}); its threads' "
                            f"stacks: {tmp_path}/server-{chaos.server_lives}.log")
    assert not failures, failures
    assert pending_left == {s.name: 0 for s in plan.stations}, pending_left
    assert chaos.kills == KILLS, chaos.kills
    assert not result.problems, "\n".join(result.problems)
    # A run where nothing happened proves nothing: the outages must have bitten.
    counts = result.counts
    assert counts["told_ok_online"] > 200 and counts["told_ok_offline"] > 50, counts
    assert counts["ledger_entries"] >= counts["told_ok_online"] + counts["told_ok_offline"] \
        - counts["told_alert_only"]
    assert counts["offline_conflict_alerts"] > 0, counts


def test_a_request_refused_live_after_its_timeout_still_reaches_the_librarian(
        library: Any, tmp_path: Path) -> None:
    """What the chaos run can hit only by luck (a reply lost in the instant between the
    server's commit and the broker's death), made certain by a timeout no reply meets.
    The late refusal stays in the outbox; its offline replay makes the server raise an
    alert, once (found by the chaos test; it used to be dropped silently)."""
    from sqlalchemy import select

    from kiosk.backend import AcceptedOffline
    from kiosk.config import StationConfig
    from kiosk.link import MqttLink
    from kiosk.offline import StoreAndForward
    from protocol import CheckoutArgs, Op
    from server import db
    from server.models import Alert, LedgerEntry
    from station_parts import wait_for

    library.lend("TN00001", patron="HS-2025-0002")  # Bình has it
    config = StationConfig.model_validate({
        "site": library.config.site, "station": "kiosk-3",
        "mqtt": {"host": "127.0.0.1", "port": library.broker.port},
        "offline": {"mode": "returns_and_checkouts", "known_readers_only": False,
                    "outbox_path": str(tmp_path / "outbox.db")},
    })
    link = MqttLink(config.site, config.station, config.kind, config.mqtt)
    forward = StoreAndForward.from_config(config, link)
    assert link.start(wait=10)
    forward.start()
    try:
        # An quick reader and a slow library: the answer comes after the kiosk gave up.
        told = forward.request(Op.LOAN_CHECKOUT, CheckoutArgs(patron="HS-2025-0001", item="TN00001"),
                               timeout=1e-6)
        assert isinstance(told, AcceptedOffline)  # "recorded offline; the library will confirm"
        assert wait_for(lambda: len(forward.outbox) == 0, 20)
        time.sleep(0.5)
    finally:
        forward.close()
        link.stop()
    with db.session_factory(library.server.engine)() as session:
        entries = session.scalars(select(LedgerEntry).where(
            LedgerEntry.request_id == told.request_id)).all()
        alerts = [a for a in session.scalars(select(Alert).where(Alert.type == "offline.conflict"))
                  if a.data.get("request_id") == told.request_id]
    # An: told the book was recorded; the library must have it on the ledger or alert.
    assert entries or alerts, f"{told.request_id}: told ok, but nothing recorded and no alert"
    assert len(alerts) == 1 and not entries, (entries, alerts)
