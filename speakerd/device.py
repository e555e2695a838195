"""One audio device held by its thread: opened, lost and reopened with backoff, each outage told once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

from .audio import AudioDeviceError
from .backoff import device_backoff


class _Closable(Protocol):
    def close(self) -> None: ...


D = TypeVar("D", bound=_Closable)


class DeviceSlot(Generic[D]):
    """Owns the handle of one device for the one thread that uses it, and the outage around it.

    An outage (a failed open, or a device lost mid-use) is reported to `on_device` once, however
    long it lasts and however often the open is retried; the device's return is reported once
    too. The retries follow one backoff until the owner says the device works again. The log
    lines go to the owner's logger: they read as the microphone's or the speaker's own.
    """

    def __init__(self, name: str, kind: str, open_device: Callable[[], D], *, log: logging.Logger,
                 backoff: Callable[[], Iterator[float]] | None = None,
                 on_device: Callable[[bool, str], None] | None = None):
        self._name = name  # "microphone": the word the log lines use
        self._kind = kind  # "capture": the word for the device in a failure to close it
        self._open = open_device
        self._log = log
        self._backoff = backoff or device_backoff
        self._on_device = on_device
        self.handle: D | None = None
        self._outage = False  # reported down and not reported back yet
        self._delays: Iterator[float] | None = None
        self._closed_xruns = 0

    def open(self) -> D | None:
        """Try to open the device once: the handle, or None while it is missing."""
        try:
            self.handle = self._open()
        except AudioDeviceError as exc:
            # The session logs the one user-facing line for this outage; each retry is a debug
            # line only, however long the device is missing.
            self._log.debug("%s unavailable: %s", self._name, exc)
            if not self._outage:  # a loss was reported already
                self._report(False, f"{exc} ({exc.key})")
            self._outage = True
            return None
        if self._outage:
            self._log.info("%s back", self._name)
            self._report(True, "")
        self._outage = False
        return self.handle

    def lose(self, exc: AudioDeviceError) -> None:
        """The device failed mid-use: close it and report the outage (the session logs it)."""
        self._log.debug("%s lost: %s", self._name, exc)
        self.close()
        self._report(False, f"{exc} ({exc.key})")
        self._outage = True

    def next_delay(self) -> float:
        """Seconds to wait before the next open: the outage's backoff, started on first use."""
        if self._delays is None:
            self._delays = self._backoff()
        return next(self._delays)

    def reset_backoff(self) -> None:
        """The device works: the next outage starts its backoff afresh."""
        self._delays = None

    def close(self) -> None:
        """Close the handle, if any, keeping its xrun count."""
        if self.handle is not None:
            self._closed_xruns += self.handle_xruns()
            try:
                self.handle.close()
            except Exception:  # a dead device can fail to close in many ways; it is gone either way
                self._log.debug("closing the %s device failed", self._kind, exc_info=True)
            self.handle = None

    def handle_xruns(self) -> int:
        """Xruns of the device open now (0 when none is, or it does not count them)."""
        return int(getattr(self.handle, "xruns", 0))

    @property
    def xruns(self) -> int:
        """Xruns over every device opened so far."""
        return self._closed_xruns + self.handle_xruns()

    def _report(self, ok: bool, message: str) -> None:
        if self._on_device is not None:
            try:
                self._on_device(ok, message)
            except Exception:  # a broken callback must not kill the device's thread
                self._log.exception("on_device callback failed")
