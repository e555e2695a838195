"""The daemon driven through its control socket, as `speakerd ctl` and scripts drive it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from speakerd.control import request
from speakerd.events import State
from tests.support.daemon import DaemonRig, rig_config, wait_until


@pytest.mark.realtime
def test_the_daemon_is_driven_through_the_socket(agent_emulator: Any, pulse_audio: Any,
                                                 mock_pins: Any, tmp_path: Path,
                                                 sock_path: str) -> None:
    """press/release over the socket hold a whole turn; status then has its figures and billing."""
    cfg = rig_config(agent_emulator, pulse_audio, tmp_path / "state")
    rig = DaemonRig(cfg, agent_emulator, pulse_audio, mock_pins)
    rig.daemon.control_path = sock_path
    rig.daemon.start()
    try:
        assert request("press", sock_path) == {"ok": True}
        rig.wait_state(State.LISTENING)
        spoken = rig.speak("hello.wav")
        rec = rig.pulse.record_speaker()
        assert request("release", sock_path) == {"ok": True}
        rig.wait_state(State.SPEAKING)
        rig.wait_state(State.IDLE, after=len(rig.states))
        rig.assert_parrot_heard(spoken, rec.stop())
        status = request("status", sock_path)
        assert status["state"] == State.IDLE and status["agent_connected"] is True
        assert 0 < status["connected_seconds"] <= status["uptime_seconds"]
        turn = status["last_turn"]
        assert turn["turn"] == 1 and turn["press_to_first_byte_ms"] is not None
        # No config file behind this daemon: the reload is refused, and status says so. (The
        # test stands in for the main loop, which start() alone does not run.)
        ticket = request("reload", sock_path)["ticket"]
        assert rig.daemon.reload() is False
        outcome = request("status", sock_path)["reload"]
        assert outcome["covers"] >= ticket and outcome["ok"] is False
        assert "no config file" in outcome["message"]
        assert wait_until(lambda: rig.state == State.IDLE)
    finally:
        rig.daemon.stop()
    assert not os.path.exists(sock_path)
