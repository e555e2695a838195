"""The one retry schedule: delays that double up to a ceiling, with jitter."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def exponential_backoff(initial: float, maximum: float, *, jitter: float = 0.2,
                        rng: Callable[[], float] = random.random) -> Iterator[float]:
    """initial, 2×initial, 4×initial … capped at maximum, each scaled by 1 ± jitter.

    The jitter keeps a fleet of speakers that lost the same server from retrying in step;
    tests pass an rng that returns 0.5 to get the bare schedule.
    """
    delay = initial
    while True:
        yield delay * (1.0 - jitter + 2.0 * jitter * rng())
        delay = min(delay * 2, maximum)


def device_backoff(rng: Callable[[], float] = random.random) -> Iterator[float]:
    """How often a missing audio device is looked for again: 0.5 s doubling to 10 s."""
    return exponential_backoff(0.5, 10.0, rng=rng)
