"""scripts/install and scripts/uninstall run into scratch roots: files, owners, modes, reruns."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install"
UNINSTALL = ROOT / "scripts" / "uninstall"
FAKE_KEY = "dgFAKEkey-51e0b7c94a3d2f68"  # recognisable in any output it leaks into
AS_ROOT = os.geteuid() == 0


def _run(script: Path, *args: str, key: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a script with no terminal, `speakerd` of this checkout on PATH, and no key unless given."""
    run_env = {k: v for k, v in os.environ.items() if k != "DEEPGRAM_API_KEY"}
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env.get('PATH', '')}"
    if key is not None:
        run_env["DEEPGRAM_API_KEY"] = key
    run_env.update(env or {})
    done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=run_env, timeout=120, check=False)
    for k in (FAKE_KEY, "dgOTHERkey-0a1b2c3d"):
        assert k not in done.stdout + done.stderr, "the key was printed"
    return done


def _install(root: Path, *args: str, key: str | None = FAKE_KEY) -> subprocess.CompletedProcess[str]:
    return _run(INSTALL, "--root", str(root), "--skip-venv", *args, key=key)


def _snapshot(root: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """Every path under root with its mode, owners, mtime and content hash."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, digest)
    return out


def _entries(root: Path, name: str) -> dict[str, list[str]]:
    lines = (root / "etc" / name).read_text(encoding="utf-8").splitlines()
    return {line.split(":")[0]: line.split(":") for line in lines if line}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A scratch root after one successful install."""
    root = tmp_path / "root"
    done = _install(root)
    assert done.returncode == 0, done.stderr
    return root


def test_install_puts_each_file_in_place(installed: Path) -> None:
    """Config, key and unit land where the unit expects them, with the shipped content."""
    etc = installed / "etc" / "speakerd"
    assert (etc / "speakerd.yaml").read_bytes() == (ROOT / "config" / "speakerd.yaml").read_bytes()
    assert (etc / "deepgram_api_key").read_text(encoding="utf-8") == FAKE_KEY + "\n"
    unit = installed / "etc" / "systemd" / "system" / "speakerd.service"
    assert unit.read_bytes() == (ROOT / "systemd" / "speakerd.service").read_bytes()


def test_install_sets_modes_and_owners(installed: Path) -> None:
    """Key 0600 root:root; config 0640 root:speakerd; unit 0644; owners applied when root."""
    etc = installed / "etc" / "speakerd"
    key, config = etc / "deepgram_api_key", etc / "speakerd.yaml"
    unit = installed / "etc" / "systemd" / "system" / "speakerd.service"
    assert (_mode(key), _mode(config), _mode(etc), _mode(unit)) == (0o600, 0o640, 0o750, 0o644)
    if AS_ROOT:
        gid = int(_entries(installed, "group")["speakerd"][2])
        assert (key.stat().st_uid, key.stat().st_gid) == (0, 0)
        assert (config.stat().st_uid, config.stat().st_gid) == (0, gid)
        assert (etc.stat().st_uid, etc.stat().st_gid) == (0, gid)
        assert (unit.stat().st_uid, unit.stat().st_gid) == (0, 0)


def test_install_creates_the_user_in_audio_and_gpio(installed: Path) -> None:
    """A system user with its own group, no login shell, in audio and gpio; the ctl group."""
    user = _entries(installed, "passwd")["speakerd"]
    groups = _entries(installed, "group")
    assert int(user[2]) < 1000 and user[3] == groups["speakerd"][2]
    assert user[5] == "/var/lib/speakerd" and user[6] == "/usr/sbin/nologin"
    assert "speakerd" in groups["audio"][3].split(",")
    assert "speakerd" in groups["gpio"][3].split(",")
    assert groups["audio"][2] == "29"
    # The control socket's opt-in group: created empty, members are the owner's choice.
    assert groups["speakerd-ctl"][3] == ""


def test_existing_groups_and_members_are_kept(tmp_path: Path) -> None:
    """A root that already has audio and gpio keeps their ids and members; ids do not collide."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "group").write_text("audio:x:29:pi\ngpio:x:999:pi\n", encoding="utf-8")
    (root / "etc" / "passwd").write_text("pi:x:1000:1000::/home/pi:/bin/bash\n"
                                         "svc:x:998:998::/:/usr/sbin/nologin\n", encoding="utf-8")
    assert _install(root).returncode == 0
    groups = _entries(root, "group")
    assert groups["audio"][2:] == ["29", "pi,speakerd"]
    assert groups["gpio"][2:] == ["999", "pi,speakerd"]
    uid = _entries(root, "passwd")["speakerd"][2]
    assert uid not in ("998", "999", "1000")


def test_the_user_joins_spi_only_where_the_group_exists(tmp_path: Path, installed: Path) -> None:
    """Raspberry Pi OS's spi group (it owns /dev/spidev*) gains the user; no group is invented."""
    assert "spi" not in _entries(installed, "group")
    root = tmp_path / "pi"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "group").write_text("audio:x:29:pi\nspi:x:995:pi\n", encoding="utf-8")
    (root / "etc" / "passwd").write_text("pi:x:1000:1000::/home/pi:/bin/bash\n", encoding="utf-8")
    assert _install(root).returncode == 0
    assert _entries(root, "group")["spi"][2:] == ["995", "pi,speakerd"]


def test_second_install_changes_nothing(installed: Path) -> None:
    """Running install again leaves every file, mode, owner and timestamp as it was."""
    before = _snapshot(installed)
    done = _install(installed)
    assert done.returncode == 0, done.stderr
    assert _snapshot(installed) == before
    assert "wrote" not in done.stdout


def test_install_never_overwrites_an_edited_config(installed: Path) -> None:
    """The owner's edits survive a reinstall; only mode and group are made right."""
    config = installed / "etc" / "speakerd" / "speakerd.yaml"
    config.write_text("button:\n  mode: toggle\n", encoding="utf-8")
    config.chmod(0o600)
    done = _install(installed)
    assert done.returncode == 0, done.stderr
    assert config.read_text(encoding="utf-8") == "button:\n  mode: toggle\n"
    assert _mode(config) == 0o640
    assert "kept the existing" in done.stdout


def test_install_refuses_a_broken_existing_config(installed: Path) -> None:
    """A config with mistakes stops the install with every problem named, and is left alone."""
    config = installed / "etc" / "speakerd" / "speakerd.yaml"
    config.write_text("button:\n  mode: hod\nsession:\n  idle_timout: 5\n", encoding="utf-8")
    done = _install(installed)
    assert done.returncode != 0
    assert "button.mode: must be one of hold, toggle" in done.stderr
    assert "session.idle_timout: unknown key" in done.stderr
    assert config.read_text(encoding="utf-8").startswith("button:\n  mode: hod")


def test_key_from_a_key_file(tmp_path: Path) -> None:
    """--key-file is read (whitespace stripped) and wins over the environment."""
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"  {FAKE_KEY}\r\n", encoding="utf-8")
    root = tmp_path / "root"
    done = _run(INSTALL, "--root", str(root), "--skip-venv", "--key-file", str(key_file),
                key="dgOTHERkey-0a1b2c3d")
    assert done.returncode == 0, done.stderr
    key = root / "etc" / "speakerd" / "deepgram_api_key"
    assert key.read_text(encoding="utf-8") == FAKE_KEY + "\n"


def test_missing_or_empty_key_file_is_refused(tmp_path: Path) -> None:
    """A key file that cannot be read or holds nothing stops the install with its name."""
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    for path, message in ((tmp_path / "nope", "cannot read key file"), (empty, "is empty")):
        done = _run(INSTALL, "--root", str(tmp_path / "root"), "--skip-venv",
                    "--key-file", str(path))
        assert done.returncode != 0
        assert message in done.stderr and str(path) in done.stderr


def test_a_new_key_replaces_the_old_one_privately(installed: Path) -> None:
    """Installing with a different key replaces the file, still 0600, and prints neither key."""
    done = _install(installed, key="dgOTHERkey-0a1b2c3d")
    assert done.returncode == 0, done.stderr
    key = installed / "etc" / "speakerd" / "deepgram_api_key"
    assert key.read_text(encoding="utf-8") == "dgOTHERkey-0a1b2c3d\n"
    assert _mode(key) == 0o600
    assert not list(key.parent.glob(".deepgram_api_key.*")), "temporary key file left behind"


def test_rerun_without_a_key_keeps_the_installed_one(installed: Path) -> None:
    """With no key given, the key already installed stays as it is."""
    done = _install(installed, key=None)
    assert done.returncode == 0, done.stderr
    key = installed / "etc" / "speakerd" / "deepgram_api_key"
    assert key.read_text(encoding="utf-8") == FAKE_KEY + "\n"


def test_no_key_at_all_warns_in_a_scratch_root(tmp_path: Path) -> None:
    """Without any key and no terminal to ask on, install says where the key must go."""
    root = tmp_path / "root"
    done = _install(root, key=None)
    assert done.returncode == 0, done.stderr
    assert "no API key yet" in done.stderr
    assert str(root / "etc" / "speakerd" / "deepgram_api_key") in done.stderr
    assert not (root / "etc" / "speakerd" / "deepgram_api_key").exists()


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    """A mistyped option stops with usage instead of installing something unexpected."""
    done = _run(INSTALL, "--roots", str(tmp_path))
    assert done.returncode == 2
    assert "unknown option --roots" in done.stderr and "Usage:" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_uninstall_keeps_the_config(installed: Path) -> None:
    """uninstall removes the unit, the venv and the user but keeps /etc/speakerd."""
    venv_file = installed / "opt" / "speakerd" / "venv" / "bin" / "speakerd"
    venv_file.parent.mkdir(parents=True)
    venv_file.write_text("#!/bin/sh\n", encoding="utf-8")
    done = _run(UNINSTALL, "--root", str(installed))
    assert done.returncode == 0, done.stderr
    assert not (installed / "etc" / "systemd" / "system" / "speakerd.service").exists()
    assert not (installed / "opt" / "speakerd").exists()
    assert "speakerd" not in _entries(installed, "passwd")
    groups = _entries(installed, "group")
    assert "speakerd" not in groups and "speakerd-ctl" not in groups
    assert "speakerd" not in groups["audio"][3].split(",")
    assert "speakerd" not in groups["gpio"][3].split(",")
    etc = installed / "etc" / "speakerd"
    assert (etc / "speakerd.yaml").is_file() and (etc / "deepgram_api_key").is_file()


def test_uninstall_purge_removes_config_and_state(installed: Path) -> None:
    """--purge also deletes /etc/speakerd and /var/lib/speakerd."""
    state = installed / "var" / "lib" / "speakerd"
    state.mkdir(parents=True)
    (state / "conversation.jsonl").write_text("{}\n", encoding="utf-8")
    done = _run(UNINSTALL, "--root", str(installed), "--purge")
    assert done.returncode == 0, done.stderr
    assert not (installed / "etc" / "speakerd").exists()
    assert not state.exists()


def test_uninstall_twice_and_reinstall(installed: Path) -> None:
    """A second uninstall is a no-op, and installing again restores the same layout."""
    before = set(_snapshot(installed))
    assert _run(UNINSTALL, "--root", str(installed)).returncode == 0
    again = _run(UNINSTALL, "--root", str(installed))
    assert again.returncode == 0 and "removed" not in again.stdout
    assert _install(installed).returncode == 0
    assert set(_snapshot(installed)) == before


def test_scripts_are_strict_bash() -> None:
    """Both scripts parse, and run with set -euo pipefail."""
    for script in (INSTALL, UNINSTALL):
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
        assert "set -euo pipefail" in script.read_text(encoding="utf-8")
        assert os.access(script, os.X_OK)


def test_nothing_installed_is_writable_by_others_under_umask_000(tmp_path: Path) -> None:
    """Root's umask may be 000: no file or directory the install creates is group/world-writable."""
    root = tmp_path / "root"
    run_env = {k: v for k, v in os.environ.items() if k != "DEEPGRAM_API_KEY"}
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env.get('PATH', '')}"
    key_file = tmp_path / "key.txt"
    key_file.write_text(FAKE_KEY + "\n", encoding="utf-8")
    done = subprocess.run(["bash", "-c", 'umask 000; exec bash "$0" "$@"', str(INSTALL),
                           "--root", str(root), "--skip-venv", "--key-file", str(key_file)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, env=run_env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    writable = [str(p.relative_to(root)) for p in [root, *root.rglob("*")]
                if not p.is_symlink() and _mode(p) & 0o022]
    assert writable == []


def test_the_key_variable_never_reaches_the_tools_it_runs(tmp_path: Path) -> None:
    """A key given in the environment is read and dropped: programs the install runs never see it."""
    root = tmp_path / "root"
    spy = tmp_path / "bin"
    spy.mkdir()
    seen = tmp_path / "seen"
    # `speakerd check-config` is run by the install: this one records its environment.
    (spy / "speakerd").write_text(f'#!/bin/sh\nenv > "{seen}"\nexit 0\n', encoding="utf-8")
    (spy / "speakerd").chmod(0o755)
    done = _run(INSTALL, "--root", str(root), "--skip-venv", key=FAKE_KEY,
                env={"PATH": f"{spy}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert done.returncode == 0, done.stderr
    assert (root / "etc" / "speakerd" / "deepgram_api_key").read_text(encoding="utf-8") == FAKE_KEY + "\n"
    assert seen.exists() and FAKE_KEY not in seen.read_text(encoding="utf-8")
