"""The session's inbox: every event for the session thread, the agent's bounded in number."""

from __future__ import annotations

import queue
import threading

from .events import AgentEventReceived, Event

# Agent events waiting in the inbox. Only the network can outrun the session (button edges,
# playback and function results come at human or bounded rates), so past this many the agent's
# events are dropped and so is its link: it reconnects as after any drop. Nothing else is
# ever dropped, a button edge least of all.
MAX_QUEUED_AGENT_EVENTS = 1000


class Inbox:
    """Events posted from any thread, taken by the session thread; a flooding agent loses its link."""

    def __init__(self, limit: int = MAX_QUEUED_AGENT_EVENTS) -> None:
        # Posting must never block a gpiozero, audio or socket thread, so the queue has no
        # maxsize: the agent's events are counted instead (limit), and the lock guards that
        # count, which post() raises and get() lowers.
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._lock = threading.Lock()
        self._limit = limit
        self._agent_queued = 0
        self.peak = 0  # the most agent events ever waiting (figures)

    def post(self, event: Event) -> None:
        """Any thread: queue an event; never blocks. An agent event past the limit fails its link."""
        if isinstance(event, AgentEventReceived):
            with self._lock:
                full = self._agent_queued >= self._limit
                if not full:
                    self._agent_queued += 1
                    self.peak = max(self.peak, self._agent_queued)
            if full:
                fail = getattr(event.link, "fail", None)
                if callable(fail):
                    fail(f"the agent sent events faster than they can be handled "
                         f"({self._limit} waiting)")
                return
        self._queue.put(event)

    def wake(self) -> None:
        """Any thread: wake the session thread at once (a stop)."""
        self._queue.put(None)

    def get(self, timeout: float) -> Event | None:
        """Session thread: the next event, or None after `timeout` seconds or a wake()."""
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(event, AgentEventReceived):
            with self._lock:
                self._agent_queued -= 1
        return event
