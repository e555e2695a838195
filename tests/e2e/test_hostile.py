"""A hostile agent and server against the real daemon: the key leaves only in the Authorization
header to the configured host; threads, memory and queued audio stay bounded; pins switch no
faster than allowed; and after each attack the daemon keeps serving and the next press gives a
full turn. One test (or more) per row of the threat table; each prints the bound it measured.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from speakerd.connection import MAX_CONTEXT, MAX_CONTEXT_TOTAL
from speakerd.events import State
from speakerd.functions import MAX_CALLS_PER_REQUEST
from speakerd.inbox import MAX_QUEUED_AGENT_EVENTS
from speakerd.speaker import MAX_QUEUED_SECONDS
from tests.support.daemon import WAIT, DaemonRig, merge, wait_until
from tests.support.emulator import TEST_KEY
from tests.support.hostile import (
    BINARY,
    CONT,
    PING,
    TEXT,
    Catcher,
    HostileProxy,
    frame,
    frame_header,
    text,
)

pytestmark = pytest.mark.realtime

FAST = {"session": {"idle_timeout": 0.5, "reconnect_initial": 0.2, "reconnect_max": 1.0,
                    "reply_timeout": 3.0}}
LAMP = "GPIO22"
FMT = {"type": "string", "pattern": r"^\+[%A-Za-z: ]{1,40}$"}
FUNCTIONS = [
    {"name": "date", "description": "The date in a strftime format.",
     "parameters": {"type": "object", "required": ["fmt"], "properties": {"fmt": FMT}},
     "action": {"type": "command", "argv": ["date", "{fmt}"], "timeout": 5}},
    {"name": "lamp", "description": "Switch the lamp.",
     "parameters": {"type": "object", "properties": {"state": {"enum": ["on", "off", "toggle"]}}},
     "action": {"type": "gpio", "pin": LAMP}},
    {"name": "ok", "description": "Say ok.", "parameters": {"type": "object", "properties": {}},
     "action": {"type": "command", "argv": ["printf", "ok"], "timeout": 5}},
]


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


class Peak:
    """Samples a figure every few milliseconds on a thread of its own, keeping the highest."""

    def __init__(self, read: Callable[[], float]) -> None:
        self.read = read
        self.peak = read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-peak", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.read())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(WAIT)
        return self.peak


@pytest.fixture
def hostile_rig(make_rig: Callable[..., DaemonRig], hostile: HostileProxy,
                tmp_path: Path) -> Callable[..., DaemonRig]:
    """A daemon whose agent.url is the hostile proxy (in front of the emulator), fast timings."""
    def make(**overrides: Any) -> DaemonRig:
        rig = make_rig(**merge(merge(FAST, {"agent": {"url": hostile.url()}}), overrides))
        return rig
    return make


def session(rig: DaemonRig) -> Any:
    assert rig.daemon.parts is not None
    return rig.daemon.parts.session


def full_turn(rig: DaemonRig) -> None:
    """Back to idle, then press, speak, release and hear the reply: the daemon still serves."""
    assert wait_until(lambda: rig.state == State.IDLE, WAIT), rig.state_names()[-8:]
    rig.full_turn()


def assert_key_only_in_authorization(proxy: HostileProxy, key: str = TEST_KEY) -> None:
    """The key went out in the Authorization header of upgrades to the configured host, nowhere
    else: no other header, no path, no frame the daemon sent."""
    assert proxy.handshakes
    for hs in proxy.handshakes:
        assert hs.headers.get("authorization") == f"Token {key}"
        assert hs.headers.get("host") == f"127.0.0.1:{proxy.port}"
        others = {k: v for k, v in hs.headers.items() if k != "authorization"}
        assert key not in json.dumps(others) and key not in hs.request_line
    assert key.encode() not in proxy.client_bytes()


def press_cold(rig: DaemonRig) -> int:
    """Wait for the warm link to close, then press: a new connection, where the attack fires."""
    assert wait_until(lambda: session(rig).link is None, WAIT), "the idle link never closed"
    n = len(rig.states)
    rig.press()
    return n


def hold_through_a_drop(rig: DaemonRig) -> None:
    """Press (the attack fires on connect), wait for the drop and the reconnect, release.

    A drop ends the turn (the session forgets the held button), so the reconnect lands in idle.
    """
    n = press_cold(rig)
    rig.wait_state(State.OFFLINE, after=n)
    m = len(rig.states)
    rig.wait_state(State.IDLE, after=m)
    rig.release()


# --- row 1: a command function cannot read the key -----------------------------------------

def test_a_command_function_never_reads_the_key(hostile_rig: Callable[..., DaemonRig],
                                                hostile: HostileProxy, tmp_path: Path) -> None:
    """`--file=<key file>` for `date {fmt}` is refused by the pattern and the dash rule; the key
    never reaches the agent, and a bounded value still works."""
    key_file = tmp_path / "deepgram_api_key"
    key_file.write_text(TEST_KEY + "\n", encoding="utf-8")
    rig = hostile_rig(functions=FUNCTIONS)
    rig.emulator.call_function("date", {"fmt": f"--file={key_file}"})
    rig.emulator.call_function("date", {"fmt": "+%Y"})
    full_turn(rig)
    refused, dated = (json.loads(r["content"]) for r in hostile.client_texts("FunctionCallResponse"))
    assert refused == {"error": "invalid arguments: fmt: does not have the form the function asks for"}
    assert dated["ok"] is True and dated["output"].strip().isdigit()
    assert_key_only_in_authorization(hostile)
    print(f"\nrow 1: the key left in {len(hostile.handshakes)} Authorization header(s) only; "
          f"{len(hostile.client_frames)} frames from the daemon carry none of it")


# --- rows 2 and 3: the key goes only where the user pointed it -------------------------------

def test_a_handshake_redirect_is_not_followed(hostile_rig: Callable[..., DaemonRig],
                                             hostile: HostileProxy, catcher: Catcher,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A 301 to another host (plain ws://) is never followed: nothing, key least of all, reaches
    it; the daemon goes offline, and serves again once the server behaves."""
    caplog.set_level(logging.INFO, logger="speakerd")
    rig = hostile_rig()
    hostile.redirect_to = f"ws://127.0.0.1:{catcher.port}/v1/agent/converse"
    n = len(rig.states)
    rig.press()
    rig.release()
    rig.wait_state(State.OFFLINE, after=n)
    assert wait_until(lambda: len(hostile.handshakes) >= 2, WAIT)  # it retried, at the same host
    hostile.redirect_to = None
    full_turn(rig)
    assert catcher.received == []
    assert_key_only_in_authorization(hostile)
    assert any("redirected the connection (HTTP 301)" in r.getMessage() for r in caplog.records)
    print(f"\nrow 2: {len(hostile.handshakes)} handshakes, all to the configured host; "
          f"{len(catcher.received)} connections to the redirect target")


@pytest.mark.parametrize("url", ["ws://agent.example.com/v1/agent/converse", "http://127.0.0.1/",
                                 "ftp://127.0.0.1/", "not a url", "wss://u:p@agent.example.com/"])
def test_the_daemon_refuses_to_start_with_an_unsafe_agent_url(tmp_path: Path, url: str) -> None:
    """`speakerd run` exits 78 naming agent.url before it ever connects (rows 3)."""
    from tests.support.process import run_cli

    path = tmp_path / "speakerd.yaml"
    path.write_text(json.dumps({"agent": {"url": url}}), encoding="utf-8")
    for args in (["check-config", str(path)], ["run", "--config", str(path)]):
        result = run_cli(args, env={"DEEPGRAM_API_KEY": TEST_KEY})
        assert result.returncode == 78, result
        assert "agent.url: " in result.stderr


# --- row 4: frames have hard limits enforced while reading -----------------------------------

def test_an_oversized_frame_is_refused_from_its_header(hostile_rig: Callable[..., DaemonRig],
                                                       hostile: HostileProxy) -> None:
    """A text frame claiming 64 MiB drops the link from its header: memory does not follow it."""
    rig = hostile_rig()
    full_turn(rig)
    before = rss_mb()  # of the whole test process: only the growth during the attack counts

    def flood() -> Iterator[bytes]:
        yield frame_header(TEXT, 64 << 20)
        for _ in range(64):
            yield b"x" * (1 << 20)

    shot = hostile.inject("SettingsApplied", flood)
    peak = Peak(rss_mb)
    hold_through_a_drop(rig)
    grown = peak.stop() - before
    assert shot.fired.is_set()
    assert grown < 32, f"RSS grew {grown:.0f} MB for a 64 MiB frame"
    full_turn(rig)
    print(f"\nrow 4: 64 MiB frame refused from its header; RSS {before:.0f} MB, peak +{grown:.1f} MB")


def test_a_message_in_tiny_fragments_is_cut_off_linearly(hostile_rig: Callable[..., DaemonRig],
                                                         hostile: HostileProxy) -> None:
    """8 MB in 100-byte fragments: refused past the fragment limit, in little CPU, link dropped."""
    rig = hostile_rig()
    full_turn(rig)

    def fragments() -> Iterator[bytes]:
        yield frame(TEXT, b'{"type": "ConversationText", "content": "' + b"x" * 100, fin=False)
        chunk = frame(CONT, b"x" * 100, fin=False)
        for _ in range(80000 // 100):
            yield chunk * 100

    hostile.inject("SettingsApplied", fragments)
    cpu = time.process_time()
    hold_through_a_drop(rig)
    spent = time.process_time() - cpu
    full_turn(rig)
    print(f"\nrow 4: 8 MB in 100-byte fragments cut off; process CPU for press, drop and "
          f"reconnect {spent:.2f} s")


# --- row 5: queued audio, the inbox and the reconnect context are capped ----------------------

def test_a_flood_of_reply_audio_is_capped_at_the_speaker(hostile_rig: Callable[..., DaemonRig],
                                                         hostile: HostileProxy) -> None:
    """120 s of reply audio at once: at most MAX_QUEUED_SECONDS are queued, then the link drops."""
    rig = hostile_rig()
    full_turn(rig)
    rate = rig.cfg.audio.output.sample_rate
    second = b"\x10\x00" * rate

    def audio() -> Iterator[bytes]:
        # A reply starts with the agent's text; its audio would be refused as late otherwise.
        yield text({"type": "ConversationText", "role": "assistant", "content": "flood"})
        for _ in range(120):
            yield frame(BINARY, second)

    hostile.inject("SettingsApplied", audio)
    assert rig.daemon.parts is not None
    speaker = rig.daemon.parts.speaker
    hold_through_a_drop(rig)
    peak_s = speaker.queued_peak / (2 * rate)
    assert peak_s <= MAX_QUEUED_SECONDS
    full_turn(rig)
    print(f"\nrow 5: 120 s of audio sent at once; at most {peak_s:.1f} s queued "
          f"(cap {MAX_QUEUED_SECONDS:g} s)")


def test_a_flood_of_events_keeps_the_inbox_bounded(hostile_rig: Callable[..., DaemonRig],
                                                   hostile: HostileProxy) -> None:
    """50,000 small messages at once: the inbox never holds more than its cap; turns go on."""
    rig = hostile_rig()
    full_turn(rig)
    burst = text({"type": "AgentThinking", "content": "hm"}) * 50000
    shot = hostile.inject("SettingsApplied", burst)
    threads = Peak(lambda: threading.active_count())
    n = press_cold(rig)
    rig.wait_state(State.LISTENING, after=n)
    assert shot.fired.wait(WAIT)
    rig.release()
    peak_threads = threads.stop()
    inbox = session(rig).inbox_peak
    assert inbox <= MAX_QUEUED_AGENT_EVENTS
    full_turn(rig)
    print(f"\nrow 5: 50,000 events; inbox peak {inbox} (cap {MAX_QUEUED_AGENT_EVENTS}), "
          f"threads peak {peak_threads:.0f}")


def test_the_reconnect_context_is_capped(hostile_rig: Callable[..., DaemonRig],
                                         hostile: HostileProxy) -> None:
    """Sixty 1 MiB transcripts, then a drop: the next Settings carries a bounded context."""
    rig = hostile_rig()
    full_turn(rig)
    big = "x" * ((1 << 20) - 100)

    def transcripts() -> Iterator[bytes]:
        for i in range(60):
            yield text({"type": "ConversationText", "role": "user" if i % 2 else "assistant",
                        "content": big})
        yield frame(0x8, (1011).to_bytes(2, "big"))  # then the server closes: a drop

    hostile.inject("SettingsApplied", transcripts)
    hold_through_a_drop(rig)
    settings = hostile.client_texts("Settings")[-1]
    messages = settings["agent"]["context"]["messages"]
    chars = sum(len(m["content"]) for m in messages)
    size = len(json.dumps(settings))
    assert len(messages) <= MAX_CONTEXT and chars <= MAX_CONTEXT_TOTAL
    full_turn(rig)
    print(f"\nrow 5: 60 MiB of transcripts; the next Settings carried {len(messages)} lines, "
          f"{chars} characters ({size} bytes)")


# --- rows 6 and 7: calls are bounded; pins switch no faster than allowed ----------------------

def _request(calls: list[tuple[str, str, dict[str, Any]]]) -> bytes:
    return text({"type": "FunctionCallRequest", "functions": [
        {"id": cid, "name": name, "arguments": json.dumps(args), "client_side": True}
        for cid, name, args in calls]})


def test_a_thousand_calls_in_one_request(hostile_rig: Callable[..., DaemonRig],
                                         hostile: HostileProxy) -> None:
    """1,000 calls at once: few threads, every call answered exactly once, no crash."""
    rig = hostile_rig(functions=FUNCTIONS)
    full_turn(rig)
    before, rss_before = threading.active_count(), rss_mb()
    hostile.inject("SettingsApplied", _request([(f"c{i}", "ok", {}) for i in range(1000)]))
    threads = Peak(lambda: threading.active_count())
    rss = Peak(rss_mb)
    n = press_cold(rig)
    rig.wait_state(State.LISTENING, after=n)
    answered = lambda: {m["id"] for m in hostile.client_texts("FunctionCallResponse")}  # noqa: E731
    assert wait_until(lambda: len(answered()) == 1000, WAIT)
    rig.release()
    peak_threads, peak_rss = threads.stop(), rss.stop()
    responses = hostile.client_texts("FunctionCallResponse")
    assert len(responses) == 1000 and answered() == {f"c{i}" for i in range(1000)}
    ran = [r for r in responses if json.loads(r["content"]).get("ok")]
    assert len(ran) <= MAX_CALLS_PER_REQUEST
    assert peak_threads - before <= MAX_CALLS_PER_REQUEST + 4  # + link threads and the keeper
    full_turn(rig)
    print(f"\nrow 6: 1000 calls in one request: {len(ran)} ran, 1000 answered; threads "
          f"{before} -> peak {peak_threads:.0f}; RSS {rss_before:.0f} -> peak {peak_rss:.0f} MB")


def test_a_relay_switches_no_faster_than_allowed(hostile_rig: Callable[..., DaemonRig],
                                                 hostile: HostileProxy) -> None:
    """500 toggles of a relay in one request switch it once; the next request within 1 s: none."""
    rig = hostile_rig(functions=FUNCTIONS)
    full_turn(rig)
    pin = rig.pins.pin(LAMP)
    changes = len(pin.states)
    hostile.inject("SettingsApplied", _request([(f"t{i}", "lamp", {"state": "toggle"})
                                                for i in range(500)])
                   + _request([("again", "lamp", {"state": "toggle"})]))
    n = press_cold(rig)
    rig.wait_state(State.LISTENING, after=n)
    assert wait_until(lambda: len(hostile.client_texts("FunctionCallResponse")) == 501, WAIT)
    rig.release()
    switched = len(pin.states) - changes
    again = json.loads(hostile.client_texts("FunctionCallResponse")[-1]["content"])
    assert switched == 1, pin.states[changes:]
    assert again["error"].startswith(f"busy: {LAMP} switches at most once every 1 s")
    full_turn(rig)
    print(f"\nrow 7: 501 toggles within a second: the relay switched {switched} time(s)")


# --- rows 8 and 9: the config is data; a bad file never takes the speaker down ----------------

BAD_FILES = {
    "alias": "agent:\n  settings_passthrough: &a\n    x: *a\n",
    "binary": "agent:\n  settings_passthrough:\n    x: !!binary aGVsbG8=\n",
    "set": "agent:\n  settings_passthrough: !!set {a, b}\n",
    "nan": "functions:\n  - name: f\n    parameters: {type: object, default: .nan}\n"
           "    action: {type: end_conversation}\n",
    "400 digits": "session:\n  idle_timeout: " + "9" * 400 + ".5\n",
    "5000-digit int": "session:\n  idle_timeout: " + "9" * 5000 + "\n",
    "3000 nested": "agent:\n  settings_passthrough:\n    x: " + "[" * 3000 + "]" * 3000 + "\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_check_config_names_each_bad_file_and_exits_78(tmp_path: Path, name: str) -> None:
    """The configs that crashed a press or the loader: `section.key: message` and exit 78."""
    from tests.support.process import run_cli

    path = tmp_path / "speakerd.yaml"
    path.write_text(BAD_FILES[name], encoding="utf-8")
    result = run_cli(["check-config", str(path)], env={})
    assert result.returncode == 78, result
    first = result.stderr.splitlines()[0]
    assert first.split(": ", 1)[0].replace("_", "").replace(".", "").replace("[", "") \
        .replace("]", "").isalnum(), first
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", ["bad yaml", "non-UTF-8 key file", "two-line key file"])
def test_a_reload_with_a_bad_file_keeps_the_running_config(hostile_rig: Callable[..., DaemonRig],
                                                           tmp_path: Path, case: str) -> None:
    """SIGHUP's reload with each bad input keeps the running config; the next press is a full turn."""
    rig = hostile_rig()
    path = tmp_path / "reload.yaml"
    key_file = tmp_path / "key"
    key_file.write_bytes({"non-UTF-8 key file": b"\xff\xfe" + TEST_KEY.encode(),
                          "two-line key file": f"{TEST_KEY}\nX-Injected: 1\n".encode()}
                         .get(case, TEST_KEY.encode()))
    key_file.chmod(0o600)
    path.write_text(BAD_FILES["5000-digit int"] if case == "bad yaml" else
                    json.dumps({"agent": {"api_key_file": str(key_file)}}), encoding="utf-8")
    parts = rig.daemon.parts
    rig.daemon.config_path = str(path)
    assert rig.daemon.reload() is False
    assert rig.daemon.parts is parts
    full_turn(rig)


# --- row 10: logs and answers leak nothing ---------------------------------------------------

def test_agent_text_cannot_forge_journal_lines(hostile_rig: Callable[..., DaemonRig],
                                               hostile: HostileProxy,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Newlines in a function name and in an Error: escaped in the journal, never a new line."""
    caplog.set_level(logging.DEBUG, logger="speakerd")
    rig = hostile_rig(functions=FUNCTIONS)
    full_turn(rig)
    forged = "lamp\nspeakerd.outputs INFO gpio output GPIO22 on"
    hostile.inject("SettingsApplied", _request([("x\ny", forged, {})]) + text(
        {"type": "Error", "code": "E\n1", "description": "boom\nspeakerd INFO all is well\r"}))
    n = press_cold(rig)
    rig.wait_state(State.ERROR, after=n)
    rig.release()
    # The daemon's journal, not the emulator's (the peer's own log is the test's, not ours).
    lines = [r.getMessage() for r in caplog.records
             if r.name.startswith("speakerd") and not r.name.startswith("speakerd.emulator")]
    assert not [m for m in lines if "\n" in m or "\r" in m]
    assert any("boom\\nspeakerd INFO all is well" in m for m in lines)
    assert any("unknown function lamp\\nspeakerd.outputs" in m for m in lines)
    full_turn(rig)


# --- row 11: total deadlines, and a close to a peer that stopped reading ----------------------

def test_a_close_to_a_peer_that_stopped_reading_is_quick(hostile_rig: Callable[..., DaemonRig],
                                                         hostile: HostileProxy) -> None:
    """The server stops reading and sending mid-session: the idle close does not hang on it."""
    rig = hostile_rig()
    full_turn(rig)
    n = press_cold(rig)
    rig.wait_state(State.LISTENING, after=n)
    assert rig.daemon.parts is not None
    link = rig.daemon.parts.links[-1]
    rig.release()
    hostile.silent = True
    rig.wait_state(State.IDLE, after=n)
    asked = time.monotonic()
    assert wait_until(lambda: not link.alive(), WAIT)
    took = time.monotonic() - asked
    hostile.silent = False
    full_turn(rig)
    print(f"\nrow 11: close to a peer that stopped reading finished in {took:.2f} s")


def test_pings_are_answered_and_a_ping_flood_is_harmless(hostile_rig: Callable[..., DaemonRig],
                                                         hostile: HostileProxy) -> None:
    """Pings (even ten thousand) are answered with pongs; an oversized ping drops the link."""
    rig = hostile_rig()
    full_turn(rig)
    hostile.inject("SettingsApplied", frame(PING, b"p") * 10000 + frame(PING, b"x" * 200))
    hold_through_a_drop(rig)
    pongs = sum(1 for op, _ in hostile.client_frames if op == 0xA)
    assert pongs > 0  # how many the proxy read before the drop depends on its own timing
    full_turn(rig)
    print(f"\nrow 4: 10,000 pings: {pongs} pongs seen; a 200-byte ping dropped the link")


def test_the_key_variable_is_gone_from_the_environment(hostile_rig: Callable[..., DaemonRig],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Once read, DEEPGRAM_API_KEY is not in the environment a function's command would inherit."""
    from speakerd.config import AgentConfig, load_api_key

    monkeypatch.setenv("DEEPGRAM_API_KEY", TEST_KEY)
    assert load_api_key(AgentConfig()) == TEST_KEY
    assert "DEEPGRAM_API_KEY" not in os.environ


def test_a_dripping_webhook_and_an_escaped_child_end_at_the_deadline(
        hostile_rig: Callable[..., DaemonRig], hostile: HostileProxy, tmp_path: Path,
        dripping_server: str) -> None:
    """Called by the agent through the daemon: a webhook that drips a byte at a time and a command
    whose setsid child holds its output are both answered at their deadline, the child killed."""
    pid_file = tmp_path / "pid"
    script = f"setsid sh -c 'echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; sleep 60' & echo x"
    functions = [
        {"name": "drip", "description": "A slow webhook.", "parameters": {"type": "object"},
         "action": {"type": "http", "method": "GET", "timeout": 1.0, "url": dripping_server}},
        {"name": "escape", "description": "A command that leaves a child behind.",
         "parameters": {"type": "object"},
         "action": {"type": "command", "argv": ["sh", "-c", script], "timeout": 1.0}}]
    rig = hostile_rig(functions=functions, session={"reply_timeout": 10.0})
    before = threading.active_count()
    rig.emulator.call_function("drip", {})
    rig.emulator.call_function("escape", {})
    started = time.monotonic()
    full_turn(rig)
    answers = [json.loads(r["content"]) for r in hostile.client_texts("FunctionCallResponse")]
    assert answers == [{"error": "timed out after 1 s"}] * 2
    child = int(pid_file.read_text())
    from tests.component.test_functions import gone
    assert wait_until(lambda: gone(child), WAIT), "the escaped child still runs"
    assert wait_until(lambda: threading.active_count() <= before + 2, WAIT)
    print(f"\nrow 11: dripping webhook and escaped setsid child answered at their 1 s "
          f"deadlines; the turn took {time.monotonic() - started:.1f} s; child killed")
