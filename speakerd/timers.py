"""The session's deadlines as pure functions: how long its thread may sleep, which action is due."""

from __future__ import annotations

from collections.abc import Callable, Iterable

# The longest inbox wait: the loop otherwise sleeps until its next deadline, so an idle speaker
# wakes rarely; this bound only guards against a deadline computed wrong.
TICK = 2.0
# The shortest wait: a deadline already past still yields the thread for a moment rather than
# spinning on the inbox.
MIN_WAIT = 0.005

Action = Callable[[], None]
Timer = tuple[float | None, Action]  # when (None: not pending) and what to do then


def pending(timers: Iterable[Timer]) -> list[tuple[float, Action]]:
    """The timers that have a deadline now."""
    return [(at, act) for at, act in timers if at is not None]


def next_wait(deadlines: Iterable[float], now: float) -> float:
    """Seconds until the earliest deadline, within [MIN_WAIT, TICK]; TICK with none pending."""
    waits = [at - now for at in deadlines]
    return min(TICK, max(MIN_WAIT, min(waits))) if waits else TICK


def first_due(timers: Iterable[tuple[float, Action]], now: float) -> Action | None:
    """The first listed action whose deadline has come, if any (the list's order is priority)."""
    return next((act for at, act in timers if now >= at), None)
