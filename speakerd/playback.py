"""Whether the agent's reply still sounds: the speaker's reports, the drain grace, the stall check."""

from __future__ import annotations

# How long `speaking` waits after local playback ran dry before it decides the reply is over
# when the agent did not mark it complete. Long enough to ride out a pause between two of the
# agent's sentences (ending early would open the mic under the agent's voice in half duplex);
# the mark is missing only when something went wrong.
DRAIN_GRACE = 1.5
# Speaking with no period written for this long: the playback device wedged in a write.
SPEAKING_STALL = 5.0


class ReplyTracker:
    """The playback facts of the current reply; the session thread alone feeds and asks it."""

    def __init__(self) -> None:
        self.playing = False            # agent audio is sounding, as the speaker reported it
        self._drained_at: float | None = None  # when it ran dry without the agent's end mark
        self._progress = (0, 0.0)       # the speaker's periods written, and when they last grew

    def started(self, progress: int, now: float) -> None:
        """The speaker began playing agent audio; `progress` is its periods written so far."""
        self.playing = True
        self._drained_at = None
        self._progress = (progress, now)

    def stopped(self) -> None:
        """The speaker ran dry or was interrupted: nothing sounds now (a drain may still resume)."""
        self.playing = False

    def ran_dry(self, now: float) -> None:
        """Audio ran out with no end mark: the reply counts as over after the grace."""
        self._drained_at = now

    def silent(self) -> None:
        """Whatever played is over or cut off: no drain to wait for."""
        self.playing = False
        self._drained_at = None

    def over_at(self) -> float | None:
        """When a reply that ran dry counts as over, if one did."""
        return None if self._drained_at is None else self._drained_at + DRAIN_GRACE

    def stall_check_at(self, speaking: bool) -> float | None:
        """When to look whether the speaker still writes: only while it should be speaking."""
        return self._progress[1] + SPEAKING_STALL if speaking and self.playing else None

    def stalled(self, progress: int, now: float) -> bool:
        """Whether the speaker wrote nothing since the last look; progress restarts the wait."""
        if progress != self._progress[0]:
            self._progress = (progress, now)
            return False
        return True
