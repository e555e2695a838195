"""APA102 pixel chains on gpiozero's mock SPI: the exact bytes each board profile sends for each
state, the animation's pace, the meter following the microphone, and a quiet thread at rest."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from speakerd.config import parse_config
from speakerd.events import State
from speakerd.leds import StatusLeds
from speakerd.leds.patterns import FRAME_RATE, PULSE_STRIDE
from tests.support.alsa import wait_until
from tests.support.pins import PixelRecorder

BLACK = (0, 0, 0)


def frame(pixels: list[tuple[int, int, int]], brightness: int) -> bytes:
    """The datasheet's frame, written out by hand: 32 zero bits; per pixel three one bits and
    the 5-bit brightness, then blue, green, red; 32 bits of ones (enough for up to 64 pixels)."""
    out = bytes(4)
    for r, g, b in pixels:
        out += bytes([0b11100000 | brightness, b, g, r])
    return out + b"\xff" * 4


RGB8 = tuple[int, int, int]


def spinner(n: int, head: RGB8, tail: list[RGB8]) -> list[RGB8]:
    """Pixel 0 lit as the head, the tail on the pixels before it (n-1, n-2, ...)."""
    pixels = [BLACK] * n
    pixels[0] = head
    for i, colour in enumerate(tail, start=1):
        pixels[-i] = colour
    return pixels


def first_frames(n: int) -> dict[State, list[list[RGB8]]]:
    """What the pixel defaults send first in each state, as (r, g, b) bytes per pixel: one
    frame, or for speaking the frames it may start with."""
    white_tail = [(76, 76, 76), (38, 38, 38), (19, 19, 19)]  # 0.6 x 1/2, 1/4, 1/8 of 255
    yellow_tail = [(128, 128, 0), (64, 64, 0), (32, 32, 0)]
    tail = 3 if n >= 12 else 1
    # A pulse starts dark, which the pixels show already after idle, so its first frame sent is
    # the next one up the ramp to colorzero's green (0x008000) over 0.6 s: 128 x k/15 at frame k
    # (a busy machine may wake a frame or two late).
    ramp = [[(0, g, 0)] * n for g in (9, 17, 26)]
    return {
        State.IDLE: [[BLACK] * n],
        State.CONNECTING: [spinner(n, (153, 153, 153), white_tail[:tail])],  # white at 0.6
        State.LISTENING: [[(0, 0, 51)] * n],  # the meter's blue glow: nobody speaks yet
        State.THINKING: [spinner(n, (255, 255, 0), yellow_tail[:tail])],
        State.SPEAKING: ramp,
        State.OFFLINE: [[(255, 165, 0)] * n],  # a blink starts lit: orange
        State.ERROR: [[(255, 0, 0)] * n],
    }


# board -> (pixels, global brightness, the recorder's clock, data and select pins, bit-banged?)
BOARDS = {
    "respeaker-2mic": (3, 8, ("GPIO11", "GPIO10", "GPIO7"), False),
    "respeaker-4mic": (12, 8, ("GPIO11", "GPIO10", "GPIO7"), False),
    "adafruit-voice-bonnet": (3, 8, ("GPIO6", "GPIO5", "GPIO26"), True),  # GPIO26: no select
}


class Level:
    """The microphone's peak as the test sets it."""

    def __init__(self) -> None:
        self.peak = 0.0

    def __call__(self) -> float:
        return self.peak


@pytest.fixture
def make_chain(spi_pins: MockFactory) -> Iterator[Callable[..., tuple[StatusLeds, PixelRecorder]]]:
    made: list[tuple[StatusLeds, PixelRecorder]] = []

    def make(board: str, level: Level | None = None, **led: object) -> tuple[StatusLeds, PixelRecorder]:
        n, _, (clock, data, select), bitbang = BOARDS[board]
        raw: dict[str, object] = {"board": board}
        if led:
            (base,) = parse_config(raw).leds
            raw["leds"] = [{"kind": "apa102", "pixels": base.pixels, "pins": list(base.pins),
                            "spi_device": base.spi_device, "power_pin": base.power_pin,
                            "active_high": base.active_high,
                            "global_brightness": base.global_brightness, **led}]
        cfg = parse_config(raw)
        # The listener first: it makes the clock and select pins the kind that report edges.
        recorder = PixelRecorder(clock, data, select, frame_bytes=4 + 4 * n + 4 if bitbang else None)
        leds = StatusLeds(cfg.leds, level=level)
        made.append((leds, recorder))
        return leds, recorder

    yield make
    for leds, recorder in made:
        leds.close()
        recorder.close()


def rest(leds: StatusLeds) -> None:
    """Show idle and wait until the thread sleeps: no frame of an older look can come after."""
    leds.show(State.IDLE)
    assert leds.animator is not None
    assert wait_until(lambda: leds.animator is not None and leds.animator.sleeping)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_each_state_sends_its_exact_first_frame(
        board: str, make_chain: Callable[..., tuple[StatusLeds, PixelRecorder]]) -> None:
    """For every state, the first frame on the wire is the datasheet frame of that state's look,
    at the board's global brightness, on hardware SPI or the bit-banged pins alike."""
    n, brightness, _, _ = BOARDS[board]
    leds, rec = make_chain(board)
    expected = {state: [frame(pixels, brightness) for pixels in looks]
                for state, looks in first_frames(n).items()}
    rest(leds)
    assert rec.payloads() == expected[State.IDLE]
    for state in State:
        if state is State.IDLE:
            continue
        rest(leds)
        before = len(rec.frames)
        leds.show(state)
        assert wait_until(lambda before=before: len(rec.frames) > before), state
        assert rec.payloads()[before] in expected[state], state


def heads(frames: list[bytes], n: int) -> list[int]:
    """The pixel at full brightness in each spinner frame."""
    return [next(i for i in range(n) if f[4 + 4 * i + 1:4 + 4 * i + 4] == b"\x00\xff\xff") for f in frames]


def test_the_spinner_steps_round_the_ring_at_its_pace(
        make_chain: Callable[..., tuple[StatusLeds, PixelRecorder]]) -> None:
    """thinking on the 12-pixel ring: the head moves forward a step at a time, never faster than
    one step per on_time / 12, each frame one of the spinner's own, and none repeated."""
    leds, rec = make_chain("respeaker-4mic")
    rest(leds)
    start = len(rec.frames)
    leds.show(State.THINKING)
    assert wait_until(lambda: len(rec.frames) >= start + 25)
    leds.show(State.IDLE)
    frames = rec.frames[start:start + 25]
    payloads = [data for _, data in frames]
    n, step = 12, 0.6 / 12
    at_zero = spinner(n, (255, 255, 0), [(128, 128, 0), (64, 64, 0), (32, 32, 0)])
    for k, (f, h) in enumerate(zip(payloads, heads(payloads, n), strict=True)):
        assert f == frame([at_zero[(i - h) % n] for i in range(n)], 8), k  # the look turned by h
    moves = [(b - a) % n for a, b in zip(heads(payloads, n), heads(payloads, n)[1:], strict=False)]
    assert all(1 <= m <= 5 for m in moves), moves  # forward; a late frame may skip a step
    assert heads(payloads, n)[0] == 0
    elapsed = frames[-1][0] - frames[0][0]
    assert len(frames) - 1 <= elapsed / step + 1  # no more frames than steps went by


def test_a_pulse_never_outruns_its_step_rate(
        make_chain: Callable[..., tuple[StatusLeds, PixelRecorder]]) -> None:
    """speaking: a green pulse, every pixel alike, at most one frame per 2/25 s, up to full green."""
    leds, rec = make_chain("respeaker-2mic")
    rest(leds)
    start = len(rec.frames)
    leds.show(State.SPEAKING)
    assert wait_until(lambda: len(rec.frames) >= start + 16)
    leds.show(State.IDLE)
    frames = rec.frames[start:start + 16]
    greens = []
    for _, f in frames:
        pixels = {f[4 + 4 * i:8 + 4 * i] for i in range(3)}
        assert len(pixels) == 1  # all three alike
        (px,) = pixels
        assert px[0] == 0xE8 and px[1] == 0 and px[3] == 0  # brightness 8, no blue, no red
        greens.append(px[2])
    assert max(greens) <= 128 and max(greens) >= 100  # colorzero's green is 0x008000
    elapsed = frames[-1][0] - frames[0][0]
    assert len(frames) - 1 <= elapsed * FRAME_RATE / PULSE_STRIDE + 1


def test_a_slow_dim_pulse_sends_a_frame_per_level_not_per_tick(
        make_chain: Callable[..., tuple[StatusLeds, PixelRecorder]]) -> None:
    """A pulse whose level holds for several ticks wakes and is sent only when the level
    changes: each frame one level up (a few on a late wake-up), never more frames than levels
    went by, and no wake-up between them."""
    slow = {"effect": "pulse", "on_time": 2.0, "off_time": 2.0, "color": "#000010"}
    leds, rec = make_chain("respeaker-2mic", patterns={State.SPEAKING: slow})
    rest(leds)
    assert leds.animator is not None
    start, draws = len(rec.frames), leds.animator.draws
    leds.show(State.SPEAKING)
    assert wait_until(lambda: len(rec.frames) >= start + 8)
    woke, sent = leds.animator.draws - draws, len(rec.frames) - start
    leds.show(State.IDLE)
    assert woke <= sent + 2  # the show's own wake-up, and one in flight when the counts were read
    frames = rec.frames[start:start + 8]
    blues = [f[5] for _, f in frames]  # the first pixel's blue byte; all three are alike
    assert blues[0] in (1, 2) and all(f[4:8] * 3 == f[4:16] for _, f in frames)
    steps = [b - a for a, b in zip(blues, blues[1:], strict=False)]
    assert all(1 <= s <= 3 for s in steps), blues
    elapsed = frames[-1][0] - frames[0][0]
    assert len(frames) - 1 <= elapsed * 16 / 2.0 + 1  # 16 levels in 2 s: 8 level changes a second


def test_the_meter_follows_the_microphone(
        make_chain: Callable[..., tuple[StatusLeds, PixelRecorder]]) -> None:
    """listening: silence glows, full scale lights the ring, then the needle falls back to the
    level heard (-24 dBFS: half the ring) without ever rising on the way down."""
    level = Level()
    leds, rec = make_chain("respeaker-4mic", level)
    blue, glow = (0, 0, 255), (0, 0, 51)
    rest(leds)
    start = len(rec.frames)
    leds.show(State.LISTENING)
    assert wait_until(lambda: len(rec.frames) > start)
    assert rec.payloads()[start] == frame([glow] * 12, 8)
    level.peak = 1.0
    full = frame([blue] * 12, 8)
    assert wait_until(lambda: full in rec.payloads()[start:])
    loud = rec.payloads().index(full, start)
    level.peak = 10 ** (-24 / 20)
    half = frame([blue] * 6 + [glow] * 6, 8)
    assert wait_until(lambda: rec.payloads()[-1] == half)
    lit = [sum(1 for i in range(12) if f[4 + 4 * i + 1] > 51) for f in rec.payloads()[loud:]]
    assert lit == sorted(lit, reverse=True) and lit[-1] == 6


def test_a_still_look_leaves_the_thread_asleep(
        make_chain: Callable[..., tuple[StatusLeds, PixelRecorder]]) -> None:
    """on and off send one frame, then the thread waits without a timeout: nothing more is sent."""
    leds, rec = make_chain("respeaker-2mic", patterns={State.LISTENING: {"effect": "on", "color": "#102030"}})
    rest(leds)
    before = len(rec.frames)
    leds.show(State.LISTENING)
    assert leds.animator is not None
    assert wait_until(lambda: leds.animator is not None and leds.animator.sleeping)
    assert rec.payloads()[before:] == [frame([(0x10, 0x20, 0x30)] * 3, 8)]
    leds.show(State.LISTENING)  # the same state again: nothing to draw
    assert leds.animator.sleeping and len(rec.frames) == before + 1


def test_the_power_pins_follow_the_board(spi_pins: MockFactory,
                                         make_chain: Callable[..., tuple[StatusLeds, PixelRecorder]]) -> None:
    """The 2-mic HAT's pixels are powered by GPIO12 low, the 4-mic array's by GPIO5 high."""
    two, _ = make_chain("respeaker-2mic")
    assert spi_pins.pin("GPIO12").state == 0
    four, _ = make_chain("adafruit-voice-bonnet")  # no power pin: GPIO12 and GPIO5 untouched
    two.close()
    spi_pins.reset()
    four, _ = make_chain("respeaker-4mic")
    assert spi_pins.pin("GPIO5").state == 1


def test_close_darkens_the_chain_and_frees_its_pins(
        make_chain: Callable[..., tuple[StatusLeds, PixelRecorder]]) -> None:
    """close() stops the thread, leaves a dark frame, and the same pins can be claimed again."""
    leds, rec = make_chain("respeaker-2mic")
    leds.show(State.THINKING)
    assert wait_until(lambda: len(rec.frames) >= 3)
    leds.close()
    leds.close()
    assert rec.payloads()[-1] == frame([BLACK] * 3, 8)
    count = len(rec.frames)
    leds.show(State.ERROR)  # after close: nothing happens, nothing raises
    assert len(rec.frames) == count
    again = StatusLeds(parse_config({"board": "respeaker-2mic"}).leds)
    again.show(State.ERROR)
    assert wait_until(lambda: rec.payloads()[-1] == frame([(255, 0, 0)] * 3, 8))
    again.close()


def test_a_failing_bus_does_not_stop_the_thread(
        make_chain: Callable[..., tuple[StatusLeds, PixelRecorder]]) -> None:
    """Writes that raise are counted and logged; the next look draws once the bus works again."""
    leds, rec = make_chain("respeaker-2mic")
    rest(leds)
    (chain,) = leds.pixels
    real = chain.bus.write

    def broken(data: bytes) -> None:
        raise OSError("SPI transfer error")

    chain.bus.write = broken  # type: ignore[method-assign]
    leds.show(State.ERROR)
    assert leds.animator is not None
    assert wait_until(lambda: leds.animator is not None and leds.animator.failures >= 1)
    chain.bus.write = real  # type: ignore[method-assign]
    leds.show(State.OFFLINE)
    assert wait_until(lambda: rec.payloads()[-1:] == [frame([(255, 165, 0)] * 3, 8)])


def test_pixels_and_a_gpio_led_show_the_same_state(
        spi_pins: MockFactory, make_chain: Callable[..., tuple[StatusLeds, PixelRecorder]]) -> None:
    """A chain and a plain LED in one config both follow show()."""
    recorder = PixelRecorder("GPIO11", "GPIO10", "GPIO8")
    cfg = parse_config({"leds": [{"kind": "apa102", "pixels": 2, "global_brightness": 31},
                                 {"kind": "led", "pins": ["GPIO22"]}]})
    leds = StatusLeds(cfg.leds)
    try:
        leds.show(State.ERROR)
        assert wait_until(lambda: recorder.payloads()[-1:] == [frame([(255, 0, 0)] * 2, 31)])
        assert spi_pins.pin("GPIO22").state == 1
    finally:
        leds.close()
        recorder.close()


class NoSpidevFactory(MockFactory):
    """Mock pins on a Pi whose /dev/spidev0.* cannot be opened (SPI switched off)."""

    def _get_spi_class(self, shared: bool, hardware: bool) -> type:
        if hardware:
            return _NoSpidev
        return super()._get_spi_class(shared, hardware)


class _NoSpidev:
    def __init__(self, **_: object) -> None:
        raise OSError("can't open /dev/spidev0.1: No such file or directory")


def test_without_spidev_the_pixels_are_bit_banged_and_the_log_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    """SPI off: gpiozero falls back to toggling the same pins, the frames still arrive, and one
    warning says how to get hardware SPI back."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockPin

    saved, factory = Device.pin_factory, NoSpidevFactory(pin_class=MockPin)
    Device.pin_factory = factory
    recorder = PixelRecorder("GPIO11", "GPIO10", "GPIO7")
    try:
        with caplog.at_level("WARNING", logger="speakerd.leds"):
            leds = StatusLeds(parse_config({"board": "respeaker-2mic"}).leds)
        try:
            leds.show(State.ERROR)
            assert wait_until(lambda: recorder.payloads()[-1:] == [frame([(255, 0, 0)] * 3, 8)])
        finally:
            leds.close()
        assert "no hardware SPI for /dev/spidev0.1" in caplog.text and "switch SPI on" in caplog.text
    finally:
        recorder.close()
        factory.reset()
        Device.pin_factory = saved


def test_the_plain_pi_profile_lights_its_pwm_led(mock_pins: MockFactory) -> None:
    """pi-usb-mic: the GPIO25 LED is on while listening and dark when idle; the speakerphone
    profile drives no LED at all."""
    leds = StatusLeds(parse_config({"board": "pi-usb-mic"}).leds)
    try:
        leds.show(State.LISTENING)
        assert mock_pins.pin("GPIO25").state == 1
        leds.show(State.IDLE)
        assert mock_pins.pin("GPIO25").state == 0
    finally:
        leds.close()
    none = StatusLeds(parse_config({"board": "usb-speakerphone"}).leds)
    assert none.devices == () and none.animator is None
    none.show(State.LISTENING)
    none.close()
