"""The push button: turns gpiozero edges into press and release callbacks that only post events."""

from __future__ import annotations

import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable

from gpiozero import Device, DigitalInputDevice
from gpiozero.exc import PinFactoryFallback

from .config import ButtonConfig

log = logging.getLogger(__name__)


class NoPinFactory(Exception):
    """gpiozero can drive no pins here; the message names the fix."""


def load_pin_factory() -> None:
    """Choose gpiozero's pin factory now (it would on the first pin), or raise NoPinFactory.

    Without this a missing factory is a traceback from whichever LED or button is built first,
    preceded by one warning per factory tried.
    """
    if Device.pin_factory is not None:
        return
    with warnings.catch_warnings(record=True) as tried:
        # Each factory that fails to load is a PinFactoryFallback warning; keep them for the line.
        warnings.simplefilter("always", PinFactoryFallback)
        try:
            # What Device() does on the first pin; called here so a failure can be named.
            Device.pin_factory = Device._default_pin_factory()
        except Exception as exc:  # noqa: BLE001 - BadPinFactory, or the chosen library's own error
            reasons = [str(w.message).removeprefix("Falling back from ") for w in tried
                       if issubclass(w.category, PinFactoryFallback)]
            raise NoPinFactory(
                f"no GPIO pin factory ({'; '.join([*reasons, str(exc)])}). On Raspberry Pi OS: "
                "sudo apt install python3-lgpio, then run scripts/install again (the venv must "
                f"see Debian's packages); elsewhere: {sys.prefix}/bin/pip install lgpio, or set "
                "GPIOZERO_PIN_FACTORY. Not restarting: exit 69") from None
    for w in tried:
        log.debug("gpiozero: %s", w.message)



class PushButton:
    """Owns the gpiozero input device; reports strictly alternating press and release edges."""

    def __init__(self, cfg: ButtonConfig, on_press: Callable[[float], None],
                 on_release: Callable[[float], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._on_press = on_press
        self._on_release = on_release
        self._clock = clock
        # gpiozero calls back on its own thread (lgpio's on a Pi; whichever thread drives a
        # mock pin in tests) and two edges can race there: the lock makes check-and-flip atomic.
        self._lock = threading.Lock()
        self._down = False
        self._closed = False
        # bounce_time 0 means "no debounce", which gpiozero spells None. A plain input device,
        # not gpiozero's Button: Button runs a hold-detection thread that wakes ten times a
        # second for a feature we do not use, which is most of an idle speaker's CPU.
        self.device = DigitalInputDevice(cfg.pin, pull_up=cfg.pull_up,
                                         bounce_time=cfg.bounce_time or None)
        if self.device.is_active:
            # Held at start: there was no press edge, so the coming release is not reported either.
            log.warning("button %s is already pressed at start; waiting for its release", cfg.pin)
        self.device.when_activated = self._pressed
        self.device.when_deactivated = self._released
        log.debug("button on %s (pull_up=%s, mode=%s)", cfg.pin, cfg.pull_up, cfg.mode)

    def _pressed(self) -> None:
        t = self._clock()
        with self._lock:
            # A second press without a release in between is a bounce (or a missed edge): drop it.
            if self._down or self._closed:
                log.debug("button: press without a release ignored")
                return
            self._down = True
            # Posted under the lock so a racing release cannot be posted ahead of its press;
            # on_press only enqueues, so holding the lock here never blocks for long.
            self._on_press(t)

    def _released(self) -> None:
        t = self._clock()
        with self._lock:
            # A release we never saw pressed (held at start, or a bounce) is not a turn boundary.
            if not self._down or self._closed:
                log.debug("button: release without a press ignored")
                return
            self._down = False
            self._on_release(t)

    @property
    def is_pressed(self) -> bool:
        """Whether a press was reported and its release not yet."""
        with self._lock:
            return self._down

    def close(self) -> None:
        """Stop reporting edges and release the pin; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.device.when_activated = None
        self.device.when_deactivated = None
        self.device.close()
