"""The status LEDs: each state's pattern on every configured LED, and the one thread that animates
the pixel chains."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..config import LedConfig
from ..events import State
from ..worker import Worker
from .apa102 import Look, PixelLight
from .gpio import GpioLight
from .patterns import FRAME_RATE

log = logging.getLogger(__name__)

# Enough transitions to read a whole conversation back in a test or a demo printout.
HISTORY_MAX = 200

Level = Callable[[], float]  # the microphone's latest peak, 0..1


def _tick(seconds: float) -> float:
    """Animation time snapped down to a whole frame, so every frame of a look is reproducible."""
    return math.floor(seconds * FRAME_RATE + 1e-9) / FRAME_RATE


class Wake:
    """A flag one thread sleeps on and others raise: a Lock held while the flag is down, so a
    wait is a single timed acquire. (threading.Event's wait allocates a lock and a waiter list
    entry per call; the animation waits once a frame.) A wait lowers the flag it finds raised."""

    def __init__(self) -> None:
        self._down = threading.Lock()
        self._down.acquire()

    def set(self) -> None:
        try:
            self._down.release()
        except RuntimeError:
            pass  # raised already: one wake-up is pending, which is all a setter asks for

    def is_set(self) -> bool:
        return not self._down.locked()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until the flag is raised (then lower it) or `timeout` s pass; True if raised."""
        return self._down.acquire(True, -1 if timeout is None else min(timeout, threading.TIMEOUT_MAX))


class PixelAnimator:
    """Owns the animation thread of every pixel chain: it writes a frame when a chain's look
    changes and sleeps, with no timeout, while no look moves."""

    def __init__(self, lights: Sequence[PixelLight], level: Level | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lights = list(lights)
        self._level = level
        self._clock = clock
        # show() (the session thread) swaps the looks and clears `sleeping`; the animation thread
        # sets `sleeping` only if no show() came in since it drew: one lock for both sides.
        self._lock = threading.Lock()
        self._looks: list[Look | None] = [None] * len(self._lights)
        # Raised by show() and stop(): a new look to draw, or the end. The thread's wait lowers
        # it, so a show() during the drawing makes the next wait return at once.
        self._wake = Wake()
        self._worker = Worker("leds", self._run)
        self.sleeping = False  # the thread waits for a show(): the latest looks are drawn and still
        self.failures = 0
        self.draws = 0  # wake-ups that drew the looks, whether or not a frame changed

    def start(self) -> bool:
        return self._worker.start()

    def stop(self, timeout: float = 2.0) -> bool:
        return self._worker.stop(self._wake.set, timeout)

    def show(self, state: State) -> None:
        now = self._clock()
        with self._lock:
            self._looks = [light.look(state, now) for light in self._lights]
            self.sleeping = False
            self._wake.set()

    def _peak(self) -> float:
        if self._level is None:
            return 0.0
        try:
            return self._level()
        except Exception:  # a failing level source shows a quiet meter, not a dead thread
            log.debug("leds: the microphone level failed", exc_info=True)
            return 0.0

    def _draw(self) -> float | None:
        """Draw every chain's current frame; the monotonic time of the next frame due, or None."""
        looks = self._looks  # show() replaces the list, never changes it: this one stays whole
        self.draws += 1
        now = self._clock()
        due: list[float] = []
        peak: float | None = None
        for light, look in zip(self._lights, looks, strict=True):
            if look is None:
                continue
            t = _tick(now - look.t0)
            if look.needle is not None and peak is None:
                peak = self._peak()  # once per frame, whatever the number of meters
            later: float | None = None
            try:
                frame, later = light.step(look, t, peak or 0.0)
                light.write(frame)
            except Exception:  # a failing chain must not stop the others, nor the conversation
                self.failures += 1
                if self.failures == 1 or self.failures % 1000 == 0:
                    log.exception("leds: cannot write to the pixels on %s (%d failures)",
                                  light.where, self.failures)
            if later is not None:
                # Round up to a whole frame: the look is drawn at frame times only.
                due.append(look.t0 + math.ceil(later * FRAME_RATE - 1e-9) / FRAME_RATE)
        return min(due) if due else None

    def _run(self) -> None:
        stopping = self._worker.stopping
        while not stopping.is_set():
            due = self._draw()
            if due is None:
                with self._lock:
                    # Asleep only if no show() came in while drawing: `sleeping` then says the
                    # latest looks are on the pixels and nothing will be written until the next.
                    self.sleeping = not self._wake.is_set()
                self._wake.wait()  # no timeout: only a show() or stop() changes what is shown
            else:
                self._wake.wait(max(0.0, due - self._clock()))


class StatusLeds:
    """Owns the status LEDs and what they show; show() is called from the session thread only."""

    def __init__(self, leds: Sequence[LedConfig], level: Level | None = None) -> None:
        self._lights: list[GpioLight | PixelLight] = []
        # show() runs on the session thread while a demo or test reads state/history from another.
        self._lock = threading.Lock()
        self.state: State | None = None
        self.history: list[State] = []
        self._closed = False
        self.animator: PixelAnimator | None = None
        try:
            for cfg in leds:
                self._lights.append(PixelLight(cfg) if cfg.kind == "apa102" else GpioLight(cfg))
            pixels = [light for light in self._lights if isinstance(light, PixelLight)]
            if pixels:
                self.animator = PixelAnimator(pixels, level)
                if not self.animator.start():  # pragma: no cover - a fresh worker always starts
                    raise RuntimeError("the LED animation thread did not start")
        except Exception:
            # Free the pins already claimed so a retry (or the next test) can claim them again.
            self.close()
            raise
        log.debug("leds: %d configured", len(self._lights))

    @property
    def devices(self) -> tuple[Any, ...]:
        """The gpiozero devices (a pixel chain's: its bus), in config order, for diagnostics."""
        return tuple(light.device for light in self._lights)

    @property
    def pixels(self) -> tuple[PixelLight, ...]:
        """The pixel chains, in config order."""
        return tuple(light for light in self._lights if isinstance(light, PixelLight))

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
                if isinstance(light, PixelLight):
                    continue  # the animator draws them, all at once below
                try:
                    light.show(state)
                except Exception:  # a failing LED must not take the conversation down
                    log.exception("leds: cannot show %s on %s", state, ",".join(light.cfg.pins))
            if self.animator is not None:
                self.animator.show(state)

    def close(self) -> None:
        """Turn the LEDs off and release their pins; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lights, self._lights = self._lights, []
            animator, self.animator = self.animator, None
        if animator is not None and not animator.stop():
            # It may still be writing: leave its buses alone rather than close them under it.
            lights = [light for light in lights if not isinstance(light, PixelLight)]
        for light in lights:
            try:
                light.close()
            except Exception:
                log.exception("leds: closing %s failed", getattr(light, "where", light.cfg.pins))
