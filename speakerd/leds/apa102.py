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
from .patterns import (
    FRAME_RATE,
    RGB,
    PeakFollower,
    level,
    meter_fraction,
    moves,
    next_change,
    next_level_change,
    pixels_at,
    scaled,
    share,
    spin_head,
    state_colors,
    uniform,
    uniform_levels,
)

log = logging.getLogger(__name__)

START_FRAME = bytes(4)  # 32 zero bits: the next bits are the first pixel's
PIXEL_HEADER = 0b111 << 5  # each pixel's first byte: three one bits, then 5 bits of brightness
# The encoded frames a chain keeps: a pulse shows the same few dozen frames over and over (one per
# level its colour passes through; an 8-bit channel has 256), so it encodes each once. Bounded in
# count and in bytes for any pattern table; a full cache is emptied and refilled, never grown.
FRAME_CACHE_MAX = 512
FRAME_CACHE_BYTES = 64 * 1024


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
        levels = [level(channel) for channel in px]
        out += bytes((header, levels[which[0]], levels[which[1]], levels[which[2]]))
    out += b"\xff" * end_frame_bytes(len(pixels))
    return bytes(out)


def encode_uniform(levels: tuple[int, int, int], n: int, brightness: int, order: str = "bgr") -> bytes:
    """The frame of n pixels all at the same (r, g, b) levels: encode()'s bytes, built with no
    per-pixel work."""
    which = ["rgb".index(c) for c in order]
    pixel = bytes((PIXEL_HEADER | (brightness & 0x1F), levels[which[0]], levels[which[1]],
                   levels[which[2]]))
    return START_FRAME + pixel * n + b"\xff" * end_frame_bytes(n)


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
        self.uniform = uniform(pattern)  # every pixel alike: a frame is a function of one share
        self.lit = scaled(color, pattern.brightness)  # the colour at full share
        # A moving uniform look whose period is a whole number of frames (the defaults' are)
        # shows the same frames every period: each frame of the period, with the number of
        # frames until the next one that differs, is worked out once. At most 250 entries.
        period = (pattern.on_time + pattern.off_time) * FRAME_RATE
        self.period_frames = max(1, round(period))
        whole = abs(period - self.period_frames) < 1e-6
        self.steps: dict[int, tuple[bytes, int]] | None = (
            {} if self.uniform and moves(pattern) and whole else None)


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
        # Encoded frames by what they are a function of: a uniform look's (r, g, b) levels, or a
        # spinner's colour and head. Touched by the animation thread only; bounded (see
        # FRAME_CACHE_BYTES).
        self._cache: dict[object, bytes] = {}
        frame_bytes = len(START_FRAME) + 4 * cfg.pixels + end_frame_bytes(cfg.pixels)
        self._cache_max = max(16, min(FRAME_CACHE_MAX, FRAME_CACHE_BYTES // frame_bytes))

    def look(self, state: State, t0: float) -> Look:
        pattern = self.cfg.patterns.get(state) or DEFAULT_PIXEL_PATTERNS[state]
        return Look(state, pattern, self.colors.get(state, (1.0, 1.0, 1.0)), t0)

    def frame(self, look: Look, t: float, peak: float) -> bytes:
        """The frame of `look` t seconds in, with the microphone's latest peak (0..1)."""
        cfg = self.cfg
        if look.needle is not None:  # a meter follows the microphone: a new frame each time
            needle = look.needle.update(meter_fraction(peak), t)
            return encode(pixels_at(look.pattern, look.color, cfg.pixels, t, needle),
                          cfg.global_brightness, cfg.order)
        if look.uniform:
            levels = uniform_levels(look.lit, share(look.pattern, t))
            frame = self._cache.get(levels)
            if frame is None:
                frame = self._keep(levels, encode_uniform(levels, cfg.pixels, cfg.global_brightness,
                                                          cfg.order))
            return frame
        spin = (look.lit, spin_head(look.pattern, cfg.pixels, t))  # a spinner: its colour and head
        frame = self._cache.get(spin)
        if frame is None:
            frame = self._keep(spin, encode(pixels_at(look.pattern, look.color, cfg.pixels, t),
                                            cfg.global_brightness, cfg.order))
        return frame

    def step(self, look: Look, t: float, peak: float) -> tuple[bytes, float | None]:
        """The frame of `look` at frame time t, and the frame time after t when it may differ
        (None: never); a periodic look's come from its table after the first period."""
        if look.steps is None:
            return self.frame(look, t, peak), self.next_change(look, t)
        k = round(t * FRAME_RATE)
        got = look.steps.get(k % look.period_frames)
        if got is None:
            later = self.next_change(look, t)
            assert later is not None  # a moving look
            got = (self.frame(look, t, peak), math.ceil(later * FRAME_RATE - 1e-9) - k)
            look.steps[k % look.period_frames] = got
        return got[0], (k + got[1]) / FRAME_RATE

    def _keep(self, key: object, frame: bytes) -> bytes:
        if len(self._cache) >= self._cache_max:
            self._cache.clear()  # the bound: the looks in use refill it within a period
        self._cache[key] = frame
        return frame

    def next_change(self, look: Look, t: float) -> float | None:
        """When, after frame time t, the frame of `look` may differ; None when it never does.
        A pulse's is the next frame whose levels differ, so a slow one wakes only to change."""
        if look.pattern.effect == "pulse" and moves(look.pattern):
            return next_level_change(look.pattern, look.lit, t)
        return next_change(look.pattern, self.cfg.pixels, t)

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
