"""APA102 ("DotStar") pixels: the frame format of the datasheet, the bus that carries it, and one
chain of pixels with its power pin and its per-state looks."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

from gpiozero import DigitalOutputDevice, SPIDevice, SPISoftwareFallback

from ..config import DEFAULT_PIXEL_PATTERNS, SPI0_CLOCK, SPI0_MOSI, SPI0_SELECT, LedConfig, Pattern
from ..events import State
from .patterns import RGB, PeakFollower, meter_fraction, pixels_at, state_colors

log = logging.getLogger(__name__)

START_FRAME = bytes(4)  # 32 zero bits: the next bits are the first pixel's
PIXEL_HEADER = 0b111 << 5  # each pixel's first byte: three one bits, then 5 bits of brightness


def end_frame_bytes(n: int) -> int:
    """Bytes of ones after the last pixel: 32 bits, as the datasheet shows, and never fewer than
    n/2 bits, because each pixel passes the data on half a clock late."""
    return max(4, math.ceil(n / 2 / 8))


def encode(pixels: Sequence[RGB], brightness: int, order: str = "bgr") -> bytes:
    """One frame for a chain: the start frame, per pixel 0b111 + the 5-bit global brightness and
    the three colour bytes in `order` (the datasheet's is blue, green, red), the end frame."""
    header = PIXEL_HEADER | (brightness & 0x1F)
    which = ["rgb".index(c) for c in order]
    out = bytearray(START_FRAME)
    for px in pixels:
        levels = [min(255, max(0, round(channel * 255))) for channel in px]
        out += bytes((header, levels[which[0]], levels[which[1]], levels[which[2]]))
    out += b"\xff" * end_frame_bytes(len(pixels))
    return bytes(out)


class Bus(Protocol):
    """Where a chain's frames go."""
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class HardwareBus(SPIDevice):
    """SPI0 through the pin factory's spi(): the kernel's spidev (via lgpio) on a Pi, and on
    gpiozero's mock factory a bit-banged bus whose pins a MockSPIDevice can listen to."""

    def __init__(self, device: int) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SPISoftwareFallback)
            # Pins rather than port/device: no MISO, so GPIO9 stays free (pixels answer nothing).
            super().__init__(clock_pin=SPI0_CLOCK, mosi_pin=SPI0_MOSI, miso_pin=None,
                             select_pin=SPI0_SELECT[device])
        for warning in caught:
            if issubclass(warning.category, SPISoftwareFallback):
                # gpiozero bit-bangs the same pins when /dev/spidev0.N cannot be opened: the
                # pixels still light, at a CPU cost a user should know the cure for.
                log.warning("leds: no hardware SPI for /dev/spidev0.%d (%s); the pixels are "
                            "bit-banged instead, which costs CPU: switch SPI on (raspi-config, "
                            "Interface Options) and check the user is in group spi",
                            device, warning.message)
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                       warning.lineno)

    def write(self, data: bytes) -> None:
        self._spi.write(data)


class BitBangBus:
    """Clock and data on any two pins, toggled one bit at a time (SPI mode 0, MSB first): for
    boards whose pixels are not on the SPI pins. Each bit costs a few pin writes, so a frame
    takes milliseconds where hardware SPI takes microseconds."""

    def __init__(self, clock_pin: str, data_pin: str) -> None:
        self._clock = DigitalOutputDevice(clock_pin)
        try:
            self._data = DigitalOutputDevice(data_pin)
        except Exception:
            self._clock.close()
            raise

    def write(self, data: bytes) -> None:
        clock, mosi = self._clock.pin, self._data.pin
        for byte in data:
            for bit in range(7, -1, -1):
                mosi.state = (byte >> bit) & 1
                clock.state = 1  # the pixel samples on the rising edge
                clock.state = 0

    def close(self) -> None:
        self._data.close()
        self._clock.close()


class Look:
    """What one chain shows for one state from a given moment: the pattern, its colour, and the
    meter's needle when it has one."""

    def __init__(self, state: State, pattern: Pattern, color: RGB, t0: float) -> None:
        self.state = state
        self.pattern = pattern
        self.color = color
        self.t0 = t0
        self.needle = PeakFollower(pattern.off_time) if pattern.effect == "meter" else None


class PixelLight:
    """One chain of APA102 pixels: claims its bus (and power pin), turns looks into frames and
    writes a frame only when it differs from the last one written."""

    def __init__(self, cfg: LedConfig) -> None:
        self.cfg = cfg
        self.kind = cfg.kind
        self.where = ",".join(cfg.pins) if cfg.pins else f"spidev0.{cfg.spi_device}"
        self.colors = state_colors(cfg.patterns, self.where)
        self.power: DigitalOutputDevice | None = None
        self.bus: Bus
        if cfg.power_pin:
            self.power = DigitalOutputDevice(cfg.power_pin, active_high=cfg.active_high,
                                             initial_value=True)
        try:
            if cfg.pins:
                clock, data = cfg.pins
                self.bus = BitBangBus(clock, data)
            else:
                self.bus = HardwareBus(cfg.spi_device)
        except Exception:
            if self.power is not None:
                self.power.close()
            raise
        self.last: bytes | None = None  # the frame the pixels hold now
        self.frames = 0  # frames written

    def look(self, state: State, t0: float) -> Look:
        pattern = self.cfg.patterns.get(state) or DEFAULT_PIXEL_PATTERNS[state]
        return Look(state, pattern, self.colors.get(state, (1.0, 1.0, 1.0)), t0)

    def frame(self, look: Look, t: float, peak: float) -> bytes:
        """The frame of `look` t seconds in, with the microphone's latest peak (0..1)."""
        share = look.needle.update(meter_fraction(peak), t) if look.needle is not None else 0.0
        return encode(pixels_at(look.pattern, look.color, self.cfg.pixels, t, share),
                      self.cfg.global_brightness, self.cfg.order)

    def write(self, frame: bytes) -> bool:
        """Send a frame unless the pixels hold it already; True when it was sent."""
        if frame == self.last:
            return False
        self.bus.write(frame)
        self.last = frame
        self.frames += 1
        return True

    def dark(self) -> None:
        """All pixels off (the frame a closed chain is left with)."""
        self.write(encode([(0.0, 0.0, 0.0)] * self.cfg.pixels, self.cfg.global_brightness,
                          self.cfg.order))

    def close(self) -> None:
        try:
            self.dark()
        finally:
            self.bus.close()
            if self.power is not None:
                self.power.close()

    @property
    def device(self) -> Any:
        return self.bus
