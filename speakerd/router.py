"""Audio between the devices and the current link, and where each reply starts."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from . import protocol
from .audio import QueueFull

log = logging.getLogger(__name__)


class LinkAudio(Protocol):
    """The uplink half of an agent link (AgentLink), and a way to drop it past a limit."""
    def send_audio(self, pcm: bytes) -> None: ...
    def fail(self, reason: str) -> None: ...


class ReplyPlayer(Protocol):
    """The playback half the router drives (Speaker)."""
    def begin_reply(self) -> int: ...
    def play(self, pcm: bytes) -> bool: ...
    def end_reply(self) -> None: ...
    def interrupt(self) -> None: ...


class Recorder(Protocol):
    """Diagnostic takes of each uplink turn and each reply (WavRecorder)."""
    def begin(self, stream: str) -> None: ...
    def add(self, stream: str, pcm: bytes) -> None: ...
    def end(self, stream: str) -> object: ...


class Router:
    """Routes audio mic → link and link → speaker, and marks where each reply starts.

    Its receive half runs on the link's receive thread, in arrival order with the audio frames:
    a reply marker handled later on the session thread would let audio of the old reply through.
    The session thread only swaps the current link.
    """

    def __init__(self, speaker: ReplyPlayer, recorder: Recorder | None = None) -> None:
        self._speaker = speaker
        self.recorder = recorder  # debug WAV takes, or None
        # Guards _link and the reply flags below, written by the session thread (reset) and by the
        # current link's receive thread (events). The check "is this my link" and the act on
        # the event happen in one step under it: otherwise an old link's event that passed the
        # check just before a swap could still change how the new link's first reply starts.
        self._lock = threading.Lock()
        self._link: LinkAudio | None = None  # only audio of this link reaches the speaker
        # A reply starts with the first assistant text (or AgentStartedSpeaking) after the
        # user's text; later sentences of an interrupted reply must not reopen playback.
        self._awaiting_reply = True
        # Audio counts only after the link's SettingsApplied: a server that speaks before it
        # accepted our settings (the audio format among them) is not one to play.
        self._applied = False
        # The user took the floor (a press, or the server heard them): no audio plays until a
        # new reply begins, however late the old reply's audio comes.
        self._barged = False

    @property
    def link(self) -> LinkAudio | None:
        return self._link

    def reset(self, link: LinkAudio | None) -> None:
        """Session thread: route to this link from now on (before its threads start)."""
        with self._lock:
            self._link = link
            self._awaiting_reply = True
            self._applied = False
            self._barged = False

    def barge_in(self) -> None:
        """Session thread: the user took the floor (a press mid-reply or while the agent thinks).

        The reply in progress is silenced by the speaker; the one the agent may still be about
        to start for the old turn is not begun either, until the user's next transcript.
        """
        with self._lock:
            self._awaiting_reply = False
            self._barged = True
        self._speaker.interrupt()

    def uplink(self, pcm: bytes) -> None:
        """Mic thread: one frame up to the current link, if any (never blocks)."""
        # One read, no lock: a frame that reaches a link just replaced is harmless, since a
        # closed link drops what it is given.
        link = self._link
        if link is not None:
            link.send_audio(pcm)
            if self.recorder is not None:
                self.recorder.add("uplink", pcm)

    def audio(self, link: object, pcm: bytes) -> None:
        """Receive thread: agent audio of `link`; played only if it is the current link."""
        overflow = ""
        with self._lock:
            try:
                played = (link is self._link and self._applied and not self._barged
                          and self._speaker.play(pcm))
            except QueueFull as exc:
                played, overflow = False, str(exc)
            current = self._link
        if overflow and current is not None:
            # A flood of audio: drop the link (the session reconnects as after any drop).
            current.fail(f"the agent sent audio faster than it plays: {overflow}")
            return
        if played and self.recorder is not None:
            self.recorder.add("reply", pcm)

    def record_turn(self, on: bool) -> None:
        """Session thread: start or end the debug take of what the user's turn sent up."""
        if self.recorder is not None:
            (self.recorder.begin if on else self.recorder.end)("uplink")

    def event(self, link: object, event: protocol.ServerEvent) -> None:
        """Receive thread: act on a server event in arrival order, if `link` is current."""
        with self._lock:
            if link is not self._link:
                return
            begun = ended = False
            match event:
                case protocol.SettingsApplied():
                    self._applied = True
                case protocol.UserStartedSpeaking():
                    # The agent heard the user: stop its voice now, not after the session wakes.
                    # The server abandons that reply, so its late audio is not played either.
                    self._barged = True
                    self._speaker.interrupt()
                case protocol.ConversationText(role="user"):
                    self._awaiting_reply = True
                case protocol.ConversationText() | protocol.AgentStartedSpeaking():
                    if self._awaiting_reply:
                        self._awaiting_reply = False
                        self._barged = False
                        self._speaker.begin_reply()
                        begun = True
                case protocol.AgentAudioDone():
                    self._speaker.end_reply()
                    ended = True
        if self.recorder is not None:
            if begun:
                self.recorder.begin("reply")
            if ended:
                self.recorder.end("reply")
