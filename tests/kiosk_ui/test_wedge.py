"""Telling a keyboard-wedge scanner's burst from a person typing (no window needed)."""

from __future__ import annotations

from kiosk.ui.wedge import WedgeDecoder, WedgeRead


class Keys:
    """Types into a decoder with a clock of its own: `gap` seconds between keys."""

    def __init__(self, **options: object) -> None:
        self.now = 100.0
        self.decoder = WedgeDecoder(0.05, clock=lambda: self.now, **options)  # type: ignore[arg-type]

    def type(self, text: str, gap: float) -> None:
        for ch in text:
            self.now += gap
            self.decoder.key(ch)

    def enter(self, gap: float) -> WedgeRead | None:
        self.now += gap
        return self.decoder.enter()


def test_a_fast_burst_ending_in_enter_is_a_scan() -> None:
    keys = Keys()
    keys.type("HS-2025-0001", 0.004)
    assert keys.enter(0.004) == WedgeRead("HS-2025-0001", typed=False)


def test_a_person_typing_is_ignored_unless_accepted() -> None:
    keys = Keys()
    keys.type("TN00001", 0.18)
    assert keys.enter(0.2) is None
    typed = Keys(accept_typed=True)
    typed.type("TN00001", 0.18)
    assert typed.enter(0.2) == WedgeRead("TN00001", typed=True)


def test_keys_just_over_the_interval_break_a_burst() -> None:
    keys = Keys()
    keys.type("TN00001", 0.051)
    assert keys.enter(0.01) is None
    keys.type("TN00001", 0.049)
    assert keys.enter(0.049) == WedgeRead("TN00001", typed=False)


def test_a_slow_enter_after_a_burst_is_a_person() -> None:
    keys = Keys()
    keys.type("TN00001", 0.003)
    assert keys.enter(0.4) is None


def test_a_burst_after_slow_typing_is_read_alone() -> None:
    keys = Keys(accept_typed=True)
    keys.type("ab", 0.3)
    keys.now += 0.5  # the person stops; a scanner's first key comes long after their last
    keys.type("TN00002", 0.003)
    assert keys.enter(0.003) == WedgeRead("TN00002", typed=False)


def test_short_bursts_are_not_scans() -> None:
    keys = Keys()
    keys.type("ab", 0.003)  # two keys hit at once, then Enter
    assert keys.enter(0.003) is None


def test_backspace_corrects_typing_and_ends_a_burst() -> None:
    keys = Keys(accept_typed=True)
    keys.type("HS-2025-00011", 0.2)
    keys.now += 0.2
    keys.decoder.backspace()
    assert keys.enter(0.2) == WedgeRead("HS-2025-0001", typed=True)


def test_half_a_line_typed_long_ago_is_forgotten() -> None:
    keys = Keys(accept_typed=True)
    keys.type("xyz", 0.2)
    keys.now += 60
    keys.type("TN00001", 0.2)
    assert keys.enter(0.2) == WedgeRead("TN00001", typed=True)
