"""What the screen needs from the station's voice: say a sentence, play a short sound.

`kiosk.voice.Voice` (pyttsx3 + espeak-ng, its own worker thread) is imported lazily:
a station whose speech cannot start still serves readers, silently, and says so in the
log and on the staff's device check.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

from kiosk.config import VoiceConfig

log = logging.getLogger("thuvien.kiosk.ui.voice")

Chime = Literal["ok", "error", "attention"]
VoiceState = Literal["ok", "fault", "off"]


class Announcer(Protocol):
    def say(self, text: str, language: str) -> None:
        """Queue a sentence; returns at once."""
        ...

    def chime(self, kind: Chime) -> None: ...

    def close(self) -> None: ...


class SilentAnnouncer:
    """No voice: the voice is turned off, or could not start."""

    def say(self, text: str, language: str) -> None:
        pass

    def chime(self, kind: Chime) -> None:
        pass

    def close(self) -> None:
        pass


def make_announcer(config: VoiceConfig) -> tuple[Announcer, VoiceState]:
    if not config.enabled and not config.sounds:
        return SilentAnnouncer(), "off"
    try:
        from kiosk.voice import Voice

        return Voice(config), "ok"
    except Exception:
        log.exception("the voice could not start; the station continues without it")
        return SilentAnnouncer(), "fault"
