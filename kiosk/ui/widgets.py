"""The kiosk's building blocks: big buttons, status icons, pictograms, rows, the toast.

Icons and pictograms are drawn with canvas instructions (Roboto has no ✓ or ✗), so they
stay sharp at every screen size and need no image files. Their rules are in
`kv/widgets.kv`; sizes there are multiples of `app.s`, the window's scale against
the 800x480 screen the layouts are designed for.
"""

from __future__ import annotations

from kivy.animation import Animation
from kivy.clock import Clock
from kivy.graphics import Color, Ellipse, Line, Rectangle, RoundedRectangle
from kivy.properties import (
    BooleanProperty,
    ColorProperty,
    NumericProperty,
    OptionProperty,
    StringProperty,
)
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from kiosk.ui import theme

TONE_OPTIONS = ["ok", "error", "warn", "info"]


class KButton(ButtonBehavior, Label):
    """A large rounded button; `outline` makes a quieter one (for secondary actions)."""

    bg = ColorProperty(theme.BORROW)
    fg = ColorProperty(theme.ON_COLOUR)
    outline = BooleanProperty(False)


class Panel(BoxLayout):
    """A part of a screen shown or hidden in place: hidden, it is transparent and lets
    touches through (a disabled widget would swallow them)."""

    shown = BooleanProperty(True)

    def on_touch_down(self, touch: object) -> bool:
        return bool(self.shown and super().on_touch_down(touch))

    def on_touch_move(self, touch: object) -> bool:
        return bool(self.shown and super().on_touch_move(touch))

    def on_touch_up(self, touch: object) -> bool:
        return bool(self.shown and super().on_touch_up(touch))


class WrapLabel(Label):
    """A label that wraps to its width and is as tall as its text."""


class Drawing(Widget):
    """A widget drawn in Python, redrawn (once per frame at most) when it moves or changes."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._redraw = Clock.create_trigger(lambda _dt: self.draw(), -1)
        self.bind(pos=self._redraw, size=self._redraw)
        self._redraw()

    @property
    def box(self) -> tuple[float, float, float]:
        """The largest centred square: (x, y, side)."""
        d = min(self.width, self.height)
        return self.center_x - d / 2, self.center_y - d / 2, d

    def draw(self) -> None:
        raise NotImplementedError


class StatusIcon(Drawing):
    """A filled disc with a white mark: ✓ ok, ✗ error, ! warn, i info."""

    kind = OptionProperty("ok", options=TONE_OPTIONS)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(kind=self._redraw)

    def draw(self) -> None:
        x, y, d = self.box
        self.canvas.clear()
        if d <= 0:
            return
        stroke = max(1.5, d * 0.075)

        def p(u: float, v: float) -> tuple[float, float]:
            return x + u * d, y + v * d

        with self.canvas:
            Color(*theme.TONES[self.kind])
            Ellipse(pos=(x, y), size=(d, d))
            Color(*theme.ON_COLOUR)
            if self.kind == "ok":
                Line(points=[*p(0.27, 0.52), *p(0.44, 0.34), *p(0.74, 0.68)], width=stroke,
                     cap="round", joint="round")
            elif self.kind == "error":
                Line(points=[*p(0.32, 0.32), *p(0.68, 0.68)], width=stroke, cap="round")
                Line(points=[*p(0.32, 0.68), *p(0.68, 0.32)], width=stroke, cap="round")
            elif self.kind == "warn":
                Line(points=[*p(0.5, 0.73), *p(0.5, 0.45)], width=stroke, cap="round")
                Line(points=[*p(0.5, 0.27), *p(0.5, 0.27)], width=stroke * 1.1, cap="round")
            else:
                Line(points=[*p(0.5, 0.27), *p(0.5, 0.52)], width=stroke, cap="round")
                Line(points=[*p(0.5, 0.71), *p(0.5, 0.71)], width=stroke * 1.1, cap="round")


class CardPicture(Drawing):
    """A library card with a photo and a barcode."""

    def draw(self) -> None:
        x, y, d = self.box
        self.canvas.clear()
        w, h = d * 0.92, d * 0.6
        cx, cy = x + (d - w) / 2, y + (d - h) / 2
        with self.canvas:
            Color(*theme.darker(theme.BAR, 0.7))
            RoundedRectangle(pos=(cx + d * 0.02, cy - d * 0.03), size=(w, h), radius=[d * 0.07])
            Color(*theme.BAR)
            RoundedRectangle(pos=(cx, cy), size=(w, h), radius=[d * 0.07])
            Color(*theme.rgba("#FFD166"))  # a warm stripe across the top
            Rectangle(pos=(cx, cy + h * 0.74), size=(w, h * 0.1))
            Color(*theme.ON_COLOUR)
            # The photo: a head and shoulders.
            Ellipse(pos=(cx + w * 0.1, cy + h * 0.38), size=(w * 0.16, w * 0.16))
            RoundedRectangle(pos=(cx + w * 0.07, cy + h * 0.12), size=(w * 0.22, h * 0.22),
                             radius=[w * 0.08, w * 0.08, 0, 0])
            # The name and class.
            RoundedRectangle(pos=(cx + w * 0.38, cy + h * 0.55), size=(w * 0.48, h * 0.08), radius=[h * 0.04])
            RoundedRectangle(pos=(cx + w * 0.38, cy + h * 0.4), size=(w * 0.32, h * 0.08), radius=[h * 0.04])
            # The barcode.
            bars = (2, 1, 1, 3, 1, 2, 1, 1, 2, 3, 1, 1, 2, 1)
            unit = w * 0.46 / (sum(bars) + len(bars))
            bx = cx + w * 0.38
            for i, width in enumerate(bars):
                if i % 2 == 0:
                    Rectangle(pos=(bx, cy + h * 0.1), size=(width * unit, h * 0.2))
                bx += (width + 1) * unit


class BookPicture(Drawing):
    """A closed book with a barcode label, crossed by a scanner's red line (`beam`)."""

    beam = BooleanProperty(True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(beam=self._redraw)

    def draw(self) -> None:
        x, y, d = self.box
        self.canvas.clear()
        w, h = d * 0.6, d * 0.78
        bx, by = x + (d - w) / 2, y + (d - h) / 2
        with self.canvas:
            Color(*theme.rgba("#8A4B14"))
            RoundedRectangle(pos=(bx + d * 0.02, by - d * 0.02), size=(w, h), radius=[d * 0.04])
            Color(*theme.ON_COLOUR)  # the pages' edge
            Rectangle(pos=(bx + w * 0.1, by + h * 0.02), size=(w * 0.88, h * 0.05))
            Color(*theme.rgba("#D9822B"))
            RoundedRectangle(pos=(bx, by + h * 0.06), size=(w, h * 0.94), radius=[d * 0.04])
            Color(*theme.rgba("#B5651D"))  # the spine
            Rectangle(pos=(bx, by + h * 0.06), size=(w * 0.12, h * 0.94))
            Color(*theme.ON_COLOUR)  # the barcode label
            RoundedRectangle(pos=(bx + w * 0.28, by + h * 0.16), size=(w * 0.6, h * 0.28), radius=[d * 0.02])
            Color(*theme.INK)
            bars = (2, 1, 1, 2, 1, 3, 1, 1, 2, 1, 1)
            unit = w * 0.48 / (sum(bars) + len(bars))
            lx = bx + w * 0.34
            for i, width in enumerate(bars):
                if i % 2 == 0:
                    Rectangle(pos=(lx, by + h * 0.2), size=(width * unit, h * 0.2))
                lx += (width + 1) * unit
            Color(*theme.rgba("#FFFFFF", 0.85))  # the title on the cover
            RoundedRectangle(pos=(bx + w * 0.28, by + h * 0.72), size=(w * 0.6, h * 0.07), radius=[h * 0.03])
            RoundedRectangle(pos=(bx + w * 0.28, by + h * 0.6), size=(w * 0.42, h * 0.06), radius=[h * 0.03])
            if self.beam:
                Color(*theme.rgba("#E53935", 0.9))  # the scanner's beam
                Line(points=[x + d * 0.04, by + h * 0.3, x + d * 0.96, by + h * 0.3],
                     width=max(1.0, d * 0.018))


class PausePicture(Drawing):
    """Out of service: a grey disc with a pause sign (locked), or an amber one with a
    crossed-out signal (offline)."""

    offline = BooleanProperty(False)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(offline=self._redraw)

    def draw(self) -> None:
        x, y, d = self.box
        self.canvas.clear()
        stroke = max(2.0, d * 0.055)
        with self.canvas:
            Color(*(theme.WARN if self.offline else theme.STAFF))
            Ellipse(pos=(x, y), size=(d, d))
            Color(*theme.ON_COLOUR)
            if not self.offline:
                Rectangle(pos=(x + d * 0.33, y + d * 0.28), size=(d * 0.12, d * 0.44))
                Rectangle(pos=(x + d * 0.55, y + d * 0.28), size=(d * 0.12, d * 0.44))
                return
            # A wireless signal: a dot and three arcs (Kivy's angles start at 12 o'clock).
            cx, cy = x + d * 0.5, y + d * 0.3
            Ellipse(pos=(cx - d * 0.05, cy - d * 0.05), size=(d * 0.1, d * 0.1))
            for r in (0.17, 0.29, 0.41):
                Line(circle=(cx, cy, d * r, -45, 45), width=stroke * 0.8, cap="round")
            # ...struck through.
            Color(*theme.WARN)
            Line(points=[x + d * 0.24, y + d * 0.76, x + d * 0.76, y + d * 0.18], width=stroke * 1.2)
            Color(*theme.ON_COLOUR)
            Line(points=[x + d * 0.24, y + d * 0.76, x + d * 0.76, y + d * 0.18], width=stroke * 0.55,
                 cap="round")


class StepBadge(Drawing):
    """A numbered disc for the "how to borrow" steps."""

    number = StringProperty("1")

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._label = Label(bold=True, color=theme.ON_COLOUR)
        self.bind(number=self._redraw)

    def draw(self) -> None:
        x, y, d = self.box
        self.canvas.clear()
        self._label.text = self.number
        self._label.font_size = d * 0.6
        self._label.texture_update()
        texture = self._label.texture
        with self.canvas:
            Color(*theme.BAR)
            Ellipse(pos=(x, y), size=(d, d))
            if texture is not None:
                Color(1, 1, 1, 1)
                tw, th = texture.size
                Rectangle(texture=texture, pos=(x + (d - tw) / 2, y + (d - th) / 2), size=(tw, th))


class LanguageToggle(ButtonBehavior, BoxLayout):
    """Both languages, the one in use filled; one touch switches."""


class ItemRow(BoxLayout):
    """One line of a list: an icon, a title and what became of it."""

    tone = OptionProperty("ok", options=[*TONE_OPTIONS, "none"])
    title = StringProperty("")
    detail = StringProperty("")
    detail_tone = OptionProperty("none", options=[*TONE_OPTIONS, "none"])
    large = BooleanProperty(False)


class Toast(BoxLayout):
    """A short message over the bottom of the screen; fades after a few seconds."""

    message = StringProperty("")
    tone = OptionProperty("info", options=TONE_OPTIONS)
    shown = BooleanProperty(False)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._hide_event = None

    def show(self, message: str, tone: str = "info", seconds: float = 6.0) -> None:
        Animation.cancel_all(self, "opacity")
        self.message, self.tone, self.shown, self.opacity = message, tone, True, 1.0
        if self._hide_event is not None:
            self._hide_event.cancel()
        self._hide_event = Clock.schedule_once(lambda _dt: self.hide(), seconds)

    def hide(self, *_args: object) -> None:
        if self._hide_event is not None:
            self._hide_event.cancel()
            self._hide_event = None
        self.shown = False
        Animation(opacity=0.0, duration=0.25).start(self)

    def on_touch_down(self, touch: object) -> bool:
        # Touching the message dismisses it, and never reaches what is underneath.
        if self.shown and self.collide_point(*touch.pos):  # type: ignore[attr-defined]
            self.hide()
            return True
        return False


class Countdown(Drawing):
    """The inactivity warning's ring: the part still to go, and the seconds in the middle."""

    fraction = NumericProperty(1.0)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(fraction=self._redraw)

    def draw(self) -> None:
        x, y, d = self.box
        self.canvas.clear()
        width = max(3.0, d * 0.07)
        r = d / 2 - width
        with self.canvas:
            Color(*theme.LINE)
            Line(circle=(x + d / 2, y + d / 2, r), width=width)
            Color(*theme.WARN)
            Line(circle=(x + d / 2, y + d / 2, r, 0, 360 * max(0.0, min(1.0, self.fraction))),
                 width=width, cap="none")

