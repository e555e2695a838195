"""The audio route between the devices and the current link, and where each reply starts."""

from __future__ import annotations

from typing import Any

from . import protocol


class Router:
    """Routes audio between the devices and the current link, and marks where a reply starts.

    Its receive half runs on the socket's receive thread, in arrival order with the audio
    frames, because a reply marker handled later on the session thread would let audio of the
    old reply through. The session thread only swaps the current link.
    """

    def __init__(self, speaker: Any, recorder: Any = None) -> None:
        self._speaker = speaker
        self.recorder = recorder  # debug WAV takes of each uplink turn and each reply, or None
        self.link: object | None = None  # only audio of the current link reaches the speaker
        # A reply starts with the first assistant text (or AgentStartedSpeaking) after the user's
        # text; later sentences of an interrupted reply must not reopen the gate.
        self._awaiting_reply = True

    def reset(self, link: object | None) -> None:
        self.link = link
        self._awaiting_reply = True

    def uplink(self, pcm: bytes) -> None:
        """Mic thread: one frame up to the current link, if any (never blocks)."""
        link = self.link  # one read: the session may swap it at any moment
        if link is not None:
            link.send_audio(pcm)  # type: ignore[attr-defined]
            if self.recorder is not None:
                self.recorder.add("uplink", pcm)

    def audio(self, link: object, pcm: bytes) -> None:
        if link is self.link and self._speaker.play(pcm) and self.recorder is not None:
            self.recorder.add("reply", pcm)

    def _begin_reply(self) -> None:
        self._awaiting_reply = False
        self._speaker.begin_reply()
        if self.recorder is not None:
            self.recorder.begin("reply")

    def record_turn(self, on: bool) -> None:
        """Session thread: start or end the debug take of what the user's turn sent up."""
        if self.recorder is not None:
            (self.recorder.begin if on else self.recorder.end)("uplink")

    def event(self, link: object, event: protocol.ServerEvent) -> None:
        if link is not self.link:
            return
        if isinstance(event, protocol.UserStartedSpeaking):
            # The agent heard the user: stop its voice now, not after the session thread wakes.
            self._speaker.interrupt()
        elif isinstance(event, protocol.ConversationText):
            if event.role == "user":
                self._awaiting_reply = True
            elif self._awaiting_reply:
                self._begin_reply()
        elif isinstance(event, protocol.AgentStartedSpeaking):
            if self._awaiting_reply:
                self._begin_reply()
        elif isinstance(event, protocol.AgentAudioDone):
            self._speaker.end_reply()
            if self.recorder is not None:
                self.recorder.end("reply")
