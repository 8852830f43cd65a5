"""Drive a running kiosk from another thread, as a person would: for tests, screenshots
and benchmarks.

Import it only once the app runs (from `run_kiosk`'s `on_ready`): importing Kivy's
window earlier would open it before the kiosk's settings (size, full screen) are set.

Every call runs on Kivy's thread (`Clock.schedule_once`) and waits for its result, so a
test reads widgets only where Kivy allows it. Touches go through the window's input
queue like a finger's (hit-testing included: a covered button cannot be pressed);
keys through the window's keyboard events, with the timing given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kivy.base import EventLoop
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.input.motionevent import MotionEvent
from kivy.uix.label import Label
from kivy.uix.widget import Widget

T = TypeVar("T")


class PilotTimeout(AssertionError):
    pass


class _Finger(MotionEvent):
    def __init__(self, x: float, y: float) -> None:
        width, height = Window.system_size
        super().__init__("pilot", id(self), {"x": x / max(1, width - 1), "y": y / max(1, height - 1)},
                         is_touch=True, type_id="touch")

    def depack(self, args: dict[str, float]) -> None:
        self.sx, self.sy = args["x"], args["y"]
        self.profile = ["pos"]
        super().depack(args)


class Pilot:
    def __init__(self, app: Any) -> None:
        self.app = app

    # --- running on the UI thread ---

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        done = threading.Event()
        box: dict[str, Any] = {}

        def run(_dt: float) -> None:
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # re-raised on the caller's thread
                box["error"] = exc
            finally:
                done.set()

        Clock.schedule_once(run)
        if not done.wait(timeout):
            raise PilotTimeout(f"the UI thread did not run {fn!r} within {timeout} s")
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
        """Poll `predicate` on the UI thread until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.call(predicate)
            if value:
                return value
            if time.monotonic() > deadline:
                raise PilotTimeout(f"timed out waiting for {what or predicate!r}; "
                                   f"screen {self.current()!r} shows {self.texts()!r}")
            time.sleep(0.02)

    def settle(self, frames: int = 3) -> None:
        """Let Kivy lay out and draw a few frames."""
        for _ in range(frames):
            self.call(lambda: None)
            time.sleep(1 / 60)

    # --- what is on screen ---

    def current(self) -> str:
        return self.call(lambda: self.app.current)

    def wait_screen(self, name: str, timeout: float = 10.0) -> None:
        self.wait_for(lambda: self.app.current == name, timeout, f"screen {name}")

    def texts(self) -> list[str]:
        """Every text a person can see now: the top bar, the current screen, the
        message over it, and any popup."""
        return self.call(lambda: list(_visible_texts(self.app)))

    def all_texts(self) -> list[str]:
        """Every text held by any screen, shown or not (to check nothing personal stays)."""
        def collect() -> list[str]:
            found: list[str] = []
            for screen in self.app.loader.created():
                found += [w.text for w in _walk(screen) if isinstance(w, Label) and w.text]
            return found
        return self.call(collect)

    def screen(self, name: str) -> Any:
        return self.call(lambda: self.app.screen(name))

    def widget(self, screen: str, widget_id: str) -> Any:
        return self.call(lambda: self.app.screen(screen).ids[widget_id])

    # --- acting ---

    def press(self, widget: Widget) -> None:
        """Touch the middle of `widget` and lift the finger, through the window."""
        def down() -> _Finger:
            x, y = widget.to_window(*widget.center)
            finger = _Finger(x, y)
            EventLoop.post_dispatch_input("begin", finger)
            return finger

        finger = self.call(down)
        self.call(lambda: EventLoop.post_dispatch_input("end", finger))
        self.settle(2)

    def press_id(self, screen: str, widget_id: str) -> None:
        self.press(self.widget(screen, widget_id))

    def keys(self, text: str, interval_s: float = 0.0, enter: bool = True) -> None:
        """Type `text` (and Enter) into the window, `interval_s` between keys; with 0, as
        one burst within a single frame, as a keyboard-wedge scanner does."""
        def key(ch: str) -> None:
            Window.dispatch("on_textinput", ch)

        def press_enter() -> None:
            Window.dispatch("on_key_down", 13, 40, None, [])
            Window.dispatch("on_key_up", 13, 40)

        if interval_s == 0:
            def burst() -> None:
                for ch in text:
                    key(ch)
                if enter:
                    press_enter()
            self.call(burst)
            return
        for ch in text:
            self.call(key, ch)
            time.sleep(interval_s)
        if enter:
            self.call(press_enter)

    def screenshot(self, path: str) -> str:
        """Save the window as a PNG at `path` (Kivy numbers its screenshots; the
        numbered file is renamed)."""
        import os

        self.settle(4)
        saved = self.call(lambda: Window.screenshot(name=path))
        if saved != path:
            os.replace(saved, path)
        return path


def _walk(widget: Widget) -> Iterator[Widget]:
    yield widget
    for child in reversed(widget.children):
        yield from _walk(child)


def _visible_texts(app: Any) -> Iterator[str]:
    root = app.root
    for w in _walk(root.ids.bar):
        if isinstance(w, Label) and w.text:
            yield w.text
    screen = root.ids.screens.current_screen
    if screen is not None:
        for w in _walk(screen):
            if isinstance(w, Label) and w.text and _shown(w, screen):
                yield w.text
    toast = root.ids.toast
    if toast.shown:
        yield toast.message
    for child in Window.children:
        if child is not root:
            for w in _walk(child):
                if isinstance(w, Label) and w.text and w.opacity > 0:
                    yield w.text


def _shown(widget: Widget, top: Widget) -> bool:
    # Hidden panels are made transparent (widgets.Panel); a label in one is not shown.
    w: Widget | None = widget
    while w is not None and w is not top:
        if w.opacity == 0:
            return False
        w = w.parent
    return True
