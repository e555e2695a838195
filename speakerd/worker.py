"""The one thread lifecycle: start once, stop idempotently, never lose a thread that will not die."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Worker:
    """Owns one named daemon thread running `target` until `stopping` is set.

    stop() sets the flag, nudges the thread out of whatever it blocks on, and joins with a
    timeout. A thread that does not die is logged and *kept*: start() then refuses to start a
    second one, because two threads would own the same device or socket.
    """

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self.name = name
        self._target = target
        self.stopping = threading.Event()  # set by stop(); the owner's loop watches it
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start the thread unless it runs already; False if a stuck old one is still alive."""
        if self._thread is not None:
            if self._thread.is_alive():
                if self.stopping.is_set():
                    log.error("%s: the previous thread is still alive; not starting another",
                              self.name)
                    return False
                return True
            self._thread = None
        self.stopping.clear()
        self._thread = threading.Thread(target=self._target, name=self.name, daemon=True)
        self._thread.start()
        return True

    def stop(self, nudge: Callable[[], object] | None = None, timeout: float = 2.0) -> bool:
        """Stop and join; True when the thread is gone (or never ran), False if it is stuck."""
        self.stopping.set()
        if nudge is not None:
            nudge()
        thread = self._thread
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(timeout)
        if thread.is_alive():
            log.warning("%s thread did not stop within %.1f s", self.name, timeout)
            return False
        self._thread = None
        return True

    def alive(self) -> bool:
        """Whether the thread is running (a stuck one counts)."""
        return self._thread is not None and self._thread.is_alive()

    def is_current(self) -> bool:
        """Whether the caller runs on this worker's thread."""
        return self._thread is threading.current_thread()
