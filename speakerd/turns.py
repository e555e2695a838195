"""The figures of one user turn and the INFO line that reports them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .protocol import AgentStartedSpeaking

log = logging.getLogger(__name__)


@dataclass
class Turn:
    """One press (or hands-free utterance) and what followed it, as the log reports it."""
    number: int
    press: float
    first_byte: float | None = None
    speech_end: float | None = None
    first_audio: float | None = None
    agent: AgentStartedSpeaking | None = None
    interrupt_to_silence: float | None = None
    underruns: int = 0
    logged: bool = False

    def line(self) -> str:
        parts = []
        if self.first_byte is not None:
            parts.append(f"press→first byte {_ms(self.first_byte - self.press)}")
        if self.speech_end is not None and self.first_audio is not None:
            parts.append(f"end of speech→first audio {_ms(self.first_audio - self.speech_end)}")
        if self.agent is not None and self.agent.total_latency is not None:
            parts.append(f"agent total {self.agent.total_latency:.2f} s (tts {_s(self.agent.tts_latency)}, "
                         f"ttt {_s(self.agent.ttt_latency)})")
        if self.interrupt_to_silence is not None:
            parts.append(f"interrupt→silence {_ms(self.interrupt_to_silence)}")
        parts.append(f"underruns {self.underruns}")
        return f"turn {self.number}: " + ", ".join(parts)

    def figures(self) -> dict[str, float | int | None]:
        """The same figures as plain data, in milliseconds (for `speakerd ctl status --json`)."""
        def ms(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round((a - b) * 1000, 1)
        return {"turn": self.number, "press_to_first_byte_ms": ms(self.first_byte, self.press),
                "speech_end_to_first_audio_ms": ms(self.first_audio, self.speech_end),
                "interrupt_to_silence_ms": None if self.interrupt_to_silence is None
                else round(self.interrupt_to_silence * 1000, 1),
                "underruns": self.underruns}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _s(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


# How long an interrupted turn's line waits for the speaker's interrupt→silence figure.
INTERRUPT_REPORT_WAIT = 0.5
# Turns kept for the status interface.
TURNS_KEPT = 100


class TurnLog:
    """The turns of one session: the current one, and the INFO line of each once it is over."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.turns: list[Turn] = []
        self.current: Turn | None = None
        self.started: float | None = None  # when the current turn began (the session's clock)
        # An interrupted turn waits (until the time given) for how fast its reply went quiet.
        self._interrupted: tuple[Turn, float] | None = None
        self._count = 0

    def begin(self, press: float, interrupting: bool) -> Turn:
        if interrupting and self.current is not None and not self.current.logged:
            self._interrupted = (self.current, self._clock() + INTERRUPT_REPORT_WAIT)
        else:
            self.log()
        self._count += 1
        self.current = Turn(self._count, press=press)
        self.started = self._clock()
        self.turns.append(self.current)
        del self.turns[:-TURNS_KEPT]
        return self.current

    def silenced(self, seconds: float) -> None:
        """The speaker reported how long an interrupt took to silence the reply."""
        turn = self._interrupted[0] if self._interrupted is not None else self.current
        if turn is not None:
            turn.interrupt_to_silence = seconds
        self.flush_interrupted()

    def flush_interrupted(self) -> None:
        if self._interrupted is not None:
            turn, self._interrupted = self._interrupted[0], None
            _log_line(turn)

    # What happened in the current turn, as the session hears of it (no turn: nothing to note).

    def uplink_started(self, t: float) -> None:
        """The mic's first frame went up the link."""
        if self.current is not None and self.current.first_byte is None:
            self.current.first_byte = t

    def speech_ended(self, t: float) -> None:
        """The user's turn ended: the release, or the agent's end-of-turn."""
        if self.current is not None:
            self.current.speech_end = t

    def agent_started(self, ev: AgentStartedSpeaking) -> None:
        if self.current is not None:
            self.current.agent = ev

    def audio_started(self, t: float) -> None:
        """The reply's first audio reached the speaker."""
        if self.current is not None and self.current.first_audio is None:
            self.current.first_audio = t

    def underran(self, count: int) -> None:
        if self.current is not None:
            self.current.underruns += count

    @property
    def reply_heard(self) -> bool:
        """Whether the current turn's reply reached the speaker."""
        return self.current is not None and self.current.first_audio is not None

    def log(self) -> None:
        """The current turn is over: its line, once."""
        if self.current is not None:
            _log_line(self.current)

    @property
    def report_due(self) -> float | None:
        return None if self._interrupted is None else self._interrupted[1]


def _log_line(turn: Turn) -> None:
    if not turn.logged:
        turn.logged = True
        log.info("%s", turn.line())
