"""The offline sound devices: a private PulseAudio server with null sinks behind ALSA `pulse` PCMs.

The devices run at the wall clock, and drop() really discards, so the tests' real-time tier,
the demo and the bench all play and record through it (a device never imports this module):

    with PulseServer(Path(tmpdir)) as pa:
        os.environ["ALSA_CONFIG_PATH"] = str(pa.alsa_config)
        rec = pa.record_speaker()
        ...  # play through pa.speaker_device, capture from pa.mic_device
        pcm = rec.stop()

It also holds the two helpers those three share: `wait_until`, the one polling wait, and
`read_wav`, which reads the spoken fixtures fed to the microphone.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from speakerd.config import AudioInputConfig, AudioOutputConfig

RATE = 16000
MAX_SECONDS = 300.0  # no helper process started here outlives this, even if a test forgets it
# The sound server itself lives as long as the whole test run (it is session-scoped and stopped
# at the end); its safety limit must outlast the suite, or later tests find no server.
SERVER_MAX_SECONDS = 3600.0


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.01) -> bool:
    """Poll predicate until it holds or `timeout` seconds pass; whether it held.

    The default timeout is generous: a busy 2-core machine must not make a wait fail.
    """
    deadline = time.monotonic() + timeout
    tick = threading.Event()  # never set: its wait() is an interruptible pause between polls
    while time.monotonic() < deadline:
        if predicate():
            return True
        tick.wait(step)
    return predicate()


def read_wav(path: Path | str) -> bytes:
    """The frames of a mono 16-bit WAV file."""
    with wave.open(str(path), "rb") as w:
        if (w.getnchannels(), w.getsampwidth()) != (1, 2):
            raise ValueError(f"{path}: not mono 16-bit")
        return w.readframes(w.getnframes())


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGKILL it if the test process dies first (no orphans)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _Process:
    """A child process ended by its pid at stop() or after a hard time limit."""

    def __init__(self, argv: list[str], env: dict[str, str], *, stdout: Any = subprocess.DEVNULL,
                 max_seconds: float = MAX_SECONDS, log: Path | None = None):
        self._log = open(log, "ab") if log is not None else None  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(argv, env=env, stdout=stdout,
                                      stderr=self._log or subprocess.DEVNULL,
                                      stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self.pid = self.popen.pid
        # A timer, not a sleep: a forgotten process is killed by pid when its time is up.
        self._limit = threading.Timer(max_seconds, self.kill)
        self._limit.daemon = True
        self._limit.start()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(5)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        self._limit.cancel()
        if self.popen.poll() is None:
            os.kill(self.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None


class Recording:
    """A `parecord` of the speaker sink's monitor, raw S16_LE mono."""

    def __init__(self, server: PulseServer, path: Path, latency_msec: int):
        self.path = path
        self._proc = _Process(
            ["parecord", "--raw", "--format=s16le", f"--rate={server.rate}", "--channels=1",
             f"--latency-msec={latency_msec}", "-d", "speaker.monitor", str(path)],
            server.env, log=server.dir / "parecord.log")

    def bytes_so_far(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def stop(self) -> bytes:
        """End the recording (SIGINT lets parecord flush) and return what it captured."""
        self._proc.stop(signal.SIGINT)
        data = self.path.read_bytes() if self.path.exists() else b""
        return data[: len(data) - len(data) % 2]


class PulseServer:
    """A PulseAudio server in a private runtime dir: null sinks `speaker` and `mic`, unix socket.

    ALSA sees it through `alsa_config` (self-contained, for ALSA_CONFIG_PATH): `speaker_device`
    plays into the `speaker` sink, `mic_device` captures `mic.monitor` (whatever is played into
    the `mic` sink), and the ctl `mixer_card` has `Master` for the `speaker` sink.
    """

    speaker_device = "pa_speaker"
    mic_device = "pa_mic"
    mixer_card = "pa_mixer"

    def __init__(self, root: Path, *, rate: int = RATE):
        self.dir = Path(root)
        self.rate = rate
        self.runtime = self.dir / "run"
        self.socket = self.runtime / "pulse" / "native"
        self.alsa_config = self.dir / "asoundrc"
        self._server: _Process | None = None
        self._children: list[_Process] = []
        self.env = {**os.environ, "HOME": str(self.dir), "XDG_RUNTIME_DIR": str(self.runtime),
                    "PULSE_SERVER": f"unix:{self.socket}"}
        self.env.pop("DISPLAY", None)
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)

    # --- lifecycle -------------------------------------------------------------------

    def _write_files(self) -> None:
        self.runtime.mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        fmt = f"rate={self.rate} channels=1 format=s16le"
        # norewinds=1: without it every new stream stalls ~2 s and loses the start of bursts.
        # The protocol module is loaded last, so once its socket answers the sinks exist.
        (self.dir / "default.pa").write_text(
            f"load-module module-null-sink sink_name=speaker {fmt} norewinds=1\n"
            f"load-module module-null-sink sink_name=mic {fmt} norewinds=1\n"
            "load-module module-native-protocol-unix\n")
        server = f'server "unix:{self.socket}"'
        self.alsa_config.write_text(
            "# self-contained: ALSA pcms and a ctl on a private PulseAudio server\n"
            f'pcm.{self.speaker_device} {{ type pulse {server} device "speaker"\n'
            '    hint { show on description "PulseAudio null sink speaker" } }\n'
            f'pcm.{self.mic_device} {{ type pulse {server} device "mic.monitor"\n'
            '    hint { show on description "PulseAudio null sink mic (monitor)" } }\n'
            f'ctl.{self.mixer_card} {{ type pulse {server} sink "speaker" source "mic" }}\n')

    def start(self, timeout: float = 10.0) -> None:
        if shutil.which("pulseaudio") is None:
            raise RuntimeError("pulseaudio is not installed (scripts/lib/setup.sh installs it)")
        self._write_files()
        self.socket.unlink(missing_ok=True)
        self._server = _Process(
            ["pulseaudio", "-n", "-F", str(self.dir / "default.pa"), "--daemonize=no",
             "--exit-idle-time=-1", "--use-pid-file=no", "--log-target=stderr",
             "--disallow-exit", "--disable-shm=yes"],
            self.env, log=self.dir / "pulseaudio.log", max_seconds=SERVER_MAX_SECONDS)
        server = self._server
        if wait_until(lambda: not server.alive() or self._answers(), timeout, 0.02):
            if not server.alive():
                raise RuntimeError("pulseaudio exited at start:\n" + self.log_tail())
            return
        self.stop()
        raise RuntimeError(f"pulseaudio did not listen on {self.socket} within {timeout} s")

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        """End every process started here, by pid."""
        for child in self._children:
            child.stop()
        self._children.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def crash(self) -> None:
        """Kill the server outright, as a crashed sound server would vanish."""
        if self._server is not None:
            self._server.kill()
            self._server.stop()
            self._server = None

    def log_tail(self, lines: int = 20) -> str:
        path = self.dir / "pulseaudio.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> PulseServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- audio in and out ------------------------------------------------------------

    def play_into_mic(self, pcm: bytes | Path, *, name: str = "mic-input.raw") -> _Process:
        """Play raw S16_LE mono PCM (bytes or a raw file) into the `mic` sink with pacat."""
        if isinstance(pcm, bytes):
            path = self.dir / name
            path.write_bytes(pcm)
        else:
            path = pcm
        proc = _Process(["pacat", "--raw", "--format=s16le", f"--rate={self.rate}", "--channels=1",
                         "--latency-msec=20", "-d", "mic", str(path)],
                        self.env, log=self.dir / "pacat.log")
        self._children.append(proc)
        return proc

    def record_speaker(self, path: Path | None = None, *, latency_msec: int = 3) -> Recording:
        """Start recording what reaches the `speaker` sink (its monitor)."""
        if path is None:
            fd, name = tempfile.mkstemp(prefix="speaker-", suffix=".raw", dir=self.dir)
            os.close(fd)
            path = Path(name)
        rec = Recording(self, path, latency_msec)
        self._children.append(rec._proc)
        return rec

    def sink_volume_percent(self, sink: str = "speaker") -> int:
        """The sink's volume as PulseAudio itself reports it (via pactl)."""
        out = subprocess.run(["pactl", "get-sink-volume", sink], env=self.env, capture_output=True,
                             text=True, timeout=10, check=True).stdout
        return int(out.split("%")[0].split()[-1])

    def set_sink_volume_percent(self, percent: int, sink: str = "speaker") -> None:
        """Set the sink's volume (at 100 % the monitor carries exactly the bytes played)."""
        subprocess.run(["pactl", "set-sink-volume", sink, f"{percent}%"], env=self.env,
                       capture_output=True, timeout=10, check=True)

    def input_config(self, **overrides: Any) -> AudioInputConfig:
        return replace(AudioInputConfig(device=self.mic_device, sample_rate=self.rate), **overrides)

    def output_config(self, **overrides: Any) -> AudioOutputConfig:
        return replace(AudioOutputConfig(device=self.speaker_device, sample_rate=self.rate),
                       **overrides)
