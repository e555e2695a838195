"""sd_notify: readiness, status, watchdog and reload messages to systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# STATUS= is one line in `systemctl status`; a long text only wastes the datagram.
_STATUS_MAX = 200
# Seconds a send may wait for room in systemd's receive queue.
_SEND_TIMEOUT = 1.0


def _address(raw: str) -> str | None:
    """The address systemd gave: an absolute path, or '@name' in the abstract namespace."""
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None  # e.g. systemd ≥254's vsock: addresses, which a Pi service never gets


class Notifier:
    """Owns the datagram socket to systemd; every method is a no-op outside a Type=notify unit."""

    def __init__(self, environ: Mapping[str, str] = os.environ, *,
                 send_timeout: float = _SEND_TIMEOUT) -> None:
        raw = environ.get("NOTIFY_SOCKET", "")
        self._address = _address(raw) if raw else None
        if raw and self._address is None:
            log.debug("NOTIFY_SOCKET %r is not a path or an abstract socket; not notifying", raw)
        self._watchdog_usec = self._own_watchdog(environ)
        self._send_timeout = send_timeout
        # The session thread sends WATCHDOG/STATUS while the main thread sends READY/RELOADING:
        # the lock guards the lazily created socket and the once-only failure log.
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._failed_once = False

    @staticmethod
    def _own_watchdog(environ: Mapping[str, str]) -> int | None:
        """WATCHDOG_USEC if the watchdog is meant for this process (WATCHDOG_PID unset or ours)."""
        try:
            usec = int(environ.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        if usec <= 0:
            return None
        pid = environ.get("WATCHDOG_PID", "")
        if pid:
            try:
                if int(pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec

    @property
    def enabled(self) -> bool:
        """True when systemd is listening (NOTIFY_SOCKET was set to a usable address)."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half of WatchdogSec, as sd_watchdog_enabled(3) says."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self) -> bool:
        """Startup (or a reload) finished: Type=notify units become active only after this."""
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        """A one-line status shown by `systemctl status`."""
        # A newline would start another assignment (e.g. a forged READY=1); keep it one line.
        line = " ".join(text.split())[:_STATUS_MAX]
        return self.send(f"STATUS={line}")

    def watchdog(self) -> bool:
        """Proof of life; without it for WatchdogSec systemd kills and restarts the service."""
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """A reload began; READY=1 must follow when it is done (or has failed)."""
        # systemd ≥253 matches the reload to this timestamp (CLOCK_MONOTONIC, as it uses).
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown began, so systemd shows 'deactivating' rather than a hang."""
        return self.send("STOPPING=1")

    def send(self, message: str) -> bool:
        """Send one datagram of newline-separated assignments; False, never an exception, on failure."""
        if self._address is None:
            return False
        with self._lock:
            try:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    # A full receive queue blocks a datagram send; the session thread sends the
                    # watchdog, so bound the wait rather than stall the state machine.
                    sock.settimeout(self._send_timeout)
                    self._sock = sock
                self._sock.sendto(message.encode("utf-8"), self._address)
                return True
            except OSError as exc:
                # The service must run on even if systemd went away; say so once, quietly.
                if not self._failed_once:
                    self._failed_once = True
                    log.debug("sd_notify to %r failed: %s", self._address, exc)
                return False

    def close(self) -> None:
        """Release the socket; a later message opens a new one."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
