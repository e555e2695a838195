"""Plain, PWM and RGB LEDs: each state's pattern, animated by gpiozero itself."""

from __future__ import annotations

import logging
from typing import Any

from gpiozero import LED, PWMLED, RGBLED

from ..config import DEFAULT_PATTERNS, LedConfig, Pattern
from ..events import State
from .patterns import RGB, state_colors

log = logging.getLogger(__name__)


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


class GpioLight:
    """One configured plain, PWM or RGB LED and the patterns it shows."""

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
            self.colors = state_colors(cfg.patterns, ",".join(cfg.pins))

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
