"""The streaming CPU workload: the daemon alone in a subprocess, its CPU per thread over a window.

Full duplex: a long agent reply sent at real time in 100 ms frames while the microphone streams,
CPU (all threads, /proc/pid/task/*/stat) over seconds 15-45 of the reply. Connected idle: half
duplex, nobody talking, the socket kept open (silence or KeepAlive flowing). Not connected: the
daemon serving with no socket. Optionally py-spy records the windows (scripts/bench --profile
DIR: raw folded stacks per thread, py-spy's --threads --nonblocking, so the daemon is not paused).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent

from speakerd import boards  # noqa: E402 - bench.py puts ROOT on the path
from speakerd.config import AudioOutputConfig  # noqa: E402


def now() -> float:
    return time.monotonic()


def pause(seconds: float) -> None:
    threading.Event().wait(seconds)


def task_cpu(pid: int, names: dict[str, str]) -> dict[str, float]:
    """CPU seconds per thread of a process (the scheduler's own nanosecond count, schedstat), by
    Python thread name where known (`names`: native id -> name), else by the kernel's comm (the
    ALSA pulse plugin's threads name themselves)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            ns = int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
            comm = names.get(tid) or open(f"/proc/{pid}/task/{tid}/comm").read().strip()
        except OSError:
            continue  # the thread ended between the listing and the read
        out[comm] = out.get(comm, 0.0) + ns / 1e9
    return out


def task_wakeups(pid: int, names: dict[str, str]) -> dict[str, int]:
    """Voluntary context switches per thread (each is one sleep, so one wake-up), by name."""
    out: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = open(f"/proc/{pid}/task/{tid}/status").read()
        except OSError:
            continue
        comm = names.get(tid) or status.split("\n", 1)[0].split(":", 1)[1].strip()
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                out[comm] = out.get(comm, 0) + int(line.split()[1])
    return out


def proc_hwm_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


@dataclass
class Window:
    """CPU over one window: total and per thread, % of one core."""
    cpu: float
    threads: dict[str, float]
    wakeups: dict[str, float]  # per second, per thread
    seconds: float
    load: str

    def split(self) -> str:
        return ", ".join(f"{name} {share:.2f}" for name, share in
                         sorted(self.threads.items(), key=lambda kv: -kv[1]) if share >= 0.01)

    def per_wake(self) -> str:
        """Per thread: wake-ups a second and CPU per wake-up (µs), the cost of one hop."""
        out = []
        for name, share in sorted(self.threads.items(), key=lambda kv: -kv[1]):
            rate = self.wakeups.get(name, 0.0)
            if share >= 0.01 and rate > 0:
                out.append(f"{name} {rate:.0f}/s x {share * 1e4 / rate:.0f} µs")
        return ", ".join(out)


@dataclass
class StreamResult:
    """One run of the workload."""
    window: Window
    rss_mb: float
    underruns: int
    xruns: int
    uplink_gap_ms: float
    uplink_fps: float
    reply_streaming: bool
    profile: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class LineProcess:
    """A measured client in a child process that answers a line per command on stdin ("ready"
    once up, "threads", "quit"), killed by its pid at the end or on a time limit."""

    def __init__(self, argv: list[str], env: dict[str, str], limit: float, what: str,
                 stderr: Any = None) -> None:
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=stderr, text=True, env=env)
        self.pid = self.p.pid
        # A timer, not a wait: a child that hangs is killed by pid when its time is up.
        self._killer = threading.Timer(limit, self.p.kill)
        self._killer.start()
        if self._line() != "ready":
            self.close()
            raise RuntimeError(f"{what} did not start")

    def _line(self) -> str:
        assert self.p.stdout is not None
        return self.p.stdout.readline().strip()

    def _send(self, cmd: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()

    def ask(self, cmd: str) -> str:
        self._send(cmd)
        return self._line()

    def names(self) -> dict[str, str]:
        return {str(k): v for k, v in json.loads(self.ask("threads")).items()}

    def close(self) -> None:
        self._killer.cancel()
        try:
            if self.p.poll() is None:
                self._send("quit")
                self.p.wait(10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait(5)


class DaemonProcess(LineProcess):
    """bench/daemon_proc.py in a child process: the daemon alone, driven by its commands."""

    def __init__(self, cfg: dict[str, Any], cfg_path: Path, key: str, alsa_config: Path,
                 limit: float) -> None:
        cfg_path.write_text(json.dumps(cfg))
        env = {**os.environ, "ALSA_CONFIG_PATH": str(alsa_config), "PYTHONPATH": str(ROOT)}
        super().__init__([sys.executable, str(ROOT / "bench/daemon_proc.py"), str(cfg_path), key],
                         env, limit, "the daemon")

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.ask("stats"))
        return out


class Measured(Protocol):
    """A client process the bench measures: its pid and its threads' names by native id."""
    pid: int

    def names(self) -> dict[str, str]: ...


def measure(proc: Measured, seconds: float, profile: Path | None = None) -> tuple[Window, str]:
    """CPU of the client over `seconds` from now; py-spy records the same window if asked."""
    names = proc.names()
    spy: subprocess.Popen[bytes] | None = None
    out = ""
    if profile is not None and shutil.which("py-spy", path=str(Path(sys.executable).parent)):
        out = str(profile)
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                                str(proc.pid), "--threads", "--nonblocking",
                                "--rate", "250", "--duration", str(int(seconds)), "--format",
                                "raw", "--output", out], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    w0 = task_wakeups(proc.pid, names)
    t0, k0 = now(), task_cpu(proc.pid, names)
    pause(seconds)
    t1 = now()
    k1 = task_cpu(proc.pid, names)
    w1 = task_wakeups(proc.pid, names)
    if spy is not None:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    threads = {name: (k1[name] - k0.get(name, 0.0)) / (t1 - t0) * 100 for name in k1}
    wakeups = {name: (w1[name] - w0.get(name, 0)) / (t1 - t0) for name in w1}
    # The total is the sum over the threads: the same count as /proc/pid/stat's utime+stime,
    # but in nanoseconds rather than 10 ms ticks (a 0.1 % figure needs the resolution).
    return Window(sum(threads.values()), threads, wakeups, t1 - t0, load_average()), out


def base_config(rig_raw: dict[str, Any], *, out_rate: int, out_period_ms: int | None,
                duplex: str, extra_audio: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = json.loads(json.dumps(rig_raw))
    raw["audio"]["duplex"] = duplex
    raw["audio"]["output"]["sample_rate"] = out_rate
    if out_period_ms is not None:
        raw["audio"]["output"]["period_ms"] = out_period_ms
    for k, v in (extra_audio or {}).items():
        if isinstance(v, dict):
            raw["audio"][k] = {**raw["audio"].get(k, {}), **v}
        else:
            raw["audio"][k] = v
    return raw


def full_duplex(pa: Any, emu: Any, tmp: Path, rig_raw: dict[str, Any], key: str, tone: bytes, *,
                out_rate: int = 24000, out_period_ms: int | None = None,
                extra_audio: dict[str, Any] | None = None, leds: list[Any] | None = None,
                reply_seconds: float = 60.0,
                frame_ms: int = 100, window: tuple[float, float] = (15.0, 45.0),
                profile: Path | None = None) -> StreamResult:
    """The workload: a reply at real time in `frame_ms` frames, the mic streaming, full duplex."""
    emu.options.reply_seconds = reply_seconds
    emu.options.reply_pace = 1.0
    emu.options.reply_frame_ms = frame_ms
    emu.options.end_of_speech = 0.25
    cfg = base_config(rig_raw, out_rate=out_rate, out_period_ms=out_period_ms, duplex="full",
                      extra_audio=extra_audio)
    if leds is not None:
        cfg["leds"] = leds
    proc = DaemonProcess(cfg, tmp / f"fd-{out_rate}-{out_period_ms}.json", key, pa.alsa_config,
                         reply_seconds + 120)
    try:
        n = len(emu.sessions)
        proc.ask("press")
        sess = applied_session(emu, n, "no connection")
        pa.play_into_mic(tone)
        if not _wait(lambda: bool(sess.replies)):
            raise RuntimeError("no reply")
        t_reply = now()
        pause(max(0.0, t_reply + window[0] - now()))
        before, f0 = proc.stats(), int(proc.ask("frames"))
        win, prof = measure(proc, window[1] - window[0], profile)
        after, f1 = proc.stats(), int(proc.ask("frames"))
        t0, t1 = now() - win.seconds, now()
        times = [f.t for f in list(sess.frames) if f.kind == "binary" and t0 <= f.t <= t1]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return StreamResult(
            window=win, rss_mb=proc_hwm_mb(proc.pid),
            underruns=after["underruns"] - before["underruns"],
            xruns=after["xruns"] - before["xruns"],
            uplink_gap_ms=max(gaps) * 1000 if gaps else float("nan"),
            uplink_fps=len(times) / win.seconds, reply_streaming=not sess.replies[-1].done,
            profile=prof, extra={"stats": after, "ring_fps": (f1 - f0) / win.seconds})
    finally:
        proc.close()
        emu.options.reply_pace = 10.0
        emu.options.reply_frame_ms = 40


def connected_idle(pa: Any, emu: Any, tmp: Path, rig_raw: dict[str, Any], key: str, tone: bytes,
                   *, seconds: float = 30.0, profile: Path | None = None,
                   extra_audio: dict[str, Any] | None = None) -> StreamResult:
    """Half duplex, hold mode: one short turn, then the socket open and nobody talking."""
    emu.options.reply_seconds = 1.0
    emu.options.reply_pace = 10.0
    emu.options.end_of_speech = 0.25
    cfg = base_config(rig_raw, out_rate=24000, out_period_ms=None, duplex="half",
                      extra_audio=extra_audio)
    cfg["session"] = {**cfg.get("session", {}), "idle_timeout": seconds + 60}
    proc = DaemonProcess(cfg, tmp / "idle.json", key, pa.alsa_config, seconds + 120)
    try:
        n = len(emu.sessions)
        proc.ask("press")
        sess = applied_session(emu, n, "no connection")
        mic = pa.play_into_mic(tone)
        _wait(lambda: not mic.alive())
        proc.ask("release")
        if not _wait(lambda: bool(sess.replies) and sess.replies[-1].done):
            raise RuntimeError("no reply")
        pause(3.0)  # the reply plays out and the speaker goes idle
        win, prof = measure(proc, seconds, profile)
        t0, t1 = now() - win.seconds, now()
        times = [f.t for f in list(sess.frames) if t0 <= f.t <= t1]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        closed = sess.closed.is_set()
        stats = proc.stats()
        return StreamResult(
            window=win, rss_mb=proc_hwm_mb(proc.pid), underruns=0, xruns=stats["xruns"],
            uplink_gap_ms=max(gaps) * 1000 if gaps else float("nan"),
            uplink_fps=len(times) / win.seconds, reply_streaming=False, profile=prof,
            extra={"closed": closed})
    finally:
        proc.close()


def not_connected(pa: Any, rig_raw: dict[str, Any], tmp: Path, key: str, *,
                  seconds: float = 30.0) -> StreamResult:
    """The daemon serving, no socket, nobody talking."""
    cfg = base_config(rig_raw, out_rate=24000, out_period_ms=None, duplex="half")
    proc = DaemonProcess(cfg, tmp / "off.json", key, pa.alsa_config, seconds + 60)
    try:
        pause(2.0)
        win, _ = measure(proc, seconds)
        return StreamResult(window=win, rss_mb=proc_hwm_mb(proc.pid), underruns=0, xruns=0,
                            uplink_gap_ms=float("nan"), uplink_fps=0.0, reply_streaming=False)
    finally:
        proc.close()


def applied_session(emu: Any, n: int, failure: str) -> Any:
    """The emulator's connection after the first n, once its settings are applied."""
    if not _wait(lambda: len(emu.sessions) > n and emu.sessions[-1].applied.is_set()):
        raise RuntimeError(failure)
    return emu.sessions[-1]


def _wait(pred: Any, timeout: float = 15.0) -> bool:
    deadline = now() + timeout
    while now() < deadline:
        if pred():
            return True
        pause(0.005)
    return bool(pred())


# --- the section of the bench's table ----------------------------------------------------------

RATES = (16000, 24000, 48000)
PERIODS_MS = (10, 20, 40, 80)
FRAMES_MS = (20, 40, 80)
_OUT = AudioOutputConfig()
BUFFER_MS = _OUT.period_ms * _OUT.periods  # the grid keeps the default buffer's length


def _board_leds(name: str) -> list[Any]:
    profile = boards.board(name)
    assert profile is not None, name
    return [dict(led) for led in profile.config["leds"]]


# The ReSpeaker 4-Mic Array's LEDs as its board profile sets them: its ring of 12 pixels, which
# takes the place of the single LED (the profile's leds list replaces the config's).
RING = _board_leds("respeaker-4mic")


@dataclass
class Section:
    """Everything the CPU part of the bench measured."""
    stream: StreamResult
    connected: StreamResult
    offline: StreamResult
    ring: StreamResult                     # the workload with a 12-pixel APA102 ring as well
    grid: dict[tuple[int, int], float]     # (output rate, period ms) -> % of one core
    frames: dict[int, float]               # uplink frame ms -> % of one core
    grid_window: tuple[float, float]
    log: list[str] = field(default_factory=list)


def run_section(pa: Any, emu: Any, tmp: Path, rig_raw: dict[str, Any], key: str, tone: bytes, *,
                quick: bool, profile: Path | None = None,
                say: Any = print) -> Section:
    """The workload (60 s reply, window 15-45 s), connected idle, not connected, and the grid."""
    reply, window = (24.0, (6.0, 18.0)) if quick else (60.0, (15.0, 45.0))
    idle_s = 10.0 if quick else 30.0
    grid_reply, grid_window = (12.0, (4.0, 10.0)) if quick else (27.0, (5.0, 25.0))
    say(f"streaming workload ({reply:.0f} s reply, CPU over {window[0]:.0f}-{window[1]:.0f} s) ...")
    stream = full_duplex(pa, emu, tmp, rig_raw, key, tone, reply_seconds=reply, window=window,
                         profile=profile / "stream.txt" if profile else None)
    say(f"connected idle ({idle_s:.0f} s) ...")
    connected = connected_idle(pa, emu, tmp, rig_raw, key, tone, seconds=idle_s,
                               profile=profile / "connected-idle.txt" if profile else None)
    say(f"not connected ({idle_s:.0f} s) ...")
    offline = not_connected(pa, rig_raw, tmp, key, seconds=idle_s)
    say("the workload with a 12-pixel LED ring ...")
    # The streaming workload itself (the goal's window), with the 4-Mic Array's LEDs.
    ring = full_duplex(pa, emu, tmp, rig_raw, key, tone, reply_seconds=reply, window=window,
                       leds=RING)
    grid: dict[tuple[int, int], float] = {}
    for rate in RATES:
        for period in PERIODS_MS:
            say(f"grid: output {rate} Hz, period {period} ms ...")
            r = full_duplex(pa, emu, tmp, rig_raw, key, tone, out_rate=rate, out_period_ms=period,
                            reply_seconds=grid_reply, window=grid_window,
                            extra_audio={"output": {"periods": BUFFER_MS // period}})
            grid[(rate, period)] = r.window.cpu
    frames: dict[int, float] = {}
    for frame_ms in FRAMES_MS:
        say(f"uplink frames of {frame_ms} ms ...")
        r = full_duplex(pa, emu, tmp, rig_raw, key, tone, reply_seconds=grid_reply,
                        window=grid_window, extra_audio={"input": {"frame_ms": frame_ms}})
        frames[frame_ms] = r.window.cpu
    return Section(stream, connected, offline, ring, grid, frames, grid_window)


def ring_runs(pa: Any, emu: Any, tmp: Path, rig_raw: dict[str, Any], key: str, tone: bytes, *,
              runs: int, say: Any = print) -> list[tuple[bool, StreamResult]]:
    """The workload without and with the ring, alternately, `runs` times each, with run_section's
    window (60 s reply, 15-45 s): on a shared machine the load drifts, so the pairs are side by
    side."""
    out: list[tuple[bool, StreamResult]] = []
    for i in range(runs):
        for ring in (False, True):
            say(f"run {i + 1}/{runs}, {'with' if ring else 'without'} the 12-pixel ring ...")
            out.append((ring, full_duplex(pa, emu, tmp, rig_raw, key, tone, reply_seconds=60.0,
                                          window=(15.0, 45.0), leds=RING if ring else None)))
    return out


def ring_lines(results: list[tuple[bool, StreamResult]]) -> list[str]:
    """One line per run: total CPU, the leds thread's share, its frames and wake-ups a second."""
    lines = []
    for ring, r in results:
        w = r.window
        leds = (f", leds {w.threads.get('leds', 0.0):.3f} % at {r.extra['ring_fps']:.1f} frames/s, "
                f"{w.wakeups.get('leds', 0.0):.1f} wake-ups/s") if ring else ""
        lines.append(f"  {'ring   ' if ring else 'no ring'}  {w.cpu:.2f} % of one core{leds}  "
                     f"(load {w.load}; {w.split()})")
    return lines


def grid_table(sec: Section) -> list[str]:
    """The grid as lines: output period down, output rate across, % of one core."""
    lines = ["  output period \\ rate " + "".join(f"{r // 1000:>8} kHz" for r in RATES)]
    for period in PERIODS_MS:
        lines.append(f"  {period:>6} ms x {BUFFER_MS // period:<2}      "
                     + "".join(f"{sec.grid[(r, period)]:>10.2f} %" for r in RATES))
    lines.append("  uplink frame         " + "".join(f"{ms:>9} ms" for ms in FRAMES_MS))
    lines.append(f"  (24 kHz, {_OUT.period_ms} ms x {_OUT.periods})  "
                 + "".join(f"{sec.frames[ms]:>10.2f} %" for ms in FRAMES_MS))
    return lines
