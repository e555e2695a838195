"""What the service manager is told: the status line (state, missing devices, last error) and the
watchdog's beat."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from .events import DeviceChanged, State

# systemd shows STATUS= on one line of `systemctl status`; longer text only gets cut there.
MAX_STATUS = 200


class StatusSink(Protocol):
    def status(self, text: str) -> None: ...
    def watchdog(self) -> None: ...


def status_text(state: State, devices: Mapping[str, str], last_error: str) -> str:
    """The one status line: the state, each missing device with its problem, the last error."""
    text = str(state)
    if devices:
        text += "; " + "; ".join(f"{d}: {m}" for d, m in sorted(devices.items()))
    if last_error:
        text += f"; last error: {last_error}"
    return text[:MAX_STATUS]


class StatusLine:
    """The devices missing now and when the watchdog was last petted; the session thread alone
    calls it."""

    def __init__(self, sink: StatusSink | None, watchdog_interval: float | None,
                 clock: Callable[[], float]) -> None:
        self._sink = sink
        self._interval = watchdog_interval
        self._clock = clock
        self._last_watchdog = 0.0
        self._devices: dict[str, str] = {}  # device -> why it is unavailable

    def device_changed(self, ev: DeviceChanged) -> None:
        """A device went missing or came back (the session logs it)."""
        if ev.ok:
            self._devices.pop(ev.device, None)
        else:
            self._devices[ev.device] = ev.message

    def publish(self, state: State, last_error: str) -> None:
        if self._sink is not None:
            self._sink.status(status_text(state, self._devices, last_error))

    def watchdog_due(self) -> float | None:
        """When the watchdog must next be petted (None without a watchdog)."""
        if not self._interval or self._sink is None:
            return None
        return self._last_watchdog + self._interval

    def pet_watchdog(self) -> None:
        self._last_watchdog = self._clock()
        if self._sink is not None:
            self._sink.watchdog()
