"""End to end: the agent acts on the device through declared functions, and nothing is lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from speakerd.events import State
from tests.support.daemon import wait_until

pytestmark = pytest.mark.realtime

LAMP = "GPIO22"
FUNCTIONS = [
    {"name": "lamp", "description": "Switch the lamp.",
     "parameters": {"type": "object", "required": ["state"], "additionalProperties": False,
                    "properties": {"state": {"type": "string", "enum": ["on", "off", "toggle"]}}},
     "action": {"type": "gpio", "pin": LAMP}},
    {"name": "set_volume", "description": "Set the speaker volume.",
     "parameters": {"type": "object", "properties": {
         "level": {"type": "integer", "minimum": 0, "maximum": 100}}},
     "action": {"type": "volume", "card": "pa_mixer", "control": "Master", "min": 10, "max": 90}},
    {"name": "hang_up", "description": "End the conversation.",
     "parameters": {"type": "object", "properties": {}},
     "action": {"type": "end_conversation"}},
    {"name": "echo", "description": "Echo text through a fixed command.",
     "parameters": {"type": "object", "required": ["text"],
                    "properties": {"text": {"type": "string", "pattern": "^[^-].{0,199}$"}}},
     "action": {"type": "command", "argv": ["printf", "%s", "{text}"], "timeout": 5}},
]


def _responses(rig: Any) -> list[dict[str, Any]]:
    return rig.emulator.sessions[-1].texts("FunctionCallResponse")


@pytest.mark.parametrize("dialect", ["v1", "early_access"])
def test_gpio_function_switches_the_pin_and_the_result_reaches_the_reply(make_rig: Any, dialect: str) -> None:
    """The agent's call switches a real (mock) pin; the response goes back in the dialect's shape."""
    rig = make_rig(dialect, functions=FUNCTIONS)
    assert rig.pins.pin(LAMP).state in (0, False)
    rig.emulator.call_function("lamp", {"state": "on"})
    rig.full_turn()
    assert rig.pins.pin(LAMP).state in (1, True)
    (resp,) = _responses(rig)
    content = resp["content"] if dialect == "v1" else resp["output"]
    assert json.loads(content)["ok"] is True
    assert any("lamp returned" in text for role, text in rig.texts if role == "assistant")


def test_volume_function_changes_the_alsa_mixer_within_bounds(make_rig: Any) -> None:
    """`volume` sets the real ALSA mixer (PulseAudio's Master), clamped to the configured maximum."""
    rig = make_rig(functions=FUNCTIONS)
    rig.emulator.call_function("set_volume", {"level": 40})
    rig.full_turn()
    assert wait_until(lambda: rig.pulse.sink_volume_percent() == 40)
    rig.emulator.call_function("set_volume", {"level": 100})  # above action.max 90
    rig.full_turn()
    assert wait_until(lambda: rig.pulse.sink_volume_percent() == 90)


def test_invalid_unknown_and_hostile_calls_run_nothing_else(make_rig: Any) -> None:
    """Bad arguments and undeclared names get error responses; shell metacharacters stay text."""
    rig = make_rig(functions=FUNCTIONS)
    rig.emulator.call_function("lamp", {"state": "purple"})
    rig.emulator.call_function("format_disk", {})
    hostile = "; touch /tmp/pwned-by-speakerd $(id) `id`"
    rig.emulator.call_function("echo", {"text": hostile})
    rig.full_turn()
    bad, unknown, echoed = (json.loads(r["content"]) for r in _responses(rig))
    assert State.ERROR in bad and "state" in json.dumps(bad)
    assert State.ERROR in unknown
    assert hostile in json.dumps(echoed)
    assert rig.pins.pin(LAMP).state in (0, False)
    assert not Path("/tmp/pwned-by-speakerd").exists()


def test_end_conversation_closes_the_socket_after_the_goodbye(make_rig: Any) -> None:
    """`end_conversation`: the agent's reply plays out, then the socket closes and the speaker idles."""
    rig = make_rig(functions=FUNCTIONS)
    rig.emulator.call_function("hang_up", {})
    rig.full_turn()
    session = rig.emulator.sessions[-1]
    assert wait_until(session.closed.is_set), "the socket stayed open after end_conversation"
    assert rig.state == State.IDLE


def test_conversation_log_holds_every_turn_once_across_a_drop(make_rig: Any, tmp_path: Path) -> None:
    """A dropped link mid-reply: the log holds each user and assistant text exactly once."""
    rig = make_rig(functions=FUNCTIONS)
    rig.full_turn()
    rig.emulator.options.reply_seconds = 3.0
    rig.emulator.options.drop_mid_reply = True
    n = len(rig.states)
    rig.press()
    rig.wait_state(State.LISTENING, after=n)
    rig.speak("weather.wav")
    rig.release()
    rig.wait_state(State.OFFLINE, after=n)
    assert wait_until(lambda: rig.state == State.IDLE)
    second = rig.emulator.sessions[-1]
    context = second.settings["agent"]["context"]["messages"]
    assert len(context) == 4  # two user turns and two replies, each once
    log_file = tmp_path / "state" / "conversations.jsonl"
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    texts = [(entry["role"], entry["content"]) for entry in lines if entry["kind"] == "text"]
    assert len(texts) == len(set(texts)) == 4
    assert len({entry["conversation"] for entry in lines}) == 1
    assert oct(log_file.stat().st_mode & 0o777) == "0o600"
