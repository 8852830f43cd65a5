"""The station's voice: real espeak-ng speech through pyttsx3, real WAV files, real chimes.

Only the loudspeaker is replaced: a `Player` that records the WAV files it is handed
(the audio hardware edge). Needs `apt-get install libespeak-ng1` and `pip install pyttsx3`.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
import time
import wave
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pyttsx3

from kiosk import messages, voice as voice_module
from kiosk.config import VoiceConfig
from kiosk.sounds import CHIMES, SAMPLE_RATE, chime_wav
from kiosk.voice import Aplay, PlaybackError, Voice, VoiceError, spoken
from protocol import ErrorCode, default_message

LANGUAGES = ("vi", "en")

# What the kiosk says aloud: everything a reader hears about a card, a book or the
# session. Not the terminal banner, button labels or the list of loans (read on screen).
SPOKEN = (
    "hello.student", "hello.teacher", "hello.staff",
    "can_borrow.student", "can_borrow.teacher", "can_borrow.staff",
    "can_borrow_none.student", "can_borrow_none.teacher", "can_borrow_none.staff",
    "blocked.student", "blocked.teacher", "blocked.staff",
    "block.overdue", "block.blocked", "block.inactive", "block.other",
    "prompt.scan_items", "same_card", "need_card",
    "item.borrowed", "item.refused_blocked",
    "return.mode", "item.returned", "item.returned_late",
    "unreadable", "server_unreachable", "server_bad_reply", "inactivity",
    "summary.borrowed", "summary.borrowed_none", "summary.returned", "summary.returned_none",
    "ended.done", "ended.timeout", "ended.logout", "ended.new_card", "bye",
)
# ...and a refusal, for every error code of the protocol, when borrowing and returning.
REFUSALS = ("item.refused", "return.refused")

SAMPLE_FIELDS = {
    "given_name": "Bình", "n": 3, "days": 2, "seconds": 20, "item": "TN00001",
    "title": "Dế Mèn phiêu lưu ký", "due": messages.format_date(dt.date(2026, 9, 19)),
}

VIETNAMESE = "Đã mượn: Dế Mèn phiêu lưu ký. Hạn trả: 19/09/2026"


def prompts(language: str) -> list[tuple[str, str]]:
    """(label, sentence) for every prompt the kiosk speaks in `language`."""
    said = [(key, messages.text(key, language, **SAMPLE_FIELDS)) for key in SPOKEN]
    for key in REFUSALS:
        for code in ErrorCode:
            said.append((f"{key}/{code.value}", messages.text(
                key, language, **SAMPLE_FIELDS, message=default_message(code, language))))
    return said


@dataclass
class Sound:
    rate: int
    samples: array

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def read_wav(path: Path) -> Sound:
    """A WAV file as the station writes them: 16-bit mono PCM, or the test fails."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2), path
        samples = array("h", wav.readframes(wav.getnframes()))
        return Sound(wav.getframerate(), samples)


def pitch(samples: array, rate: int) -> float:
    """The fundamental of a tone, in Hz, from its zero crossings (two per period)."""
    signs = [s > 0 for s in samples if abs(s) > 200]
    crossings = sum(a != b for a, b in zip(signs, signs[1:]))
    return crossings / 2 / (len(samples) / rate)


def bursts(samples: array, rate: int, gap_s: float = 0.03) -> int:
    """How many separate sounds, split by silences of at least `gap_s`."""
    count, quiet, loud = 0, gap_s * rate, False
    for sample in samples:
        if abs(sample) > 200:
            if not loud:
                count += 1
            loud, quiet = True, 0
        else:
            quiet += 1
            loud = loud and quiet < gap_s * rate
    return count


class Recorder:
    """The loudspeaker: keeps each WAV it is handed, and can hold the worker mid-play."""

    def __init__(self) -> None:
        self.played: list[Sound] = []
        self.paths: list[Path] = []
        self.held = threading.Event()       # set while a hold is in force
        self.playing = threading.Event()    # set when a held play has begun
        self.release = threading.Event()
        self._changed = threading.Condition()

    def hold(self) -> None:
        self.release.clear()
        self.held.set()

    def __call__(self, path: Path) -> None:
        sound = read_wav(path)  # now: the worker deletes a prompt once played
        if self.held.is_set():
            self.playing.set()
            assert self.release.wait(10), "the test never released the player"
            self.held.clear()
        with self._changed:
            self.paths.append(path)
            self.played.append(sound)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[Sound]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.played) >= count, timeout), \
                f"played {len(self.played)} of {count}"
            return list(self.played)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def voice(recorder: Recorder) -> Iterator[Voice]:
    with Voice(VoiceConfig(), player=recorder) as station_voice:
        yield station_voice


@pytest.fixture(scope="module")
def spoken_wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, str, Sound]]]:
    """Every spoken prompt, synthesised once in each language: language -> [(label, text, sound)]."""
    folder = tmp_path_factory.mktemp("prompts")
    station_voice = Voice(VoiceConfig(), player=Recorder())
    out: dict[str, list[tuple[str, str, Sound]]] = {}
    for language in LANGUAGES:
        out[language] = []
        for label, sentence in prompts(language):
            path = station_voice.synthesize(sentence, language,
                                            folder / f"{language}-{label.replace('/', '-')}.wav")
            out[language].append((label, sentence, read_wav(path)))
    station_voice.close()
    return out


# --- speech -------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_spoken_prompt_makes_a_wav_of_plausible_length(spoken_wavs, language) -> None:
    assert len(spoken_wavs[language]) == len(SPOKEN) + len(REFUSALS) * len(ErrorCode)
    for label, sentence, sound in spoken_wavs[language]:
        assert sound.rate == SAMPLE_RATE, label
        assert sound.seconds > 0.3, (label, sentence)
        assert max(map(abs, sound.samples)) > 3000, f"{label}: silent"
        # espeak-ng at 150 words a minute says about 10 characters a second; far less
        # is a cut-off sentence, far more is a voice spelling out letters it cannot read.
        per_character = sound.seconds / len(spoken(sentence, language))
        assert 0.04 < per_character < 0.2, (label, sentence, round(sound.seconds, 2))


@pytest.mark.parametrize("language", LANGUAGES)
def test_longer_prompts_take_longer_to_say(spoken_wavs, language) -> None:
    said = spoken_wavs[language]
    length = {label: len(spoken(sentence, language)) for label, sentence, _ in said}
    pairs = [(a, b) for a in said for b in said if length[a[0]] >= 2 * length[b[0]]]
    assert len(pairs) > 100
    for (long_label, _, long_sound), (short_label, _, short_sound) in pairs:
        assert long_sound.seconds > short_sound.seconds, (long_label, short_label)


def test_the_configured_voices_are_the_ones_installed(recorder: Recorder) -> None:
    assert Voice(VoiceConfig(), player=recorder).voice_id("vi") == "aav/vi"
    assert Voice(VoiceConfig(), player=recorder).voice_id("en") == "gmw/en"
    # The config may name a voice by id, by its last part, or by espeak-ng's name.
    for configured, expected in [("aav/vi-vn-x-south", "aav/vi-vn-x-south"),
                                 ("vi-vn-x-central", "aav/vi-vn-x-central"),
                                 ("Vietnamese (Southern)", "aav/vi-vn-x-south")]:
        assert Voice(VoiceConfig(voice_vi=configured), player=recorder).voice_id("vi") == expected
    # Anything but English is spoken in Vietnamese, as kiosk.messages shows it.
    assert Voice(VoiceConfig(), player=recorder).voice_id("fr") == "aav/vi"


def test_vietnamese_is_spoken_with_the_vietnamese_voice(voice: Voice, tmp_path: Path) -> None:
    vi = read_wav(voice.synthesize(VIETNAMESE, "vi", tmp_path / "vi.wav"))
    # pyttsx3 hands back its one espeak engine: the voice in force is the Vietnamese one.
    assert pyttsx3.init("espeak").getProperty("voice") == "aav/vi"
    en = read_wav(voice.synthesize(VIETNAMESE, "en", tmp_path / "en.wav"))
    assert pyttsx3.init("espeak").getProperty("voice") == "gmw/en"
    # The English voice cannot read Vietnamese words and spells out their letters:
    # twice as long. The Vietnamese voice says them as words.
    assert vi.seconds < 0.75 * en.seconds, (vi.seconds, en.seconds)


def test_voice_variants_and_rate_are_honoured(recorder: Recorder, tmp_path: Path) -> None:
    def seconds(config: VoiceConfig) -> float:
        with Voice(config, player=recorder) as station_voice:
            return read_wav(station_voice.synthesize(VIETNAMESE, "vi", tmp_path / "x.wav")).seconds

    slow, fast = seconds(VoiceConfig(rate=80)), seconds(VoiceConfig(rate=300))
    assert slow > 3 * fast
    assert seconds(VoiceConfig(voice_vi="aav/vi-vn-x-south")) > 1
    assert pyttsx3.init("espeak").getProperty("voice") == "aav/vi-vn-x-south"


def test_every_prompt_is_complete_when_voice_rate_and_volume_keep_changing(tmp_path) -> None:
    # pyttsx3's runAndWait() cancels what espeak-ng is still busy with (a parameter
    # change included) and returns before the file is written: neither may cost a prompt.
    configs = [VoiceConfig(rate=120, volume=0.5), VoiceConfig(voice_vi="aav/vi-vn-x-south"),
               VoiceConfig(rate=180, volume=0.8)]
    voices = [Voice(config, player=Recorder()) for config in configs]
    sentence = {"vi": "Em có thể mượn thêm 3 cuốn.", "en": "You can borrow 3 more books."}
    lengths: dict[tuple[int, str], list[float]] = {}
    for round_ in range(25):
        for index, station_voice in enumerate(voices):
            for language in LANGUAGES:
                path = station_voice.synthesize(sentence[language], language,
                                                tmp_path / f"{round_}-{index}-{language}.wav")
                lengths.setdefault((index, language), []).append(read_wav(path).seconds)
    for key, seconds in lengths.items():
        assert max(seconds) < 1.05 * min(seconds), (key, min(seconds), max(seconds))


def test_dates_are_read_as_people_say_them() -> None:
    assert spoken("Hạn trả: 19/09/2026", "vi") == "Hạn trả: ngày 19 tháng 9 năm 2026"
    assert spoken("Due: 01/10/2026.", "en") == "Due: 1 October 2026."
    assert spoken("Mã 45/13/2026 và 1/2", "vi") == "Mã 45/13/2026 và 1/2"  # not dates


def test_a_missing_voice_falls_back_to_the_language_default(recorder, tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="thuvien.kiosk.voice")
    station_voice = Voice(VoiceConfig(voice_vi="aav/vi-vn-x-hue", voice_en="xx"), player=recorder)
    assert station_voice.voice_id("vi") == "aav/vi"
    assert station_voice.voice_id("en") == "gmw/en"
    assert "aav/vi-vn-x-hue" in caplog.text and "'xx'" in caplog.text
    assert read_wav(station_voice.synthesize(VIETNAMESE, "vi", tmp_path / "vi.wav")).seconds > 1


def test_synthesize_says_why_it_cannot(voice: Voice, tmp_path: Path) -> None:
    with pytest.raises(VoiceError, match="nothing to say"):
        voice.synthesize("  ", "vi", tmp_path / "x.wav")
    with pytest.raises(VoiceError, match="no directory"):
        voice.synthesize("Xin chào", "vi", tmp_path / "missing" / "x.wav")


# --- the worker ---------------------------------------------------------------------


def test_say_speaks_through_the_player(voice: Voice, recorder: Recorder) -> None:
    voice.say("Xin chào Bình!", "vi")
    [sound] = recorder.wait_for(1)
    assert 0.5 < sound.seconds < 3
    voice.say("Tạm biệt!", "vi")
    recorder.wait_for(2)
    # The worker removes each prompt once played; nothing piles up on the Pi's storage.
    assert not recorder.paths[0].exists()


def test_say_returns_at_once_while_speech_is_being_made(voice: Voice, recorder: Recorder,
                                                        tmp_path: Path) -> None:
    long_text = " ".join([VIETNAMESE] * 8)
    started = time.perf_counter()
    voice.synthesize(long_text, "vi", tmp_path / "long.wav")
    synthesis = time.perf_counter() - started

    recorder.hold()
    voice.say(long_text, "vi")  # the worker's first job: it loads nothing the caller waits for
    took = []
    for sentence in ("Một.", "Hai.", long_text):
        started = time.perf_counter()
        voice.say(sentence, "vi")
        took.append(time.perf_counter() - started)
    assert recorder.playing.wait(10)
    recorder.release.set()
    assert synthesis > 0.02, synthesis
    assert max(took) < 0.02, took


def test_a_new_prompt_replaces_those_not_yet_started(voice: Voice, recorder: Recorder,
                                                     tmp_path: Path) -> None:
    sentences = {"first": "Xin chào Bình!",
                 "superseded": "Sách này đang được mượn. Hãy gặp thầy cô thư viện nhé.",
                 "also superseded": "Một.",
                 "latest": VIETNAMESE}
    reference = {name: read_wav(voice.synthesize(text, "vi", tmp_path / "r.wav")).seconds
                 for name, text in sentences.items()}

    def which(sound: Sound) -> str:
        return min(reference, key=lambda name: abs(reference[name] - sound.seconds))

    recorder.hold()
    voice.say(sentences["first"], "vi")
    assert recorder.playing.wait(10)  # "first" has started: it plays to the end
    voice.say(sentences["superseded"], "vi")
    voice.say(sentences["also superseded"], "vi")
    voice.say(sentences["latest"], "vi")
    recorder.release.set()
    recorder.wait_for(2)
    time.sleep(0.3)  # anything else would be played by now
    assert [which(sound) for sound in recorder.played] == ["first", "latest"]


def test_the_latest_chime_is_heard_before_the_latest_prompt(voice: Voice, recorder: Recorder) -> None:
    recorder.hold()
    voice.say("Xin chào Bình!", "vi")
    assert recorder.playing.wait(10)
    voice.chime("attention")   # replaced by the next chime...
    voice.chime("ok")
    voice.say("Đã mượn: Dế Mèn phiêu lưu ký.", "vi")  # ...which is heard before this prompt
    recorder.release.set()
    played = recorder.wait_for(3)
    time.sleep(0.3)
    assert len(recorder.played) == 3
    assert played[1].samples == read_chime("ok").samples
    assert played[2].seconds > 1


def test_muting(recorder: Recorder) -> None:
    with Voice(VoiceConfig(enabled=False), player=recorder) as quiet:
        quiet.say("Xin chào Bình!", "vi")
        quiet.chime("ok")
        [sound] = recorder.wait_for(1)
        time.sleep(0.3)
        assert len(recorder.played) == 1 and sound.samples == read_chime("ok").samples
    with Voice(VoiceConfig(sounds=False), player=recorder) as no_chimes:
        no_chimes.chime("error")
        no_chimes.say("Xin chào Bình!", "vi")
        recorder.wait_for(2)
        time.sleep(0.3)
        assert len(recorder.played) == 2 and recorder.played[1].seconds > 0.5


def test_close_stops_the_worker(recorder: Recorder) -> None:
    station_voice = Voice(VoiceConfig(), player=recorder)
    station_voice.chime("ok")
    recorder.wait_for(1)
    worker = station_voice._worker
    station_voice.close()
    station_voice.close()
    assert worker is not None and not worker.is_alive()
    station_voice.say("Xin chào", "vi")
    station_voice.chime("ok")
    time.sleep(0.2)
    assert len(recorder.played) == 1


# --- chimes -------------------------------------------------------------------------


def read_chime(kind: str) -> Sound:
    samples = array("h")
    samples.frombytes(chime_wav(kind)[44:])
    return Sound(SAMPLE_RATE, samples)


def test_chimes_are_short_and_distinct() -> None:
    sounds = {kind: read_chime(kind) for kind in CHIMES}
    for kind, sound in sounds.items():
        assert 0.15 < sound.seconds < 0.6, kind
        assert 8000 < max(map(abs, sound.samples)) < 32767, kind  # loud, never clipped

    ok = sounds["ok"].samples
    first, second = ok[: len(ok) * 3 // 8], ok[len(ok) * 5 // 8:]
    assert pitch(second, SAMPLE_RATE) > 1.3 * pitch(first, SAMPLE_RATE) > 1300  # bright, rising

    error = sounds["error"].samples
    assert bursts(error, SAMPLE_RATE) == 2                                # a double...
    assert pitch(error, SAMPLE_RATE) < 300                               # ...low buzz

    attention = sounds["attention"].samples
    assert bursts(attention, SAMPLE_RATE) == 1
    assert 800 < pitch(attention, SAMPLE_RATE) < 1000                    # one neutral ping
    assert bursts(ok, SAMPLE_RATE) == 1


def test_chimes_are_made_once_and_played_from_one_file(voice: Voice, recorder: Recorder) -> None:
    for _ in range(2):
        voice.chime("error")
        recorder.wait_for(len(recorder.played) + 1)
    assert recorder.paths[0] == recorder.paths[1]
    assert recorder.played[0].samples == read_chime("error").samples
    assert len(read_wav(recorder.paths[0]).samples) == len(read_chime("error").samples)


def test_chime_volume_follows_the_config() -> None:
    loud = max(map(abs, read_chime("ok").samples))
    quiet = array("h")
    quiet.frombytes(chime_wav("ok", 0.25)[44:])
    assert max(map(abs, quiet)) == pytest.approx(loud / 4, rel=0.01)


# --- no sound at all: the kiosk carries on silent -----------------------------------


def test_a_broken_player_is_logged_once_and_never_raises(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="thuvien.kiosk.voice")
    attempts = threading.Semaphore(0)

    def no_device(path: Path) -> None:
        attempts.release()
        raise OSError("audio open error: No such file or directory")

    with Voice(VoiceConfig(), player=no_device) as station_voice:
        for _ in range(3):
            station_voice.chime("error")
            station_voice.say("Xin chào Bình!", "vi")
            # Both tried, each time: a speaker may be plugged in at any moment.
            assert attempts.acquire(timeout=10) and attempts.acquire(timeout=10)
        assert not station_voice.available()
    assert caplog.text.count("cannot play sound") == 1


def test_the_player_working_again_is_noticed(caplog) -> None:
    caplog.set_level(logging.INFO, logger="thuvien.kiosk.voice")
    broken = threading.Event()
    broken.set()
    played = threading.Semaphore(0)

    def flaky(path: Path) -> None:
        played.release()
        if broken.is_set():
            raise PlaybackError("aplay failed: device busy")

    with Voice(VoiceConfig(), player=flaky) as station_voice:
        station_voice.chime("ok")
        assert played.acquire(timeout=10)
        time.sleep(0.1)
        assert not station_voice.available()
        broken.clear()
        station_voice.chime("ok")
        assert played.acquire(timeout=10)
        time.sleep(0.1)
        assert station_voice.available()
    assert "sound works again" in caplog.text


def test_aplay_without_a_device_or_program_raises_playback_error(tmp_path: Path) -> None:
    wav = tmp_path / "ok.wav"
    wav.write_bytes(chime_wav("ok"))
    if shutil.which("aplay") is None:
        pytest.skip("alsa-utils (aplay) is not installed")
    with pytest.raises(PlaybackError, match="aplay failed"):
        Aplay(device="thuvien_no_such_device")(wav)
    with pytest.raises(PlaybackError, match="cannot run"):
        Aplay(program=str(tmp_path / "no-aplay"))(wav)
    assert not Aplay(program=str(tmp_path / "no-aplay")).ready()


def test_without_espeak_the_kiosk_is_silent_but_chimes(monkeypatch, recorder, tmp_path,
                                                        caplog) -> None:
    def no_espeak():
        raise RuntimeError("This means you probably do not have eSpeak or eSpeak-ng installed!")

    monkeypatch.setattr(voice_module, "_espeak", voice_module._Espeak(factory=no_espeak))
    caplog.set_level(logging.WARNING, logger="thuvien.kiosk.voice")
    with Voice(VoiceConfig(), player=recorder) as station_voice:
        assert not station_voice.available()
        assert station_voice.voice_id("vi") is None
        station_voice.say("Xin chào Bình!", "vi")
        station_voice.say("Hello Bình!", "en")
        station_voice.chime("ok")
        [sound] = recorder.wait_for(1)
        time.sleep(0.3)
        assert len(recorder.played) == 1 and sound.samples == read_chime("ok").samples
        with pytest.raises(VoiceError, match="espeak-ng is not usable"):
            station_voice.synthesize("Xin chào", "vi", tmp_path / "x.wav")
    assert caplog.text.count("do not have eSpeak") == 1
    assert len(caplog.records) == 1
