"""The turn-end handshake with the mic: a release's ForceEndTurn waits for the words before it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .seams import MicControl

log = logging.getLogger(__name__)

# A release's ForceEndTurn waits for the mic to hand over the words captured before it (a few
# milliseconds); a mic that does not say so within this (stuck, or its device gone) is not waited for.
END_TURN_WAIT = 0.5


class TurnEnd:
    """The turn end owed to the agent, if any, and the mic's number for it; the session thread
    alone calls it."""

    def __init__(self, mic: MicControl, send: Callable[[], None], clock: Callable[[], float]) -> None:
        self._mic = mic
        self._send = send  # ends the turn on the current link (ForceEndTurn where it can)
        self._clock = clock
        self.at: float | None = None  # a turn end is owed: sent by then at the latest
        self._asked = 0               # the mic's number for the turn end it was asked for

    def owe(self) -> None:
        """End the user's turn once the mic has handed over the words captured before the
        release: sent ahead of them, ForceEndTurn would cut the turn short, and the server would
        take the tail for a new utterance that barges in on the reply. (Whatever the gate does:
        in full duplex it stays open.)"""
        self._asked = self._mic.ask_turn_end()
        self.at = self._clock() + END_TURN_WAIT

    def audio_sent(self, number: int) -> None:
        """The mic handed over the words before its turn end `number`."""
        # An answer to an older ask (a quick re-press) does not cover this turn's words.
        if self.at is not None and number >= self._asked:
            self.send_owed()

    def send_owed(self) -> None:
        """End the owed turn now, if one is owed (a new press: best effort, before its words)."""
        if self.at is not None:
            self.at = None
            self._send()

    def timed_out(self) -> None:
        log.info("the microphone did not confirm the end of the turn within %.1f s; ending it "
                 "anyway", END_TURN_WAIT)
        self.send_owed()

    def drop(self) -> None:
        """The link went: a turn of it is not ended on the next one."""
        self.at = None
