"""A booted Debian 12 under systemd-nspawn: the cached root, host configuration, commands, teardown.

The root is made once by debootstrap and kept outside the checkout, keyed by a hash of its
package list (so a change to the list, e.g. in scripts/install, builds a new one). Each run
boots a fresh copy of it. Commands run inside with `nsenter -t <the container's PID 1> -a`.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
# What a fresh minimal Debian 12 has after `apt-get install systemd sudo python3`: no procps
# (so no /bin/kill), no sound card, no GPIO library. ca-certificates brings
# update-ca-certificates for the host's CA trust.
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "ca-certificates", "sudo")
# Bumped when the way the root is made changes (not only its package list).
ROOT_FORMAT = "2"
HOSTNAME = "speakerd-test"
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
# Environment a package manager reads: proxies, pip's own settings, CA bundles. Only these
# reach the container; everything else of the caller (PATH, venvs, test settings) stays out.
PASS_ENV = re.compile(r"^(?:(?:https?|ftp|all|no)_proxy|(?:HTTPS?|FTP|ALL|NO)_PROXY|PIP_[A-Z_]+|"
                       r"SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE)$")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CannotBoot(Exception):
    """This machine cannot boot the container; the message says why."""


def installer_packages() -> list[str]:
    """The Debian packages scripts/install installs (its APT_PACKAGES line)."""
    text = (REPO / "scripts" / "install").read_text(encoding="utf-8")
    match = re.search(r"^APT_PACKAGES=\(([^)]*)\)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("scripts/install has no APT_PACKAGES=(...) line")
    return match.group(1).split()


def packages() -> list[str]:
    """The cached root's packages: a minimal Debian plus what the installer would fetch.

    They are in the root already so that a run needs no apt download, and so that uninstall
    can be compared against the state before install without package noise.
    """
    return sorted(set(BASE_PACKAGES) | set(installer_packages()))


def cache_key() -> str:
    text = "\n".join([ROOT_FORMAT, SUITE, os.uname().machine, *packages()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """$SPEAKERD_SYSTEM_CACHE, else $XDG_CACHE_HOME/speakerd-test, else /var/cache/speakerd-test."""
    if os.environ.get("SPEAKERD_SYSTEM_CACHE"):
        return Path(os.environ["SPEAKERD_SYSTEM_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "speakerd-test"
    return Path("/var/cache/speakerd-test")


def mirror() -> str:
    """$SPEAKERD_SYSTEM_MIRROR, else the host's own bookworm archive, else deb.debian.org."""
    if os.environ.get("SPEAKERD_SYSTEM_MIRROR"):
        return os.environ["SPEAKERD_SYSTEM_MIRROR"]
    try:
        out = subprocess.run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)"],
                             capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        uri, _, release = line.partition(" ")
        if release == SUITE and "security" not in uri:
            return uri
    return "http://deb.debian.org/debian"


def preflight() -> None:
    """Raise CannotBoot naming the first missing requirement."""
    if os.geteuid() != 0:
        raise CannotBoot("debootstrap and systemd-nspawn need root (run the system tier as root)")
    missing = [tool for tool in ("debootstrap", "systemd-nspawn", "nsenter", "git")
               if shutil.which(tool) is None]
    if missing:
        raise CannotBoot(f"missing {', '.join(missing)} "
                         "(apt-get install debootstrap systemd-container util-linux git)")
    if not Path("/sys/fs/cgroup").is_dir():
        raise CannotBoot("no /sys/fs/cgroup: systemd cannot run as the container's init")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock so that two runs never build the same root at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_root(log: Path, timeout: float = 1800.0) -> tuple[Path, float]:
    """The cached root for the current package list, built if missing; (path, build seconds)."""
    base = cache_dir()
    root = base / f"{SUITE}-{cache_key()}"
    with _locked(base / ".lock"):
        if (root / ".speakerd-root-ok").is_file():
            return root, 0.0
        for stale in base.glob(f"{SUITE}-*"):
            if stale != root:  # another package list's root: never used again
                shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=base))
        started = time.monotonic()
        try:
            with open(log, "ab") as out:
                cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(packages())}",
                       SUITE, str(work / "root"), mirror()]
                out.write(f"$ {shlex.join(cmd)}\n".encode())
                out.flush()
                done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, timeout=timeout, check=False)
            if done.returncode != 0:
                raise CannotBoot(f"debootstrap failed (exit {done.returncode}); see {log}")
            # What the Debian installer writes and debootstrap does not (it copies the host's
            # hostname and leaves no hosts file, so sudo cannot resolve its own host name).
            (work / "root" / "etc" / "hostname").write_text(HOSTNAME + "\n")
            (work / "root" / "etc" / "hosts").write_text(
                f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost\n")
            # apt's downloads are not needed once installed; the root is copied on every run.
            shutil.rmtree(work / "root" / "var" / "cache" / "apt" / "archives", ignore_errors=True)
            (work / "root" / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
            (work / "root" / ".speakerd-root-ok").write_text(" ".join(packages()) + "\n")
            shutil.rmtree(root, ignore_errors=True)
            os.rename(work / "root", root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return root, time.monotonic() - started


def host_binds() -> list[str]:
    """Read-only binds of the host's package-manager configuration that exists here."""
    candidates = [Path("/usr/local/share/ca-certificates"), Path("/etc/pip.conf"),
                  Path("/etc/xdg/pip")]
    if os.environ.get("PIP_CONFIG_FILE"):
        candidates.append(Path(os.environ["PIP_CONFIG_FILE"]))
    binds = [f"--bind-ro={path}" for path in candidates if path.exists()]
    home = Path.home()
    for own, inside in ((home / ".config" / "pip", "/root/.config/pip"),
                        (home / ".pip", "/root/.pip")):
        if own.exists():
            binds.append(f"--bind-ro={own}:{inside}")
    return binds


def passed_env() -> dict[str, str]:
    """The environment commands inside get: the package-manager variables, a plain PATH."""
    env = {k: v for k, v in os.environ.items() if PASS_ENV.match(k)}
    env.update(PATH=PATH, HOME="/root", LANG="C.UTF-8", SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
    return env


@dataclass
class Container:
    """A running container: its root on the host, the nspawn process, the container's PID 1."""

    root: Path
    nspawn: subprocess.Popen[bytes]
    pid1: int
    log: Path
    env: dict[str, str] = field(default_factory=passed_env)

    def run(self, cmd: str | Sequence[str], *, check: bool = True, timeout: float = 60.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command (a shell line, or argv) as root inside; output captured as text."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        done = subprocess.run(["nsenter", "-t", str(self.pid1), "-a", "-r", "-w", *argv],
                              capture_output=True, text=True, env=self.env, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL,
                              check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"in the container, {argv!r} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def write(self, path: str, text: str | bytes, mode: str = "0644") -> None:
        """Write a file inside (parents created), through the container's own view of the path."""
        data = text if isinstance(text, str) else text.decode("latin-1")
        self.run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"',
                  "sh", path, mode], input=data)

    def host_path(self, path: str) -> Path:
        """The host's path of a file on the container's disk (not /run or /tmp: those are tmpfs)."""
        return self.root / path.lstrip("/")

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show` properties of a unit as a dict."""
        out = self.run(["systemctl", "show", unit, "-p", ",".join(props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def stop(self) -> None:
        """Bounded shutdown: SIGTERM to nspawn (a clean poweroff), then SIGKILL to both."""
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                for pid in (self.pid1, self.nspawn.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.nspawn.wait(STOP_TIMEOUT)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, however it dies."""
    # PR_SET_PDEATHSIG (1): nspawn then powers the container off; nothing outlives a killed run.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def boot(root: Path, log: Path, binds: Sequence[str] = (), timeout: float = BOOT_TIMEOUT) -> Container:
    """Boot systemd in `root`; returns once `systemctl is-system-running` has settled."""
    cmd = ["systemd-nspawn", "-b", "-D", str(root), "--register=no", "--keep-unit",
           "--console=passive", "-q", f"--hostname={HOSTNAME}", *binds]
    out = open(log, "ab")
    try:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        nspawn = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True,
                                  preexec_fn=_die_with_parent)
    finally:
        out.close()
    deadline = time.monotonic() + timeout
    pid1 = 0
    try:
        while time.monotonic() < deadline and nspawn.poll() is None:
            pid1 = next((c for c in _children(nspawn.pid)
                         if Path(f"/proc/{c}/comm").read_text().strip() == "systemd"), 0)
            if pid1:
                break
            time.sleep(0.05)  # polling /proc for the child to appear; nothing to wait on
        if not pid1:
            tail = log.read_text(errors="replace")[-2000:]
            raise CannotBoot(f"systemd-nspawn did not start systemd (exit {nspawn.poll()}):\n{tail}")
        box = Container(root, nspawn, pid1, log)
        state = ""
        while time.monotonic() < deadline and nspawn.poll() is None:
            # Until systemd has bound its private socket, systemctl cannot connect at all.
            left = max(1.0, deadline - time.monotonic())
            done = box.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=left)
            state = (done.stdout.strip() or done.stderr.strip())
            if state in ("running", "degraded"):
                return box
            if done.stdout.strip():
                break  # a state, but not a good one (e.g. maintenance)
            time.sleep(0.1)  # the bus is not there yet; nothing to wait on but time
        raise CannotBoot(f"the container's systemd did not finish booting: {state}")
    except BaseException:
        if nspawn.poll() is None:
            nspawn.send_signal(signal.SIGTERM)
            try:
                nspawn.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                if pid1:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid1, signal.SIGKILL)
                nspawn.kill()
                nspawn.wait(STOP_TIMEOUT)
        raise


def remove_stale_runs(runs: Path) -> None:
    """Delete the copies left by runs whose process is gone (killed before its teardown)."""
    for run in runs.glob("*-*"):
        pid = run.name.split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(run, ignore_errors=True)


def copy_root(cached: Path, dest: Path) -> None:
    """A private copy of the cached root for one run (reflinks where the file system has them)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(cached), str(dest)], check=True, timeout=600)


def export_checkout(dest: Path) -> str:
    """A clean copy of the checkout's HEAD (what a fresh clone holds) in dest; returns the commit."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True, timeout=30).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", "--format=tar", commit],
                               stdout=subprocess.PIPE)
    assert archive.stdout is not None
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True, timeout=120)
    archive.stdout.close()
    if archive.wait(60) != 0:
        raise RuntimeError("git archive failed")
    return commit


# Paths whose changes are the running system's own business (logs, caches, systemd's state,
# shadow's backup files and lock), not something an install leaves behind.
_VOLATILE = ("proc", "sys", "dev", "run", "tmp", "var/tmp", "var/log", "var/cache", "var/lib/systemd",
             "root/.cache", "root/speakerd", "etc/.pwd.lock")


# Where an install writes; elsewhere (/usr: the packages' files) size and mode suffice.
_HASHED = ("etc/", "opt/", "srv/", "var/", "root/", "home/", "usr/local/")


def snapshot(root: Path, under: str = "") -> dict[str, tuple[object, ...]]:
    """Every path below root/under (volatile ones aside): type, mode, owners, size, content hash."""
    out: dict[str, tuple[object, ...]] = {}
    top = root / under.lstrip("/") if under else root
    if not top.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(top):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if d != "__pycache__"
                       and os.path.normpath(os.path.join(rel_dir, d)) not in _VOLATILE]
        for name in [*dirnames, *filenames]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in _VOLATILE or (rel.startswith("etc/") and name.endswith("-")):
                continue
            st = os.lstat(os.path.join(dirpath, name))
            digest: object = ""
            if os.path.islink(os.path.join(dirpath, name)):
                digest = os.readlink(os.path.join(dirpath, name))
            elif stat.S_ISREG(st.st_mode) and st.st_size <= 1 << 20 and rel.startswith(_HASHED):
                digest = hashlib.sha256(Path(dirpath, name).read_bytes()).hexdigest()
            out["/" + rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                              st.st_gid, st.st_size if stat.S_ISREG(st.st_mode) else 0, digest)
    return out
