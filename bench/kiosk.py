"""Kiosk benchmark: scan-to-screen time of the real touch screen, and its idle CPU and RSS.

A private Mosquitto, the library server in its own process (`python -m thuvien.cli
server` on a temporary SQLite file seeded with the demo school) and the real Kivy kiosk
(`kiosk.ui.app.run_kiosk`) in a process of its own under SDL's offscreen video driver at
800x480, with the simulated scanner, the simulated printer and a recording announcer
instead of the voice (no audio device is opened). Inside the kiosk process a scenario
thread plays readers at the station: each reader's card, five books (three lent, two
refused), the summary, then return mode with four books (three returned, one refused);
some codes arrive as a keyboard-wedge burst, the rest through the scanner's `feed`.

Each scan is timed from the scan event (`feed`, or the wedge's Enter) to the end of the
first frame drawn after the presenter has put the answer in the widgets: that frame
rendered (glFinish, see --gl-sync) and swapped. The server round trip (the time spent
inside the link's `request`, publish to reply) is reported apart, and the time between
is split into phases. The timers are wrapped around the running app's own objects from
outside (the link's `request`, the app's `on_read` and `show_outcome`, the window's
`flip`); kiosk/ui is not changed. Once the run has settled on the idle screen, this
process samples the kiosk's CPU time and RSS from /proc. One JSON object goes to
stdout; progress to stderr. See bench/README.md.

    .venv/bin/python bench/kiosk.py                               # 200 scans, 20 s idle
    .venv/bin/python bench/kiosk.py --scans 40 --idle-seconds 5   # a quick look
    .venv/bin/python bench/kiosk.py --profile k.pstats            # + cProfile of Kivy's thread
    .venv/bin/python bench/kiosk.py --maxfps 30 --kivy-clock interrupt   # experiments
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
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script (`python bench/kiosk.py`), Python puts bench/ first on the path, where
# this very file would shadow the `kiosk` package: the repository's root takes its place.
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.circulation import (  # noqa: E402
    Probe,
    ServerProcess,
    _say,
    cpu_seconds,
    mosquitto_version,
    prepare_library,
    register_stations,
    run_and_print,
    summary_ms,
)

log = logging.getLogger("thuvien.bench.kiosk")

KIOSK_STATION = "bench-kiosk"  # registered with the server before it starts

TARGET_P99_MS = 100.0
TARGET_RSS_MB = 150.0
TARGET_IDLE_CPU_PERCENT = 5.0
SCANS_PER_CYCLE = 10
KIOSK_STOP_TIMEOUT_S = 15.0
MARK = "@@bench "  # the kiosk process's messages to this one, on its stdout

# The outcome that answers each kind of scan, and the screen it is drawn on.
EXPECTED = {
    "identify": ("PatronIdentified", "reader"),
    "checkout_ok": ("ItemBorrowed", "scanning"),
    "checkout_refused": ("ItemRefused", "scanning"),
    "return_ok": ("ItemReturned", "return"),
    "return_refused": ("ReturnRefused", "return"),
}
KINDS = tuple(EXPECTED)
# Outcomes that answer a scan (a new reader's card also ends the previous session first:
# that SessionEnded is not the answer).
ANSWERS = {"PatronIdentified", "PatronRefused", "ItemBorrowed", "ItemRefused", "ItemReturned",
           "ReturnRefused", "NeedCard", "Unreadable", "ServerUnreachable"}


# --- the plan: who scans what, cycle by cycle --------------------------------------------

def plan_cycles(library: Any, cycles: int) -> list[list[list[str]]]:
    """Each cycle is one student (active, no loans) and their own copies, as steps:
    ["scan", kind, code, source] or ["press", screen, widget id, screen expected next].

    A student may hold 3 short loans (TN at most 3, TK at most 2), so of the five books
    scanned the reading-room copy (or an unknown code) and the fourth book are refused;
    the three lent come back in return mode, and the fourth is refused there (not on loan).
    Every cycle leaves the library as it found it.
    """
    from sqlalchemy import exists, select

    from server import db
    from server.models import Copy, CopyStatus, Loan, Reader, ReaderStatus

    engine = db.make_engine(library.config.database.url)
    try:
        with engine.connect() as connection:
            readers = connection.execute(
                select(Reader.code)
                .where(Reader.kind == "student", Reader.status == ReaderStatus.ACTIVE,
                       ~exists().where(Loan.reader_id == Reader.id))
                .order_by(Reader.id).limit(cycles)).scalars().all()

            def copies(kind: str, status: CopyStatus) -> list[str]:
                return list(connection.execute(
                    select(Copy.barcode)
                    .where(Copy.kind == kind, Copy.status == status, Copy.barcode.is_not(None),
                           ~exists().where(Loan.copy_id == Copy.id))
                    .order_by(Copy.id)).scalars().all())

            tn, tk = copies("TN", CopyStatus.AVAILABLE), copies("TK", CopyStatus.AVAILABLE)
            reference = copies("TK", CopyStatus.REFERENCE) + copies("TN", CopyStatus.REFERENCE)
    finally:
        engine.dispose()
    if len(readers) < 2 or len(tn) < 6 or len(tk) < 2 or not reference:
        raise RuntimeError("the demo library lacks the students or copies the bench needs")
    plan: list[list[list[str]]] = []
    tn_sets = len(tn) // 3
    for i in range(cycles):
        card = readers[i % len(readers)]
        first, second, fourth = tn[3 * (i % tn_sets): 3 * (i % tn_sets) + 3]
        third = tk[i % len(tk)]
        # Refused at the desk: a reading-room copy (not loanable) or a code nobody knows.
        stranger = reference[i % len(reference)] if i % 2 == 0 else f"TN9{i % 10000:04d}9"
        card_source = "wedge" if i % 2 else "scanner"
        plan.append([
            ["scan", "identify", card, card_source],
            ["scan", "checkout_ok", first, "scanner"],
            ["scan", "checkout_refused", stranger, "scanner"],
            ["scan", "checkout_ok", second, "wedge" if i % 2 == 0 else "scanner"],
            ["scan", "checkout_ok", third, "scanner"],
            ["scan", "checkout_refused", fourth, "scanner"],  # the fourth loan: limit reached
            ["press", "scanning", "done", "summary"],
            ["press", "summary", "no_receipt", "idle"],
            ["press", "idle", "give_back", "return"],
            ["scan", "return_ok", first, "scanner"],
            ["scan", "return_ok", second, "wedge"],
            ["scan", "return_ok", third, "scanner"],
            ["scan", "return_refused", fourth, "scanner"],  # never lent
            ["press", "return", "done", "idle"],
        ])
    return plan


# --- the kiosk process ---------------------------------------------------------------------

@dataclass
class Scan:
    """One scan, timed with time.perf_counter() in the kiosk process."""

    kind: str
    code: str
    source: str                  # "scanner" (feed) or "wedge" (a keyboard burst + Enter)
    measured: bool               # False in the warm-up cycles
    t0: float = 0.0              # the scan event: feed() called, or the wedge's Enter
    read: float | None = None    # the kiosk's on_read, on Kivy's thread
    requests: list[tuple[str, float, float, bool]] = field(default_factory=list)  # op, start, end, ok
    outcome: str | None = None   # the session's answer, as the presenter got it
    shown_start: float | None = None
    shown_end: float | None = None   # the presenter has updated the widgets
    flip_start: float | None = None  # the frame drawn after that: swap begins
    flip_end: float | None = None    # ... and ends
    screen: str | None = None        # the screen current on that frame
    frames: int = 0              # frames drawn from the scan event to that frame, included
    frames_after: int | None = None  # frames drawn after it, until the next scan or touch
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)


class RecordingAnnouncer:
    """Stands in for the voice: counts what would be said and chimed, opens no audio device."""

    def __init__(self) -> None:
        self.said = 0
        self.chimes = 0

    def say(self, text: str, language: str) -> None:
        self.said += 1

    def chime(self, kind: str) -> None:
        self.chimes += 1

    def close(self) -> None:
        pass


class KioskInstruments:
    """Timers wrapped around the running app's own objects, from outside the app:
    the link's `request`, the app's `on_read` and `show_outcome`, and the window's `flip`."""

    def __init__(self, gl_sync: str = "none") -> None:
        self.gl_sync = gl_sync
        self.gl_sync_via: str | None = None
        self.current: Scan | None = None
        self.flips = 0
        self.flips_at_answer = 0
        self.flip_times: list[float] = []
        self.requests_outside_scans = 0
        self.counters: dict[str, dict[str, float]] = {}
        self.gc_pauses: list[tuple[int, float, float]] = []  # generation, start, end

    def watch_gc(self) -> None:
        """Time every garbage collection (any thread's): a full one can stall Kivy's frame."""
        import gc

        perf = time.perf_counter
        started: dict[int, float] = {}

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[threading.get_ident()] = perf()
            else:
                start = started.pop(threading.get_ident(), None)
                if start is not None:
                    self.gc_pauses.append((info.get("generation", -1), start, perf()))

        gc.callbacks.append(on_gc)

    def wrap_link(self, link: Any) -> None:
        request = link.request
        perf = time.perf_counter

        def timed_request(op: Any, args: Any, **kwargs: Any) -> Any:
            start = perf()
            ok = False
            try:
                reply = request(op, args, **kwargs)
                ok = bool(reply.ok)
                return reply
            finally:
                end = perf()
                scan = self.current
                if scan is not None and scan.flip_end is None:
                    scan.requests.append((getattr(op, "value", str(op)), start, end, ok))
                else:
                    self.requests_outside_scans += 1

        link.request = timed_request  # the session worker calls backend.request: this one

    def install(self, app: Any) -> None:
        """On Kivy's thread, once the app runs."""
        from kivy.core.window import Window

        perf = time.perf_counter
        on_read, show_outcome, flip = app.on_read, app.show_outcome, Window.flip

        def timed_on_read(code: str, read: Any = None) -> None:
            scan = self.current
            if scan is not None and scan.read is None:
                scan.read = perf()
            on_read(code, read)

        def timed_show_outcome(outcome: Any) -> None:
            start = perf()
            show_outcome(outcome)
            end = perf()
            scan = self.current
            name = type(outcome).__name__
            if scan is not None and scan.outcome is None and name in ANSWERS:
                scan.outcome, scan.shown_start, scan.shown_end = name, start, end

        sync = None
        if self.gl_sync != "none":
            sync, self.gl_sync_via = _gl_function("glFinish" if self.gl_sync == "finish" else "glFlush")

        def timed_flip() -> None:
            start = perf()
            if sync is not None:
                sync()  # see --gl-sync
            flip()
            end = perf()
            self.flips += 1
            self.flip_times.append(end)
            scan = self.current
            if scan is not None and scan.flip_end is None:
                scan.frames += 1
            if scan is not None and scan.shown_end is not None and scan.flip_end is None:
                scan.flip_start, scan.flip_end = start, end
                self.flips_at_answer = self.flips
                scan.screen = app.current
                scan.done.set()

        # Instance attributes shadow the methods: `_drain` calls self.show_outcome, the
        # wedge and the scanner self.on_read, and WindowBase.on_flip self.flip().
        app.on_read = timed_on_read
        app.show_outcome = timed_show_outcome
        Window.flip = timed_flip

    def snapshot(self, name: str) -> None:
        from kivy.clock import Clock

        self.counters[name] = {"at": time.perf_counter(), "loop_frames": Clock.frames, "flips": self.flips}


def _kiosk_scenario(spec: dict[str, Any], app: Any, scanner: Any, tools: KioskInstruments,
                    scans: list[Scan], report: dict[str, Any], stop: threading.Event) -> None:
    from kivy.core.window import Window

    from kiosk.ui.pilot import Pilot

    pilot = Pilot(app)
    rng = random.Random(2026)
    think = spec["think_ms"] / 1000.0
    timeout = spec["scan_timeout_s"]
    perf = time.perf_counter
    try:
        pilot.wait_for(lambda: app.warning is not None, 20, "the screens to be warmed up")
        pilot.wait_screen("idle")
        pilot.settle(10)
        report["ready_s"] = perf() - report["process_start"]
        _announce("started")
        profiler = None
        for index, steps in enumerate(spec["cycles"]):
            measured = index >= spec["warmup_cycles"]
            if measured and profiler is None and spec.get("profile"):
                import cProfile

                profiler = cProfile.Profile()
                pilot.call(profiler.enable)  # it profiles the thread that enables it: Kivy's
            for step in steps:
                if stop.is_set():
                    raise RuntimeError("stopped before the end of the scans")
                if scans and scans[-1].frames_after is None and step[0] == "press":
                    scans[-1].frames_after = tools.flips - tools.flips_at_answer
                if step[0] == "press":
                    _, screen, widget_id, next_screen = step
                    pilot.wait_screen(screen)
                    pilot.press_id(screen, widget_id)
                    pilot.wait_screen(next_screen)
                    continue
                _, kind, code, source = step
                # A person between two scans; jitter puts scans at every phase of a frame.
                time.sleep(think * rng.uniform(0.5, 1.5))
                if scans and scans[-1].frames_after is None:
                    scans[-1].frames_after = tools.flips - tools.flips_at_answer
                scan = Scan(kind, code, source, measured)
                tools.current = scan
                if source == "scanner":
                    scan.t0 = perf()
                    if not scanner.feed(code):
                        raise RuntimeError("the simulated scanner refused a read")
                else:
                    def burst(scan: Scan = scan) -> None:
                        for ch in scan.code:  # a wedge types the whole code within a frame
                            Window.dispatch("on_textinput", ch)
                        scan.t0 = perf()      # the scan event: its Enter
                        Window.dispatch("on_key_down", 13, 40, None, [])
                        Window.dispatch("on_key_up", 13, 40)
                    pilot.call(burst)
                if not scan.done.wait(timeout):
                    scan.error = (f"no frame showed an answer within {timeout:g} s "
                                  f"(outcome {scan.outcome}, screen {pilot.current()})")
                else:
                    want, screen = EXPECTED[kind]
                    if scan.outcome != want:
                        scan.error = f"answered {scan.outcome}, expected {want}"
                    elif scan.screen != screen:
                        scan.error = f"drawn on screen {scan.screen}, expected {screen}"
                    elif not scan.requests:
                        scan.error = "answered without asking the server"
                tools.current = None
                scans.append(scan)
                if scan.error and not scan.done.is_set():
                    raise RuntimeError(f"{kind} {code}: {scan.error}")
        if profiler is not None:
            pilot.call(profiler.disable)
            profiler.dump_stats(spec["profile"])
        # Settle on the idle screen: no message over it, nothing animating.
        pilot.wait_screen("idle")
        pilot.call(lambda: app.root.ids.toast.hide() if app.root.ids.toast.shown else None)
        time.sleep(1.0)
        pilot.settle(5)
        report["idle_screen"] = pilot.current()
        _announce("idle")
    except BaseException:
        report["error"] = traceback.format_exc()
        _announce("failed")
        stop.set()


def _announce(message: str) -> None:
    print(MARK + message, flush=True)


def _control(tools: KioskInstruments, stop: threading.Event) -> None:
    """Commands from the bench on stdin; EOF (the bench went away) stops the kiosk too."""
    for line in sys.stdin:
        command = line.strip()
        if command in ("idle-begin", "idle-end"):
            tools.snapshot(command)
        elif command == "stop":
            break
    stop.set()


def kiosk_main(spec_path: str) -> int:
    """The kiosk process: `run_kiosk` as the station runs it, instrumented and driven."""
    process_start = time.perf_counter()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(relativeCreated)7.0f %(threadName)s %(name)s %(levelname)s: %(message)s")
    from drivers.base import SimulatedScanner
    from drivers.printer import SimulatedPrinter
    from kiosk.config import StationConfig
    from kiosk.link import MqttLink
    from kiosk.ui.app import run_kiosk

    config = StationConfig.model_validate({
        "site": spec["site"], "station": KIOSK_STATION, "language": "vi",
        "mqtt": {"host": spec["host"], "port": spec["port"]},
        "session": {"request_timeout_s": spec["request_timeout_s"]},
        "ui": {"fullscreen": False, "width": 800, "height": 480,
               "school_name": "Trường THCS Demo (thư viện mẫu)"},
        "voice": {"enabled": False, "sounds": False},
    })
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: stop.set())
    tools = KioskInstruments(gl_sync=spec.get("gl_sync", "none"))
    scans: list[Scan] = []
    report: dict[str, Any] = {"process_start": process_start}
    link = MqttLink(config.site, config.station, config.kind, config.mqtt,
                    request_timeout=config.session.request_timeout_s)
    tools.wrap_link(link)
    tools.watch_gc()
    scanner, voice, printer = SimulatedScanner(), RecordingAnnouncer(), SimulatedPrinter()
    code = 1
    try:
        if not link.start(wait=10):
            raise RuntimeError("the kiosk could not connect to the broker")
        threading.Thread(target=_control, args=(tools, stop), name="bench-control", daemon=True).start()

        def ready(app: Any) -> None:
            from kivy import __version__ as kivy_version
            from kivy.config import Config
            from kivy.core.window import Window

            tools.install(app)
            report["kivy"] = {"version": kivy_version,
                              "clock": os.environ.get("KIVY_CLOCK", Config.get("kivy", "kivy_clock")),
                              "maxfps": Config.getint("graphics", "maxfps"),
                              "window": list(Window.size), "gl": _gl_strings(),
                              "gl_sync": tools.gl_sync, "gl_sync_via": tools.gl_sync_via}
            report["on_ready_s"] = time.perf_counter() - process_start
            threading.Thread(target=_kiosk_scenario, name="bench-scenario", daemon=True,
                             args=(spec, app, scanner, tools, scans, report, stop)).start()

        code = run_kiosk(config, link, scanner, link=link, stop=stop, announcer=voice,
                         printer=printer, on_ready=ready)
    except BaseException:
        report.setdefault("error", traceback.format_exc())
    finally:
        with contextlib.suppress(Exception):
            link.stop()
        report.pop("process_start", None)
        report.update(exit=code, said=voice.said, chimes=voice.chimes, flips=tools.flips,
                      counters=tools.counters, requests_outside_scans=tools.requests_outside_scans,
                      gc_pauses=tools.gc_pauses, flip_times=tools.flip_times,
                      scans=[_scan_row(s) for s in scans])
        Path(spec["out"]).write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")
    return 0 if code == 0 and "error" not in report else 1


def _gl_function(name: str) -> tuple[Any, str]:
    """`name` from the system's libGL through ctypes, which lets other threads run while
    it waits (Kivy's own wrapper keeps the GIL: the session worker and the MQTT thread
    would stall behind the rasterizer). Falls back to Kivy's."""
    import ctypes
    import ctypes.util

    for library in (ctypes.util.find_library("GL"), "libGL.so.1", ctypes.util.find_library("OpenGL"),
                    "libOpenGL.so.0"):
        if library:
            with contextlib.suppress(OSError, AttributeError):
                return getattr(ctypes.CDLL(library), name), f"ctypes {library}"
    import kivy.graphics.opengl as gl

    log.warning("no libGL for ctypes: %s through Kivy, which holds the GIL while it waits", name)
    return getattr(gl, name), "kivy.graphics.opengl (holds the GIL)"


def _gl_strings() -> dict[str, str]:
    try:
        from kivy.graphics.opengl import GL_RENDERER, GL_VENDOR, GL_VERSION, glGetString

        return {name: glGetString(key).decode(errors="replace")
                for name, key in (("vendor", GL_VENDOR), ("renderer", GL_RENDERER), ("version", GL_VERSION))}
    except Exception as exc:  # only informative
        return {"error": str(exc)}


def _scan_row(scan: Scan) -> dict[str, Any]:
    return {f.name: getattr(scan, f.name) for f in fields(scan) if f.name != "done"}


# --- this process: the kiosk as a child --------------------------------------------------

class KioskProcess:
    """The kiosk in its own process and session; lines starting with MARK on its stdout
    are its messages, everything else it writes goes to a log file."""

    def __init__(self, spec: dict[str, Any], workdir: Path, env_extra: dict[str, str]) -> None:
        self.spec_path = workdir / "kiosk-spec.json"
        self.spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        self.report_path = Path(spec["out"])
        self.log_path = workdir / "kiosk.log"
        env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy",
               "KIVY_WINDOW": "sdl2", "KIVY_NO_ARGS": "1", "KIVY_NO_CONSOLELOG": "1",
               "KIVY_NO_FILELOG": "1", "KIVY_HOME": str(workdir / "kivy-home"),
               "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
               **env_extra}
        self._log = open(self.log_path, "ab")  # noqa: SIM115  # closed in stop()
        self.messages: queue.Queue[str | None] = queue.Queue()
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--kiosk-process", str(self.spec_path)],
            cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            start_new_session=True)  # a Ctrl-C in the terminal is ours to handle, in order
        threading.Thread(target=self._read, name="kiosk-stdout", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if line.startswith(MARK):
                self.messages.put(line[len(MARK):])
            else:
                with contextlib.suppress(OSError, ValueError):  # closed once we stopped it
                    self._log.write(raw)
        self.messages.put(None)

    def wait_message(self, expected: str, timeout: float, server: ServerProcess) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.messages.get(timeout=0.5)
            except queue.Empty:
                server.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the kiosk did not report {expected!r} within {timeout:.0f} s\n"
                                       f"{self.log_tail()}") from None
                continue
            if message == expected:
                return
            if message is None or message == "failed":
                self.stop()
                raise RuntimeError(f"the kiosk failed before {expected!r}:\n{self.failure()}")

    def send(self, command: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.write(f"{command}\n".encode())
            self.process.stdin.flush()

    def stop(self) -> None:
        """Ask (stdin), then SIGTERM (it sets the app's stop event), then kill."""
        process = self.process
        if process.poll() is None:
            self.send("stop")
            with contextlib.suppress(OSError, ValueError):
                assert process.stdin is not None
                process.stdin.close()
            try:
                process.wait(timeout=KIOSK_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _say(f"the kiosk (pid {process.pid}) did not stop; SIGTERM")
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        if not self._log.closed:
            with contextlib.suppress(OSError):
                self._log.flush()

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self._log.close()

    def report(self) -> dict[str, Any]:
        if not self.report_path.exists():
            raise RuntimeError(f"the kiosk wrote no report (exit {self.process.returncode})\n"
                               f"{self.log_tail()}")
        return json.loads(self.report_path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]

    def failure(self) -> str:
        with contextlib.suppress(Exception):
            error = self.report().get("error")
            if error:
                return str(error)
        return self.log_tail()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            self._log.flush()
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process in MB (Linux /proc)."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) / 1024.0
    return out


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name ("main" for the thread that runs Kivy's loop)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (task / "stat").read_text()
                name = "main" if task.name == str(pid) else stat[stat.index("(") + 1: stat.rindex(")")]
                parts = stat.rsplit(")", 1)[1].split()
                out[name] = out.get(name, 0.0) + (int(parts[11]) + int(parts[12])) / tick
    return out


def measure_idle(kiosk: KioskProcess, seconds: float) -> dict[str, Any]:
    pid = kiosk.pid
    threads_before = thread_cpu(pid)
    kiosk.send("idle-begin")
    begin, cpu_before = time.monotonic(), cpu_seconds(pid)
    rss: list[float] = []
    end = begin + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(0.5, left))
        if kiosk.process.poll() is not None:
            raise RuntimeError(f"the kiosk exited while idle:\n{kiosk.log_tail()}")
        rss.append(proc_status(pid).get("VmRSS", math.nan))
    cpu_after, finish = cpu_seconds(pid), time.monotonic()
    kiosk.send("idle-end")
    threads_after = thread_cpu(pid)
    status = proc_status(pid)
    window = finish - begin
    if cpu_before is None or cpu_after is None:
        raise RuntimeError("could not read the kiosk's CPU time from /proc")
    by_thread = {name: round(100.0 * (used - threads_before.get(name, 0.0)) / window, 2)
                 for name, used in sorted(threads_after.items())}
    return {"seconds": round(window, 2),
            "cpu_percent": round(100.0 * (cpu_after - cpu_before) / window, 2),
            "cpu_percent_by_thread": {k: v for k, v in by_thread.items() if v > 0},
            "rss_mb_mean": round(sum(rss) / len(rss), 1) if rss else None,
            "status": status}


# --- the report ------------------------------------------------------------------------

def summarize(kiosk_report: dict[str, Any]) -> dict[str, Any]:
    rows = kiosk_report.get("scans", [])
    measured = [r for r in rows if r["measured"] and not r["error"] and r["flip_end"] is not None]
    warm = [r for r in rows if not r["measured"] and not r["error"] and r["flip_end"] is not None]

    def total(r: dict[str, Any]) -> float:
        return float(r["flip_end"] - r["t0"])

    def server(r: dict[str, Any]) -> float:
        return float(sum(end - start for _op, start, end, _ok in r["requests"]))

    def phase(rows: list[dict[str, Any]], start: str, end: str) -> dict[str, Any]:
        values = []
        for r in rows:
            a, b = _moment(r, start), _moment(r, end)
            if a is not None and b is not None:
                values.append(b - a)
        return summary_ms(values)

    def figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"scan_to_screen_ms": summary_ms([total(r) for r in rows]),
                "ui_ms_server_excluded": summary_ms([total(r) - server(r) for r in rows]),
                "server_round_trip_ms": summary_ms([server(r) for r in rows])}

    return {
        "all": figures(measured),
        "by_kind": {kind: figures([r for r in measured if r["kind"] == kind]) for kind in KINDS},
        "by_source": {source: summary_ms([total(r) for r in measured if r["source"] == source])
                      for source in ("scanner", "wedge")},
        # Where the time goes, scan event to swap; together they add up to scan_to_screen.
        "phases_ms": {
            "scan_to_ui_thread": phase(measured, "t0", "read"),
            "ui_thread_to_request": phase(measured, "read", "request_start"),
            "server_round_trip": phase(measured, "request_start", "request_end"),
            "reply_to_presenter": phase(measured, "request_end", "shown_start"),
            "presenter": phase(measured, "shown_start", "shown_end"),
            "layout_and_draw": phase(measured, "shown_end", "flip_start"),
            "render_and_swap": phase(measured, "flip_start", "flip_end"),
        },
        "frames": _frames(measured),
        "gc": _gc(kiosk_report.get("gc_pauses", []), measured),
        "warmup_scan_to_screen_ms": summary_ms([total(r) for r in warm]),
        "first_scan_ms": round(total(warm[0]) * 1000, 3) if warm else None,
    }


def _frames(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Frames drawn per scan: up to the answer's (1 if nothing else moved), and after it
    until the next scan or touch (0 on a still screen; animations show here)."""
    if not rows:
        return {}
    after = [r["frames_after"] for r in rows if r.get("frames_after") is not None]
    return {"to_answer_mean": round(sum(r["frames"] for r in rows) / len(rows), 2),
            "to_answer_max": max(r["frames"] for r in rows),
            "after_answer_mean": round(sum(after) / len(after), 2) if after else None}


def _gc(pauses: list[list[float]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Python's garbage collections while the measured scans ran, and how many scans a
    full (generation 2) collection fell into."""
    if not rows:
        return {}
    begin, end = min(r["t0"] for r in rows), max(r["flip_end"] for r in rows)
    inside = [(int(g), a, b) for g, a, b in pauses if begin <= a <= end]
    full = [(a, b) for g, a, b in inside if g == 2]
    hit = sum(1 for r in rows if any(r["t0"] <= a <= r["flip_end"] for a, _b in full))
    return {"collections": {str(g): sum(1 for x in inside if x[0] == g) for g in (0, 1, 2)},
            "full_collection_ms": summary_ms([b - a for a, b in full]),
            "scans_with_a_full_collection": hit}


def _moment(row: dict[str, Any], name: str) -> float | None:
    if name == "request_start":
        return row["requests"][0][1] if row["requests"] else None
    if name == "request_end":
        return row["requests"][-1][2] if row["requests"] else None
    value = row.get(name)
    return float(value) if value is not None else None


def build_report(args: argparse.Namespace, kiosk_report: dict[str, Any], idle: dict[str, Any],
                 busy: dict[str, Any], rss_after_start: dict[str, float], library: Any,
                 broker_info: dict[str, Any], durations: dict[str, float]) -> dict[str, Any]:
    rows = kiosk_report.get("scans", [])
    errors: dict[str, int] = {}
    for row in rows:
        if row["error"]:
            key = f"{row['kind']}:{row['error'].split(' (')[0]}"
            errors[key] = errors.get(key, 0) + 1
    if kiosk_report.get("error"):
        errors["kiosk:" + kiosk_report["error"].strip().splitlines()[-1]] = 1
    if kiosk_report.get("exit") not in (0, None):
        errors[f"kiosk_exit:{kiosk_report.get('exit')}"] = 1
    figures = summarize(kiosk_report)
    total = figures["all"]["scan_to_screen_ms"]
    status = idle["status"]
    rss = {"after_start": round(rss_after_start.get("VmRSS", math.nan), 1),
           "idle": round(status.get("VmRSS", math.nan), 1),
           "peak": round(status.get("VmHWM", math.nan), 1),
           "idle_anon": round(status.get("RssAnon", math.nan), 1),
           "idle_file": round(status.get("RssFile", math.nan), 1),
           "idle_mean": idle["rss_mb_mean"]}
    counters = kiosk_report.get("counters", {})
    frames: dict[str, Any] = {}
    begin, end = counters.get("idle-begin"), counters.get("idle-end")
    if begin and end and end["at"] > begin["at"]:
        span = end["at"] - begin["at"]
        # Turns of Kivy's loop, and frames drawn (the window flipped): an idle screen
        # that keeps redrawing shows here first.
        frames = {"loop_per_s": round((end["loop_frames"] - begin["loop_frames"]) / span, 1),
                  "drawn": end["flips"] - begin["flips"]}
    measured = [r for r in rows if r["measured"]]
    p99 = total.get("p99")
    return {
        "samples": total.get("count", 0),
        "scan_to_screen_ms": total,
        "ui_ms_server_excluded": figures["all"]["ui_ms_server_excluded"],
        "server_round_trip_ms": figures["all"]["server_round_trip_ms"],
        "by_kind": figures["by_kind"],
        "by_source": figures["by_source"],
        "phases_ms": figures["phases_ms"],
        "frames_per_scan": figures["frames"],
        "gc": figures["gc"],
        "warmup": {"cycles": args.warmup_cycles, "scans": sum(1 for r in rows if not r["measured"]),
                   "scan_to_screen_ms": figures["warmup_scan_to_screen_ms"],
                   "first_scan_ms": figures["first_scan_ms"]},
        "idle_cpu_percent": idle["cpu_percent"],
        "idle_cpu_percent_by_thread": idle["cpu_percent_by_thread"],
        "idle_frames": frames,
        "idle_seconds": idle["seconds"],
        # The kiosk's CPU while readers were served (warm-up reader and settling included).
        "busy": busy,
        "rss_mb": rss,
        "targets": {
            "scan_to_screen_p99_under_100ms": p99 is not None and p99 < TARGET_P99_MS,
            "rss_under_150mb": status.get("VmHWM", math.inf) < TARGET_RSS_MB,
            "idle_cpu_under_5pct": idle["cpu_percent"] < TARGET_IDLE_CPU_PERCENT,
        },
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "scans_measured": len(measured),
        "think_ms": args.think_ms,
        "kiosk": {"window": kiosk_report.get("kivy", {}).get("window"),
                  "kivy": kiosk_report.get("kivy"),
                  "video": "SDL offscreen", "scanner": "simulated (feed) and keyboard-wedge bursts",
                  "voice": "off: a recording announcer (no audio device, pyttsx3 not started)",
                  "printer": "simulated",
                  "on_ready_s": _round(kiosk_report.get("on_ready_s")),
                  "ready_s": _round(kiosk_report.get("ready_s")),
                  "said": kiosk_report.get("said"), "chimes": kiosk_report.get("chimes"),
                  "requests_outside_scans": kiosk_report.get("requests_outside_scans")},
        "durations_s": {k: round(v, 1) for k, v in durations.items()},
        "library": library.seeded,
        "broker": broker_info,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": args.loadavg_at_start,
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version(), "platform": platform.platform()},
        "at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _round(value: Any) -> Any:
    return round(value, 2) if isinstance(value, float) else value


# --- the run ---------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    from thuvien.broker import MosquittoBroker

    durations: dict[str, float] = {}
    began = time.monotonic()
    with contextlib.ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="thuvien-bench-kiosk-"))
        if args.keep:
            _say(f"keeping {workdir}")
        else:
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)

        broker = MosquittoBroker(host="127.0.0.1")
        broker.start()
        cleanup.callback(broker.stop)
        broker_info = {"kind": "mosquitto", "version": mosquitto_version(),
                       "url": f"mqtt://127.0.0.1:{broker.port}"}

        _say("creating and seeding the library database ...")
        library = prepare_library(workdir, "127.0.0.1", broker.port, None)
        register_stations(library, [KIOSK_STATION])
        cycles = args.warmup_cycles + math.ceil(args.scans / SCANS_PER_CYCLE)
        plan = plan_cycles(library, cycles)

        probe = Probe("127.0.0.1", broker.port)
        cleanup.callback(probe.close)
        launched = time.time()
        server = ServerProcess(library.config_path, workdir, None, None)
        cleanup.callback(server.stop)
        probe.wait_server_online(library.config.site, launched, server)
        durations["setup"] = time.monotonic() - began
        _say("server online; starting the kiosk (SDL offscreen, 800x480) ...")

        spec = {"site": library.config.site, "host": "127.0.0.1", "port": broker.port,
                "request_timeout_s": args.timeout, "think_ms": args.think_ms,
                "scan_timeout_s": args.timeout + 5.0, "warmup_cycles": args.warmup_cycles,
                "cycles": plan, "out": str(workdir / "kiosk-report.json"),
                "profile": str(Path(args.profile).resolve()) if args.profile else None,
                "gl_sync": args.gl_sync}
        env_extra: dict[str, str] = {}
        if args.maxfps is not None:
            env_extra["KCFG_GRAPHICS_MAXFPS"] = str(args.maxfps)
        if args.kivy_clock is not None:
            env_extra["KIVY_CLOCK"] = args.kivy_clock
        kiosk = KioskProcess(spec, workdir, env_extra)
        cleanup.callback(kiosk.close)
        mark = time.monotonic()
        kiosk.wait_message("started", 90, server)
        rss_after_start = proc_status(kiosk.pid)
        durations["kiosk_start"] = time.monotonic() - mark
        _say(f"kiosk ready in {durations['kiosk_start']:.1f} s; {len(plan)} readers, "
             f"{len(plan) * SCANS_PER_CYCLE} scans ({args.warmup_cycles} warm-up cycle(s)) ...")
        mark, cpu_before = time.monotonic(), cpu_seconds(kiosk.pid)
        kiosk.wait_message("idle", 60 + len(plan) * SCANS_PER_CYCLE * (args.timeout + 1), server)
        durations["scans"] = time.monotonic() - mark
        cpu_after = cpu_seconds(kiosk.pid)
        busy = {"seconds": round(durations["scans"], 1), "scans": len(plan) * SCANS_PER_CYCLE}
        if cpu_before is not None and cpu_after is not None:
            busy["cpu_percent"] = round(100.0 * (cpu_after - cpu_before) / durations["scans"], 1)
            busy["cpu_ms_per_scan"] = round(1000.0 * (cpu_after - cpu_before) / busy["scans"], 1)
        _say(f"scans done in {durations['scans']:.1f} s; measuring the idle kiosk for "
             f"{args.idle_seconds:g} s ...")
        idle = measure_idle(kiosk, args.idle_seconds)
        kiosk.stop()
        kiosk_report = kiosk.report()
        server.stop()
        durations["total"] = time.monotonic() - began
        return build_report(args, kiosk_report, idle, busy, rss_after_start, library, broker_info,
                            durations)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/kiosk.py",
        description="Scan-to-screen time of the real Kivy kiosk against the server over a real "
                    "Mosquitto, and its idle CPU and RSS; prints one JSON object.")
    parser.add_argument("--scans", type=int, default=200,
                        help="measured scans, rounded up to whole readers of 10 scans (default 200)")
    parser.add_argument("--idle-seconds", type=float, default=20.0,
                        help="how long the idle kiosk's CPU and RSS are sampled (default 20)")
    parser.add_argument("--think-ms", type=float, default=50.0,
                        help="mean pause before each scan, jittered 0.5x-1.5x (default 50)")
    parser.add_argument("--warmup-cycles", type=int, default=1,
                        help="readers served first and left out of the figures (default 1)")
    parser.add_argument("--timeout", type=float, default=5.0, help="request timeout in seconds (default 5)")
    parser.add_argument("--maxfps", type=int, default=None,
                        help="override Kivy's [graphics] maxfps in the kiosk (default: Kivy's, 60)")
    parser.add_argument("--kivy-clock", choices=("default", "interrupt", "free_all", "free_only"),
                        default=None, help="KIVY_CLOCK for the kiosk (default: Kivy's default clock)")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="cProfile Kivy's thread in the kiosk during the measured scans "
                             "into FILE (pstats format)")
    parser.add_argument("--gl-sync", choices=("none", "flush", "finish"), default="finish",
                        help="glFlush or glFinish before each swap (SDL's offscreen swap does "
                             "neither; see bench/README.md)")
    parser.add_argument("--json-out", default=None, help="also write the JSON to this file")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (database, logs, the kiosk's raw report)")
    parser.add_argument("--kiosk-process", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.kiosk_process:
        return kiosk_main(args.kiosk_process)
    if args.scans < 1 or args.idle_seconds <= 0 or args.think_ms < 0 or args.warmup_cycles < 0:
        raise SystemExit("bench: --scans >= 1, --idle-seconds > 0, --think-ms >= 0, --warmup-cycles >= 0")
    if not Path("/proc/self/status").exists():
        raise SystemExit("bench: the kiosk's CPU and RSS are read from /proc: Linux only")
    args.loadavg_at_start = [round(x, 2) for x in os.getloadavg()]
    return run_and_print(run, args)


if __name__ == "__main__":
    sys.exit(main())
