"""The status LEDs: maps each state to the configured pattern and lets gpiozero animate it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from colorzero import Color
from gpiozero import LED, PWMLED, RGBLED

from .config import DEFAULT_PATTERNS, LedConfig, Pattern
from .events import State

log = logging.getLogger(__name__)

# Enough transitions to read a whole conversation back in a test or a demo printout.
HISTORY_MAX = 200

RGB = tuple[float, float, float]


# Steps a second of a fade. Each step wakes gpiozero's animation thread, which ran at 25 a
# second for the whole of every reply (a pulse while speaking): 10 is still a smooth breath
# on a status LED. A short fade gets at least MIN_FADE_STEPS steps.
PULSE_FPS = 10.0
MIN_FADE_STEPS = 4


def fade_fps(fade_in_time: float, fade_out_time: float) -> float:
    """The step rate of a pulse: PULSE_FPS, or faster when a fade would have too few steps."""
    fades = [t for t in (fade_in_time, fade_out_time) if t > 0]
    return max([PULSE_FPS] + [MIN_FADE_STEPS / t for t in fades])


class _DimmablePWMLED(PWMLED):
    """A PWMLED whose every write is scaled, so gpiozero's own blink and pulse honour brightness."""

    scale: float = 1.0

    def _write(self, value: Any) -> None:
        super()._write(value * self.scale)

    def _blink_device(self, on_time: float, off_time: float, fade_in_time: float,
                      fade_out_time: float, n: int | None, fps: float = 25) -> None:
        # gpiozero's own animation, at our step rate (its pulse() has no rate argument).
        super()._blink_device(on_time, off_time, fade_in_time, fade_out_time, n,
                              fade_fps(fade_in_time, fade_out_time))


class _CalmRGBLED(RGBLED):
    """An RGBLED whose pulse steps at PULSE_FPS, like the PWM LED's."""

    def _blink_device(self, on_time: float, off_time: float, fade_in_time: float,
                      fade_out_time: float, on_color: Any, off_color: Any, n: int | None,
                      fps: float = 25) -> None:
        super()._blink_device(on_time, off_time, fade_in_time, fade_out_time, on_color,
                              off_color, n, fade_fps(fade_in_time, fade_out_time))


def parse_color(text: str) -> RGB:
    """An (r, g, b) triple in 0..1 from a colour name or #rrggbb; white when empty."""
    if not text:
        return (1.0, 1.0, 1.0)
    r, g, b = Color(text).rgb
    return (float(r), float(g), float(b))


class _Light:
    """One configured LED and the patterns it shows."""

    def __init__(self, cfg: LedConfig) -> None:
        self.cfg = cfg
        self.kind = cfg.kind
        self.device: LED | _DimmablePWMLED | RGBLED
        if cfg.kind == "rgb":
            red, green, blue = cfg.pins
            self.device = _CalmRGBLED(red, green, blue, active_high=cfg.active_high, pwm=True)
        elif cfg.kind == "pwm":
            self.device = _DimmablePWMLED(cfg.pins[0], active_high=cfg.active_high)
        else:
            self.device = LED(cfg.pins[0], active_high=cfg.active_high)
        self.colors: dict[State, RGB] = {}
        if cfg.kind == "rgb":
            for state, pattern in cfg.patterns.items():
                try:
                    self.colors[state] = parse_color(pattern.color)
                except ValueError:
                    # The config loader does not check colours; a typo shows white, not a crash.
                    log.warning("leds: %s: unknown colour %r for state %s; using white",
                                ",".join(cfg.pins), pattern.color, state)
                    self.colors[state] = (1.0, 1.0, 1.0)

    def pattern(self, state: State) -> Pattern:
        return self.cfg.patterns.get(state) or DEFAULT_PATTERNS[state]

    def show(self, state: State) -> None:
        p = self.pattern(state)
        dev = self.device
        if isinstance(dev, RGBLED):
            level = p.brightness
            color = tuple(c * level for c in self.colors.get(state, (1.0, 1.0, 1.0)))
            if p.effect == "off" or level == 0:
                dev.off()
            elif p.effect == "on":
                dev.color = color
            elif p.effect == "blink":
                dev.blink(on_time=p.on_time, off_time=p.off_time, on_color=color, background=True)
            else:
                dev.pulse(fade_in_time=p.on_time, fade_out_time=p.off_time, on_color=color,
                          background=True)
        elif isinstance(dev, _DimmablePWMLED):
            if p.effect == "off" or p.brightness == 0:
                dev.off()
                return
            # off() above and each effect below stop the previous animation first, so the
            # new scale never applies to a half-finished old one.
            dev.off()
            dev.scale = p.brightness
            if p.effect == "on":
                dev.on()
            elif p.effect == "blink":
                dev.blink(on_time=p.on_time, off_time=p.off_time, background=True)
            else:
                dev.pulse(fade_in_time=p.on_time, fade_out_time=p.off_time, background=True)
        else:
            if p.effect == "off" or p.brightness == 0:
                dev.off()
            elif p.effect == "on":
                dev.on()
            else:
                # A plain LED cannot fade: a pulse becomes a blink with the same rhythm.
                dev.blink(on_time=p.on_time, off_time=p.off_time, background=True)

    def close(self) -> None:
        self.device.close()


class StatusLeds:
    """Owns the status LEDs and what they show; show() is called from the session thread only."""

    def __init__(self, leds: Sequence[LedConfig]) -> None:
        self._lights: list[_Light] = []
        # show() runs on the session thread while a demo or test reads state/history from another.
        self._lock = threading.Lock()
        self.state: State | None = None
        self.history: list[State] = []
        self._closed = False
        try:
            for cfg in leds:
                self._lights.append(_Light(cfg))
        except Exception:
            # Free the pins already claimed so a retry (or the next test) can claim them again.
            self.close()
            raise
        log.debug("leds: %d configured", len(self._lights))

    @property
    def devices(self) -> tuple[LED | PWMLED | RGBLED, ...]:
        """The gpiozero devices, in config order (for diagnostics and tests)."""
        return tuple(light.device for light in self._lights)

    def show(self, state: State) -> None:
        """Show a state's pattern; showing the state already shown changes nothing."""
        with self._lock:
            if self._closed or state == self.state:
                return
            self.state = state
            self.history.append(state)
            if len(self.history) > HISTORY_MAX:
                del self.history[: len(self.history) - HISTORY_MAX]
            for light in self._lights:
                try:
                    light.show(state)
                except Exception:  # a failing LED must not take the conversation down
                    log.exception("leds: cannot show %s on %s", state, ",".join(light.cfg.pins))

    def close(self) -> None:
        """Turn the LEDs off and release their pins; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lights, self._lights = self._lights, []
        for light in lights:
            try:
                light.close()
            except Exception:
                log.exception("leds: closing %s failed", ",".join(light.cfg.pins))
