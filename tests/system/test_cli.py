"""The command line as a user meets it: check-config, run's config errors, --help, devices, no key leaks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from speakerd.emulator import Emulator
from speakerd.emulator.sound import PulseServer
from tests.support.daemon import wait_until
from tests.support.emulator import TEST_KEY, fast_options
from tests.support.process import (
    FakeSystemd,
    SpeakerdProcess,
    child_env,
    raw_config,
    speak,
    write_config,
)

ROOT = Path(__file__).resolve().parents[2]
FAKE_KEY = "dgFAKEkey-7c1e9b4a2f60d835"  # recognisable in any output it leaks into
SUBCOMMANDS = ["run", "check-config", "devices", "selftest", "emulate"]


def speakerd(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    """`python -m speakerd ARGS`, bounded in time; stdout and stderr captured."""
    base = {**os.environ, "PYTHONPATH": str(ROOT)}
    base.pop("DEEPGRAM_API_KEY", None)
    base.pop("CREDENTIALS_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "speakerd", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          cwd=cwd or ROOT)


# --- check-config ------------------------------------------------------------------------


def test_check_config_accepts_a_valid_file(tmp_path: Path) -> None:
    """A valid file touching several sections: exit 0, 'PATH: ok' on stdout, nothing on stderr."""
    good = tmp_path / "speakerd.yaml"
    good.write_text("agent:\n  dialect: early_access\n  greeting: Hi\n"
                    "button:\n  pin: BOARD11\n  mode: toggle\n"
                    "audio:\n  output:\n    encoding: mulaw\n    sample_rate: 8000\n"
                    "leds:\n  - kind: led\n    pins: [GPIO25]\n", encoding="utf-8")
    done = speakerd("check-config", str(good))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{good}: ok"
    assert done.stderr == ""


def test_check_config_lists_every_problem_as_section_key_message(tmp_path: Path) -> None:
    """A file with four mistakes: exit 78, one `section.key: message` line each, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("button:\n  pinn: GPIO17\n  mode: sideways\n"
                   "audio:\n  input:\n    sample_rate: -5\n"
                   "session:\n  idle_timeout: soon\n", encoding="utf-8")
    done = speakerd("check-config", str(bad))
    assert done.returncode == 78
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    problems = lines[:-1]
    assert lines[-1] == f"{bad}: 4 problem(s)"
    keys = sorted(line.split(": ", 1)[0] for line in problems)
    assert keys == ["audio.input.sample_rate", "button.mode", "button.pinn", "session.idle_timeout"]
    assert all(len(line.split(": ", 1)) == 2 and line.split(": ", 1)[1] for line in problems)
    assert any("did you mean 'pin'" in line for line in problems)


def test_check_config_takes_a_board_line_and_names_an_unknown_board(tmp_path: Path) -> None:
    """`board: respeaker-2mic` checks like any config; a misspelt board is one line and exit 78."""
    good = tmp_path / "board.yaml"
    good.write_text("board: respeaker-2mic\nbutton:\n  mode: toggle\n", encoding="utf-8")
    done = speakerd("check-config", str(good))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{good}: ok"
    bad = tmp_path / "typo.yaml"
    bad.write_text("board: respeaker-2mics\n", encoding="utf-8")
    done = speakerd("check-config", str(bad))
    assert done.returncode == 78
    assert done.stderr.strip().splitlines() == [
        "board: unknown board 'respeaker-2mics' (did you mean 'respeaker-2mic'?)",
        f"{bad}: 1 problem(s)"]


@pytest.mark.parametrize(("text", "expected"), [
    ("agent: [\n", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    (None, "cannot read"),
], ids=["invalid-yaml", "not-a-mapping", "missing-file"])
def test_check_config_reports_unreadable_files_without_a_traceback(
        tmp_path: Path, text: str | None, expected: str) -> None:
    """Broken YAML, a list at the top, or no file: exit 78 with one clear line, no traceback."""
    path = tmp_path / "speakerd.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    done = speakerd("check-config", str(path))
    assert done.returncode == 78
    assert expected in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.strip().splitlines()[-1].endswith("1 problem(s)")


# --- run's refusals ------------------------------------------------------------------------


def test_run_with_a_bad_config_exits_78_naming_each_key(tmp_path: Path) -> None:
    """`speakerd run --config BAD`: exit 78 before touching a device, each key named, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("button:\n  mode: sideways\nleds:\n  - kind: neon\n", encoding="utf-8")
    done = speakerd("run", "--config", str(bad), env={"DEEPGRAM_API_KEY": FAKE_KEY})
    assert done.returncode == 78
    assert "button.mode" in done.stderr
    assert "leds[0].kind" in done.stderr or "leds.0.kind" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert FAKE_KEY not in done.stderr + done.stdout


def test_run_without_any_api_key_is_one_line_and_78(tmp_path: Path) -> None:
    """No key in env, credentials or file: exit 78 and a single error line saying where to put one."""
    good = tmp_path / "speakerd.yaml"
    good.write_text("agent:\n  dialect: v1\n", encoding="utf-8")
    done = speakerd("run", "--config", str(good))
    assert done.returncode == 78
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "agent.api_key_file" in lines[0]
    assert "DEEPGRAM_API_KEY" in lines[0]


def test_run_reads_the_key_from_a_systemd_credential(tmp_path: Path) -> None:
    """An empty credential is not a key (78), so the credential file is really the one consulted."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "deepgram_api_key").write_text("\n", encoding="utf-8")
    good = tmp_path / "speakerd.yaml"
    good.write_text("agent:\n  dialect: v1\n", encoding="utf-8")
    done = speakerd("run", "--config", str(good), env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert done.returncode == 78
    assert "agent.api_key_file" in done.stderr


# --- help ----------------------------------------------------------------------------------


def test_top_level_help_lists_every_subcommand() -> None:
    """`speakerd --help` exits 0 and names each subcommand."""
    done = speakerd("--help")
    assert done.returncode == 0, done.stderr
    for name in SUBCOMMANDS:
        assert name in done.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_working_help(command: str) -> None:
    """`speakerd COMMAND --help` exits 0 with a usage line of its own, no traceback."""
    done = speakerd(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: speakerd {command}")
    assert "Traceback" not in done.stderr


def test_emulate_help_lists_the_knobs() -> None:
    """`speakerd emulate --help` shows the emulator's own options: timings and fault injection."""
    done = speakerd("emulate", "--help")
    assert done.returncode == 0, done.stderr
    for knob in ("--port", "--key", "--reply-seconds", "--end-of-speech", "--drop-mid-reply",
                 "--settings-delay", "--refuse-status", "--call"):
        assert knob in done.stdout, knob


def test_emulate_rejects_a_bad_option_with_exit_2() -> None:
    """An unknown emulator option is refused by argparse (exit 2), not started."""
    done = speakerd("emulate", "--no-such-knob")
    assert done.returncode == 2
    assert "--no-such-knob" in done.stderr


# --- devices -------------------------------------------------------------------------------


def test_devices_lists_the_pcm_names_of_the_alsa_config(tmp_path: Path) -> None:
    """`speakerd devices` (and --json) against a self-contained ALSA config lists its named PCMs."""
    asoundrc = tmp_path / "asoundrc"
    asoundrc.write_text(
        'pcm.testspeaker { type null hint { show on description "test speaker" } }\n'
        'pcm.testmic { type null hint { show on description "test mic" } }\n', encoding="utf-8")
    env = {"ALSA_CONFIG_PATH": str(asoundrc)}
    done = speakerd("devices", env=env)
    assert done.returncode == 0, done.stderr
    assert "playback:" in done.stdout and "capture:" in done.stdout
    assert "  testspeaker" in done.stdout.splitlines()
    assert "  testmic" in done.stdout.splitlines()
    as_json = speakerd("devices", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert {"testspeaker", "testmic"} <= set(listed["playback"])
    assert {"testspeaker", "testmic"} <= set(listed["capture"])


# --- the key never shows ---------------------------------------------------------------------


def test_api_key_never_appears_in_a_debug_run_that_talks_to_the_agent(
        pulse_audio: PulseServer, fake_systemd: FakeSystemd,
        speakerd_process: Callable[..., SpeakerdProcess], tmp_path: Path) -> None:
    """log.level DEBUG, a full turn through the emulator and a stop: the key is in no line of stderr."""
    emulator = Emulator(fast_options(api_key=FAKE_KEY, end_of_speech=1.5)).start()
    try:
        config = write_config(tmp_path / "speakerd.yaml",
                              raw_config(emulator, pulse_audio, tmp_path / "state",
                                         log={"level": "DEBUG"}))
        proc = speakerd_process(config, child_env(pulse_audio, fake_systemd, key=FAKE_KEY))
        fake_systemd.wait_for("READY=1")
        proc.press()
        fake_systemd.wait_for("STATUS=listening")
        speak(pulse_audio)
        proc.release()
        speaking = fake_systemd.wait_for("STATUS=speaking")
        fake_systemd.wait_for("STATUS=idle", after=speaking)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0, proc.stderr()
        assert wait_until(lambda: len(emulator.sessions) >= 1)
        assert emulator.sessions[0].settings is not None  # it did authenticate with the key
    finally:
        emulator.stop()
    err = proc.stderr()
    assert " DEBUG " in err  # the debug lines were there to leak into
    assert "Settings" in err
    assert FAKE_KEY not in err
    assert FAKE_KEY[:12] not in err  # not even a prefix of it
    assert "Traceback" not in err


# --- config errors of `speakerd run` ----------------------------------------------------------


def _run(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "speakerd", "run", "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd=config.parent)


CONFIG_ERRORS: dict[str, tuple[str, str, dict[str, str]]] = {
    # name: (YAML, text the error must contain, environment beyond the key)
    "unknown key": ("button:\n  pinn: GPIO17\n", "button.pinn", {}),
    "bad choice": ("button:\n  mode: sideways\n", "button.mode", {}),
    "out of range": ("audio:\n  output:\n    sample_rate: 5\n", "audio.output.sample_rate", {}),
    "wrong type": ("session:\n  idle_timeout: soon\n", "session.idle_timeout", {}),
    "unknown section": ("speeker:\n  x: 1\n", "speeker", {}),
    "invalid yaml": ("agent: [\n", "not valid YAML", {}),
    "not a mapping": ("- 1\n- 2\n", "(top): must be a mapping", {}),
    "no api key": ("agent:\n  dialect: v1\n", "agent.api_key_file", {"DEEPGRAM_API_KEY": ""}),
    "unreadable key file": ("agent:\n  api_key_file: missing-key\n", "agent.api_key_file",
                            {"DEEPGRAM_API_KEY": ""}),
    "empty key file": ("agent:\n  api_key_file: empty-key\n", "agent.api_key_file",
                       {"DEEPGRAM_API_KEY": ""}),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_every_config_error_of_run_exits_78_naming_the_key(tmp_path: Path, case: str) -> None:
    """`speakerd run` with a bad config or no key: exit 78, the key named on stderr, no traceback."""
    text, named, extra = CONFIG_ERRORS[case]
    (tmp_path / "empty-key").write_text("\n")
    (tmp_path / "empty-key").chmod(0o600)
    config = tmp_path / "speakerd.yaml"
    config.write_text(text, encoding="utf-8")
    env = {**os.environ, "DEEPGRAM_API_KEY": TEST_KEY, **extra}
    env.pop("CREDENTIALS_DIRECTORY", None)
    done = _run(config, env)
    assert done.returncode == 78, done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_run_with_a_missing_config_file_exits_78(tmp_path: Path) -> None:
    """`speakerd run --config` naming no file: exit 78 and the path named, no traceback."""
    done = _run(tmp_path / "absent.yaml", {**os.environ, "DEEPGRAM_API_KEY": TEST_KEY})
    assert done.returncode == 78
    assert "absent.yaml" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("content", [b"\xff\xfe" + FAKE_KEY.encode(), f"{FAKE_KEY}\nX-Evil: 1\n".encode()])
def test_check_config_refuses_a_key_file_that_would_inject_a_header(tmp_path: Path,
                                                                    content: bytes) -> None:
    """A non-UTF-8 or two-line key file is `agent.api_key_file: ...` and exit 78, never echoed."""
    key = tmp_path / "key"
    key.write_bytes(content)
    key.chmod(0o600)
    path = tmp_path / "speakerd.yaml"
    path.write_text(f"agent:\n  api_key_file: {key}\n", encoding="utf-8")
    done = speakerd("check-config", str(path))
    assert done.returncode == 78, done
    assert done.stderr.startswith("agent.api_key_file: ")
    assert FAKE_KEY not in done.stdout + done.stderr
