"""The staff station grid under 200 stations: status publish -> server-sent event latency.

    .venv/bin/python bench/grid.py                         # 200 stations, 10 browsers, 20 s
    .venv/bin/python bench/grid.py --stations 20 --clients 2 --seconds 3   # a quick look

Starts a private Mosquitto (`set_tcp_nodelay true`), writes the demo's server config with
the web on a free port on an empty, migrated SQLite file, adds a staff account, and starts
the server in its own process (`python -m thuvien.cli server`: the library service and
the web, `server/web/run.py start_web`, with its StationMonitor). `--clients` browsers
log in (login page, CSRF token, POST) and hold `/staff/live` open. Stations publish their
retained status on `<site>/station/<name>/status` as stations do: "online" with their
devices, and "offline" the way their last will says it (`{"v":1,"state":"offline"}`).
Each online status carries `version = "b<n>"` (the grid shows it), so every change is
recognised in the card the browser receives; an offline card still shows the version
before it. Changes come at `--rate` a second in total, spread over the stations.

Prints one JSON object: latency (publish -> SSE event parsed by a browser) p50/p95/p99,
changes published, delivered to every browser, missing, the server process's CPU (share
of one core) over the measured window, and the load average. Exits 1 if any change
failed to reach any browser.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

SITE = "thcs-grid"
STAFF, PASSWORD = "grid-bench", "grid-bench-2026"
_CARD = re.compile(r'id="station-([^"]+)"')
_STATE = re.compile(r'class="station state-([a-z_]+)')
_VERSION = re.compile(r"<dd>b(\d+)</dd>")


def _say(message: str) -> None:
    print(f"grid: {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"count": len(ordered), "p50": at(0.50), "p95": at(0.95), "p99": at(0.99),
            "max": round(ordered[-1], 2)}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prepare(workdir: Path, mqtt_port: int, web_port: int) -> Path:
    from server import db
    from server.web.accounts import add_user
    from server.web.context import utc_now
    from thuvien.demo import server_toml

    text = server_toml(workdir / "library.db", mqtt_port, web_port=web_port)
    text = re.sub(r'(?m)^site = ".*"$', f'site = "{SITE}"', text, count=1)
    config_path = workdir / "server.toml"
    config_path.write_text(text, encoding="utf-8")
    url = f"sqlite:///{(workdir / 'library.db').resolve()}"
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine).begin() as session:
            add_user(session, STAFF, "viewer", PASSWORD, utc_now())
    finally:
        engine.dispose()
    return config_path


class Browser(threading.Thread):
    """One logged-in staff page holding /staff/live open; records when each change shows."""

    def __init__(self, url: str, index: int) -> None:
        super().__init__(name=f"browser-{index}", daemon=True)
        self.url = url
        self.seen: dict[tuple[str, int], float] = {}   # (station, change number) -> time
        self.version: dict[str, int] = {}
        self.connected = threading.Event()
        self.error: str | None = None
        self.events = 0
        self._stop = threading.Event()

    def login(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        form = client.get("/staff/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        if token is None:
            raise RuntimeError("the login page has no CSRF token")
        answer = client.post("/staff/login", data={"name": STAFF, "password": PASSWORD,
                                                   "csrf_token": token.group(1)})
        if answer.status_code != 303:
            raise RuntimeError(f"login refused: HTTP {answer.status_code}")
        return client

    def run(self) -> None:
        try:
            client = self.login()
            with client.stream("GET", "/staff/live", timeout=httpx.Timeout(30, read=None)) as response:
                kind = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                        if kind == "live":
                            self.connected.set()
                    elif line.startswith("data: ") and kind == "station":
                        self._card(json.loads(line[6:])["html"], time.perf_counter())
                    if self._stop.is_set():
                        return
        except Exception as exc:  # reported in the JSON, not a crash of the bench
            if not self._stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.set()

    def _card(self, html: str, now: float) -> None:
        self.events += 1
        name, state = _CARD.search(html), _STATE.search(html)
        version = _VERSION.search(html)
        if not (name and state and version):
            return
        station, number = name.group(1), int(version.group(1))
        if state.group(1) == "offline":
            number += 1   # the offline change that follows online change `number`
        self.seen.setdefault((station, number), now)

    def stop(self) -> None:
        self._stop.set()


class Stations:
    """The stations' status publishers: a few MQTT connections carrying every station."""

    def __init__(self, port: int, stations: int, connections: int) -> None:
        self.names = [f"station-{i + 1:03d}" for i in range(stations)]
        self.clients: list[mqtt.Client] = []
        for i in range(min(connections, stations)):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"grid-bench-{i}")
            client.on_socket_open = _no_delay
            client.connect("127.0.0.1", port)
            client.loop_start()
            self.clients.append(client)
        self.changes = dict.fromkeys(self.names, 0)
        self.published: dict[tuple[str, int], float] = {}
        self.rng = random.Random(6)

    def topic(self, name: str) -> str:
        from protocol import topics

        return topics.station_topic(SITE, name, "status")

    def publish(self, index: int, online: bool | None = None, wait: bool = False) -> None:
        name = self.names[index]
        number = self.changes[name] + 1 if online is None else self.changes[name]
        if online is None:
            online = number % 2 == 0   # even changes: online; odd: offline (as the will says)
        if online:
            devices = {"scanner": "ok", "printer": self.rng.choice(["ok", "ok", "fault"]), "rfid": "ok"}
            payload = {"v": 1, "state": "online", "kind": "kiosk", "version": f"b{number}",
                       "devices": devices, "outbox": self.rng.randint(0, 3)}
        else:
            payload = {"v": 1, "state": "offline"}
        self.changes[name] = number
        client = self.clients[index % len(self.clients)]
        self.published[(name, number)] = time.perf_counter()
        info = client.publish(self.topic(name), json.dumps(payload).encode(), qos=1, retain=True)
        if wait:
            info.wait_for_publish(timeout=10)

    def close(self) -> None:
        for name in self.names:  # leave no retained status behind on the broker
            self.clients[0].publish(self.topic(name), b"", qos=1, retain=True).wait_for_publish(5)
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


def run(stations: int, clients: int, rate: float, seconds: float, connections: int,
        settle: float, keep: Path | None) -> dict[str, Any]:
    from thuvien.broker import MosquittoBroker

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        workdir = keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with MosquittoBroker(extra_config="") as broker:
            web_port = _free_port()
            config_path = prepare(workdir, broker.port, web_port)
            log_path = workdir / "server.log"
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            with open(log_path, "ab") as log:
                server = subprocess.Popen(
                    [sys.executable, "-m", "thuvien.cli", "--log-level", "WARNING", "server",
                     "--config", str(config_path)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, start_new_session=True)
            fleet: Stations | None = None
            browsers: list[Browser] = []
            try:
                url = f"http://127.0.0.1:{web_port}"
                _wait_for_web(url, server, log_path)
                fleet = Stations(broker.port, stations, connections)
                for i in range(stations):   # every station online before the browsers come
                    fleet.publish(i, online=True, wait=True)
                browsers = [Browser(url, i) for i in range(clients)]
                for browser in browsers:
                    browser.start()
                for browser in browsers:
                    if not browser.connected.wait(30) or browser.error:
                        raise RuntimeError(f"{browser.name} could not open the live stream: {browser.error}")
                time.sleep(1.0)   # the first picture of the grid, not measured
                _say(f"{stations} stations, {clients} browsers: publishing {rate:g} changes/s for {seconds:g} s")
                first = dict(fleet.published)
                cpu_start, wall_start = _cpu_seconds(server.pid), time.perf_counter()
                total = int(rate * seconds)
                order = list(range(stations))
                for n in range(total):
                    if n % stations == 0:
                        fleet.rng.shuffle(order)
                    delay = wall_start + n / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    fleet.publish(order[n % stations])
                time.sleep(settle)   # the last changes on their way
                cpu = _cpu_seconds(server.pid) - cpu_start
                wall = time.perf_counter() - wall_start
                measured = {key: at for key, at in fleet.published.items() if key not in first}
                latencies: list[float] = []
                missing = 0
                for browser in browsers:
                    for key, published in measured.items():
                        shown = browser.seen.get(key)
                        if shown is None:
                            missing += 1
                        else:
                            latencies.append((shown - published) * 1000)
                if server.poll() is not None:
                    raise RuntimeError(f"the server exited with code {server.returncode}")
                return {
                    "stations": stations, "browsers": clients, "rate_per_s": rate,
                    "seconds": seconds, "changes_published": len(measured),
                    "deliveries_expected": len(measured) * clients,
                    "deliveries": len(latencies), "missing": missing,
                    "browser_errors": [b.error for b in browsers if b.error],
                    "latency_ms": percentiles(latencies),
                    "server_cpu_cores": round(cpu / wall, 3),
                    "machine": {"cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load_start],
                                "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
                }
            finally:
                for browser in browsers:
                    browser.stop()
                if fleet is not None:
                    fleet.close()
                _stop(server)


def _wait_for_web(url: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{url}/staff/login", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the web did not answer within 30 s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10, help="browsers on /staff/live")
    parser.add_argument("--rate", type=float, default=20.0, help="status changes a second, in all")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=10, help="MQTT connections carrying the stations")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait for the last changes")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    if args.stations < 1 or args.clients < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--stations, --clients, --rate and --seconds must be positive")
    figures = run(args.stations, args.clients, args.rate, args.seconds, args.connections,
                  args.settle, args.keep)
    print(json.dumps(figures, indent=2))
    return 0 if figures["missing"] == 0 and not figures["browser_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
