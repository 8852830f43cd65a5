"""The station's short sounds, made here rather than shipped as files.

Three chimes a child learns to tell apart without looking: a bright rising two-note for
success, a low double buzz for failure, a neutral ping for "look at the screen". Each
is 16-bit mono PCM at espeak-ng's own rate, well under 0.6 s, built with the standard
library alone (no numpy on the Raspberry Pi image).
"""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
from collections.abc import Iterable
from functools import cache
from typing import Literal, get_args

Chime = Literal["ok", "error", "attention"]
CHIMES: tuple[Chime, ...] = get_args(Chime)

SAMPLE_RATE = 22050  # espeak-ng's rate, so speech and chimes open the device alike
_PEAK = 0.6          # of full scale at volume 1.0: loud on a small speaker, never clipped
_EDGE_S = 0.004      # fade in/out, so no note starts or stops with a click

# Partials as (multiple of the fundamental, amplitude).
_BRIGHT = ((1, 1.0), (2, 0.25), (3, 0.1))
_BUZZ = tuple((k, 1.0 / k) for k in (1, 3, 5, 7, 9, 11))  # an odd-harmonic, square-ish tone
_PURE = ((1, 1.0), (2, 0.08))


def _note(freq: float, seconds: float, partials: Iterable[tuple[int, float]],
          decay_s: float | None) -> list[float]:
    """One note: summed partials under a fade-in, an optional exponential decay and a fade-out."""
    partials = tuple(partials)
    count = round(seconds * SAMPLE_RATE)
    edge = max(1, round(_EDGE_S * SAMPLE_RATE))
    samples = []
    for i in range(count):
        t = i / SAMPLE_RATE
        value = sum(a * math.sin(2 * math.pi * freq * k * t) for k, a in partials)
        gain = min(1.0, i / edge, (count - 1 - i) / edge)
        if decay_s is not None:
            gain *= math.exp(-t / decay_s)
        samples.append(value * gain)
    return samples


def _silence(seconds: float) -> list[float]:
    return [0.0] * round(seconds * SAMPLE_RATE)


def _shape(kind: Chime) -> list[float]:
    if kind == "ok":        # C6 then G6: up a fifth, 0.26 s
        return (_note(1046.5, 0.10, _BRIGHT, decay_s=0.2)
                + _note(1568.0, 0.16, _BRIGHT, decay_s=0.12))
    if kind == "error":     # G3 buzz, twice, 0.38 s
        buzz = _note(196.0, 0.16, _BUZZ, decay_s=None)
        return buzz + _silence(0.06) + buzz
    if kind == "attention":  # A5, a single ping that dies away, 0.35 s
        return _note(880.0, 0.35, _PURE, decay_s=0.1)
    raise ValueError(f"unknown chime {kind!r}; expected one of {', '.join(CHIMES)}")


@cache
def chime_wav(kind: Chime, volume: float = 1.0) -> bytes:
    """The complete WAV file of a chime, computed once per kind and volume."""
    samples = _shape(kind)
    scale = _PEAK * max(0.0, min(volume, 1.0)) * 32767 / max(1e-9, max(map(abs, samples)))
    pcm = array("h", (round(s * scale) for s in samples))
    if sys.byteorder == "big":  # WAV is little-endian; array("h") is native
        pcm.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()
