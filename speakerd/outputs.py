"""The output pins a `gpio` function may switch (relays, lamps): claimed at start, off at close."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from gpiozero import DigitalOutputDevice

log = logging.getLogger(__name__)


class GpioOutputs:
    """Owns the allow-listed output pins; nothing else may be switched."""

    def __init__(self, pins: Sequence[tuple[str, bool]]) -> None:
        # Function actions run on their own worker threads; the lock keeps a toggle's
        # read-then-write atomic when two calls switch the same pin at once.
        self._lock = threading.Lock()
        self._devices: dict[str, DigitalOutputDevice] = {}
        try:
            for pin, active_high in pins:
                if pin in self._devices:
                    continue
                self._devices[pin] = DigitalOutputDevice(pin, active_high=active_high,
                                                         initial_value=False)
        except Exception:
            self.close()  # release what was claimed so a retry can claim it again
            raise

    @property
    def pins(self) -> tuple[str, ...]:
        """The pins that may be switched."""
        return tuple(self._devices)

    def get(self, pin: str) -> bool:
        """Whether the output is on now."""
        with self._lock:
            return bool(self._device(pin).value)

    def set(self, pin: str, value: bool | None) -> bool:
        """Switch an output on or off (None toggles); returns the new state."""
        with self._lock:
            dev = self._device(pin)
            new = (not dev.value) if value is None else value
            if new:
                dev.on()
            else:
                dev.off()
            log.info("gpio output %s %s", pin, "on" if new else "off")
            return new

    def _device(self, pin: str) -> DigitalOutputDevice:
        try:
            return self._devices[pin]
        except KeyError:
            raise ValueError(f"{pin} is not a configured output") from None

    def close(self) -> None:
        """Switch every output off and release the pins; safe to call twice."""
        with self._lock:
            devices, self._devices = self._devices, {}
        for pin, dev in devices.items():
            try:
                dev.off()
                dev.close()
            except Exception:
                log.exception("gpio output %s: close failed", pin)
