"""Colours of the kiosk: high contrast, friendly, the same meaning on every screen.

Green is borrowing and success, blue is returning, red is a refusal, amber a warning.
White text on every filled colour here passes WCAG AA for large text (>= 3:1), most
of them AA for body text (>= 4.5:1).
"""

from __future__ import annotations


def rgba(hex_colour: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
    value = hex_colour.lstrip("#")
    r, g, b = (int(value[i:i + 2], 16) / 255 for i in (0, 2, 4))
    return (r, g, b, alpha)


BACKGROUND = rgba("#F4F1EA")   # warm paper
SURFACE = rgba("#FFFFFF")
LINE = rgba("#D9D3C7")
INK = rgba("#1F2933")
MUTED = rgba("#52606D")
ON_COLOUR = rgba("#FFFFFF")

BAR = rgba("#0B4F6C")          # the top bar
BORROW = rgba("#1E7B4F")
RETURN = rgba("#1D5FB8")
STAFF = rgba("#44505C")
DISABLED = rgba("#A0A7AE")

OK = rgba("#1E7B4F")
ERROR = rgba("#C62828")
WARN = rgba("#B45309")
INFO = rgba("#0B4F6C")

OK_TINT = rgba("#E3F3E8")
ERROR_TINT = rgba("#FCE8E6")
WARN_TINT = rgba("#FEF1DC")
INFO_TINT = rgba("#E1EEF4")

TONES = {"ok": OK, "error": ERROR, "warn": WARN, "info": INFO}
TINTS = {"ok": OK_TINT, "error": ERROR_TINT, "warn": WARN_TINT, "info": INFO_TINT}


def darker(colour: tuple[float, ...], factor: float = 0.78) -> tuple[float, float, float, float]:
    r, g, b, a = colour
    return (r * factor, g * factor, b * factor, a)
