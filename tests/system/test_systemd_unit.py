"""The systemd unit: static checks by systemd-analyze, the directives the daemon relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from speakerd.config import CREDENTIAL_NAME, DEFAULT_PATH, SPEAK_CREDENTIAL, THINK_CREDENTIAL, LogConfig
from speakerd.control import DEFAULT_SOCKET, GROUP, SOCKET_NAME

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "speakerd.service"
CHECK = ROOT / "scripts" / "check-unit"
MAX_EXPOSURE = 2.0


def _directives(text: str) -> list[tuple[str, str, str, int]]:
    """(section, key, value, line number) of every directive, repeated keys kept."""
    out = []
    section = ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key, value, n))
    return out


def _values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v, _ in _directives(UNIT.read_text(encoding="utf-8"))
            if s == section and k == key]


def _one(key: str, section: str = "Service") -> str:
    [value] = _values(key, section)
    return value


@pytest.fixture(scope="module")
def analyze() -> str:
    """systemd-analyze, which CI installs with the Debian package 'systemd'."""
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (scripts/lib/setup.sh)")
    return path


def _check_unit(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CHECK), str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_check_unit_passes_and_prints_the_exposure(analyze: str) -> None:
    """scripts/check-unit accepts the shipped unit and prints an exposure of at most 2.0."""
    done = _check_unit(UNIT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    m = re.search(r"Overall exposure level for speakerd\.service: (\d+\.\d)", done.stdout)
    assert m is not None, done.stdout
    assert float(m.group(1)) <= MAX_EXPOSURE


def test_verify_is_silent_on_a_copy_with_an_existing_binary(analyze: str, tmp_path: Path) -> None:
    """systemd-analyze verify prints nothing at all for the unit (warnings count as failures)."""
    unit = tmp_path / "speakerd.service"
    text = UNIT.read_text(encoding="utf-8")
    # The venv's commands (ExecStart, ExecReload) exist only on a device.
    unit.write_text(re.sub(r"(?m)^(Exec\w+=)/opt/speakerd/venv/bin/\S+", r"\1/bin/true", text),
                    encoding="utf-8")
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_security_threshold_gate(analyze: str, tmp_path: Path) -> None:
    """The offline security score of the shipped unit passes the 2.0 gate (20 on its x10 scale)."""
    done = subprocess.run([analyze, "security", "--offline=true", "--threshold=20", str(UNIT)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 0, done.stdout


def test_check_unit_fails_on_a_verify_warning(analyze: str, tmp_path: Path) -> None:
    """A DeviceAllow that verify only warns about (exit 0) still fails the check."""
    unit = tmp_path / "speakerd.service"
    text = UNIT.read_text(encoding="utf-8")
    unit.write_text(text.replace("DeviceAllow=char-alsa rw", "DeviceAllow=/dev/snd /dev/gpiochip*"),
                    encoding="utf-8")
    done = _check_unit(unit)
    assert done.returncode != 0
    assert "Invalid device rights" in done.stderr


def test_check_unit_fails_when_exposure_rises(analyze: str, tmp_path: Path) -> None:
    """Dropping the capability, namespace and syscall lines pushes exposure over 2.0 and fails."""
    unit = tmp_path / "speakerd.service"
    kept = [ln for ln in UNIT.read_text(encoding="utf-8").splitlines()
            if not ln.startswith(("CapabilityBoundingSet=", "RestrictNamespaces=",
                                  "SystemCallFilter="))]
    unit.write_text("\n".join(kept) + "\n", encoding="utf-8")
    done = _check_unit(unit)
    assert done.returncode != 0
    assert "exposure above 2.0" in done.stderr
    m = re.search(r"Overall exposure level for speakerd\.service: (\d+\.\d)", done.stdout)
    assert m is not None and float(m.group(1)) > MAX_EXPOSURE


def test_service_contract() -> None:
    """The directives the daemon and scripts/install rely on, with their exact values."""
    assert _one("Type") == "notify"
    assert _one("NotifyAccess") == "main"
    assert _one("WatchdogSec") == "30"
    assert _one("Restart") == "on-failure"
    assert _one("RestartPreventExitStatus").split() == ["69", "78"]
    assert _one("ExecStart") == f"/opt/speakerd/venv/bin/speakerd run --config {DEFAULT_PATH}"
    # Reload through the daemon itself: a minimal Debian has no /bin/kill.
    assert _one("ExecReload") == "/opt/speakerd/venv/bin/speakerd ctl reload"
    # The client's default socket is the one the daemon makes in its RuntimeDirectory.
    assert DEFAULT_SOCKET == f"/run/{_one('RuntimeDirectory')}/{SOCKET_NAME}"
    assert _one("ExecStartPost") == f"+/bin/chgrp -h {GROUP} {DEFAULT_SOCKET}"
    assert _one("User") == _one("Group") == "speakerd"
    assert _one("SupplementaryGroups").split() == ["audio", "gpio"]
    assert sorted(_values("DeviceAllow")) == ["char-alsa rw", "char-gpiochip rw", "char-spi rw"]
    assert _one("DevicePolicy") == "closed"
    assert _one("WantedBy", "Install") == "multi-user.target"


def test_unit_paths_agree_with_the_config_defaults() -> None:
    """The state directory, credential names and config path match what the daemon expects."""
    state = Path(LogConfig().state_dir)
    assert state == Path("/var/lib") / _one("StateDirectory")
    # lgpio makes its FIFO in the working directory, which must be writable.
    assert Path(_one("WorkingDirectory")) == state
    key, *providers = _values("LoadCredential")
    name, _, source = key.partition(":")
    assert name == CREDENTIAL_NAME
    assert Path(source).parent == Path(DEFAULT_PATH).parent
    # The providers' secrets by name only (from the credential store): optional at start.
    assert providers == [THINK_CREDENTIAL, SPEAK_CREDENTIAL]


def test_network_and_local_sockets_stay_allowed() -> None:
    """The agent needs IPv4/IPv6, and the notify socket needs AF_UNIX."""
    families = set(_one("RestrictAddressFamilies").split())
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= families


@pytest.mark.parametrize(("key", "value"), [
    ("ProcSubset", None),          # hides /proc/cpuinfo and the device tree from gpiozero
    ("PrivateDevices", None),      # hides /dev/snd and /dev/gpiochip*
    ("PrivateUsers", None),        # group access to the devices is unproven under it
    ("PrivateNetwork", None),      # the agent is on the internet
    ("SystemCallFilter", "~@resources"),
])
def test_pi_breaking_hardening_stays_out(key: str, value: str | None) -> None:
    """Hardening that would break audio or GPIO on a Pi is absent, and named in a comment."""
    values = _values(key)
    if value is None:
        assert values == []
    else:
        assert value not in values
    text = UNIT.read_text(encoding="utf-8")
    comments = "\n".join(ln for ln in text.splitlines() if ln.startswith("#"))
    assert (value or key) in comments


def test_the_damage_of_whatever_slips_through_is_bounded() -> None:
    """Memory, tasks and core dumps are capped; no real-time scheduling, no netlink sockets."""
    assert _one("MemoryMax") == "256M"
    assert _one("TasksMax") == "64"
    assert _one("LimitCORE") == "0"  # a core dump would hold the API key
    assert _one("RestrictRealtime") == "yes"
    assert "AF_NETLINK" not in _one("RestrictAddressFamilies").split()


def test_exposure_stays_at_most_1_7(analyze: str) -> None:
    """The offline security exposure of the shipped unit is 1.7 or lower."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / "check-unit")], capture_output=True,
                          text=True, timeout=120)
    m = re.search(r"Overall exposure level for speakerd\.service: (\d+\.\d)", done.stdout)
    assert m is not None, done.stdout + done.stderr
    print(f"\nexposure {m.group(1)}")
    assert float(m.group(1)) <= 1.7


def test_every_directive_has_a_comment_saying_why() -> None:
    """Each directive line is directly below its own comment."""
    lines = UNIT.read_text(encoding="utf-8").splitlines()
    bare = []
    for section, key, _, n in _directives("\n".join(lines)):
        above = lines[n - 2] if n >= 2 else ""
        if not above.startswith("#"):
            bare.append(f"line {n}: [{section}] {key}")
    assert not bare, "\n".join(bare)
