"""Status LEDs on gpiozero mock PWM pins: each state shows its configured pattern."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero import LED, PWMLED, RGBLED
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPin

from speakerd.config import LedConfig, Pattern
from speakerd.events import State
from speakerd.leds import HISTORY_MAX, StatusLeds, parse_color
from speakerd.leds.gpio import MIN_FADE_STEPS, PULSE_FPS, fade_fps
from tests.support.alsa import wait_until

WAIT = 5.0  # generous upper bound for every polled wait

# Short, pairwise distinct patterns so a test sees several cycles quickly.
PATTERNS: dict[State, Pattern] = {
    State.IDLE: Pattern("off"),
    State.CONNECTING: Pattern("blink", 0.02, 0.08, color="white"),
    State.LISTENING: Pattern("on", brightness=0.4, color="blue"),
    State.THINKING: Pattern("blink", 0.08, 0.02, color="yellow"),
    State.SPEAKING: Pattern("pulse", 0.2, 0.2, brightness=0.6, color="green"),
    State.OFFLINE: Pattern("blink", 0.03, 0.03, color="orange"),
    State.ERROR: Pattern("on", color="#ff8000"),
}


class Spy:
    """Records calls to one method of a real gpiozero device and passes them through."""

    def __init__(self, device: Any, method: str) -> None:
        self.calls: list[dict[str, Any]] = []
        real = getattr(device, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append({"args": args, **kwargs})
            return real(*args, **kwargs)

        setattr(device, method, call)


def phases_after(pin: MockPin, start: int, count: int) -> list[tuple[float, Any]]:
    """Wait for `count` whole phases after index `start` and return them.

    The first two changes after a show() may be the old pattern stopping and the new one's
    first write, whose times since the previous change say nothing about the new pattern.
    """
    assert wait_until(lambda: len(pin.states) >= start + count + 2)
    return [(s.timestamp, s.state) for s in list(pin.states)[start + 2:start + count + 2]]


def assert_blinks(pin: MockPin, start: int, on_time: float, off_time: float,
                  high: float = 1.0) -> None:
    """The pin alternates high/low, each phase lasting at least its configured time."""
    for delta, state in phases_after(pin, start, 4):
        if state:  # this change ended an off phase
            assert state == pytest.approx(high)
            assert delta >= off_time - 1e-6, (delta, state)
        else:  # this change ended an on phase
            assert delta >= on_time - 1e-6, (delta, state)


@pytest.fixture
def make_leds(mock_pins: MockFactory) -> Iterator[Callable[..., StatusLeds]]:
    made: list[StatusLeds] = []

    def make(*cfgs: LedConfig) -> StatusLeds:
        leds = StatusLeds(cfgs)
        made.append(leds)
        return leds

    yield make
    for leds in made:
        leds.close()


def test_plain_led_shows_each_state_distinctly(mock_pins: MockFactory,
                                               make_leds: Callable[..., StatusLeds]) -> None:
    """On a plain LED: off, on, and blinks with the configured times; a pulse becomes a blink."""
    patterns = dict(PATTERNS, speaking=Pattern("pulse", 0.05, 0.06))
    leds = make_leds(LedConfig(kind="led", pins=("GPIO22",), patterns=patterns))
    (dev,) = leds.devices
    assert isinstance(dev, LED)
    pin = mock_pins.pin("GPIO22")
    blink = Spy(dev, "blink")

    leds.show(State.IDLE)
    assert not pin.state
    leds.show(State.LISTENING)
    assert pin.state == 1  # a plain LED cannot dim: brightness only matters for PWM
    for state in (State.CONNECTING, State.THINKING, State.OFFLINE):
        p = PATTERNS[state]
        start = len(pin.states)
        leds.show(state)
        assert blink.calls[-1]["on_time"] == p.on_time and blink.calls[-1]["off_time"] == p.off_time
        assert_blinks(pin, start, p.on_time, p.off_time)
    start = len(pin.states)
    leds.show(State.SPEAKING)
    assert blink.calls[-1]["on_time"] == 0.05 and blink.calls[-1]["off_time"] == 0.06
    assert_blinks(pin, start, 0.05, 0.06)
    leds.show(State.ERROR)
    assert wait_until(lambda: pin.state == 1)
    leds.show(State.IDLE)
    assert not pin.state
    assert leds.history == [State.IDLE, State.LISTENING, State.CONNECTING, State.THINKING,
                            State.OFFLINE, State.SPEAKING, State.ERROR, State.IDLE]
    assert leds.state == State.IDLE


def test_pwm_led_dims_blinks_and_pulses(mock_pins: MockFactory,
                                        make_leds: Callable[..., StatusLeds]) -> None:
    """On a PWM LED: on at the brightness, blink at full, pulse fades up to the brightness."""
    leds = make_leds(LedConfig(kind="pwm", pins=("GPIO25",), patterns=PATTERNS))
    (dev,) = leds.devices
    assert isinstance(dev, PWMLED)
    pin = mock_pins.pin("GPIO25")

    leds.show(State.LISTENING)
    assert pin.state == pytest.approx(0.4)
    assert dev.value == pytest.approx(0.4)

    start = len(pin.states)
    leds.show(State.THINKING)
    assert_blinks(pin, start, 0.08, 0.02)

    start = len(pin.states)
    leds.show(State.SPEAKING)
    # A fade writes many levels between off and the configured brightness, never above it.
    assert wait_until(lambda: len({round(s.state, 3) for s in list(pin.states)[start:]
                                   if 0 < s.state < 0.59}) >= 3)
    assert wait_until(lambda: any(s.state == pytest.approx(0.6) for s in list(pin.states)[start:]))
    assert max(s.state for s in list(pin.states)[start:]) <= 0.6 + 1e-9

    leds.show(State.ERROR)
    assert wait_until(lambda: pin.state == pytest.approx(1.0))
    leds.show(State.IDLE)
    assert pin.state == 0


def test_rgb_led_shows_colours(mock_pins: MockFactory,
                               make_leds: Callable[..., StatusLeds]) -> None:
    """An RGB LED shows named and #rrggbb colours scaled by brightness: on, blinking, pulsing."""
    leds = make_leds(LedConfig(kind="rgb", pins=("GPIO5", "GPIO6", "GPIO13"), patterns=PATTERNS))
    (dev,) = leds.devices
    assert isinstance(dev, RGBLED)
    pins = [mock_pins.pin(p) for p in ("GPIO5", "GPIO6", "GPIO13")]

    def rgb() -> tuple[float, ...]:
        return tuple(float(p.state) for p in pins)

    leds.show(State.LISTENING)
    assert rgb() == pytest.approx((0, 0, 0.4))  # blue at brightness 0.4
    leds.show(State.ERROR)
    assert rgb() == pytest.approx((1, 128 / 255, 0), abs=1e-3)  # #ff8000

    blink = Spy(dev, "blink")
    start = [len(p.states) for p in pins]
    leds.show(State.OFFLINE)
    assert blink.calls[-1]["on_color"] == pytest.approx(parse_color("orange"))
    # The blink reaches orange (the red and green pins on, blue off) and goes dark in between.
    assert wait_until(lambda: any(s.state == pytest.approx(0.647, abs=1e-3)
                                  for s in list(pins[1].states)[start[1]:]))
    assert_blinks(pins[0], start[0], 0.03, 0.03)
    assert all(not s.state for s in list(pins[2].states)[start[2]:])

    pulse = Spy(dev, "pulse")
    leds.show(State.SPEAKING)
    call = pulse.calls[-1]
    assert (call["fade_in_time"], call["fade_out_time"]) == (0.2, 0.2)
    assert call["on_color"] == pytest.approx((0, 0.6 * 128 / 255, 0), abs=1e-3)  # green, 0.6
    leds.show(State.IDLE)
    assert rgb() == (0, 0, 0)


def test_showing_the_same_state_again_does_not_restart(
        mock_pins: MockFactory, make_leds: Callable[..., StatusLeds]) -> None:
    """Repeated show() of the shown state neither restarts the animation nor grows the history."""
    leds = make_leds(LedConfig(kind="pwm", pins=("GPIO25",), patterns=PATTERNS))
    (dev,) = leds.devices
    blink = Spy(dev, "blink")
    leds.show(State.CONNECTING)
    leds.show(State.CONNECTING)
    leds.show(State.CONNECTING)
    assert len(blink.calls) == 1
    assert leds.history == [State.CONNECTING]
    leds.show(State.THINKING)
    leds.show(State.CONNECTING)
    assert len(blink.calls) == 3
    assert leds.history == [State.CONNECTING, State.THINKING, State.CONNECTING]


def test_several_leds_follow_the_state_together(mock_pins: MockFactory,
                                                make_leds: Callable[..., StatusLeds]) -> None:
    """A plain, an inverted and an RGB LED all show the state; active_high false lights low."""
    leds = make_leds(LedConfig(kind="led", pins=("GPIO22",), patterns=PATTERNS),
                     LedConfig(kind="led", pins=("GPIO23",), active_high=False, patterns=PATTERNS),
                     LedConfig(kind="rgb", pins=("GPIO5", "GPIO6", "GPIO13"), patterns=PATTERNS))
    leds.show(State.LISTENING)
    assert mock_pins.pin("GPIO22").state == 1
    assert mock_pins.pin("GPIO23").state == 0  # lit by pulling low
    assert mock_pins.pin("GPIO13").state == pytest.approx(0.4)
    leds.show(State.IDLE)
    assert mock_pins.pin("GPIO22").state == 0
    assert mock_pins.pin("GPIO23").state == 1


def test_bad_colour_is_logged_not_raised(
        mock_pins: MockFactory, make_leds: Callable[..., StatusLeds],
        caplog: pytest.LogCaptureFixture) -> None:
    """A colour typo shows white with a warning instead of failing the LED."""
    patterns = {**PATTERNS, State.LISTENING: Pattern("on", color="blurple")}
    with caplog.at_level(logging.WARNING, logger="speakerd.leds"):
        leds = make_leds(LedConfig(kind="rgb", pins=("GPIO5", "GPIO6", "GPIO13"),
                                   patterns=patterns))
        leds.show(State.LISTENING)
    assert [mock_pins.pin(p).state for p in ("GPIO5", "GPIO6", "GPIO13")] == [1, 1, 1]
    assert leds.state is State.LISTENING
    assert "blurple" in caplog.text


def test_history_is_bounded(mock_pins: MockFactory, make_leds: Callable[..., StatusLeds]) -> None:
    """The history keeps only the most recent states."""
    leds = make_leds(LedConfig(kind="led", pins=("GPIO22",), patterns=PATTERNS))
    for i in range(HISTORY_MAX + 50):
        leds.show(State.IDLE if i % 2 else State.LISTENING)
    assert len(leds.history) == HISTORY_MAX
    assert leds.history[-1] == State.IDLE


def test_close_turns_off_and_frees_the_pins(mock_pins: MockFactory,
                                            make_leds: Callable[..., StatusLeds]) -> None:
    """close() stops the animation, leaves the LED dark, is idempotent and frees the pins."""
    leds = make_leds(LedConfig(kind="pwm", pins=("GPIO25",), patterns=PATTERNS))
    leds.show(State.THINKING)
    (dev,) = leds.devices
    leds.close()
    leds.close()
    leds.show(State.LISTENING)  # after close: nothing happens, nothing raises
    pin = mock_pins.pin("GPIO25")
    assert not pin.state
    assert dev.closed and leds.devices == ()
    again = make_leds(LedConfig(kind="pwm", pins=("GPIO25",), patterns=PATTERNS))
    again.show(State.LISTENING)
    assert pin.state == pytest.approx(0.4)


def test_failed_construction_releases_claimed_pins(mock_pins: MockFactory,
                                                   make_leds: Callable[..., StatusLeds]) -> None:
    """If a later LED cannot claim its pin, the earlier ones are released again."""
    with pytest.raises(GPIOPinInUse):
        StatusLeds([LedConfig(kind="led", pins=("GPIO22",)),
                    LedConfig(kind="led", pins=("GPIO22",))])
    leds = make_leds(LedConfig(kind="led", pins=("GPIO22",), patterns=PATTERNS))
    leds.show(State.LISTENING)
    assert mock_pins.pin("GPIO22").state == 1


def test_pulse_steps_at_the_calm_rate(mock_pins: MockFactory,
                                      make_leds: Callable[..., StatusLeds]) -> None:
    """A 0.6 s fade takes 0.6 x PULSE_FPS steps (6), not gpiozero's 25 a second (15)."""
    patterns = {**PATTERNS, State.SPEAKING: Pattern("pulse", 0.6, 0.6)}
    leds = make_leds(LedConfig(kind="pwm", pins=("GPIO25",), patterns=patterns))
    pin = mock_pins.pin("GPIO25")
    start = len(pin.states)
    leds.show(State.SPEAKING)
    fps = fade_fps(0.6, 0.6)
    assert fps == PULSE_FPS
    steps = int(fps * 0.6)
    # One whole breath: the fade in, full, the fade out, off; wait for the next one to begin.
    assert wait_until(lambda: sum(1 for s in list(pin.states)[start:] if s.state == 1.0) >= 2,
                      WAIT)
    levels = {round(s.state, 6) for s in list(pin.states)[start:]}
    expected = ({round(i / fps / 0.6, 6) for i in range(steps)}
                | {round(1 - i / fps / 0.6, 6) for i in range(steps)} | {0.0, 1.0})
    assert levels == expected
    leds.show(State.IDLE)


def test_fade_rate_keeps_a_short_fade_smooth() -> None:
    """A fade too short for PULSE_FPS gets MIN_FADE_STEPS steps instead."""
    assert fade_fps(0.2, 0.6) == pytest.approx(MIN_FADE_STEPS / 0.2)
    assert fade_fps(2.0, 2.0) == PULSE_FPS
    assert fade_fps(0.0, 0.0) == PULSE_FPS
