"""Keyboard-wedge barcode scanners: a scanner's burst of keys, told apart from a person typing.

A USB scanner in keyboard mode "types" the code and presses Enter, every key a few
milliseconds after the last. A person types tens of times slower. So a scan is a burst
of keys each arriving less than `max_interval_s` after the previous one, at least
`min_length` of them, ending in an Enter that also comes quickly. Anything else is a
person at a keyboard: ignored, unless `accept_typed` (the demo, a desk), where a line
typed and ended with Enter is a read too.

The decoder only counts time; the window's keyboard events feed it (kiosk/ui).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class WedgeRead:
    code: str
    typed: bool  # True: a person typed it (accepted only with accept_typed)


class WedgeDecoder:
    def __init__(self, max_interval_s: float, *, accept_typed: bool = False, min_length: int = 4,
                 forget_typed_after_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_interval_s = max_interval_s
        self.accept_typed = accept_typed
        self.min_length = min_length
        self.forget_typed_after_s = forget_typed_after_s
        self._clock = clock
        self._typed: list[str] = []   # every key since the last Enter
        self._burst: list[str] = []   # the keys since the last slow gap
        self._last: float | None = None

    def key(self, text: str) -> None:
        """A printable key (or a few, as a text-input event may carry)."""
        now = self._clock()
        if self._last is not None:
            gap = now - self._last
            if gap > self.forget_typed_after_s:
                self._typed.clear()  # half a line typed long ago is nobody's code
            if gap > self.max_interval_s:
                self._burst.clear()  # a slow key: whatever came before was not a scanner
        for ch in text:
            if ch.isprintable():
                self._typed.append(ch)
                self._burst.append(ch)
        self._last = now

    def backspace(self) -> None:
        # Only a person corrects: it ends any burst.
        if self._typed:
            self._typed.pop()
        self._burst.clear()
        self._last = self._clock()

    def enter(self) -> WedgeRead | None:
        now = self._clock()
        fast = (self._last is not None and now - self._last <= self.max_interval_s
                and len(self._burst) >= self.min_length)
        burst, typed = "".join(self._burst).strip(), "".join(self._typed).strip()
        self.reset()
        if fast and burst:
            return WedgeRead(burst, typed=False)
        if self.accept_typed and typed:
            return WedgeRead(typed, typed=True)
        return None

    def reset(self) -> None:
        self._typed.clear()
        self._burst.clear()
        self._last = None
