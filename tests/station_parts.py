"""What the gate and return-box tests share: library tags, a recording sound, a clock."""

from __future__ import annotations

import time
from collections.abc import Callable

from drivers.rfid.simulated import SimulatedTag
from drivers.rfid.tagdata import TagData, Usage, encode_tag

IN_STOCK, ON_LOAN = 0x07, 0xC2


def book(n: int, item: str, afi: int = IN_STOCK, usage: Usage = Usage.LOANABLE,
         parts: int = 1, part: int = 1, model: str = "28560-3") -> SimulatedTag:
    """Tag number `n` (its UID) holding `item` as a Vietnamese library would encode it."""
    data = encode_tag(TagData(model, usage, item, parts, part, "VN", "VN-HN0001"))  # type: ignore[arg-type]
    memory = bytearray(28 * 4)
    memory[:len(data)] = data
    return SimulatedTag(uid=f"E0040150{n:08X}", afi=afi, memory=memory)


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


class Sound:
    """Records what a station chimed and said instead of playing it."""

    def __init__(self) -> None:
        self.chimes: list[str] = []
        self.said: list[str] = []

    def say(self, text: str, language: str) -> None:
        self.said.append(text)

    def chime(self, kind: str) -> None:
        self.chimes.append(kind)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now
