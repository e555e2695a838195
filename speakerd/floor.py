"""The conversation's state and whose turn it is, and what shows them: the LEDs, the status line,
and the mic's gate and uplink mode."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .config import Config
from .connection import Connection
from .events import State
from .router import Router
from .seams import LedControl, MicControl
from .statusline import StatusLine
from .uplink import UplinkMode, uplink_policy

log = logging.getLogger(__name__)


class Floor:
    """The state, the turn-taking flags and the state's own timeout; the session thread alone
    changes them, and a new state shows at once."""

    def __init__(self, cfg: Config, link: Connection, mic: MicControl, leds: LedControl,
                 router: Router, status_line: StatusLine, clock: Callable[[], float],
                 on_state: Callable[[State], None] | None = None) -> None:
        self.cfg = cfg  # the session's (it hands over a reloaded one)
        self._link = link
        self._mic = mic
        self._leds = leds
        self._router = router
        self._status_line = status_line
        self._clock = clock
        self._on_state = on_state
        self.state = State.IDLE
        self.last_error = ""
        self.held = False               # hold mode: the button is down
        self.conversation = False       # toggle mode: a hands-free conversation is on
        self.handing_over = False       # hold mode: released while connecting
        self.heard = False              # the server heard something of this turn
        self.hangup_after_reply = False  # the agent ended the conversation: after its reply
        self.deadline: float | None = None  # the current state's own timeout (thinking, error)
        self.last_activity = clock()
        self.gate_live: bool | None = None  # what the mic was last told (only changes are sent)
        self._uplink: UplinkMode | None = None
        self._batched = False  # whether the mic batches live frames, as it was last told

    @property
    def connected(self) -> bool:
        """Whether a link's settings are applied now."""
        return self._link.link is not None and self._link.ready

    def touch(self) -> None:
        """Something happened: the idle timeout starts afresh."""
        self.last_activity = self._clock()

    def wait_for_reply(self) -> None:
        """The wait for the agent's reply starts afresh."""
        self.deadline = self._clock() + self.cfg.session.reply_timeout

    def set_state(self, state: State) -> None:
        if state is self.state:
            return
        log.info("state %s → %s", self.state, state)
        if self.state is State.LISTENING:
            self._router.record_turn(False)
        self.state = state
        self.touch()
        # Each state's own timeout starts afresh (the error hold is set by LinkKeeper.fail()).
        self.deadline = self._clock() + self.cfg.session.reply_timeout if state is State.THINKING \
            else None
        # The microphone follows first, so what the LEDs say is already true: listening means
        # the gate is open, speaking that it is shut (half duplex).
        self.apply_audio()
        self.show(state)

    def go(self, state: State) -> None:
        """Set the state, and the mic follows whatever changed: the state or only the flags."""
        if state is self.state:
            self.apply_audio()
        else:
            self.set_state(state)  # which applies the audio first

    def show(self, state: State) -> None:
        self._leds.show(state)
        self.publish_status()
        if self._on_state is not None:
            self._on_state(state)

    def publish_status(self) -> None:
        self._status_line.publish(self.state, self.last_error)

    def new_link(self) -> None:
        """A link was opened: its uplink mode is sent again."""
        self._uplink = None

    def apply_audio(self) -> None:
        """Derive the mic gate and the uplink mode from the state (only changes are sent)."""
        policy = uplink_policy(
            hold=self.cfg.button.mode == "hold", full_duplex=self.cfg.audio.duplex == "full",
            state=self.state, held=self.held, conversation=self.conversation,
            linked=self._link.link is not None, ready=self.connected,
            handing_over=self.handing_over)
        if policy.live != self.gate_live:
            self.gate_live = policy.live
            self._mic.set_gate(policy.live)
        if policy.mode != self._uplink:
            self._uplink = policy.mode
            self._mic.set_uplink(policy.mode)
        if policy.batched != self._batched:
            self._batched = policy.batched
            self._mic.set_batched(policy.batched)
