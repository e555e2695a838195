"""The SDK side of the streaming comparison: its venv, its process, and its run of the workload.

Deepgram's early-access SDK agent client (bench/sdk_client.py, in a venv of its own under out/)
runs the same workload as cpu.full_duplex: a 60 s reply at real time in 100 ms frames while its
microphone streams a tone played into the mic sink, CPU of all its threads over seconds 15-45,
peak RSS. Its PortAudio plays and records through ALSA's default device, which its ALSA config
points at the same PulseAudio null sinks speakerd uses. The SDK speaks the early-access dialect
(SettingsConfiguration on /agent), so it is pointed at the emulator's early-access URL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cpu

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "out" / "sdk-venv"
PACKAGES = ("deepgram-unstable-sdk==3.8.0.dev4", "PyAudio==0.2.14")
LABEL = "deepgram-unstable-sdk 3.8.0.dev4"
INSTALL_TIMEOUT = 600.0  # pip resolves the SDK's aiohttp/httpx tree; a dead network fails sooner


class Unavailable(Exception):
    """The SDK cannot be set up here; the message says why (the row prints it)."""


def _python310() -> str:
    """A Python 3.10 interpreter: the SDK's options dataclasses have instance defaults, which
    Python 3.11's dataclasses refuse at import, so the SDK runs on 3.10 only (its `match`
    statements rule out older ones). SPEAKERD_SDK_PYTHON names one; else python3.10 on PATH,
    else one pyenv has installed."""
    names = [os.environ.get("SPEAKERD_SDK_PYTHON", ""), "python3.10"]
    if shutil.which("pyenv"):
        got = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30,
                             check=False)
        names += sorted(str(p) for p in Path(got.stdout.strip() or "/nonexistent").glob(
            "versions/3.10.*/bin/python3.10"))
    for name in filter(None, names):
        try:
            got = subprocess.run([name, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                                 capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if got.stdout.strip() == "True":
            return name
    raise Unavailable("the SDK imports on Python 3.10 only (its options dataclasses are refused "
                      "by 3.11's), and no python3.10 is here (SPEAKERD_SDK_PYTHON names one)")


def _portaudio_headers() -> bool:
    return Path("/usr/include/portaudio.h").exists()


def prepare(venv: Path = VENV) -> Path:
    """The SDK venv's python, made on first use (and PortAudio's headers, which PyAudio builds
    against, installed when missing and we are root); Unavailable if that cannot be done."""
    stamp = venv / ".bench-sdk"
    python = venv / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == "\n".join(PACKAGES):
        return python
    base = _python310()
    if not _portaudio_headers():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise Unavailable("PyAudio needs portaudio19-dev (apt-get install portaudio19-dev)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        got = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                              "portaudio19-dev"], env=env, capture_output=True, text=True,
                             timeout=INSTALL_TIMEOUT, check=False)
        if got.returncode != 0 or not _portaudio_headers():
            raise Unavailable(f"apt-get install portaudio19-dev failed: {_last(got.stderr)}")
    try:
        if not python.exists():
            subprocess.run([base, "-m", "venv", str(venv)],
                           capture_output=True, text=True, timeout=120, check=True)
        got = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              *PACKAGES], capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                             check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"could not make the SDK venv: {exc}") from exc
    if got.returncode != 0:
        raise Unavailable(f"pip install failed: {_last(got.stderr)}")
    stamp.write_text("\n".join(PACKAGES))
    return python


def _last(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if "is ignored" not in ln]
    return lines[-1] if lines else "no output"


def alsa_config(pa: Any, tmp: Path) -> Path:
    """The bench's ALSA config plus a `default` PCM (what PortAudio opens): playback into the
    speaker sink, capture from the mic sink's monitor, the same devices speakerd is given."""
    path = tmp / "asoundrc-sdk"
    path.write_text(Path(pa.alsa_config).read_text()
                    + f'pcm.!default {{ type asym playback.pcm "{pa.speaker_device}" '
                    f'capture.pcm "{pa.mic_device}" }}\n'
                    f"ctl.!default {pa.mixer_card}\n")
    return path


class SdkProcess(cpu.LineProcess):
    """bench/sdk_client.py in the SDK's venv, its stderr kept in a log."""

    def __init__(self, python: Path, url: str, key: str, out_rate: int, alsa: Path, log: Path,
                 limit: float) -> None:
        env = {**os.environ, "ALSA_CONFIG_PATH": str(alsa)}
        env.pop("PYTHONPATH", None)  # nothing of speakerd's venv leaks into the SDK's process
        self._log = open(log, "ab")  # noqa: SIM115 - closed in close()
        super().__init__([str(python), str(ROOT / "bench/sdk_client.py"), url, key, str(out_rate)],
                         env, limit, f"the SDK client (its log: {log})", stderr=self._log)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._log.close()


def full_duplex(python: Path, pa: Any, emu: Any, tmp: Path, key: str, tone: bytes, *,
                out_rate: int = 24000, reply_seconds: float = 60.0, frame_ms: int = 100,
                window: tuple[float, float] = (15.0, 45.0)) -> cpu.StreamResult:
    """cpu.full_duplex's workload, with the SDK's client in place of the daemon."""
    emu.options.reply_seconds = reply_seconds
    emu.options.reply_pace = 1.0
    emu.options.reply_frame_ms = frame_ms
    emu.options.end_of_speech = 0.25
    n = len(emu.sessions)
    proc = SdkProcess(python, emu.url("early_access"), key, out_rate, alsa_config(pa, tmp),
                      tmp / "sdk-client.log", reply_seconds + 120)
    try:
        sess = cpu.applied_session(
            emu, n, f"the SDK's settings were not applied (its log: {tmp / 'sdk-client.log'})")
        pa.play_into_mic(tone)
        if not cpu._wait(lambda: bool(sess.replies)):
            raise RuntimeError("no reply")
        t_reply = cpu.now()
        cpu.pause(max(0.0, t_reply + window[0] - cpu.now()))
        win, _ = cpu.measure(proc, window[1] - window[0])
        t0, t1 = cpu.now() - win.seconds, cpu.now()
        times = [f.t for f in list(sess.frames) if f.kind == "binary" and t0 <= f.t <= t1]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return cpu.StreamResult(
            window=win, rss_mb=cpu.proc_hwm_mb(proc.pid), underruns=0, xruns=0,
            uplink_gap_ms=max(gaps) * 1000 if gaps else float("nan"),
            uplink_fps=len(times) / win.seconds, reply_streaming=not sess.replies[-1].done)
    finally:
        proc.close()
        emu.options.reply_pace = 10.0
        emu.options.reply_frame_ms = 40


@dataclass(frozen=True)
class Run:
    """One client's run of the workload in the alternation, or why it was not measured."""
    client: str
    result: cpu.StreamResult | None
    reason: str = ""


def side_by_side(pa: Any, emu: Any, tmp: Path, rig_raw: dict[str, Any], key: str, tone: bytes, *,
                 runs: int, reply_seconds: float = 60.0, window: tuple[float, float] = (15.0, 45.0),
                 say: Any = print) -> list[Run]:
    """speakerd, SDK, speakerd, SDK, ...: the load on a shared machine drifts, so the two
    clients' runs are interleaved in one run of the bench."""
    try:
        say("the SDK's venv ...")
        python: Path | None = prepare()
        reason = ""
    except Unavailable as exc:
        python, reason = None, str(exc)
    out: list[Run] = []
    for i in range(runs):
        say(f"side by side {i + 1}/{runs}: speakerd ...")
        out.append(Run("speakerd", cpu.full_duplex(pa, emu, tmp, rig_raw, key, tone,
                                                   reply_seconds=reply_seconds, window=window)))
        if python is None:
            out.append(Run(LABEL, None, reason))
            continue
        say(f"side by side {i + 1}/{runs}: {LABEL} ...")
        try:
            out.append(Run(LABEL, full_duplex(python, pa, emu, tmp, key, tone,
                                              reply_seconds=reply_seconds, window=window)))
        except RuntimeError as exc:
            out.append(Run(LABEL, None, str(exc)))
    return out


def lines(runs: list[Run]) -> list[str]:
    """One line per run: the client, % of one core, peak RSS, load, per-thread split."""
    out = []
    for r in runs:
        if r.result is None:
            out.append(f"  {r.client:<34} not measured: {r.reason}")
            continue
        w = r.result.window
        out.append(f"  {r.client:<34} {w.cpu:5.2f} % of one core, peak RSS {r.result.rss_mb:.1f} MB, "
                   f"uplink {r.result.uplink_fps:.1f} frames/s (load {w.load}; {w.split()})")
    for client in dict.fromkeys(r.client for r in runs):
        got = [r.result.window.cpu for r in runs if r.client == client and r.result is not None]
        if got:
            out.append(f"  {client:<34} mean {sum(got) / len(got):5.2f} % over {len(got)} runs")
    return out
