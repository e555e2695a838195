"""The Doorbell: a ring is never lost, answered once, and wakes a sleeping thread at once."""

from __future__ import annotations

import threading
import time

from speakerd.doorbell import Doorbell


def test_a_ring_before_the_wait_is_kept_and_answered_once() -> None:
    """A ring while nobody waits makes the next wait return at once; the one after sleeps."""
    bell = Doorbell()
    bell.ring()
    bell.ring()  # rung twice before an answer: still one ring
    assert bell.rung()
    assert bell.wait(5.0) is True
    assert not bell.rung()
    t0 = time.monotonic()
    assert bell.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.04


def test_a_wait_with_no_time_left_only_looks() -> None:
    """wait(0) and a negative timeout answer a ring if there is one, and never sleep."""
    bell = Doorbell()
    assert bell.wait(0) is False
    assert bell.wait(-1.0) is False
    bell.ring()
    assert bell.wait(0) is True


def test_clear_forgets_a_ring() -> None:
    """clear() drops a ring not yet answered; a later ring counts again."""
    bell = Doorbell()
    bell.ring()
    bell.clear()
    assert bell.wait(0.01) is False
    bell.ring()
    assert bell.wait(0.01) is True


def test_a_ring_from_another_thread_wakes_the_sleeper() -> None:
    """A thread asleep on the bell wakes when another rings, long before its timeout."""
    bell = Doorbell()
    woke: list[float] = []

    def sleeper() -> None:
        t0 = time.monotonic()
        if bell.wait(30.0):
            woke.append(time.monotonic() - t0)

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.05)
    bell.ring()
    thread.join(10.0)
    assert woke and woke[0] < 10.0
