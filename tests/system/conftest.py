"""The system tier: the shipped unit file, the installer, the command line as installed, and the
installed service under a booted systemd (Debian 12 in systemd-nspawn).

Every test here carries the `system` marker. The figures the container checks measure are
printed as they run (visible with -s) and again, all together, in pytest's terminal summary.
Where this machine cannot boot the container, those checks are skipped with the reason; with
CI=true they fail instead, so CI never passes without having run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import container as ct
from .rig import Service

HERE = Path(__file__).resolve().parent
FIGURES: list[tuple[str, str]] = []
# The fake key the service is installed with; the emulator is started with the same one.
KEY = "dgFAKEsystemtier-4e1f0a9b7c2d"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder `system` (the hook sees the whole session's items)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.system)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("speakerd system tier: figures")
        for name, value in FIGURES:
            terminalreporter.write_line(f"{name}: {value}")


def figure(name: str, value: str) -> None:
    """Print a measured figure now and keep it for the summary."""
    print(f"[figure] {name}: {value}")
    FIGURES.append((name, value))


def _cannot(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the system tier must run in CI, but this machine cannot boot the container: "
                    f"{reason}", pytrace=False)
    pytest.skip(f"cannot boot the test container: {reason}")


def _scaffold(box: ct.Container) -> None:
    """The host's package-manager configuration, and the test-only drop-in for the pins."""
    # The host's CA trust (bound read-only at /usr/local/share/ca-certificates) into the bundle
    # that pip's cert setting and SSL_CERT_FILE name.
    box.run("update-ca-certificates >/dev/null")
    # sudo resets the environment; the README's `sudo scripts/install` keeps the package
    # manager's variables (proxies, PIP_*) as a sudoers drop-in would on a machine behind a proxy.
    names = sorted(k for k in box.env if ct.PASS_ENV.match(k))
    if names:
        box.write("/etc/sudoers.d/speakerd-test-env", f'Defaults env_keep += "{" ".join(names)}"\n',
                  "0440")
    # No GPIO here: gpiozero's mock pins (PWM-capable, for the default LED). A drop-in of the
    # test's own, so the unit the installer writes is the shipped one.
    box.write("/etc/systemd/system/speakerd.service.d/test-pins.conf",
              "[Service]\nEnvironment=GPIOZERO_PIN_FACTORY=mock GPIOZERO_MOCK_PIN_CLASS=mockpwmpin\n")


# Package scope: the container goes as soon as the last system test is done, not at the end
# of the whole suite.
@pytest.fixture(scope="package")
def box() -> Iterator[ct.Container]:
    """A booted fresh copy of the cached root, with a clean copy of HEAD in /root/speakerd."""
    try:
        ct.preflight()
    except ct.CannotBoot as exc:
        _cannot(str(exc))
    runs = ct.cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    ct.remove_stale_runs(runs)
    run = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=runs))
    log = run / "container.log"
    box = None
    try:
        try:
            started = time.monotonic()
            cached, built = ct.cached_root(log)
            figure("cached root", f"built in {built:.0f} s" if built else
                   f"reused ({cached.name}, {time.monotonic() - started:.1f} s)")
            started = time.monotonic()
            ct.copy_root(cached, run / "root")
            commit = ct.export_checkout(run / "root" / "root" / "speakerd")
            (run / "root" / "root" / "speakerd" / "key.txt").write_text(KEY + "\n")
            (run / "root" / "root" / "speakerd" / "key.txt").chmod(0o600)
            pip_cache = ct.cache_dir() / "pip"
            pip_cache.mkdir(exist_ok=True)
            binds = [*ct.host_binds(), f"--bind={pip_cache}:/root/.cache/pip"]
            box = ct.boot(run / "root", log, binds)
        except ct.CannotBoot as exc:
            _cannot(str(exc))
        assert box is not None
        dirty = subprocess.run(["git", "-C", str(ct.REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        figure("container", f"copied and booted in {time.monotonic() - started:.1f} s (HEAD "
                            f"{commit[:12]}{', without the uncommitted changes' if dirty else ''}; "
                            f"log {log})")
        _scaffold(box)
        yield box
    finally:
        if box is not None:
            box.stop()
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="package")
def service(box: ct.Container) -> Service:
    """The container, with speakerd installed by the README's command (timed)."""
    svc = Service(box)
    svc.baseline = ct.snapshot(box.root)
    done, seconds = svc.install()
    assert done.returncode == 0, done.stdout + done.stderr
    figure("install (README command, clean root)", f"{seconds:.1f} s")
    return svc
