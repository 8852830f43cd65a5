"""Spoken prompts (pyttsx3 over espeak-ng) and chimes, from one worker thread.

The UI calls `Voice.say()` and `Voice.chime()` and returns at once: each call only
leaves a job for the worker, which synthesises speech to a WAV and hands every WAV to a
player (`aplay -q` by default; tests inject a callable that records paths). A child
scanning fast must hear the latest result, not a backlog, so a new prompt replaces a
prompt still waiting, and a new chime a chime still waiting; what has started plays on.

Sound is a help, never a requirement: without espeak-ng, a voice, `aplay` or a sound
card the station logs the problem once and carries on silent. Nothing here raises
into the caller except `synthesize()`, which says why it could not (`VoiceError`).

Facts about pyttsx3 2.99's espeak driver that shape this module (checked on Debian 12,
espeak-ng 1.51):
- espeak-ng is initialised once per process and its synthesis callback is global: a
  second pyttsx3 engine takes it over and the first then writes no file, silently. So
  there is one engine per process (`_Espeak`), used by one thread at a time (a lock).
  Which thread created it does not matter: espeak-ng runs the callback, and pyttsx3
  writes the WAV, on a thread of espeak-ng's own.
- `runAndWait()` does not wait for that thread: it returns after a fixed 10 ms sleep,
  often before the file exists. Synthesis waits for the "finished-utterance" event.
- `runAndWait()` begins by cancelling whatever espeak-ng is busy with; a rate or volume
  change still being applied counts, and the new utterance is lost (87 of 1000 when
  both were set before each one). Properties are set only when they change, and
  espeak-ng is let settle first. They are queued until the first `runAndWait()` and
  applied at once after it.
- A voice espeak-ng does not know leaves the previous voice in place; pyttsx3 only
  emits an "error" event. Voices are resolved against the installed list, and the
  voice in force is checked after each synthesis.
- The driver prints "Audio saved to ..." on stdout for every file; that is silenced.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kiosk.config import VoiceConfig
from kiosk.sounds import CHIMES, Chime, chime_wav

log = logging.getLogger("thuvien.kiosk.voice")

Player = Callable[[Path], None]
"""Plays one WAV file and returns when it is done; raises if it could not."""

SpokenLanguage = Literal["vi", "en"]
# espeak-ng names that pick each language's standard voice (aav/vi, gmw/en).
DEFAULT_VOICES: dict[SpokenLanguage, str] = {"vi": "vi", "en": "en"}


class VoiceError(Exception):
    """Speech could not be made: no espeak-ng, no voice for the language, nothing written."""


class PlaybackError(Exception):
    """A WAV could not be played: no player program, no sound card, a device error."""


# --- playback -----------------------------------------------------------------------


class Aplay:
    """Plays through ALSA's `aplay`, the player of Raspberry Pi OS Lite (no PulseAudio).

    `device` is an ALSA PCM name (`aplay -L`); none means ALSA's default device, which
    /etc/asound.conf can point at the jack, HDMI or a USB speaker.
    """

    def __init__(self, device: str | None = None, *, program: str = "aplay") -> None:
        self._command = [program, "-q"] + (["-D", device] if device else [])
        self._program = program
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> None:
        try:
            process = subprocess.Popen([*self._command, str(path)],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
        except OSError as exc:
            raise PlaybackError(f"cannot run {self._program}: {exc}") from None
        with self._lock:
            self._process = process
        try:
            _, stderr = process.communicate()
        finally:
            with self._lock:
                self._process = None
        if process.returncode not in (0, -15):  # -15: stopped by `stop()`
            lines = stderr.decode(errors="replace").strip().splitlines()
            raise PlaybackError(f"{self._program} failed: {lines[-1] if lines else process.returncode}")

    def ready(self) -> bool:
        """Whether the program exists and the kernel lists a sound card."""
        if shutil.which(self._program) is None:
            return False
        try:
            cards = Path("/proc/asound/cards").read_text()
        except OSError:
            return False
        return bool(cards.strip()) and "no soundcards" not in cards

    def stop(self) -> None:
        with self._lock:
            if self._process is not None:
                self._process.terminate()


# --- synthesis ----------------------------------------------------------------------


@dataclass(frozen=True)
class EspeakVoice:
    id: str                  # pyttsx3's id: espeak-ng's identifier, lower case ("aav/vi")
    name: str                # "Vietnamese (Northern)"
    languages: tuple[str, ...]


def _pyttsx3_engine() -> Any:
    import pyttsx3
    import pyttsx3.drivers.espeak as espeak_driver

    # The same cache key as any other pyttsx3.init("espeak") in this process, so that
    # such a caller shares this engine rather than stealing espeak-ng's callback.
    engine = pyttsx3.init("espeak")
    # Its "Audio saved to ..." would land in the headless station's terminal.
    espeak_driver.print = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    return engine


class _Espeak:
    """The process's one espeak-ng engine, one synthesis at a time."""

    def __init__(self, factory: Callable[[], Any] = _pyttsx3_engine) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._engine: Any = None
        self._error: str | None = None
        self._voices: tuple[EspeakVoice, ...] = ()
        # Set from espeak-ng's own thread once the WAV file is written and closed.
        self._finished = threading.Event()
        self._completed = False
        self._refusals: list[BaseException] = []
        self._applied: dict[str, object] = {}

    def _on_finished(self, completed: bool = False, **_: object) -> None:
        # On espeak-ng's thread, after the WAV file is written and closed.
        self._completed = completed
        self._finished.set()

    def _load(self) -> Any:
        # Called with the lock held.
        if self._engine is None and self._error is None:
            try:
                engine = self._factory()
                self._voices = tuple(
                    EspeakVoice(id=v.id, name=v.name, languages=tuple(v.languages or ()))
                    for v in engine.getProperty("voices"))
                engine.connect("finished-utterance", self._on_finished)
                engine.connect("error", lambda exception=None, **_: self._refusals.append(exception))
                # pyttsx3 queues setProperty() until its first run; after one, it applies
                # each at once, which `_apply` relies on.
                engine.runAndWait()
            except Exception as exc:  # ImportError, OSError, RuntimeError: no espeak-ng
                self._error = f"{type(exc).__name__}: {exc}"
            else:
                self._engine = engine
        if self._engine is None:
            raise VoiceError(self.failure)
        return self._engine

    @property
    def failure(self) -> str | None:
        return None if self._error is None else f"espeak-ng is not usable ({self._error})"

    def voices(self) -> tuple[EspeakVoice, ...]:
        with self._lock:
            self._load()
            return self._voices

    def find(self, wanted: str) -> str | None:
        """The id of the installed voice that `wanted` names, as espeak-ng would read it.

        `wanted` may be an id ("aav/vi-vn-x-south"), its last part ("vi-vn-x-south"), a
        language ("vi", "en-us") or a name ("Vietnamese (Southern)"), in any case.
        """
        key = wanted.strip().lower()
        if not key:
            return None
        voices = self.voices()
        for matches in (lambda v: v.id == key,
                        lambda v: v.id.rpartition("/")[2] == key,
                        lambda v: key in v.languages,
                        lambda v: v.name.lower() == key):
            for voice in voices:
                if matches(voice):
                    return voice.id
        return None

    def synthesize(self, text: str, voice_id: str, rate: int, volume: float, path: Path) -> None:
        with self._lock:
            engine = self._load()
            self._refusals.clear()
            self._apply(engine, voice=voice_id, rate=rate, volume=volume)
            completed = self._run(engine, text, path)
            if not completed:  # cancelled by the driver's own stop(); once more, settled
                self._applied.clear()
                self._apply(engine, voice=voice_id, rate=rate, volume=volume)
                completed = self._run(engine, text, path)
            in_force = engine.getProperty("voice")
            refusals = list(self._refusals)
        if refusals:
            raise VoiceError(f"espeak-ng refused: {refusals[0]}")
        if not completed:
            raise VoiceError(f"espeak-ng cancelled {path.name} twice")
        if in_force != voice_id:
            raise VoiceError(f"espeak-ng kept voice {in_force!r} instead of {voice_id!r}")
        if not path.is_file() or path.stat().st_size <= 44:  # 44: a WAV header alone
            raise VoiceError(f"espeak-ng wrote no audio to {path}")

    def _apply(self, engine: Any, **properties: object) -> None:
        # The driver's runAndWait() begins with stop(), which cancels whatever espeak-ng
        # is doing, parameter changes included, and with them the new utterance
        # (seen 87 times in 1000 when rate and volume were set before each one). So set
        # only what changed, then let espeak-ng settle.
        changed = False
        for name, value in properties.items():
            if self._applied.get(name) != value:
                engine.setProperty(name, value)  # applied at once: the engine is idle
                self._applied[name] = value
                changed = True
        if changed:
            self._settle()

    def _run(self, engine: Any, text: str, path: Path) -> bool:
        """Synthesise into `path`; False if espeak-ng cancelled it."""
        path.unlink(missing_ok=True)
        self._finished.clear()
        engine.save_to_file(text, str(path))
        engine.runAndWait()
        # runAndWait() returns after a fixed 10 ms sleep, not when espeak-ng (which
        # synthesises on a thread of its own) has written the file: wait for that.
        if not self._finished.wait(timeout=10 + 0.1 * len(text)):
            engine.stop()  # espeak_Cancel(): nothing may write to this path later
            raise VoiceError(f"espeak-ng did not finish {path.name} in time")
        self._settle()
        return self._completed

    @staticmethod
    def _settle(timeout: float = 2.0) -> None:
        """Wait until espeak-ng's own thread is idle."""
        try:
            from pyttsx3.drivers import _espeak as lib
        except Exception:  # an injected engine (tests) or no espeak-ng: nothing to wait for
            return
        deadline = time.monotonic() + timeout
        while lib.IsPlaying() and time.monotonic() < deadline:
            time.sleep(0.001)


_espeak = _Espeak()


# --- what is read aloud -------------------------------------------------------------

_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")


def spoken(text: str, language: str) -> str:
    """The text as it should be heard: dates (19/09/2026) said as people say them.

    espeak-ng reads a date as three numbers, in English with "slash" between them.
    """
    def say_date(match: re.Match[str]) -> str:
        day, month, year = (int(part) for part in match.groups())
        if not (1 <= day <= 31 and 1 <= month <= 12):
            return match.group(0)
        if language == "en":
            return f"{day} {_MONTHS_EN[month - 1]} {year}"
        return f"ngày {day} tháng {month} năm {year}"

    return _DATE.sub(say_date, text)


# --- the station's voice ------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    kind: Literal["speech", "chime"]
    text: str = ""
    language: SpokenLanguage = "vi"
    chime: Chime = "ok"


def _language(language: str) -> SpokenLanguage:
    # As kiosk.messages does: anything but English is Vietnamese.
    return "en" if language == "en" else "vi"


def _scratch_dir() -> str:
    # A prompt is written and deleted each time: keep that off the Pi's SD card.
    shm = "/dev/shm"
    return tempfile.mkdtemp(prefix="thuvien-voice-",
                            dir=shm if os.access(shm, os.W_OK) else None)


class Voice:
    """The station's spoken prompts and chimes; every method is safe from any thread."""

    def __init__(self, config: VoiceConfig, *, player: Player | None = None) -> None:
        self._config = config
        self._player: Player = player if player is not None else Aplay()
        self._pending: list[_Job] = []
        self._wake = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None
        self._scratch: Path | None = None
        self._chime_files: dict[Chime, Path] = {}
        self._voice_ids: dict[SpokenLanguage, str | None] = {}
        self._resolving = threading.Lock()
        self._count = 0
        self._reported: set[str] = set()
        self._player_failed = False

    # --- the caller's side ---

    def say(self, text: str, language: str) -> None:
        """Speak `text` soon, replacing any prompt that has not started yet."""
        if self._config.enabled and text.strip():
            self._enqueue(_Job("speech", text=text, language=_language(language)))

    def chime(self, kind: Chime) -> None:
        """Play a short sound soon, replacing any chime that has not started yet."""
        if kind not in CHIMES:
            self._report_once(f"chime:{kind}", "no chime called %r; expected one of %s",
                              kind, ", ".join(CHIMES))
        elif self._config.sounds:
            self._enqueue(_Job("chime", chime=kind))

    def available(self) -> bool:
        """Whether this station can speak: espeak-ng, a Vietnamese voice and a player
        that is ready (for `aplay`: a sound card) and has not failed since it last worked."""
        try:
            has_voice = self.voice_id("vi") is not None
        except Exception:  # never raise into the caller, not even from a check
            return False
        ready = getattr(self._player, "ready", None)
        return has_voice and not self._player_failed and (ready is None or bool(ready()))

    def voice_id(self, language: str) -> str | None:
        """The espeak-ng voice speaking `language`: the configured one if installed,
        else the language's standard voice (logged); None if there is neither."""
        language = _language(language)
        with self._resolving:
            if language not in self._voice_ids:
                self._voice_ids[language] = self._resolve(language)
            return self._voice_ids[language]

    def synthesize(self, text: str, language: str, path: str | os.PathLike[str]) -> Path:
        """Write `text`, spoken in `language` as configured, to a WAV file at `path`.

        Raises VoiceError when it cannot (no espeak-ng, no voice for the language).
        """
        path = Path(path)
        if not text.strip():
            raise VoiceError("nothing to say")
        voice_id = self.voice_id(language)
        if voice_id is None:
            raise VoiceError(_espeak.failure or f"no espeak-ng voice for {_language(language)!r}")
        if not path.parent.is_dir():
            raise VoiceError(f"no directory {path.parent}")
        _espeak.synthesize(spoken(text, _language(language)), voice_id,
                           rate=self._config.rate, volume=self._config.volume, path=path)
        return path

    def close(self) -> None:
        """Stop the worker (cutting short what is playing) and remove its files."""
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._pending.clear()
            self._wake.notify()
        stop = getattr(self._player, "stop", None)
        if stop is not None:
            stop()
        if self._worker is not None:
            self._worker.join(timeout=5)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> Voice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the worker's side ---

    def _enqueue(self, job: _Job) -> None:
        with self._wake:
            if self._closed:
                return
            # The newest prompt and the newest chime win; one that has started plays on.
            self._pending = [p for p in self._pending if p.kind != job.kind]
            self._pending.append(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="voice", daemon=True)
                self._worker.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._pending.pop(0)
            try:
                self._perform(job)
            except PlaybackError as exc:
                self._report_once("player", "cannot play sound: %s (continuing silent)", exc)
            except (VoiceError, OSError) as exc:
                self._report_once("speech", "cannot speak: %s (continuing without speech)", exc)
            except Exception:
                if "unexpected" not in self._reported:
                    self._reported.add("unexpected")
                    log.exception("voice worker: unexpected error (continuing)")

    def _perform(self, job: _Job) -> None:
        scratch = self._scratch_path()
        if job.kind == "chime":
            self._play(self._chime_file(job.chime, scratch))
            return
        if self.voice_id(job.language) is None:
            return  # said once already, when the voice was looked for
        self._count += 1
        path = self.synthesize(job.text, job.language, scratch / f"prompt-{self._count}.wav")
        try:
            self._play(path)
        finally:
            path.unlink(missing_ok=True)

    def _play(self, path: Path) -> None:
        if self._closed:
            return
        try:
            self._player(path)
        except PlaybackError:
            self._player_failed = True
            raise
        except Exception as exc:
            self._player_failed = True
            raise PlaybackError(f"{type(exc).__name__}: {exc}") from exc
        if self._player_failed:
            self._player_failed = False
            self._reported.discard("player")
            log.info("sound works again")

    def _scratch_path(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(_scratch_dir())
        return self._scratch

    def _chime_file(self, kind: Chime, scratch: Path) -> Path:
        if kind not in self._chime_files:
            path = scratch / f"chime-{kind}.wav"
            path.write_bytes(chime_wav(kind, self._config.volume))
            self._chime_files[kind] = path
        return self._chime_files[kind]

    def _resolve(self, language: SpokenLanguage) -> str | None:
        configured = self._config.voice_vi if language == "vi" else self._config.voice_en
        try:
            found = _espeak.find(configured)
            if found is not None:
                return found
            fallback = _espeak.find(DEFAULT_VOICES[language])
        except VoiceError as exc:
            self._report_once("espeak", "speech is off: %s", exc)
            return None
        if fallback is None:
            self._report_once(f"voice:{language}", "no espeak-ng voice %r nor any %r voice: "
                              "%s prompts will not be spoken", configured, language, language)
        else:
            log.warning("espeak-ng has no voice %r; speaking %s with %r",
                        configured, language, fallback)
        return fallback

    def _report_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._reported:
            self._reported.add(key)
            log.warning(message, *args)
