"""What a row or ring of pixels shows for a pattern at a moment: pure functions of the time since
the state began and of the microphone's level, plus the colour table every LED kind shares."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from colorzero import Color

from ..config import Pattern
from ..events import State

log = logging.getLogger(__name__)

RGB = tuple[float, float, float]  # each channel 0..1
DARK: RGB = (0.0, 0.0, 0.0)
UNIFORM = ("off", "on", "blink", "pulse")  # the effects that light every pixel alike

FRAME_RATE = 25  # frames a second while a spinner or a meter moves
# A pulse changes at most every PULSE_STRIDE frames (12.5 times a second): still a smooth breath
# across a ring, and the animation thread wakes only that often for the whole of every reply
# (speaking's pulse), as the single LED's pulse steps 10 times a second (leds/gpio.py).
PULSE_STRIDE = 2
METER_FLOOR_DB = -48.0  # a peak this far below full scale lights no pixel; 0 dBFS lights all
METER_GLOW = 0.2  # the share of the colour every pixel keeps under a meter: it reads as listening


def parse_color(text: str) -> RGB:
    """An (r, g, b) triple in 0..1 from a colour name or #rrggbb; white when empty."""
    if not text:
        return (1.0, 1.0, 1.0)
    r, g, b = Color(text).rgb
    return (float(r), float(g), float(b))


def state_colors(patterns: Mapping[State, Pattern], where: str) -> dict[State, RGB]:
    """Each state's colour; a colour that does not parse shows white with a warning."""
    colors: dict[State, RGB] = {}
    for state, pattern in patterns.items():
        try:
            colors[state] = parse_color(pattern.color)
        except ValueError:
            # The config loader does not check colours; a typo shows white, not a crash.
            log.warning("leds: %s: unknown colour %r for state %s; using white",
                        where, pattern.color, state)
            colors[state] = (1.0, 1.0, 1.0)
    return colors


def moves(p: Pattern) -> bool:
    """Whether the look changes over time (or with the microphone); False: one frame says it all."""
    return p.effect not in ("off", "on") and p.brightness > 0


def spin_tail(n: int) -> int:
    """How many pixels trail a spinner's head, each at half the brightness of the one before."""
    return max(1, n // 4)


def meter_fraction(peak: float) -> float:
    """A peak (0..1 of full scale) as the share of the pixels lit, on a decibel scale."""
    if peak <= 0:
        return 0.0
    db = 20 * math.log10(min(1.0, peak))
    return min(1.0, max(0.0, 1 - db / METER_FLOOR_DB))


def uniform(p: Pattern) -> bool:
    """Whether the look lights every pixel alike, so a frame is a function of one share (share())."""
    return p.effect in UNIFORM


def share(p: Pattern, t: float) -> float:
    """For a uniform look: the share (0..1) of the pattern's colour every pixel shows t s in."""
    if p.effect == "off" or p.brightness == 0:
        return 0.0
    if p.effect == "on":
        return 1.0
    phase = t % (p.on_time + p.off_time)
    if p.effect == "blink":
        return 1.0 if phase < p.on_time else 0.0
    return phase / p.on_time if phase < p.on_time else 1 - (phase - p.on_time) / p.off_time


def scaled(color: RGB, w: float) -> RGB:
    """The colour at share w: what a pixel shows, each channel 0..1."""
    return (color[0] * w, color[1] * w, color[2] * w)


def level(channel: float) -> int:
    """A channel (0..1) as the pixel's 8-bit PWM level."""
    return min(255, max(0, round(channel * 255)))


def uniform_levels(c: RGB, w: float) -> tuple[int, int, int]:
    """The (r, g, b) levels every pixel of a uniform look gets: colour c (the pattern's
    brightness applied) at share w, the same arithmetic as level(scaled(c, w)) per channel."""
    return level(c[0] * w), level(c[1] * w), level(c[2] * w)


def pixels_at(p: Pattern, color: RGB, n: int, t: float, meter: float = 0.0) -> list[RGB]:
    """The n pixels of pattern `p` t seconds after it began; `meter` is the share to light
    (0..1) for a meter, already smoothed by the caller."""
    if p.effect == "off" or p.brightness == 0:
        return [DARK] * n
    c = scaled(color, p.brightness)
    if p.effect == "on":
        return [c] * n
    if uniform(p):
        return [scaled(c, share(p, t))] * n
    if p.effect == "spin":
        head = spin_head(p, n, t)
        tail = spin_tail(n)
        out = []
        for i in range(n):
            behind = (head - i) % n  # how far pixel i trails the head
            out.append(scaled(c, 0.5 ** behind) if behind <= tail else DARK)
        return out
    # meter: pixels 0.. light fully up to the level; the one at the edge lights in part
    lit = meter * n
    return [scaled(c, max(METER_GLOW, min(1.0, lit - i))) for i in range(n)]


def spin_head(p: Pattern, n: int, t: float) -> int:
    """The pixel a spinner's head is on t s in: a spinner's frame is a function of it alone."""
    return int(t / p.on_time * n) % n


def next_change(p: Pattern, n: int, t: float) -> float | None:
    """The time after t (since the pattern began) at which the look may change next; None when
    it never does. A pulse or a meter may change at every frame (next_level_change() says when
    a pulse's levels really do)."""
    if not moves(p):
        return None
    if p.effect == "blink":
        period = p.on_time + p.off_time
        start = math.floor(t / period) * period
        edge = start + p.on_time
        return edge if t < edge else start + period
    if p.effect == "spin":
        step = p.on_time / n
        return (math.floor(t / step) + 1) * step
    return t + 1 / FRAME_RATE


def next_level_change(p: Pattern, c: RGB, t: float) -> float:
    """For a uniform look of colour c (its brightness applied) drawn at frame time t: the next
    frame time, PULSE_STRIDE frames on or a multiple of that, whose levels differ from t's. A
    slow or dim pulse holds a level for several frames, and the animation sleeps through them
    rather than wake for a frame it would not send. Bounded: one period of frames at most (the
    levels repeat with the period)."""
    k = round(t * FRAME_RATE)
    now = uniform_levels(c, share(p, t))
    frames = math.ceil((p.on_time + p.off_time) * FRAME_RATE)
    for j in range(k + PULSE_STRIDE, k + frames, PULSE_STRIDE):
        if uniform_levels(c, share(p, j / FRAME_RATE)) != now:
            return j / FRAME_RATE
    return (k + frames) / FRAME_RATE


class PeakFollower:
    """A meter's needle: jumps up to a louder peak at once, falls back linearly over `fall` s."""

    def __init__(self, fall: float) -> None:
        self._fall = fall
        self._shown = 0.0
        self._t: float | None = None

    def update(self, value: float, t: float) -> float:
        """The share to show at time t, given the latest measured share."""
        if self._t is not None:
            self._shown = max(0.0, self._shown - (t - self._t) / self._fall)
        self._t = t
        self._shown = max(self._shown, value)
        return self._shown
