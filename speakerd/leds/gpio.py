"""Plain, PWM and RGB LEDs: each state's pattern, animated by gpiozero itself."""

from __future__ import annotations

import logging
from typing import Any

from gpiozero import LED, PWMLED, RGBLED

from ..config import DEFAULT_PATTERNS, LedConfig, Pattern
from ..events import State
from .patterns import RGB, state_colors

log = logging.getLogger(__name__)


class _DimmablePWMLED(PWMLED):
    """A PWMLED whose every write is scaled, so gpiozero's own blink and pulse honour brightness."""

    scale: float = 1.0

    def _write(self, value: Any) -> None:
        super()._write(value * self.scale)


class GpioLight:
    """One configured plain, PWM or RGB LED and the patterns it shows."""

    def __init__(self, cfg: LedConfig) -> None:
        self.cfg = cfg
        self.kind = cfg.kind
        self.device: LED | _DimmablePWMLED | RGBLED
        if cfg.kind == "rgb":
            red, green, blue = cfg.pins
            self.device = RGBLED(red, green, blue, active_high=cfg.active_high, pwm=True)
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
