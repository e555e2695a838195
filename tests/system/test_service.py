"""The installed service under a real systemd: install, run, converse, reload, crash, stop, uninstall.

The tests run in file order on one container (each leaves the service running, or says why):
the README's install first, uninstall last.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from speakerd.emulator.audio import SpeechDetector, SpeechEnded
from speakerd.emulator.options import EmulatorOptions
from speakerd.events import State
from tests.support.alsa import load_wav
from tests.support.daemon import played_in_order

from . import container as ct
from .conftest import KEY, figure
from .rig import (
    ASOUND_CONF,
    EMULATOR_UNIT,
    EMULATOR_UNIT_TEXT,
    SPEAKERD,
    UNIT,
    MicFeeder,
    Service,
    free_port,
    monotonic_us_to_s,
    poll,
    port_open,
    readme_command,
)

CONFIG = "/etc/speakerd/speakerd.yaml"
DROPINS = "/etc/systemd/system/speakerd.service.d"
MIC_FIFO = "/srv/speakerd-test/mic.fifo"
SPEAKER_FILE = "/var/lib/speakerd/test-speaker.raw"
LEVELS = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


def _since_ready(p: dict[str, str]) -> float:
    return monotonic_us_to_s(p["ActiveEnterTimestampMonotonic"]) - \
        monotonic_us_to_s(p["ExecMainStartTimestampMonotonic"])


# --- installed and running -------------------------------------------------------------------

def test_the_readme_install_runs_as_written(service: Service) -> None:
    """`sudo scripts/install --key-file key.txt` in a clean clone: packages, user, venv, unit, started."""
    assert readme_command("install") == "sudo scripts/install --key-file key.txt"
    p = service.running()
    assert p is not None, service.props()
    figure("time to READY (systemd: exec → active)", f"{_since_ready(p):.2f} s")


def test_user_groups_files_and_modes(service: Service) -> None:
    """A system user in audio and gpio; root-only key, group-readable config, a 0660 ctl socket."""
    box = service.box
    ids = box.run(["id", "speakerd"]).stdout.strip()
    entry = box.run(["getent", "passwd", "speakerd"]).stdout.strip().split(":")
    groups = set(box.run(["id", "-nG", "speakerd"]).stdout.split())
    figure("user", f"{ids}; home {entry[5]}; shell {entry[6]}")
    assert int(entry[2]) < 1000 and entry[6] == "/usr/sbin/nologin"
    assert groups == {"speakerd", "audio", "gpio"}
    paths = {"/etc/speakerd": "750 root:speakerd", CONFIG: "640 root:speakerd",
             "/etc/speakerd/deepgram_api_key": "600 root:root",
             "/etc/systemd/system/speakerd.service": "644 root:root",
             "/opt/speakerd/venv": "755 root:root", "/var/lib/speakerd": "750 speakerd:speakerd",
             "/run/speakerd": "711 speakerd:speakerd",
             "/run/speakerd/control.sock": "660 speakerd:speakerd-ctl"}
    modes = {}
    for path in paths:
        modes[path] = box.run(["stat", "-c", "%a %U:%G", path]).stdout.strip()
    figure("files", "; ".join(f"{p} {m}" for p, m in modes.items()))
    assert modes == paths
    unit = box.run(["cat", "/etc/systemd/system/speakerd.service"]).stdout
    assert unit == (ct.REPO / "systemd" / "speakerd.service").read_text(encoding="utf-8")


def test_status_line_names_the_state_and_each_missing_device(service: Service) -> None:
    """No sound card: active anyway, and STATUS= says idle and which device key to fix."""
    p = service.running()
    assert p is not None
    text = service.props_when("STATUS= naming both devices",
                              lambda p: "speaker:" in p["StatusText"])["StatusText"]
    figure("STATUS= without a sound card", text)
    assert text.startswith("idle; microphone: ") and "(audio.input.device)" in text
    assert f'Status: "{text[:40]}' in service.systemctl("status", UNIT, "--no-pager", check=False).stdout


def test_alsa_lib_stays_out_of_the_journal(service: Service) -> None:
    """Retried for a while, a missing card is one warning per device and no `ALSA lib` lines."""
    pid = service.running()["MainPID"]  # type: ignore[index]
    # The mic retries with backoff 0.5, 1, 2, 4 s: wait until it has been at it for 4 s.
    poll("4 s of retries", lambda: time.monotonic() - monotonic_us_to_s(
        service.props()["ExecMainStartTimestampMonotonic"]) > 4.0)
    lines = service.messages(pid)
    alsa = [m for m in lines if "ALSA lib" in m]
    warnings = [m for m in lines if "unavailable" in m]
    figure("journal lines of a missing card", f"{len(alsa)} `ALSA lib`, {len(warnings)} warnings: "
                                              f"{warnings}")
    assert alsa == []
    assert len(warnings) == 2 and any("(audio.input.device)" in w for w in warnings) \
        and any("(audio.output.device)" in w for w in warnings)


def test_control_socket_is_for_root_and_the_opt_in_group(service: Service) -> None:
    """`speakerd ctl status` works for root and a member of speakerd-ctl, and not for others."""
    box = service.box
    assert "state: idle" in service.ctl("status").stdout
    gid = box.run(["getent", "group", "speakerd-ctl"]).stdout.split(":")[2]
    member = box.run(["setpriv", "--reuid=nobody", f"--regid={gid}", "--clear-groups", SPEAKERD,
                      "ctl", "status", "--json"], check=False)
    other = box.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", SPEAKERD,
                     "ctl", "status"], check=False)
    assert member.returncode == 0, member.stderr
    assert other.returncode == 1 and "permission denied" in other.stderr
    figure("ctl as a non-member", other.stderr.strip())


def test_exposure_on_the_booted_system(service: Service) -> None:
    """`systemd-analyze security speakerd` on the loaded unit scores at most 2.0."""
    out = service.box.run(["systemd-analyze", "security", UNIT, "--no-pager"], check=False).stdout
    m = re.search(r"Overall exposure level for speakerd\.service: (\d+\.\d+) (\w+)", out)
    assert m is not None, out[-2000:]
    figure("exposure online (systemd-analyze security speakerd)", f"{m.group(1)} {m.group(2)}")
    assert float(m.group(1)) <= 2.0


def _reload(service: Service) -> tuple[int, float, str]:
    started = time.monotonic()
    done = service.systemctl("reload", UNIT, check=False)
    return done.returncode, time.monotonic() - started, done.stderr


def test_reload_applies_a_good_file(service: Service) -> None:
    """`systemctl reload` with a good file: applied (debug lines appear), same process."""
    pid = service.ensure_running()["MainPID"]
    box = service.box
    original = box.run(["cat", CONFIG]).stdout
    try:
        debug = re.sub(r"(?m)^  level: INFO$", "  level: DEBUG", original)
        assert debug != original
        box.write(CONFIG, debug, "0640")
        rc, took, err = _reload(service)
        figure("systemctl reload (good file)", f"{took:.2f} s, exit {rc}")
        assert rc == 0, err
        assert service.props()["MainPID"] == pid
        # journald takes the daemon's lines from its stream in its own time: wait for them.
        poll("a debug line from the reloaded daemon",
             lambda: any(e.get("PRIORITY") == "7" for e in service.journal(f"_PID={pid}")))
        assert "applied" in service.status()["reload"]["message"]
    finally:
        box.write(CONFIG, original, "0640")
        assert _reload(service)[0] == 0


def test_reload_refuses_a_broken_file(service: Service) -> None:
    """A broken file: reload fails naming the key, the service runs on, and its status says why."""
    pid = service.ensure_running()["MainPID"]
    box = service.box
    original = box.run(["cat", CONFIG]).stdout
    try:
        broken = re.sub(r"(?m)^  mode: hold$", "  mode: hod", original)
        assert broken != original
        box.write(CONFIG, broken, "0640")
        rc, took, err = _reload(service)
        p = service.props()
        figure("systemctl reload (broken file)", f"{took:.2f} s, exit {rc}; STATUS={p['StatusText']}")
        assert rc != 0
        assert (p["ActiveState"], p["MainPID"]) == ("active", pid)
        assert "reload failed: button.mode: must be one of hold, toggle" in p["StatusText"]
        assert "button.mode" in service.status()["reload"]["message"]
    finally:
        box.write(CONFIG, original, "0640")
        assert _reload(service)[0] == 0


def test_journal_priorities_follow_the_log_levels(service: Service) -> None:
    """Every speakerd line is stored at its level's priority, so `-p err` shows only errors."""
    ours = [e for e in service.journal("-u", UNIT) if e.get("SYSLOG_IDENTIFIER") == "speakerd"]
    checked = 0
    for entry in ours:
        words = str(entry.get("MESSAGE", "")).split()
        if len(words) > 1 and words[1] in LEVELS:
            assert int(entry["PRIORITY"]) == LEVELS[words[1]], entry["MESSAGE"]
            checked += 1
    errors = [str(e.get("MESSAGE")) for e in service.journal("-p", "err", "-u", UNIT)
              if e.get("SYSLOG_IDENTIFIER") == "speakerd"]
    figure("journal priorities", f"{checked} lines checked; `journalctl -p err -u speakerd`: "
                                 f"{len(errors)} lines, e.g. {errors[:1]}")
    assert checked > 10
    assert errors and all(" ERROR " in m or " CRITICAL " in m for m in errors)
    assert any("reload: " in m for m in errors)


def test_a_second_install_changes_nothing_and_restarts_nothing(service: Service) -> None:
    """The README's command again: no file touched, the same process, nothing restarted."""
    before = service.ensure_running()
    box = service.box
    files = {d: ct.snapshot(box.root, d) for d in ("/etc", "/opt/speakerd", "/var/lib/speakerd")}
    done, took = service.install()
    assert done.returncode == 0, done.stdout + done.stderr
    after = service.props()
    figure("second install", f"{took:.1f} s; output: {done.stdout.strip().splitlines()}")
    for key in ("MainPID", "InvocationID", "NRestarts", "ActiveEnterTimestampMonotonic"):
        assert after[key] == before[key], key
    for d, snap in files.items():
        assert ct.snapshot(box.root, d) == snap, d
    assert not re.search(r"wrote|created|installing|stored|creating", done.stdout)


def test_no_pin_factory_is_one_line_and_no_restart_loop(service: Service) -> None:
    """Without GPIO: one error line naming python3-lgpio, exit 69, not restarted."""
    box = service.box
    box.run(["mv", f"{DROPINS}/test-pins.conf", "/root/test-pins.conf"])
    try:
        service.systemctl("daemon-reload")
        service.systemctl("reset-failed", UNIT, check=False)
        assert service.systemctl("restart", UNIT, check=False).returncode != 0
        p = service.props_when("the unit failed", lambda p: p["ActiveState"] == "failed")
        # A restart would be scheduled as "auto-restart"; "failed" means systemd gave up at once,
        # and NRestarts counts the automatic restarts since the manual one: none.
        assert (p["SubState"], p["ExecMainStatus"], p["NRestarts"]) == ("failed", "69", "0")
        def written() -> list[dict[str, object]] | None:
            # Complete once the daemon's last line ("stopped in ...") has reached the journal.
            entries = service.journal(f"_SYSTEMD_INVOCATION_ID={p['InvocationID']}")
            done = any("stopped in" in str(e.get("MESSAGE")) for e in entries)
            return entries if done else None

        lines = poll("the failed start's lines in the journal", written)
        ours = [str(e["MESSAGE"]) for e in lines
                if e.get("SYSLOG_IDENTIFIER") == "speakerd" and int(str(e["PRIORITY"])) <= 3]
        figure("no pin factory", f"exit {p['ExecMainStatus']}, {p['SubState']}; {ours}")
        assert len(ours) == 1 and "python3-lgpio" in ours[0] and "Traceback" not in ours[0]
    finally:
        box.run(["mv", "/root/test-pins.conf", f"{DROPINS}/test-pins.conf"])
        service.systemctl("daemon-reload")
        service.ensure_running()


# --- a whole conversation ----------------------------------------------------------------------

@dataclass
class Conversation:
    feeder: MicFeeder
    port: int


@pytest.fixture(scope="module")
def conversation(service: Service) -> Iterator[Conversation]:
    """Sound devices from /etc/asound.conf (a paced mic FIFO, a speaker file) and the emulator unit."""
    box = service.box
    box.run("mkdir -p /srv/speakerd-test /etc/speakerd-test && chmod 0755 /srv/speakerd-test")
    feeder = MicFeeder(box.host_path(MIC_FIFO)).start()
    try:
        box.write("/etc/asound.conf", ASOUND_CONF.format(speaker=SPEAKER_FILE, mic=MIC_FIFO))
        box.write("/etc/speakerd-test/emulator.env", f"SPEAKERD_EMULATOR_KEY={KEY}\n", "0600")
        # websockets for the emulator, beside (not in) the installed venv.
        box.run(["/opt/speakerd/venv/bin/pip", "install", "-q", "--disable-pip-version-check",
                 "--target", "/opt/speakerd-test/pylib", "websockets>=13"], timeout=600)
        port = free_port()
        box.write(f"/etc/systemd/system/{EMULATOR_UNIT}",
                  EMULATOR_UNIT_TEXT.format(speakerd=SPEAKERD, port=port))
        config = {"agent": {"url": f"ws://127.0.0.1:{port}/v1/agent/converse"},
                  "audio": {"output": {"sample_rate": 16000}},
                  # Chimes off: the speaker's file then holds the agent's audio only.
                  "chimes": {name: {"enabled": False} for name in ("press", "error", "goodbye")}}
        box.write(CONFIG, yaml.safe_dump(config, sort_keys=False), "0640")
        service.systemctl("daemon-reload")
        service.systemctl("start", EMULATOR_UNIT)
        poll("the emulator listening", lambda: port_open(port))
        # alsa-lib reads /etc/asound.conf once per process: a new one needs a new process.
        old = service.props()["MainPID"]
        service.systemctl("reset-failed", UNIT, check=False)
        service.systemctl("restart", UNIT)
        service.wait_running(other_than=old)
        yield Conversation(feeder, port)
    finally:
        feeder.stop()


def test_a_whole_conversation_through_the_installed_service(
        service: Service, conversation: Conversation) -> None:
    """ctl press, speak into the mic, ctl release: the agent's reply (a parrot) reaches the speaker."""
    pid = service.wait_running()["MainPID"]
    assert poll("STATUS=idle with both devices open",
                lambda: service.props()["StatusText"] == State.IDLE)
    speech = load_wav("hello.wav")
    started = time.monotonic()
    service.ctl("press")
    poll("the listening state", lambda: State.LISTENING in service.states(pid))
    conversation.feeder.say(speech)
    service.ctl("release")
    def played_out() -> list[str] | None:
        states = service.states(pid)
        return states if states[-1:] == [State.IDLE] and State.SPEAKING in states else None

    states = poll("the reply played out", played_out)
    took = time.monotonic() - started
    assert states == [State.CONNECTING, State.LISTENING, State.THINKING, State.SPEAKING, State.IDLE], states
    heard = service.box.host_path(SPEAKER_FILE).read_bytes()
    # The emulator parrots from its speech onset to its end of speech: its own detector, run
    # here on what was said, gives the reply to look for at the speaker.
    detector = SpeechDetector("linear16", 16000, EmulatorOptions().speech_threshold, 1.5)
    [said] = [e.pcm for e in detector.feed(speech + bytes(2 * 16000 * 2))
              if isinstance(e, SpeechEnded)]
    share = played_in_order(said, heard)
    status = service.status()
    figure("conversation", f"press→idle {took:.1f} s; {share:.0%} of the agent's reply heard; "
                           f"{status['last_turn']['line']}")
    # The file plugin may still hold the last buffer (60 ms): at most one 50 ms chunk short.
    assert share >= 0.9, f"only {share:.0%} of the reply reached the speaker"
    assert status["state"] == State.IDLE and status["agent_connected"] is True
    assert 0 < status["connected_seconds"] <= status["uptime_seconds"]
    assert status["last_turn"]["press_to_first_byte_ms"] is not None


def test_status_shows_the_last_error(service: Service, conversation: Conversation) -> None:
    """The agent goes away: STATUS= and ctl status carry the last error; it recovers once back."""
    service.systemctl("stop", EMULATOR_UNIT)
    try:
        if not service.status()["agent_connected"]:
            service.ctl("press")  # connect to nothing: the failure is the last error
            service.ctl("release")
        text = service.props_when("STATUS= with a last error",
                                  lambda p: "last error:" in p["StatusText"])["StatusText"]
        status = service.status()
        figure("STATUS= after the agent went away", text)
        assert status["last_error"] and status["agent_connected"] is False
    finally:
        service.systemctl("start", EMULATOR_UNIT)
        poll("the emulator listening", lambda: port_open(conversation.port))
    poll("idle again", lambda: service.status()["state"] == State.IDLE)


# --- stop, crashes, watchdog -----------------------------------------------------------------------

def test_stop_is_quick_and_clean(service: Service, conversation: Conversation) -> None:
    """`systemctl stop`: exit 0 well within TimeoutStopSec (the figure is the time it took)."""
    service.ensure_running()
    started = time.monotonic()
    service.systemctl("stop", UNIT)
    took = time.monotonic() - started
    p = service.props()
    inner = monotonic_us_to_s(p["InactiveEnterTimestampMonotonic"]) - \
        monotonic_us_to_s(p["ActiveExitTimestampMonotonic"])
    figure("systemctl stop", f"{took:.2f} s (systemd: deactivating {inner:.2f} s), "
                             f"result {p['Result']}, exit {p['ExecMainStatus']}")
    try:
        assert (p["ActiveState"], p["Result"], p["ExecMainStatus"]) == ("inactive", "success", "0")
    finally:
        service.ensure_running()


@pytest.mark.parametrize("sig", ["KILL", "SEGV"])
def test_a_crash_is_restarted(service: Service, conversation: Conversation, sig: str) -> None:
    """A daemon killed by a signal is started again after RestartSec."""
    p = service.ensure_running()
    pid, restarts = p["MainPID"], int(p["NRestarts"])
    started = time.monotonic()
    service.signal(pid, sig)
    q = service.wait_running(other_than=pid)
    took = monotonic_us_to_s(q["ActiveEnterTimestampMonotonic"]) - started
    figure(f"restart after SIG{sig}", f"{took:.2f} s to READY again (RestartSec=2)")
    assert int(q["NRestarts"]) == restarts + 1


def test_exit_78_is_not_restarted(service: Service, conversation: Conversation) -> None:
    """A broken config at start: exit 78, failed, no restart scheduled."""
    box = service.box
    original = box.run(["cat", CONFIG]).stdout
    service.ensure_running()
    try:
        box.write(CONFIG, original + "\nsession:\n  idle_timout: 5\n", "0640")
        assert service.systemctl("restart", UNIT, check=False).returncode != 0
        p = service.props_when("the unit failed", lambda p: p["ActiveState"] == "failed")
        figure("exit 78", f"{p['ActiveState']}/{p['SubState']}, status {p['ExecMainStatus']}, "
                          f"restarts {p['NRestarts']}")
        # NRestarts counts automatic restarts since the manual one: none.
        assert (p["SubState"], p["ExecMainStatus"], p["NRestarts"]) == ("failed", "78", "0")
    finally:
        box.write(CONFIG, original, "0640")
        service.ensure_running()


POLLY = {"provider": "aws_polly", "model": "neural", "voice_id": "Joanna", "language": "en-US",
         "endpoint_url": "https://polly.us-east-1.amazonaws.com/v1/speech"}
CREDSTORE = "/etc/credstore"
POLLY_SECRET = "wJalrXUtnFEMI-system-tier-not-a-key"


def test_a_provider_secret_reaches_the_service_from_the_credential_store(
        service: Service, conversation: Conversation) -> None:
    """aws_polly without its credential: exit 78 naming the key; with the root-only file in
    /etc/credstore, the service runs, and the secret is nowhere in the journal."""
    box = service.box
    original = box.run(["cat", CONFIG]).stdout
    polly = yaml.safe_load(original)
    polly.setdefault("agent", {})["speak"] = dict(POLLY)
    cred = f"{CREDSTORE}/speakerd.speak_credentials"
    had_store = box.run(["test", "-d", CREDSTORE], check=False).returncode == 0
    service.ensure_running()
    try:
        box.write(CONFIG, yaml.safe_dump(polly, sort_keys=False), "0640")
        assert service.systemctl("restart", UNIT, check=False).returncode != 0
        p = service.props_when("the unit failed", lambda p: p["ActiveState"] == "failed")
        assert p["ExecMainStatus"] == "78"
        poll("the key named in the journal", lambda: any(
            "agent.speak.credentials_file" in str(e.get("MESSAGE"))
            for e in service.journal("-u", UNIT)))
        box.run(["install", "-d", "-m", "700", CREDSTORE])
        box.write(cred, "credentials:\n  type: iam\n  region: us-east-1\n"
                        f"  access_key_id: AKIASYSTEMTIER\n  secret_access_key: {POLLY_SECRET}\n",
                  "0600")
        service.systemctl("reset-failed", UNIT)
        service.systemctl("restart", UNIT)
        p = service.wait_running()
        assert box.run(["stat", "-c", "%U %a", cred]).stdout.split() == ["root", "600"]
        figure("provider secret from the credential store",
               f"running (pid {p['MainPID']}), the file root 600")
        journal = " ".join(str(e.get("MESSAGE")) for e in service.journal("-u", UNIT))
        assert POLLY_SECRET not in journal
    finally:
        box.run(["rm", "-f", cred])
        if not had_store:  # the purge check expects the system as it was before the install
            box.run(["rmdir", CREDSTORE])
        box.write(CONFIG, original, "0640")
        service.systemctl("reset-failed", UNIT, check=False)
        service.systemctl("restart", UNIT, check=False)
        service.ensure_running()


def test_a_hung_daemon_is_killed_by_the_watchdog_and_restarted(
        service: Service, conversation: Conversation) -> None:
    """SIGSTOP: no WATCHDOG=1 for WatchdogSec (3 s by a test drop-in), so systemd restarts it."""
    box = service.box
    box.write(f"{DROPINS}/test-watchdog.conf", "[Service]\nWatchdogSec=3\n")
    pid = ""
    try:
        service.systemctl("daemon-reload")
        p = service.ensure_running()
        service.systemctl("restart", UNIT)
        p = service.wait_running(other_than=p["MainPID"])
        pid = p["MainPID"]
        started = time.monotonic()
        service.signal(pid, "STOP")
        q = service.wait_running(other_than=pid)
        took = monotonic_us_to_s(q["ActiveEnterTimestampMonotonic"]) - started
        figure("restart by the watchdog", f"{took:.2f} s from SIGSTOP to READY again "
                                          f"(WatchdogSec=3, RestartSec=2)")
        poll("systemd's watchdog line", lambda: any(
            "Watchdog timeout" in str(e.get("MESSAGE")) for e in service.journal("-u", UNIT, "_PID=1")))
    finally:
        if pid:
            box.run(["sh", "-c", f"kill -KILL {int(pid)} 2>/dev/null"], check=False)
        box.run(["rm", "-f", f"{DROPINS}/test-watchdog.conf"])
        service.systemctl("daemon-reload")
        service.systemctl("restart", UNIT)
        service.ensure_running()


# --- uninstall -----------------------------------------------------------------------------------

def test_uninstall_then_purge_leave_nothing_behind(service: Service, conversation: Conversation) -> None:
    """uninstall keeps only /etc/speakerd and the state; --purge removes those: as before install."""
    box = service.box
    box.run("systemctl stop speakerd-test-emulator; rm -f /etc/systemd/system/speakerd-test-emulator.service"
            " /etc/asound.conf; rm -rf /srv/speakerd-test /etc/speakerd-test /opt/speakerd-test;"
            " systemctl daemon-reload")
    done = box.run(f"cd /root/speakerd && {readme_command('uninstall')}", timeout=120)
    figure("uninstall", "; ".join(done.stdout.strip().splitlines()))
    p = service.props()
    assert p["ActiveState"] == "inactive" and p["LoadState"] == "not-found"
    for gone in ("/opt/speakerd", "/etc/systemd/system/speakerd.service", "/run/speakerd",
                 "/etc/systemd/system/multi-user.target.wants/speakerd.service"):
        assert box.run(["test", "-e", gone], check=False).returncode != 0, gone
    assert box.run(["getent", "passwd", "speakerd"], check=False).returncode == 2
    for group in ("speakerd", "speakerd-ctl"):
        assert box.run(["getent", "group", group], check=False).returncode == 2
    assert box.host_path(CONFIG).is_file() and box.host_path("/etc/speakerd/deepgram_api_key").is_file()
    done = box.run(f"cd /root/speakerd && {readme_command('uninstall')} --purge", timeout=120)
    figure("uninstall --purge", "; ".join(done.stdout.strip().splitlines()))
    after = ct.snapshot(box.root)
    added = sorted(set(after) - set(service.baseline))
    removed = sorted(set(service.baseline) - set(after))
    changed = sorted(k for k in set(after) & set(service.baseline) if after[k] != service.baseline[k])
    assert (added, removed, changed) == ([], [], [])
