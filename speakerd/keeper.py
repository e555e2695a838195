"""Keeping the session's link: opening it, its settings applied, its drop and the offline window,
the retries, the idle close, and the error state when the link cannot be had."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .connection import Connection
from .events import AgentDisconnected, State
from .floor import Floor
from .playback import ReplyTracker
from .seams import SpeakerControl
from .textsafe import shown
from .turnend import TurnEnd

log = logging.getLogger(__name__)

# How long the error pattern stays up before the speaker is usable again.
ERROR_HOLD = 3.0

_BUSY = (State.CONNECTING, State.LISTENING, State.THINKING, State.SPEAKING)


class LinkKeeper:
    """What the link's life does to the conversation; the session thread alone calls it."""

    def __init__(self, floor: Floor, link: Connection, turn_end: TurnEnd, speaker: SpeakerControl,
                 reply: ReplyTracker, clock: Callable[[], float]) -> None:
        self._floor = floor
        self._link = link
        self._reconnect = link.reconnect
        self._turn_end = turn_end
        self._speaker = speaker
        self._reply = reply
        self._clock = clock

    def open(self) -> bool:
        """Open a link; False when none could be (the error is shown instead)."""
        problem = self._link.open()
        if problem:
            self.fail(problem)
            return False
        self._floor.new_link()
        return True

    def retry(self) -> None:
        """The reconnect attempt is due."""
        self._reconnect.next_try = None
        if self._link.link is None and self.open():  # a press may have reconnected already
            self._floor.apply_audio()

    def close(self) -> None:
        self._turn_end.drop()  # a turn of this link is not ended on the next one
        self._link.close()
        self._floor.apply_audio()

    def hang_up(self) -> None:
        """Close the link and forget the conversation: the next link starts a new one."""
        self.close()
        self._link.forget_conversation()

    def ready(self) -> None:
        """The link's settings are applied: whoever waited for it has the floor."""
        floor = self._floor
        outage = self._link.applied()
        if outage is not None:
            log.info("reconnected after %.1f s", outage)
        handed_over = False
        if floor.state in (State.CONNECTING, State.OFFLINE):
            if floor.held or (floor.conversation and not floor.handing_over):
                floor.set_state(State.LISTENING)
            elif floor.handing_over:
                floor.handing_over = False
                floor.set_state(State.THINKING)
                handed_over = True
            else:
                floor.set_state(State.IDLE)
        floor.apply_audio()
        if handed_over:
            # Streaming now flushed the connect buffer into the outbox: the turn's audio first.
            self._turn_end.owe()

    def down(self, event: AgentDisconnected) -> None:
        """The current link is gone: a refused key fails, a conversation goes offline."""
        floor = self._floor
        was_ready = floor.connected
        self._turn_end.drop()  # the turn went with the link
        self._link.forget()
        if event.requested:
            floor.apply_audio()
            return
        if event.status in (401, 403):
            delay = self._reconnect.key_refused()
            log.error("%s; check the key (next try allowed in %.0f s)", event.reason, delay)
            self.fail(f"{event.reason}; check the key (next try allowed in {delay:.0f} s)")
            return
        log.warning("agent link down: %s", shown(event.reason, 200))
        floor.last_error = event.reason
        if floor.state in _BUSY or floor.conversation or floor.state is State.OFFLINE:
            self._go_offline(event.reason)
        else:
            # A warm socket closed while idle: nothing to recover, the next press reconnects.
            log.info("idle connection closed; the next press reconnects")
            if was_ready:
                floor.set_state(State.IDLE)
            floor.apply_audio()

    def connect_timed_out(self) -> None:
        reason = "the agent did not apply the settings in time"
        log.warning("%s", reason)
        self._link.close()
        if self._floor.state in (State.CONNECTING, State.OFFLINE) or self._floor.conversation:
            self._go_offline(reason)
        else:
            self._floor.apply_audio()  # nobody waits for it (a toggle press ended the conversation)

    def _go_offline(self, reason: str) -> None:
        floor = self._floor
        # The rest of any reply died with the link: the device must not talk while it shows
        # offline (and in half duplex the mic may open below).
        self._speaker.interrupt()
        self._reply.silent()
        floor.held = False
        floor.handing_over = False
        delay = self._reconnect.dropped()
        if delay is None:
            log.warning("giving up reconnecting after %.0f s: %s", self._reconnect.window, reason)
            floor.conversation = False
            floor.go(State.IDLE)
        else:
            log.info("reconnecting in %.1f s", delay)
            floor.go(State.OFFLINE)

    def idle_close_at(self) -> float | None:
        """When inactivity closes the socket: idle, or listening with nobody holding the button
        (a hands-free conversation, or full duplex opened by the voice); None while it may not."""
        floor = self._floor
        due = floor.connected and (floor.state is State.IDLE
                                   or (floor.state is State.LISTENING and not floor.held))
        return floor.last_activity + floor.cfg.session.idle_timeout if due else None

    def close_idle(self) -> None:
        log.info("closing the idle connection after %.0f s", self._clock() - self._floor.last_activity)
        self.hang_up()
        self._floor.go(State.IDLE)

    def fail(self, message: str) -> None:
        """Something went wrong that the user must see: everything stops, the error shows."""
        floor = self._floor
        floor.last_error = message
        self._speaker.interrupt()
        self._reply.silent()
        self._speaker.chime("error")
        floor.held = False
        floor.conversation = False
        floor.handing_over = False
        self._reconnect.cancel()
        self.hang_up()
        floor.go(State.ERROR)
        floor.deadline = self._clock() + ERROR_HOLD
