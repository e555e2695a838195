"""When to try the agent again: backoff after a drop, the offline window, a refused key's pause."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from .backoff import exponential_backoff
from .config import SessionConfig

# How long to keep trying to reconnect after a drop before going back to idle.
RECONNECT_WINDOW = 120.0


class Reconnect:
    """The reconnect policy of one session; the session thread alone calls it."""

    def __init__(self, cfg: SessionConfig, clock: Callable[[], float],
                 rng: Callable[[], float] = random.random) -> None:
        self._cfg = cfg
        self._clock = clock
        self._rng = rng
        self.offline_since: float | None = None
        self.next_try: float | None = None  # when the next attempt is due (the session clears it)
        self._delays: Iterator[float] | None = None
        self._auth_failures = 0
        self.key_retry_at = 0.0  # a refused key is not tried again before this

    def dropped(self) -> float | None:
        """A link was lost mid-conversation: the delay to the next try, None once the window is over."""
        now = self._clock()
        if self.offline_since is None:
            self.offline_since = now
            self._delays = exponential_backoff(self._cfg.reconnect_initial, self._cfg.reconnect_max,
                                               rng=self._rng)
        assert self._delays is not None
        if now - self.offline_since > RECONNECT_WINDOW:
            self.cancel()
            return None
        delay = next(self._delays)
        self.next_try = now + delay
        return delay

    def connected(self) -> float | None:
        """The settings were applied: forget the outage; returns how long it lasted, if any."""
        outage = None if self.offline_since is None else self._clock() - self.offline_since
        self.cancel()
        self._auth_failures = 0
        return outage

    def cancel(self) -> None:
        """Nobody waits for the conversation any more: no further attempts."""
        self.offline_since = None
        self.next_try = None
        self._delays = None

    def key_refused(self) -> float:
        """The agent refused the key: how long until a press may try again (doubling)."""
        self._auth_failures += 1
        delay = min(self._cfg.reconnect_initial * 2 ** self._auth_failures, self._cfg.reconnect_max)
        self.key_retry_at = self._clock() + delay
        self.cancel()
        return delay

    def key_blocked(self) -> bool:
        """Whether a refused key is still in its pause."""
        return self._clock() < self.key_retry_at

    @property
    def window(self) -> float:
        return RECONNECT_WINDOW
