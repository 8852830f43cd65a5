"""Device benchmark: camera decoding, and a gate's decisions and events with RFID tags.

Three figures, each on the real code path with the hardware edge simulated:
- camera: frames per second that `drivers.camera.Decoder` decodes at 640x480 (gray, with
  sensor noise), for a frame with one EAN-13 (an ISBN), one with a Code 128 accession
  number, and an empty frame; pinned to one core, as a kiosk leaves the other to its UI;
- gate decision: for each book passing, the time from the reader's inventory answer to
  the gate's decision with its outputs switched (`kiosk.gate.Gate`, the 50 ms target),
  over a mix of books on loan by AFI, on loan by the gate's on-loan set (the tag's data
  is read), and not on loan (alarm: relay, buzzer and light pulses on simulated GPIO);
- inventory to event: from a tag laid in the reader's field to the `gate.alarm` event
  received by a subscriber on a private Mosquitto, through the station's real MQTT link.
  This includes the wait for the next inventory (`--poll-ms`).
The gate runs with the simulated reader and, separately, with the FEIG ISO Host driver
talking to the FEIG emulator byte by byte (frames built, CRC'd and parsed). One JSON
object goes to stdout; progress to stderr.

    .venv/bin/python bench/devices.py                   # 3 s per camera frame, 300 passages
    .venv/bin/python bench/devices.py --passages 60 --camera-seconds 1   # a quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import queue
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # bench/ first on the path would shadow the `kiosk` package
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests" / "drivers"))  # camera_images: the generated frames

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.circulation import _say, mosquitto_version, run_and_print, summary_ms  # noqa: E402

TARGET_DECISION_P99_MS = 50.0


# --- camera --------------------------------------------------------------------------------

def camera_figures(seconds: float) -> dict[str, Any]:
    import camera_images as images
    import cv2

    from drivers.camera import Decoder

    cv2.setNumThreads(1)
    frames = {
        "ean13_isbn": (images.noisy(images.scene(images.Placement(
            images.barcode("ean13", "9786040000002"))), 6.0), "9786040000002"),
        "code128_accession": (images.noisy(images.scene(images.Placement(
            images.barcode("code128", "TN.00315"))), 6.0), "TN.00315"),
        "empty": (images.empty(), None),
    }
    out: dict[str, Any] = {"width": 640, "height": 480, "noise_sigma": 6.0}
    errors = 0
    for name, (frame, expected) in frames.items():
        decoder = Decoder()
        found = [symbol.code for symbol in decoder.decode(frame)]
        if (expected is None and found) or (expected is not None and found != [expected]):
            _say(f"camera: {name} decoded as {found}, expected {expected}")
            errors += 1
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            decoder.decode(frame)
            count += 1
        elapsed = time.perf_counter() - started
        out[name] = {"frames": count, "fps": round(count / elapsed, 1),
                     "ms_per_frame": round(1000 * elapsed / count, 2)}
        _say(f"camera {name}: {out[name]['fps']} frames/s")
    out["errors"] = errors
    return out


# --- the gate ------------------------------------------------------------------------------

class EventWatch:
    """A subscriber to the gate's event topic that notes when each alarm arrives."""

    def __init__(self, port: int, topic: str) -> None:
        self.arrivals: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-devices-watch")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.arrivals.put((time.perf_counter(), json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the event subscriber could not subscribe")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _ledger_entry(seq: int, item: str) -> Any:
    from protocol import LedgerEntry

    now = dt.datetime.now(dt.timezone.utc)
    return LedgerEntry(seq=seq, id=f"bench-{seq}", op="checkout", item=item, title="", patron="HS-0001",
                       patron_kind="student", station="kiosk-1", station_at=now, server_at=now)


def gate_figures(kind: str, passages: int, poll_ms: float, on_loan: int, port: int) -> dict[str, Any]:
    from drivers.gpio import SimulatedGpioConfig, create_gpio
    from drivers.rfid.feig import FeigReader, FeigReaderConfig
    from drivers.rfid.padcontrol import item_tags
    from drivers.rfid.simulated import EmulatedTransport, FeigEmulator, SimulatedPad, SimulatedRfidReader
    from drivers.rfid.tagdata import AFI_IN_STOCK, AFI_ON_LOAN
    from kiosk.config import GateConfig, RfidConfig
    from kiosk.gate import Gate
    from kiosk.link import MqttLink
    from protocol import topics
    from protocol.configfile import MqttConfig

    pad = SimulatedPad()
    reader: Any
    if kind == "simulated":
        reader = SimulatedRfidReader(pad)
    else:
        reader = FeigReader(FeigReaderConfig(port="emulated"), transport=EmulatedTransport(FeigEmulator(pad)))
    reader.open()
    pins = create_gpio(SimulatedGpioConfig.model_validate({
        "outputs": {"relay": {"pin": 17}, "buzzer": {"pin": 27}, "light_red": {"pin": 22}}}))
    site, station = "bench-devices", f"gate-{kind}"
    link = MqttLink(site, station, "gate", MqttConfig(host="127.0.0.1", port=port))
    if not link.start(wait=10):
        raise RuntimeError("the gate could not connect to the broker")
    watch = EventWatch(port, topics.station_topic(site, station, "event"))
    rfid = RfidConfig(poll_interval_s=poll_ms / 1000, absent_after_s=0.5)
    gate = Gate(reader, link, rfid=rfid, config=GateConfig(alarm_s=0.05), pins=pins)
    # The on-loan set as a school's ledger leaves it: `on_loan` items lent, one entry each.
    lent = [f"TN{i:05d}" for i in range(on_loan)]
    for seq, item in enumerate(lent, start=1):
        gate.on_ledger(_ledger_entry(seq, item))
    stop = threading.Event()
    runner = threading.Thread(target=gate.run, args=(stop,), name="bench-gate", daemon=True)
    runner.start()
    to_event: list[float] = []
    errors = 0
    rng = random.Random(2026)
    try:
        for i in range(passages):
            # Books arrive whenever they do, not just after an inventory.
            time.sleep(rng.uniform(0, rfid.poll_interval_s))
            # A third each: on loan by its AFI, on loan by the set (AFI left in stock by a
            # failed write), and not on loan at all.
            case = i % 3
            item = lent[i] if case < 2 else f"GK{i:06d}"  # every passage a new book
            afi = AFI_ON_LOAN if case == 0 else AFI_IN_STOCK
            tags = item_tags(f"{item}", afi=afi)
            before = len(gate.decisions)
            laid = time.perf_counter()
            pad.place(*tags)
            deadline = time.monotonic() + 5
            while len(gate.decisions) == before and time.monotonic() < deadline:
                time.sleep(0.0005)
            if len(gate.decisions) == before:
                errors += 1
                _say(f"gate {kind}: no decision for {item}")
            else:
                decision = gate.decisions[-1]
                wanted = "alarm" if case == 2 else "pass"
                if decision.outcome != wanted:
                    errors += 1
                    _say(f"gate {kind}: {item} gave {decision.outcome}, expected {wanted}")
                if case == 2:
                    try:
                        arrived, event = watch.arrivals.get(timeout=5)
                    except queue.Empty:
                        errors += 1
                        _say(f"gate {kind}: no gate.alarm event for {item}")
                    else:
                        if event["data"].get("item") != item:
                            errors += 1
                        to_event.append(arrived - laid)
            for tag in tags:
                pad.remove(tag.uid)
    finally:
        stop.set()
        runner.join(timeout=5)
        watch.close()
        link.stop()
        reader.close()
        pins.close()
    decisions = list(gate.decisions)
    by_outcome: dict[str, list[float]] = {}
    for decision in decisions:
        by_outcome.setdefault(f"{decision.outcome}_{decision.reason}", []).append(decision.seconds)
    _say(f"gate {kind}: {len(decisions)} decisions")
    return {
        "reader": kind,
        "passages": passages,
        "on_loan_set": len(lent),
        "poll_interval_ms": poll_ms,
        "decision_ms": summary_ms([d.seconds for d in decisions]),
        "decision_ms_by_case": {name: summary_ms(values) for name, values in sorted(by_outcome.items())},
        "inventory_to_event_ms": summary_ms(to_event),
        "target_decision_p99_ms": TARGET_DECISION_P99_MS,
        "errors": errors,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from thuvien.broker import MosquittoBroker

    logging.getLogger("thuvien.kiosk.gate").setLevel(logging.ERROR)  # one line per alarm
    if args.one_core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    result: dict[str, Any] = {
        "benchmark": "devices",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "one_core": bool(args.one_core), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
    }
    result["camera"] = camera_figures(args.camera_seconds)
    broker = MosquittoBroker(host="127.0.0.1")
    broker.start()
    try:
        result["mosquitto"] = mosquitto_version()
        result["gate"] = [gate_figures(kind, args.passages, args.poll_ms, args.on_loan, broker.port)
                          for kind in ("simulated", "feig-emulated")]
    finally:
        broker.stop()
    result["errors"] = result["camera"]["errors"] + sum(g["errors"] for g in result["gate"])
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--camera-seconds", type=float, default=3.0, help="decoding time per frame kind")
    parser.add_argument("--passages", type=int, default=300, help="books through the gate, per reader")
    parser.add_argument("--poll-ms", type=float, default=200.0, help="the gate's inventory interval")
    parser.add_argument("--on-loan", type=int, default=20_000, help="items in the gate's on-loan set")
    parser.add_argument("--all-cores", dest="one_core", action="store_false",
                        help="do not pin the benchmark to one core")
    parser.add_argument("--json-out", help="also write the JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.passages < 3 or args.camera_seconds <= 0 or args.poll_ms <= 0 or args.on_loan < args.passages:
        raise SystemExit("bench: --passages >= 3, --camera-seconds > 0, --poll-ms > 0, "
                         "--on-loan >= --passages")
    return run_and_print(run, args)


if __name__ == "__main__":
    sys.exit(main())
