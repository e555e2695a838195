"""End to end with a board profile: a ReSpeaker 2-Mics HAT's APA102 pixels, on gpiozero's mock
SPI, follow a real conversation with the emulator, the voice lighting the meter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from speakerd.events import State
from tests.support.daemon import WAIT, wait_until
from tests.support.pins import PixelRecorder

pytestmark = pytest.mark.realtime


@pytest.fixture
def mock_pins(spi_pins: MockFactory) -> Iterator[MockFactory]:
    """The rig on plain mock pins: the HAT's pixels are a MockSPIDevice's to listen to."""
    yield spi_pins


def look(frame: bytes) -> State | None:
    """Which state's default pixel look a 3-pixel frame belongs to (IDLE for dark)."""
    pixels = [tuple(frame[4 + 4 * i + 1:4 + 4 * i + 4]) for i in range(3)]  # (b, g, r) each
    assert all(frame[4 + 4 * i] == 0xE8 for i in range(3)), frame.hex()  # brightness 8: the board's
    if all(px == (0, 0, 0) for px in pixels):
        return State.IDLE
    if all(g == 0 and r == 0 and b >= 51 for b, g, r in pixels):
        return State.LISTENING  # the blue meter, at least glowing
    if all(b == 0 and g == r for b, g, r in pixels) and len(set(pixels)) > 1:
        return State.THINKING  # the yellow spinner
    if all(b == 0 and r == 0 for b, g, r in pixels) and len(set(pixels)) == 1:
        return State.SPEAKING  # the green pulse
    if all(b == g == r for b, g, r in pixels) and len(set(pixels)) > 1:
        return State.CONNECTING  # the white spinner
    return None


def test_the_hat_s_pixels_follow_a_conversation(make_rig: Any, spi_pins: MockFactory) -> None:
    """board: respeaker-2mic; press, speak, release, hear the reply: the pixels go dark, meter
    the voice, spin while the agent thinks, pulse while it speaks and go dark again, in order."""
    recorder = PixelRecorder("GPIO11", "GPIO10", "GPIO7")  # SPI0 and CE1, as the profile says
    try:
        rig = make_rig(board="respeaker-2mic", leds=None)  # no LED list of the rig's: the board's
        assert [led.kind for led in rig.cfg.leds] == ["apa102"]
        assert spi_pins.pin("GPIO12").state == 0  # the HAT's pixel power, on
        rig.press()
        rig.wait_state(State.LISTENING)
        rig.speak("hello.wav")
        rig.release()
        rig.wait_state(State.SPEAKING)
        rig.wait_state(State.IDLE, after=len(rig.states))
        assert rig.state_names() == [State.IDLE, State.CONNECTING, State.LISTENING, State.THINKING,
                                     State.SPEAKING, State.IDLE]
        assert rig.led_history()[-6:] == rig.state_names()
        # The animation thread writes the dark frame after the state is idle, over bit-banged
        # SPI on mock pins (milliseconds of pin changes): wait for it rather than race it.
        assert wait_until(lambda: bool(recorder.payloads())
                          and look(recorder.payloads()[-1]) is State.IDLE, timeout=WAIT)
        frames = recorder.payloads()
    finally:
        recorder.close()
    looks = [look(f) for f in frames]
    assert None not in looks, [f.hex() for f, lk in zip(frames, looks, strict=True) if lk is None]
    # The looks walk the states in order: a state too short for a frame may be missing, but the
    # ones a user waits through are there. Dark frames are idle, or a pulse at its low point.
    assert looks[0] is State.IDLE and looks[-1] is State.IDLE
    order = list(rig.state_names())
    lit = [lk for lk in looks if lk is not State.IDLE]
    walked = [lk for i, lk in enumerate(lit) if i == 0 or lit[i - 1] != lk]
    assert {State.LISTENING, State.SPEAKING} <= set(walked)
    indexes = [order.index(lk) for lk in walked]  # each of these states occurs once in `order`
    assert indexes == sorted(indexes), walked
    # The voice moved the meter: some frame lit a pixel full blue, above the glow.
    meter = [f for f, lk in zip(frames, looks, strict=True) if lk is State.LISTENING]
    assert any(f[4 + 4 * i + 1] == 255 for f in meter for i in range(3))
