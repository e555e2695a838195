"""The runner's bounds against a hostile agent: calls per request and per minute, threads in all,
a total deadline per call, pins that switch no faster than allowed, and busy instead of a crash."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from speakerd.config import ActionConfig
from speakerd.functions import (
    MAX_CALLS_IN_FLIGHT,
    MAX_CALLS_PER_MINUTE,
    MAX_CALLS_PER_REQUEST,
    FunctionRunner,
)
from speakerd.outputs import GpioOutputs
from tests.component.test_functions import FakeMixer, Results, fn, gone
from tests.support.alsa import wait_until

WAIT = 10.0


class Clock:
    """A clock the test moves by hand (for the per-minute and per-pin windows)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def runner_of(results: Results, mixer: FakeMixer) -> Iterator[Callable[..., FunctionRunner]]:
    made: list[FunctionRunner] = []

    def make(*fns: Any, **kwargs: Any) -> FunctionRunner:
        r = FunctionRunner(fns, on_result=results, mixer_factory=mixer.factory, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def results() -> Results:
    return Results()


@pytest.fixture
def mixer() -> FakeMixer:
    return FakeMixer()


VOLUME = fn("set_volume", ActionConfig(type="volume", timeout=30), level={"type": "integer"})


def test_a_thousand_calls_in_one_request_start_few_threads_and_all_are_answered(
        runner_of: Callable[..., FunctionRunner], results: Results, mixer: FakeMixer) -> None:
    """1,000 calls of one request: at most the per-request limit run, the rest are answered busy."""
    mixer.block = threading.Event()
    runner = runner_of(VOLUME)
    before = threading.active_count()
    for i in range(1000):
        runner.run(f"c{i}", "set_volume", {"level": 1}, request=1)
    peak = threading.active_count() - before
    busy = results.wait(1000 - MAX_CALLS_PER_REQUEST)
    assert all(json.loads(r.content)["error"].startswith("busy") for r in busy)
    assert peak <= min(MAX_CALLS_PER_REQUEST, MAX_CALLS_IN_FLIGHT) + 1  # + the deadline keeper
    mixer.block.set()
    answered = results.wait(1000)
    assert sorted(r.call_id for r in answered) == sorted(f"c{i}" for i in range(1000))
    print(f"\n1000 calls in one request: {peak} threads at most, {len(answered)} answers")


def test_calls_a_minute_are_bounded(runner_of: Callable[..., FunctionRunner],
                                    results: Results) -> None:
    """Past MAX_CALLS_PER_MINUTE started calls in a minute the next is busy; a minute on it runs."""
    clock = Clock()
    runner = runner_of(VOLUME, clock=clock)
    for i in range(MAX_CALLS_PER_MINUTE):
        runner.run(f"c{i}", "set_volume", {"level": 1})
        assert results.wait(i + 1)[-1].ok
    runner.run("over", "set_volume", {"level": 1})
    over = results.wait(MAX_CALLS_PER_MINUTE + 1)[-1]
    assert json.loads(over.content) == {"error": f"busy: at most {MAX_CALLS_PER_MINUTE} calls a minute"}
    clock.now += 60.0
    runner.run("later", "set_volume", {"level": 1})
    assert results.wait(MAX_CALLS_PER_MINUTE + 2)[-1].ok


def test_a_call_that_cannot_get_a_thread_is_answered_busy(
        runner_of: Callable[..., FunctionRunner], results: Results) -> None:
    """Thread creation failing (a Pi out of address space) answers busy instead of crashing."""
    def no_thread(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    runner = runner_of(VOLUME, start_thread=no_thread)
    runner.run("c", "set_volume", {"level": 1})
    (result,) = results.wait(1)
    assert json.loads(result.content) == {"error": "busy: cannot start the call now"}
    assert runner.in_flight() == 0


def test_a_pin_switches_once_a_request_and_once_an_interval(
        mock_pins: MockFactory, runner_of: Callable[..., FunctionRunner], results: Results) -> None:
    """500 toggles of a relay in one request switch it once; the next within min_interval is busy."""
    relay = fn("relay", ActionConfig(type="gpio", pin="GPIO20", min_interval=1.0),
               state={"type": "string", "enum": ["on", "off", "toggle"]})
    outputs = CountingOutputs([("GPIO20", True)])
    clock = Clock()
    try:
        runner = runner_of(relay, outputs=outputs, clock=clock)
        pin = mock_pins.pin("GPIO20")
        changes = outputs.switched
        for i in range(500):
            runner.run(f"c{i}", "relay", {"state": "toggle"}, request=1)
        answers = results.wait(500)
        assert sum(r.ok for r in answers) == 1
        assert wait_until(lambda: len(changes) >= 1, WAIT) and len(changes) == 1
        clock.now += 0.5
        runner.run("soon", "relay", {"state": "toggle"}, request=2)
        assert "at most once every 1 s" in json.loads(results.wait(501)[-1].content)["error"]
        clock.now += 0.6
        runner.run("later", "relay", {"state": "toggle"}, request=3)
        assert results.wait(502)[-1].ok
        assert wait_until(lambda: len(changes) == 2, WAIT)
        assert pin.state == 0  # toggled twice: off again
        print(f"\n500 toggles in one request: {len(changes) - 1} switch; 2 switches in 1.1 s")
    finally:
        outputs.close()


class CountingOutputs(GpioOutputs):
    """The real outputs on mock pins, counting each switch."""

    def __init__(self, pins: Any) -> None:
        super().__init__(pins)
        self.switched: list[bool] = []

    def set(self, pin: str, value: bool | None) -> bool:
        new = super().set(pin, value)
        self.switched.append(new)
        return new


def test_a_dripping_webhook_is_ended_at_the_deadline(
        dripping_server: str, runner_of: Callable[..., FunctionRunner], results: Results) -> None:
    """A server that never stops sending a byte at a time is cut off at the call's total deadline."""
    runner = runner_of(fn("drip", ActionConfig(type="http", url=dripping_server, method="GET",
                                               timeout=0.5)))
    started = time.monotonic()
    runner.run("c", "drip", {})
    (result,) = results.wait(1)
    assert json.loads(result.content) == {"error": "timed out after 0.5 s"}
    assert wait_until(lambda: runner.in_flight() == 0, WAIT)
    print(f"\ndripping webhook: answered and worker gone {time.monotonic() - started:.2f} s "
          "after the call (deadline 0.5 s)")


def test_a_command_whose_setsid_child_holds_its_output_is_ended_at_the_deadline(
        tmp_path: Path, runner_of: Callable[..., FunctionRunner], results: Results) -> None:
    """A child in a session of its own keeps the pipe open: it is found and killed at the deadline."""
    pid_file = tmp_path / "pid"
    script = f"setsid sh -c 'echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; sleep 30' & " \
             "echo started"
    runner = runner_of(fn("escape", ActionConfig(type="command", argv=("sh", "-c", script),
                                                 timeout=0.5)))
    started = time.monotonic()
    runner.run("c", "escape", {})
    (result,) = results.wait(1)
    assert json.loads(result.content) == {"error": "timed out after 0.5 s"}
    assert wait_until(pid_file.exists, WAIT)
    child = int(pid_file.read_text())
    assert os.getsid(0) != child
    assert wait_until(lambda: gone(child), WAIT), "the escaped child still runs"
    assert wait_until(lambda: runner.in_flight() == 0, WAIT)
    print(f"\nsetsid child holding the pipe: killed, worker gone "
          f"{time.monotonic() - started:.2f} s after the call (deadline 0.5 s)")
