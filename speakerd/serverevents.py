"""What each of the agent's messages does to the conversation (the router has its audio)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from . import protocol
from .connection import Connection
from .events import State
from .floor import Floor
from .keeper import LinkKeeper
from .playback import ReplyTracker
from .textsafe import shown
from .turns import TurnLog

log = logging.getLogger(__name__)


class ServerEvents:
    """Applies the current link's decoded events; the session thread alone calls it."""

    def __init__(self, floor: Floor, link: Connection, keeper: LinkKeeper, reply: ReplyTracker,
                 turns: TurnLog, clock: Callable[[], float],
                 on_text: Callable[[str, str], None] | None = None) -> None:
        self._floor = floor
        self._link = link
        self._keeper = keeper
        self._reply = reply
        self._turns = turns
        self._clock = clock
        self._on_text = on_text

    def handle(self, ev: protocol.ServerEvent) -> None:
        floor = self._floor
        match ev:
            case protocol.SettingsApplied():
                if self._link.pending:
                    self._keeper.ready()
            case protocol.ConversationText():
                self._text(ev)
            case protocol.UserStartedSpeaking():
                # The server heard our microphone (the router has already silenced the speaker):
                # the user is talking. With the gate shut it can only be a late onset of speech
                # sent before the release, which changes nothing.
                floor.heard = True
                if floor.state in (State.IDLE, State.THINKING, State.SPEAKING) and floor.gate_live:
                    self._reply.silent()
                    floor.go(State.LISTENING)
            case protocol.AgentStartedSpeaking():
                self._turns.agent_started(ev)
            case protocol.FunctionCallRequest(calls=calls):
                self._link.calls_requested(calls)
            case protocol.FunctionCallCancelled(ids=ids):
                self._link.calls_cancelled(ids)
            case protocol.AgentError(code=code, description=description):
                log.error("agent error %s: %s", shown(code) or "(no code)", shown(description, 300))
                self._keeper.fail(f"agent error {shown(code, 60)}: {shown(description, 120)}".strip())
            case protocol.AgentWarning(code=protocol.FORCE_END_TURN_UNSUPPORTED):
                if self._link.force_end_turn_refused():  # once per link, not once per turn
                    log.warning("the agent does not take ForceEndTurn on this connection (its "
                                "listen provider is not Flux): its own end-of-speech detection "
                                "ends each turn")
            case protocol.AgentWarning(code=code, description=description):
                log.warning("agent warning %s: %s", shown(code) or "(no code)",
                            shown(description, 300))
            case protocol.UnknownEvent(type=kind):
                log.info("ignored an unknown message type from the agent: %s", shown(kind, 64))
            case protocol.InjectionRefused(message=message):
                log.info("the agent refused an injected message: %s", shown(message))
            case _:
                pass  # AgentAudioDone is the router's (it marks the reply's end at the speaker)
        if floor.state is State.THINKING and floor.deadline is not None:
            # Any sign of life from the agent restarts the wait for its reply.
            floor.wait_for_reply()

    def _text(self, ev: protocol.ConversationText) -> None:
        # Transcripts stay out of the system journal at INFO: they are the user's words.
        log.debug("%s: %s", shown(ev.role, 20), shown(ev.content, 300))
        if self._on_text is not None:
            self._on_text(ev.role, ev.content)
        self._link.remember(ev.role, ev.content)
        if ev.role == "user":
            self._floor.heard = True
        if ev.role == "user" and self._floor.state is State.LISTENING and not self._floor.held:
            # The agent's end-of-turn: hands-free, or an utterance with the button up.
            self._turns.speech_ended(self._clock())
            self._floor.go(State.THINKING)
