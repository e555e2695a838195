"""The push button on gpiozero mock pins: edges become alternating press/release callbacks."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from speakerd.button import PushButton
from speakerd.config import ButtonConfig

WAIT = 5.0  # generous: only ever the upper bound of an event wait


class EdgeRecorder:
    """Collects (edge, t, thread name) and signals each arrival."""

    def __init__(self) -> None:
        self.edges: list[tuple[str, float, str]] = []
        self.cond = threading.Condition()

    def press(self, t: float) -> None:
        self._add("press", t)

    def release(self, t: float) -> None:
        self._add("release", t)

    def _add(self, edge: str, t: float) -> None:
        with self.cond:
            self.edges.append((edge, t, threading.current_thread().name))
            self.cond.notify_all()

    def wait_for(self, n: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.edges) >= n, timeout=WAIT)

    def kinds(self) -> list[str]:
        with self.cond:
            return [e[0] for e in self.edges]


def in_thread(fn: Callable[[], None], name: str = "gpio-callbacks") -> None:
    """Run fn on another thread, as lgpio's callback thread would on a Pi, and wait for it."""
    t = threading.Thread(target=fn, name=name)
    t.start()
    t.join(WAIT)
    assert not t.is_alive()


@pytest.fixture
def recorder() -> EdgeRecorder:
    return EdgeRecorder()


@pytest.fixture
def make_button(mock_pins: MockFactory, recorder: EdgeRecorder) -> Iterator[Callable[..., PushButton]]:
    made: list[PushButton] = []
    ticks = itertools.count(100.0)

    def make(**kw: object) -> PushButton:
        b = PushButton(ButtonConfig(**kw), recorder.press, recorder.release,  # type: ignore[arg-type]
                       clock=lambda: next(ticks))
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def test_press_and_release_from_callback_thread(mock_pins: MockFactory, recorder: EdgeRecorder,
                                                make_button: Callable[..., PushButton]) -> None:
    """A pulled-up button reports press on low, release on high, on the driving thread, timed."""
    button = make_button(pin="GPIO17")
    pin = mock_pins.pin("GPIO17")
    assert pin.state == 1  # pulled up: idle high
    in_thread(pin.drive_low)
    assert recorder.wait_for(1)
    assert button.is_pressed
    in_thread(pin.drive_high)
    assert recorder.wait_for(2)
    assert not button.is_pressed
    assert recorder.edges == [("press", 100.0, "gpio-callbacks"),
                              ("release", 101.0, "gpio-callbacks")]


def test_pull_down_button_presses_on_high(mock_pins: MockFactory, recorder: EdgeRecorder,
                                          make_button: Callable[..., PushButton]) -> None:
    """With pull_up false the idle pin is low and a high level is the press."""
    make_button(pin="GPIO27", pull_up=False)
    pin = mock_pins.pin("GPIO27")
    assert pin.state == 0
    in_thread(pin.drive_low)  # already low: no edge
    in_thread(pin.drive_high)
    in_thread(pin.drive_low)
    assert recorder.wait_for(2)
    assert recorder.kinds() == ["press", "release"]


def test_many_presses_alternate(mock_pins: MockFactory, recorder: EdgeRecorder,
                                make_button: Callable[..., PushButton]) -> None:
    """A burst of edges driven from a Timer thread still reports press, release, ... in order."""
    make_button(pin="GPIO17")
    pin = mock_pins.pin("GPIO17")

    def burst() -> None:
        for _ in range(20):
            pin.drive_low()
            pin.drive_high()

    timer = threading.Timer(0.01, burst)
    timer.start()
    assert recorder.wait_for(40)
    timer.join(WAIT)
    assert recorder.kinds() == ["press", "release"] * 20


def test_duplicate_edges_are_dropped(mock_pins: MockFactory, recorder: EdgeRecorder,
                                     make_button: Callable[..., PushButton]) -> None:
    """A second press without a release, or a release without a press, is not reported."""
    button = make_button(pin="GPIO17")
    pressed, released = button.device.when_activated, button.device.when_deactivated
    assert pressed is not None and released is not None
    # gpiozero itself filters repeated levels on one thread, so deliver the raw callbacks as a
    # racing or bouncing edge source would.
    in_thread(released)
    in_thread(pressed)
    in_thread(pressed)
    in_thread(released)
    in_thread(released)
    in_thread(pressed)
    assert recorder.wait_for(3)
    assert recorder.kinds() == ["press", "release", "press"]


def test_held_at_start_release_is_not_reported(mock_pins: MockFactory, recorder: EdgeRecorder,
                                               make_button: Callable[..., PushButton]) -> None:
    """A button already down when the daemon starts gives no release; the next press counts."""
    pin = mock_pins.pin("GPIO17")
    pin.drive_low()
    button = make_button(pin="GPIO17")
    assert not button.is_pressed
    in_thread(pin.drive_high)
    in_thread(pin.drive_low)
    assert recorder.wait_for(1)
    assert recorder.kinds() == ["press"]


def test_bounce_time_is_passed_to_gpiozero(mock_pins: MockFactory,
                                           make_button: Callable[..., PushButton]) -> None:
    """The configured debounce reaches the pin; zero means none."""
    a = make_button(pin="GPIO5", bounce_time=0.05)
    b = make_button(pin="GPIO6", bounce_time=0)
    assert a.device.pin.bounce == pytest.approx(0.05)
    assert b.device.pin.bounce is None


def test_close_stops_callbacks_and_frees_the_pin(mock_pins: MockFactory, recorder: EdgeRecorder,
                                                 make_button: Callable[..., PushButton]) -> None:
    """After close no edge is reported, close is idempotent, and the pin can be claimed again."""
    button = make_button(pin="GPIO17")
    button.close()
    button.close()
    assert button.device.closed
    pin = mock_pins.pin("GPIO17")
    in_thread(pin.drive_low)
    in_thread(pin.drive_high)
    assert recorder.kinds() == []
    again = make_button(pin="GPIO17")
    in_thread(pin.drive_low)
    assert recorder.wait_for(1)
    assert again.is_pressed
