"""The session's small parts alone: the inbox's bound, the reply tracker, the status line, the
deadline arithmetic and the turn record's notes."""

from __future__ import annotations

from speakerd import protocol as p
from speakerd.events import AgentEventReceived, ButtonPressed, DeviceChanged, State
from speakerd.inbox import Inbox
from speakerd.playback import DRAIN_GRACE, SPEAKING_STALL, ReplyTracker
from speakerd.statusline import MAX_STATUS, StatusLine, StatusSink, status_text
from speakerd.timers import MIN_WAIT, TICK, first_due, next_wait, pending
from speakerd.turns import TurnLog
from tests.support.shapes import shape_differences


class FailingLink:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def fail(self, reason: str) -> None:
        self.failed.append(reason)


class FakeStatusSink:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.pets = 0

    def status(self, text: str) -> None:
        self.lines.append(text)

    def watchdog(self) -> None:
        self.pets += 1


def test_the_inbox_refuses_agent_events_past_its_limit_but_never_a_button_edge() -> None:
    """Past the limit an agent event fails its link and is dropped; taking one frees a place."""
    inbox, link = Inbox(limit=2), FailingLink()
    for _ in range(3):
        inbox.post(AgentEventReceived(link, p.AgentThinking("x"), 0.0))
    inbox.post(ButtonPressed(0.0))
    assert inbox.peak == 2 and len(link.failed) == 1 and "(2 waiting)" in link.failed[0]
    assert isinstance(inbox.get(0), AgentEventReceived)
    inbox.post(AgentEventReceived(link, p.AgentThinking("y"), 0.0))
    assert len(link.failed) == 1  # the freed place took it
    taken = [inbox.get(0) for _ in range(3)]
    assert isinstance(taken[1], ButtonPressed) and inbox.get(0) is None


def test_the_inbox_wakes_its_reader_with_no_event() -> None:
    """wake() makes get() return None at once, like a timeout."""
    inbox = Inbox()
    inbox.wake()
    assert inbox.get(60) is None


def test_a_reply_that_ran_dry_is_over_after_the_grace_unless_it_resumes() -> None:
    """ran_dry starts the grace; audio starting again or silence cancels it."""
    reply = ReplyTracker()
    assert reply.over_at() is None
    reply.started(0, 10.0)
    reply.stopped()
    reply.ran_dry(12.0)
    assert not reply.playing and reply.over_at() == 12.0 + DRAIN_GRACE
    reply.started(4, 13.0)
    assert reply.playing and reply.over_at() is None
    reply.ran_dry(14.0)
    reply.silent()
    assert reply.over_at() is None and not reply.playing


def test_a_speaker_that_writes_nothing_for_the_stall_time_is_stuck() -> None:
    """The stall check is due only while speaking and playing; progress restarts it."""
    reply = ReplyTracker()
    reply.started(3, 100.0)
    assert reply.stall_check_at(speaking=False) is None
    assert reply.stall_check_at(speaking=True) == 100.0 + SPEAKING_STALL
    assert not reply.stalled(5, 104.0)  # it wrote two periods: look again later
    assert reply.stall_check_at(speaking=True) == 104.0 + SPEAKING_STALL
    assert reply.stalled(5, 109.0)
    reply.stopped()
    assert reply.stall_check_at(speaking=True) is None


def test_the_status_line_names_missing_devices_in_order_and_the_last_error() -> None:
    """state; each missing device sorted by name; the last error; cut to systemd's one line."""
    assert status_text(State.IDLE, {}, "") == State.IDLE.value
    text = status_text(State.ERROR, {"speaker": "gone", "mic": "busy"}, "key refused")
    assert text == "error; mic: busy; speaker: gone; last error: key refused"
    assert len(status_text(State.IDLE, {}, "x" * 500)) == MAX_STATUS


def test_a_device_that_comes_back_leaves_the_status_line() -> None:
    """DeviceChanged records a missing device and forgets it once it is back."""
    sink = FakeStatusSink()
    line = StatusLine(sink, None, lambda: 0.0)
    line.device_changed(DeviceChanged("mic", False, "no such card"))
    line.publish(State.IDLE, "")
    line.device_changed(DeviceChanged("mic", True, ""))
    line.publish(State.IDLE, "")
    assert sink.lines == [f"{State.IDLE}; mic: no such card", State.IDLE.value]


def test_the_watchdog_is_due_one_interval_after_its_last_pet() -> None:
    """No interval or no sink: never due; else due `interval` after each pet."""
    now = [50.0]
    assert StatusLine(None, 10.0, lambda: now[0]).watchdog_due() is None
    assert StatusLine(FakeStatusSink(), None, lambda: now[0]).watchdog_due() is None
    sink = FakeStatusSink()
    line = StatusLine(sink, 10.0, lambda: now[0])
    assert line.watchdog_due() == 10.0  # never petted: due at once
    line.pet_watchdog()
    assert sink.pets == 1 and line.watchdog_due() == 60.0


def test_the_wait_runs_to_the_earliest_deadline_within_its_bounds() -> None:
    """next_wait: the earliest deadline, never past TICK, never below MIN_WAIT."""
    assert next_wait([], 5.0) == TICK
    assert next_wait([5.5, 6.0], 5.0) == 0.5
    assert next_wait([100.0], 5.0) == TICK
    assert next_wait([1.0], 5.0) == MIN_WAIT


def test_the_first_listed_due_action_goes_first() -> None:
    """Timers without a deadline are dropped; of those due, the list's order decides."""
    def a() -> None: ...
    def b() -> None: ...
    def c() -> None: ...
    timers = pending([(None, a), (3.0, b), (1.0, c)])
    assert timers == [(3.0, b), (1.0, c)]
    assert first_due(timers, 0.5) is None
    assert first_due(timers, 2.0) is c
    assert first_due(timers, 3.0) is b


def test_the_turn_notes_keep_the_first_byte_and_first_audio_and_need_a_turn() -> None:
    """With no turn the notes do nothing; first byte and first audio keep their first value."""
    turns = TurnLog(lambda: 0.0)
    turns.uplink_started(1.0)
    turns.audio_started(1.0)
    turns.underran(3)
    assert turns.current is None and not turns.reply_heard
    turn = turns.begin(10.0, interrupting=False)
    turns.uplink_started(10.1)
    turns.uplink_started(10.2)
    turns.speech_ended(11.0)
    assert not turns.reply_heard
    turns.audio_started(11.5)
    turns.audio_started(11.9)
    turns.underran(2)
    turns.underran(1)
    assert (turn.first_byte, turn.speech_end, turn.first_audio, turn.underruns) == (10.1, 11.0, 11.5, 3)
    assert turns.reply_heard


def test_the_fake_status_sink_has_the_shape_of_the_real_one() -> None:
    """FakeStatusSink is called as the daemon's StatusSink is."""
    assert shape_differences(FakeStatusSink, StatusSink) == []
