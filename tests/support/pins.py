"""Fixtures: gpiozero mock pins (PWM-capable), fresh for each test, and the far end of an APA102
chain on gpiozero's mock SPI."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin, MockSPIDevice


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    """A fresh MockFactory with PWM pins as gpiozero's default; the previous one back afterwards."""
    saved = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        # reset() forgets every pin and reservation, so the next test can claim the same pins.
        factory.reset()
        Device.pin_factory = saved


@pytest.fixture
def spi_pins() -> Iterator[MockFactory]:
    """A fresh MockFactory with plain pins: gpiozero's MockSPIDevice listens on plain mock pins
    (a PWM pin cannot be its clock), and the SPI bus on this factory is bit-banged on them."""
    saved = Device.pin_factory
    factory = MockFactory(pin_class=MockPin)
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = saved


class PixelRecorder(MockSPIDevice):
    """What the first pixel of a chain receives: every frame's bytes, with the time it ended.

    On hardware SPI a frame is one transfer, which ends when the select pin goes back up. A
    bit-banged bus has no select pin; then pass `frame_bytes` and the bit stream is cut into
    frames of that length, as a chain that counts its clocks would.
    """

    def __init__(self, clock_pin: str, mosi_pin: str, select_pin: str,
                 frame_bytes: int | None = None) -> None:
        super().__init__(clock_pin, mosi_pin, None, select_pin)
        self._frame_bits = 8 * frame_bytes if frame_bytes else None
        # Bits arrive on the animation thread; a test reads the frames from its own.
        self._lock = threading.Lock()
        self._frames: list[tuple[float, bytes]] = []

    @property
    def frames(self) -> list[tuple[float, bytes]]:
        with self._lock:
            return list(self._frames)

    def payloads(self) -> list[bytes]:
        return [data for _, data in self.frames]

    def _finish(self) -> None:
        bits = [int(bool(b)) for b in self.rx_buf]
        self.rx_buf = []
        data = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits) - 7, 8))
        if data:
            with self._lock:
                self._frames.append((time.monotonic(), data))

    def on_select(self) -> None:
        if self.select_pin.state == self.select_high:
            self.on_start()  # a transfer begins
        elif self._frame_bits is None:
            self._finish()

    def on_bit(self) -> None:
        if self._frame_bits is not None and len(self.rx_buf) >= self._frame_bits:
            self._finish()
