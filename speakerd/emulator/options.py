"""The emulator's knobs, and the records of what each connection sent and received."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TRANSCRIPTS = ("what is the weather like today", "tell me a joke",
                       "turn the volume down a little", "thank you, goodbye")


@dataclass
class EmulatorOptions:
    """The emulator's knobs; mutable so a test can change them between turns."""
    api_key: str = "emulator-key"
    idle_timeout: float = 10.0
    speech_threshold: float = 500.0
    end_of_speech: float = 0.6
    reply_latency: float = 0.05
    reply_pace: float = 10.0
    # Halfway through each reply, stop sending until a client playing at real time has drained
    # what it got (start + audio seconds sent so far, on the wall clock), then for reply_gap
    # seconds more, then send the rest at the same pace; a barge-in or a close ends the wait.
    reply_gap: float = 0.0
    reply_frame_ms: int = 40
    reply_seconds: float | None = None
    transcripts: list[str] = field(default_factory=lambda: list(DEFAULT_TRANSCRIPTS))
    agent_started_speaking: bool = True
    history: bool = True
    slip_frames: int = 0
    # An interrupted reply's AgentAudioDone is still sent, late: after the next user turn's
    # ConversationText, History and EndOfThought, the order observed on the real server.
    # False: it is never sent (the real server may skip it too).
    audio_done_after_interrupt: bool = True
    # Send UserStartedSpeaking twice at each speech onset, as the real server sometimes does.
    duplicate_user_started_speaking: bool = False
    strict_keys: bool = True  # reject unknown fields in client messages, as the real server does
    # False: a server that takes Flux settings but not its turn-taking: turns end by its own
    # end-of-speech detection and ForceEndTurn is answered with FORCE_END_TURN_UNSUPPORTED.
    flux_turns: bool = True
    record: bool = True  # keep every client frame (tests); the CLI turns it off for long runs
    # faults; drop_mid_reply, stall_mid_reply and error_then_close are one-shot: they reset
    # themselves when they fire, so a reconnecting client gets a healthy session.
    refuse_status: int | None = None
    settings_delay: float = 0.0
    drop_mid_reply: bool = False
    stall_mid_reply: bool = False
    error_then_close: str | None = None
    error_close_code: int | None = None  # after any Error; None: no status (client sees 1005)
    unknown_types: bool = False
    warnings: bool = False
    function_timeout: float = 5.0


@dataclass(frozen=True)
class RecordedFrame:
    """One frame the client sent, with its arrival time (time.monotonic())."""
    t: float
    kind: str  # "text" | "binary"
    data: bytes | str


@dataclass
class ReplyRecord:
    """One utterance the emulator spoke or began to speak; filled in as it streams."""
    kind: str  # "greeting" | "turn" | "inject" | "say"
    text: str
    audio: bytearray = field(default_factory=bytearray)
    frames: int = 0
    interrupted: bool = False
    done: bool = False
