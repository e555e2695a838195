"""How much a playback device has room for, waited for in a sleep an interrupt can cut short."""

from __future__ import annotations

from collections.abc import Callable

from .audio import AudioFormat, Sink


def wait_for_room(sink: Sink, want: int, fmt: AudioFormat, *, nap: Callable[[float], bool],
                  clock: Callable[[], float]) -> int:
    """Wait until the device has room, in `nap` rather than in write(); returns how many bytes
    (whole periods, at most `want`) to write now, 0 when `nap` says to stop.

    A blocking write() cannot be cut short; this wait can: interrupt() wakes `nap`, so the
    drop happens within a millisecond or so of the request. With a backlog the writes are
    half a buffer each, so a long buffer costs few wake-ups. A sink that does not say its
    buffer size is written one period at a time (write() blocks instead).
    """
    buffer = int(getattr(sink, "buffer_frames", 0) or 0)
    period = fmt.period_frames
    if buffer < 2 * period:
        return min(want, fmt.period_bytes)
    fb = fmt.frame_bytes
    # What is worth a wake-up: half the buffer (whole periods), or all that is wanted.
    target = min(want, max(period, buffer // 2 // period * period) * fb)
    deadline = clock() + 4 * buffer / fmt.rate  # a stuck device: let write() block
    while True:
        free = (buffer - sink.delay_frames()) // period * period * fb
        if free >= target:
            return min(want, free)
        if clock() >= deadline:
            return min(want, fmt.period_bytes)
        # Sleep about as long as the device needs to play out the missing room.
        if not nap(max(0.001, (target - free) / fb / fmt.rate)):
            return 0
