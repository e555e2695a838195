"""Timing and footprint figures of the whole daemon against the local agent emulator.

Real-time audio tier: PulseAudio null sinks behind ALSA `pulse` PCMs; the speaker sink's monitor
is recorded to see what was really played. Run from the repository root (scripts/bench does).
"""

from __future__ import annotations

import argparse
import array
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ["GPIOZERO_PIN_FACTORY"] = "mock"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cpu  # noqa: E402
import sdk  # noqa: E402
from gpiozero import Device  # noqa: E402
from gpiozero.pins.mock import MockFactory, MockPWMPin  # noqa: E402

from speakerd import protocol  # noqa: E402
from speakerd.audio import AudioFormat, open_sink, open_source  # noqa: E402
from speakerd.config import AudioOutputConfig, Config, parse_config  # noqa: E402
from speakerd.daemon import Daemon, Hooks  # noqa: E402
from speakerd.emulator import Emulator, EmulatorOptions  # noqa: E402
from speakerd.emulator.sound import PulseServer, read_wav, wait_until  # noqa: E402
from speakerd.events import PlaybackStarted, State  # noqa: E402
from speakerd.mic import Mic  # noqa: E402
from speakerd.notify import Notifier  # noqa: E402
from speakerd.uplink import UplinkMode  # noqa: E402

KEY = "bench-emulator-key"
BUTTON, LED = "GPIO17", "GPIO25"
RATE = 16000
WAIT = 15.0
SILENT = 60  # |sample| at or under this is silence on the monitor


def now() -> float:
    return time.monotonic()


def pause(seconds: float) -> None:
    threading.Event().wait(seconds)


def expect(pred: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Wait for a step of a measurement (polled every 2 ms); RuntimeError naming it on timeout."""
    if not wait_until(pred, timeout, 0.002):
        raise RuntimeError(f"timed out waiting for {what}")


def tone(seconds: float, freq: float = 300.0, amp: int = 8000) -> bytes:
    import math
    n = round(seconds * RATE)
    return array.array("h", (int(amp * math.sin(2 * math.pi * freq * i / RATE))
                             for i in range(n))).tobytes()


def load_wav(name: str) -> bytes:
    return read_wav(ROOT / "tests/data/audio" / name)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# --- the rig: one in-process daemon with its observers -------------------------------------------

@dataclass
class Observed:
    """What the wrappers saw, each with time.monotonic()."""
    started: list[PlaybackStarted] = field(default_factory=list)
    uss: list[float] = field(default_factory=list)       # UserStartedSpeaking received (agent-rx)
    rx: list[tuple[float, bytes]] = field(default_factory=list)      # agent audio chunk: (t, head)
    writes: list[tuple[float, bytes]] = field(default_factory=list)  # sink.write: (t, data)
    states: list[tuple[str, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class TimedSink:
    """The real ALSA sink, with the time of each write recorded (bench only)."""

    def __init__(self, inner: Any, obs: Observed) -> None:
        self._inner = inner
        self._obs = obs
        self.buffer_frames = getattr(inner, "buffer_frames", 0)

    def write(self, pcm: bytes) -> Any:
        self._obs.writes.append((now(), bytes(pcm)))
        return self._inner.write(pcm)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Rig:
    def __init__(self, pa: PulseServer, emu: Emulator, state_dir: Path, **extra: Any) -> None:
        self.pa, self.emu, self.obs = pa, emu, Observed()
        raw: dict[str, Any] = {
            "agent": {"url": emu.url("v1")},
            "audio": {"input": {"device": pa.mic_device, "sample_rate": RATE},
                      "output": {"device": pa.speaker_device, "sample_rate": RATE}},
            # Chimes off: the monitor must carry the agent's reply alone.
            "chimes": {n: {"enabled": False} for n in ("press", "error", "goodbye")},
            "button": {"pin": BUTTON}, "leds": [{"kind": "pwm", "pins": [LED]}],
            "log": {"state_dir": str(state_dir)},
        }
        for k, v in extra.items():
            raw[k] = {**raw.get(k, {}), **v}
        self.raw = raw
        self.cfg: Config = parse_config(raw)
        out = self.cfg.audio.output
        self.daemon = Daemon(None, self.cfg, KEY, notifier=Notifier(environ={}), hooks=Hooks(
            open_sink=lambda: TimedSink(open_sink(out), self.obs),
            on_state=lambda s: self.obs.states.append((s, now()))))
        self.pin: Any = None

    def start(self) -> Rig:
        Device.pin_factory = MockFactory(pin_class=MockPWMPin)
        self.daemon.start()
        parts = self.daemon.parts
        assert parts is not None
        self.pin = Device.pin_factory.pin(BUTTON)  # type: ignore[union-attr]
        obs, session, router = self.obs, parts.session, parts.router
        post, event, audio = session.post, router.event, router.audio

        def on_post(ev: object) -> None:
            if isinstance(ev, PlaybackStarted):
                obs.started.append(ev)
            post(ev)

        def on_event(link: object, ev: Any) -> None:
            if isinstance(ev, protocol.UserStartedSpeaking):
                obs.uss.append(now())
            event(link, ev)

        def on_audio(link: object, pcm: bytes) -> None:
            obs.rx.append((now(), bytes(pcm[:64])))
            audio(link, pcm)

        session.post = on_post  # type: ignore[method-assign]
        router.event = on_event  # type: ignore[method-assign]
        router.audio = on_audio  # type: ignore[method-assign]
        return self

    def stop(self) -> None:
        self.daemon.stop()
        Device.pin_factory.close()  # type: ignore[union-attr]

    def edge(self, low: bool) -> float:
        t = now()
        th = threading.Thread(target=self.pin.drive_low if low else self.pin.drive_high)
        th.start()
        th.join(5)
        return t

    def state(self) -> str:
        return self.obs.states[-1][0] if self.obs.states else ""

    def wait_state(self, state: str, after: int, timeout: float = WAIT) -> float:
        expect(lambda: any(s == state for s, _ in self.obs.states[after:]), timeout, state)
        return next(t for s, t in self.obs.states[after:] if s == state)

    def speak(self, pcm: bytes, wait: bool = True) -> Any:
        proc = self.pa.play_into_mic(pcm)
        if wait:
            expect(lambda: not proc.alive(), WAIT, "pacat")
        return proc


# --- monitor analysis -------------------------------------------------------------------------

def samples_of(pcm: bytes) -> array.array[int]:
    return array.array("h", pcm[: len(pcm) - len(pcm) % 2])


def find_onset(s: array.array[int], start: int) -> int:
    for i in range(max(0, start), len(s)):
        if abs(s[i]) > SILENT:
            return i
    return -1


def find_end(s: array.array[int], onset: int, quiet: int = RATE // 100) -> int:
    """The last loud sample of the burst starting at onset (a burst ends with 10 ms of silence)."""
    last, run = onset, 0
    for i in range(onset, len(s)):
        if abs(s[i]) > SILENT:
            last, run = i, 0
        else:
            run += 1
            if run >= quiet:
                break
    return last


@dataclass
class Trial:
    trigger: float       # monotonic
    started: float       # PlaybackStarted of the old reply (monotonic)


def barge_in_figures(pcm: bytes, rec_t0: float, trials: list[Trial],
                     growth: list[tuple[float, int]]) -> tuple[list[float], list[int], list[float]]:
    """Per trial: trigger → last old-reply sample at the monitor (ms) and samples after the trigger.

    The monitor timeline is aligned per trial on the reply's onset = its PlaybackStarted time.
    """
    s = samples_of(pcm)
    lat, late, upper = [], [], []
    import bisect
    sizes = [b for _, b in growth]
    for tr in trials:
        # Search for the onset from 100 ms before the rough position (the recording's start time).
        guess = int((tr.started - rec_t0 - 0.1) * RATE)
        onset = find_onset(s, guess)
        if onset < 0:
            continue
        end = find_end(s, onset)
        t_end = tr.started + (end - onset) / RATE
        lat.append((t_end - tr.trigger) * 1000)
        trig_idx = onset + int((tr.trigger - tr.started) * RATE)
        late.append(max(0, end - trig_idx))
        g = bisect.bisect_left(sizes, 2 * (end + 1))
        if g < len(growth):
            upper.append((growth[g][0] - tr.trigger) * 1000)
    return lat, late, upper


# --- the measurements ---------------------------------------------------------------------------

def bench_barge_in(pa: PulseServer, emu: Emulator, tmp: Path, n: int, duplex: bool) -> dict[str, Any]:
    emu.options.reply_seconds = 3.0
    emu.options.end_of_speech = 0.25
    extra = {"audio": {"duplex": "full"}} if duplex else {}
    rig = Rig(pa, emu, tmp / ("fd" if duplex else "hd"), **extra)
    if duplex:
        rig.raw["audio"] = {**rig.raw["audio"], "duplex": "full"}
    rig.start()
    rec = pa.record_speaker(tmp / f"barge-{duplex}.raw", latency_msec=3)
    expect(lambda: rec.bytes_so_far() > 0, 5, "parecord")
    rec_t0 = now() - rec.bytes_so_far() / 2 / RATE
    growth: list[tuple[float, int]] = []
    done = threading.Event()

    def poll() -> None:
        # When each byte reached the recording: an upper bound of when the sink rendered it.
        while not done.wait(0.0005):
            growth.append((now(), rec.bytes_so_far()))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    trials: list[Trial] = []
    speech = tone(0.35)
    try:
        k = len(rig.obs.states)
        rig.edge(True)
        rig.wait_state(State.LISTENING, k)
        rig.speak(speech)
        if not duplex:
            rig.edge(False)
        for i in range(n):  # noqa: B023,B007,E501 - used at once
            n_started = len(rig.obs.started)
            expect(lambda n_started=n_started: len(rig.obs.started) > n_started, WAIT, "the reply to start")  # noqa: B023,B007,E501 - used at once
            started = rig.obs.started[-1].t
            pause(0.25 + random.random() * 0.5)  # mid-reply, at a random phase of the period
            if duplex:
                n_uss = len(rig.obs.uss)
                rig.speak(speech, wait=False)
                expect(lambda n_uss=n_uss: len(rig.obs.uss) > n_uss, WAIT, "UserStartedSpeaking")
                trials.append(Trial(rig.obs.uss[-1], started))
                pause(0.4)
            else:
                k = len(rig.obs.states)
                t = rig.edge(True)
                trials.append(Trial(t, started))
                rig.wait_state(State.LISTENING, k)
                rig.speak(speech)
                rig.edge(False)
        pause(0.3)
    finally:
        done.set()
        poller.join(2)
        pcm = rec.stop()
        rig.stop()
    lat, late, upper = barge_in_figures(pcm, rec_t0, trials, growth)
    return {"lat": lat, "late": late, "upper": upper, "n": len(trials)}


def bench_press(pa: PulseServer, emu: Emulator, tmp: Path, warm_n: int, cold_n: int) -> dict[str, Any]:
    """Press → first uplink frame carrying mic audio (emulator receive times); cold speech loss."""
    emu.options.reply_seconds = 0.2
    emu.options.end_of_speech = 0.25
    rig = Rig(pa, emu, tmp / "press", session={"idle_timeout": 1.0}).start()
    warm, cold, lost = [], [], []
    lost_at: list[list[int]] = []
    fb_turn: list[float] = []
    hello = load_wav("hello.wav")
    try:
        for i in range(warm_n + cold_n):
            is_cold = i >= warm_n or i == 0
            if is_cold and emu.sessions:
                expect(lambda: emu.sessions[-1].closed.is_set(), WAIT, "idle close")
            elif not is_cold:
                expect(lambda: rig.state() == State.IDLE, WAIT, "back to idle")
            n_sessions = len(emu.sessions)
            if is_cold and i >= warm_n:
                # Speech from the press edge: is any of it lost while the socket opens?
                k = len(rig.obs.states)
                proc = rig.speak(hello, wait=False)
                t = rig.edge(True)
            else:
                proc = rig.speak(tone(1.0), wait=False)
                pause(0.3)  # the mic already hears the tone; the gate opens at the press
                k = len(rig.obs.states)
                t = rig.edge(True)
            rig.wait_state(State.LISTENING, k)
            expect(lambda: not proc.alive(), WAIT, "pacat")  # noqa: B023,B007,E501 - used at once
            rig.edge(False)
            expect(lambda: len(emu.sessions) > n_sessions or not is_cold or i == 0, WAIT, "session")  # noqa: B023,B007,E501 - used at once
            sess = emu.sessions[-1]
            frames = [f for f in list(sess.frames) if f.kind == "binary" and f.t >= t]
            first = next((f for f in frames if max(map(abs, samples_of(f.data)), default=0) > SILENT),
                         None)
            if first is not None and not (is_cold and i >= warm_n):
                (cold if is_cold else warm).append((first.t - t) * 1000)
            if is_cold and i >= warm_n:
                cold.append(((first.t if first else t) - t) * 1000)
                got = sess.audio_received()
                speech = trim(hello)
                chunk = 1600
                offs = [got.find(speech[j:j + chunk]) for j in range(0, len(speech) - chunk, chunk)]
                lost.append(offs.count(-1) * chunk // 2)
                lost_at.append([j for j, o in enumerate(offs) if o < 0])
            rig.wait_state(State.SPEAKING, k)
    finally:
        rig.stop()
    return {"warm": warm, "cold": cold, "lost": lost, "lost_at": lost_at, "turn": fb_turn}


def trim(pcm: bytes, threshold: int = 300) -> bytes:
    s = samples_of(pcm)
    loud = [i for i, x in enumerate(s) if abs(x) > threshold]
    return s[loud[0]:loud[-1] + 1].tobytes() if loud else b""


def bench_rx_write(pa: PulseServer, emu: Emulator, tmp: Path, seconds: float) -> list[float]:
    """Agent audio received (rx thread) → the write() that carries its first byte, real-time pace."""
    emu.options.reply_seconds = seconds
    emu.options.reply_pace = 1.0
    rig = Rig(pa, emu, tmp / "rx").start()
    try:
        k = len(rig.obs.states)
        rig.edge(True)
        rig.wait_state(State.LISTENING, k)
        rig.speak(tone(0.35))
        rig.edge(False)
        rig.wait_state(State.SPEAKING, k)
        m = len(rig.obs.states)
        rig.wait_state(State.IDLE, m, timeout=seconds + WAIT)
    finally:
        rig.stop()
        emu.options.reply_pace = 10.0
    rx, writes = list(rig.obs.rx), list(rig.obs.writes)
    # Matched by content, not by byte count: the speaker pads partial periods with silence.
    # The reply signal repeats every 0.25 s, so search forward from the last match only.
    stream = b"".join(d for _, d in writes)
    starts, acc = [], 0
    for _, d in writes:
        starts.append(acc)
        acc += len(d)
    import bisect
    out, pos = [], 0
    for t_rx, head in rx:
        at = stream.find(head, pos, pos + 16000)
        if at < 0:
            continue
        pos = at + 2
        w = bisect.bisect_right(starts, at) - 1
        out.append((writes[w][0] - t_rx) * 1000)
    return out


RELEASE_END_OF_SPEECH = 0.6  # the emulator's default end-of-speech: Nova's wait for silence


def bench_release(pa: PulseServer, emu: Emulator, tmp: Path, n: int, flux: bool) -> list[float]:
    """Hold mode: the release edge → PlaybackStarted of the reply, in ms. Flux: the release's
    ForceEndTurn ends the turn; Nova: the agent waits for its end of speech."""
    emu.options.reply_seconds = 0.3
    emu.options.end_of_speech = RELEASE_END_OF_SPEECH
    listen = {} if flux else {"listen": {"version": "v1", "model": "nova-3"}}
    rig = Rig(pa, emu, tmp / f"release-{flux}", agent={"url": emu.url("v1"), **listen},
              session={"idle_timeout": 120.0}).start()
    out: list[float] = []
    speech = tone(0.8)
    try:
        for _ in range(n):
            k = len(rig.obs.states)
            rig.edge(True)
            rig.wait_state(State.LISTENING, k)
            rig.speak(speech)  # returns once pacat has played it all into the mic
            n_started = len(rig.obs.started)
            t = rig.edge(False)
            expect(lambda n_started=n_started: len(rig.obs.started) > n_started, WAIT,  # noqa: B023
                   "the reply to start")
            out.append((rig.obs.started[-1].t - t) * 1000)
            rig.wait_state(State.IDLE, len(rig.obs.states))
    finally:
        rig.stop()
        emu.options.end_of_speech = 0.25
    return out


def bench_stop(pa: PulseServer, emu: Emulator, tmp: Path, n: int) -> list[float]:
    """Daemon.stop() while a long reply plays, in ms: what run() does once SIGTERM arrives."""
    emu.options.reply_seconds = 8.0
    emu.options.end_of_speech = 0.25
    out: list[float] = []
    for i in range(n):
        rig = Rig(pa, emu, tmp / f"stop{i}").start()
        try:
            parts = rig.daemon.parts
            assert parts is not None
            k = len(rig.obs.states)
            rig.edge(True)
            rig.wait_state(State.LISTENING, k)
            rig.speak(tone(0.35))
            rig.edge(False)
            rig.wait_state(State.SPEAKING, k)
            expect(parts.speaker.is_playing, WAIT, "the reply to play")
            t = now()
            rig.daemon.stop()
            out.append((now() - t) * 1000)
        finally:
            rig.stop()
    return out


def bench_mic_resume(pa: PulseServer, n: int) -> list[float]:
    """The idle mic (paused: no socket, gate shut): a press's set_gate + set_uplink(stream) → the
    first frame handed to the uplink, in ms."""
    cfg = pa.input_config()
    first: list[float] = []

    class FirstFrame:
        def uplink(self, frame: bytes) -> None:
            if not first:
                first.append(now())

    mic = Mic(lambda: open_source(cfg), AudioFormat.from_input(cfg), FirstFrame())
    out: list[float] = []
    mic.start()
    try:
        for i in range(n):
            expect(lambda i=i: mic.pauses == i + 1, WAIT, "the mic to pause")
            first.clear()
            t = now()
            mic.set_gate(True)
            mic.set_uplink(UplinkMode.STREAM)
            expect(lambda: bool(first), WAIT, "the first frame")
            out.append((first[0] - t) * 1000)
            mic.set_gate(False)
            mic.set_uplink(UplinkMode.OFF)
    finally:
        mic.stop()
    return out


# --- the table ------------------------------------------------------------------------------------

ROWS: list[tuple[str, str, str, str]] = []


def row(figure: str, value: str, target: str, ok: bool | None, method: str) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "MISS")
    ROWS.append((figure, value, f"{target} {verdict}".strip(), method))


def dist(ms: list[float]) -> str:
    return f"p50 {pct(ms, 50):.1f} / p95 {pct(ms, 95):.1f} / max {max(ms):.1f} ms (n={len(ms)})"


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}, " \
           f"Python {platform.python_version()}"


def cpu_rows(sec: cpu.Section) -> None:
    """The CPU, memory and uplink rows, from the daemon alone in a subprocess."""
    st, ci, off = sec.stream, sec.connected, sec.offline
    how = ("daemon subprocess, CPU of all its threads (schedstat ns) over a steady window; "
           "PulseAudio null sinks behind ALSA")
    row("CPU streaming full duplex", f"{st.window.cpu:.2f} % of one core (load {st.window.load})",
        "≤ 1.0 %", st.window.cpu <= 1.0,
        f"{sec.stream.window.seconds:.0f} s window (s 15-45 of a 60 s agent reply sent at real "
        f"time in 100 ms frames, 24 kHz, while the mic streams 80 ms frames); {how}")
    row("  by thread", st.window.split(), "-", None,
        "% of one core per thread (threaded-ml: the ALSA pulse plugin's, absent with a Pi's hw:)")
    row("  per wake-up", st.window.per_wake(), "-", None,
        "voluntary context switches per thread per second, and CPU per switch")
    row("  underruns, overruns", f"{st.underruns} / {st.xruns} in the window, "
        f"{st.extra['stats']['underruns']} / {st.extra['stats']['xruns']} over the whole reply",
        "0", st.underruns == 0 and st.xruns == 0, "the speaker's and the mic's own counters")
    rg = sec.ring
    row("  with a 12-pixel APA102 ring", f"{rg.window.cpu:.2f} % of one core, its leds thread "
        f"{rg.window.threads.get('leds', 0.0):.2f} % at {rg.extra['ring_fps']:.1f} frames/s", "≤ 1.0 %",
        rg.window.cpu <= 1.0, f"the workload with the ReSpeaker 4-Mic Array profile's LEDs (its "
        f"12-pixel ring in place of the single LED) pulsing while the reply plays, "
        f"{rg.window.seconds:.0f} s window; frames counted at a stand-in for the kernel's spidev")
    row("CPU connected idle", f"{ci.window.cpu:.2f} % of one core (load {ci.window.load})",
        "≤ 0.5 %", ci.window.cpu <= 0.5,
        f"half duplex, hold mode, socket open after one turn, nobody talking, "
        f"{ci.window.seconds:.0f} s; {how}; split: {ci.window.split()}")
    row("CPU not connected", f"{off.window.cpu:.3f} % of one core (load {off.window.load})",
        "≤ 0.1 %", off.window.cpu <= 0.1,
        f"daemon serving, no socket, {off.window.seconds:.0f} s; {how}")
    rss = max(st.rss_mb, ci.rss_mb, off.rss_mb)
    row("peak RSS", f"{off.rss_mb:.1f} MB not connected, {st.rss_mb:.1f} MB streaming, "
        f"{ci.rss_mb:.1f} MB connected idle", "≤ 36 MB", rss <= 36, "VmHWM from /proc/pid/status")
    gap = max(st.uplink_gap_ms, ci.uplink_gap_ms)
    row("longest uplink gap", f"{st.uplink_gap_ms:.1f} ms streaming ({st.uplink_fps:.1f} frames/s), "
        f"{ci.uplink_gap_ms:.1f} ms connected idle ({ci.uplink_fps:.1f} frames/s)",
        "< 1 s (cut at ~10 s)", gap < 1000,
        "emulator's receive times of the client's frames over the same windows")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer trials, shorter CPU windows")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="py-spy (if installed in the venv) records the CPU windows into DIR")
    ap.add_argument("--ring", type=int, default=0, metavar="N",
                    help="only the streaming workload without and with a 12-pixel ring, N times each")
    ap.add_argument("--sdk", type=int, default=0, metavar="N",
                    help="only the streaming workload, speakerd and Deepgram's early-access SDK "
                         "client alternately, N times each (the SDK in its own venv under out/)")
    args = ap.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    trials = 8 if args.quick else 20
    t_start = now()
    with tempfile.TemporaryDirectory(prefix="speakerd-bench-") as d:
        tmp = Path(d)
        pa = PulseServer(tmp / "pulse")
        pa.start()
        os.environ["ALSA_CONFIG_PATH"] = str(pa.alsa_config)
        emu = Emulator(EmulatorOptions(api_key=KEY, end_of_speech=0.25, reply_latency=0.05,
                                       reply_pace=10.0, idle_timeout=60.0)).start()
        try:
            if args.ring:
                runs = cpu.ring_runs(pa, emu, tmp, Rig(pa, emu, tmp / "cpu").raw, KEY, tone(0.4),
                                     runs=args.ring,
                                     say=lambda line: print(line, file=sys.stderr, flush=True))
                print(f"streaming workload (s 15-45 of a 60 s reply), {machine()}")
                print("\n".join(cpu.ring_lines(runs)))
                return 0
            if args.sdk:
                reply, window = (24.0, (6.0, 18.0)) if args.quick else (60.0, (15.0, 45.0))
                pairs = sdk.side_by_side(pa, emu, tmp, Rig(pa, emu, tmp / "cpu").raw, KEY,
                                         tone(0.4), runs=args.sdk, reply_seconds=reply,
                                         window=window,
                                         say=lambda line: print(line, file=sys.stderr, flush=True))
                print(f"CPU streaming full duplex, side by side (s {window[0]:.0f}-{window[1]:.0f} "
                      f"of a {reply:.0f} s reply at real time in 100 ms frames, 24 kHz, the mic "
                      f"streaming a tone; CPU of all the client's threads, schedstat ns; peak RSS "
                      f"VmHWM), {machine()}")
                print("\n".join(sdk.lines(pairs)))
                print(f"({now() - t_start:.0f} s; load average now {cpu.load_average()})")
                return 0
            print("barge-in, button ...", file=sys.stderr, flush=True)
            b = bench_barge_in(pa, emu, tmp, trials, duplex=False)
            print("barge-in, full duplex ...", file=sys.stderr, flush=True)
            f = bench_barge_in(pa, emu, tmp, trials, duplex=True)
            print("press to first byte ...", file=sys.stderr, flush=True)
            pr = bench_press(pa, emu, tmp, 5 if args.quick else 10, 2 if args.quick else 5)
            print("receive to write ...", file=sys.stderr, flush=True)
            rx = bench_rx_write(pa, emu, tmp, 5.0 if args.quick else 15.0)
            sec = cpu.run_section(pa, emu, tmp, Rig(pa, emu, tmp / "cpu").raw, KEY, tone(0.4),
                                  quick=args.quick, profile=args.profile,
                                  say=lambda line: print(line, file=sys.stderr, flush=True))
            print("release to first audio, Flux and Nova ...", file=sys.stderr, flush=True)
            rel_flux = bench_release(pa, emu, tmp, trials, flux=True)
            rel_nova = bench_release(pa, emu, tmp, trials, flux=False)
            print("stop mid-reply ...", file=sys.stderr, flush=True)
            stop = bench_stop(pa, emu, tmp, 3 if args.quick else 5)
            print("idle mic resume ...", file=sys.stderr, flush=True)
            resume = bench_mic_resume(pa, 5 if args.quick else 20)
        finally:
            emu.stop()
            pa.stop()
    align = ("monitor aligned per trial: reply onset = PlaybackStarted (error: the first period's "
             f"write→sink latency, figures early by up to a device period, "
             f"{AudioOutputConfig().period_ms} ms; parecord 3 ms)")
    for name, res, how in (("barge-in, button edge", b, "trigger = pin edge (drive_low)"),
                           ("barge-in, UserStartedSpeaking", f, "trigger = agent-rx receipt")):
        lat, late = res["lat"], res["late"]
        if lat:
            row(f"{name} → last old sample", dist(lat), "p95 ≤ 25 ms", pct(lat, 95) <= 25,
                f"{how}; {align}")
            if res["upper"]:
                row(f"{name} → last old sample (upper bound)", dist(res["upper"]), "p95 ≤ 25 ms",
                    pct(res["upper"], 95) <= 25,
                    "time that sample reached the parecord file (polled every 0.5 ms); late by "
                    "parecord's 3 ms latency + the poll")
            row(f"{name}: old samples after trigger", f"max {max(late)}, total {sum(late)}",
                "0", max(late) == 0, "monitor samples of the old reply past the trigger position")
    if pr["warm"]:
        row("press → first uplink byte, warm", dist(pr["warm"]), "≤ 30 ms", pct(pr["warm"], 95) <= 30,
            "emulator receive time of the first frame carrying mic audio (tone playing before the press)")
    if pr["cold"]:
        row("press → first uplink byte, cold", dist(pr["cold"]), "-", None,
            "same, socket closed by session.idle_timeout before the press")
    row("speech lost on a cold press", f"{sum(pr['lost'])} samples over {len(pr['lost'])} presses "
        f"(lost 50 ms chunks: {pr['lost_at']})",
        "0", sum(pr["lost"]) == 0, "hello.wav from the press edge, 50 ms chunks found in audio_received()")
    if rx:
        row("agent audio rx → ALSA write", f"p50 {pct(rx, 50):.1f} / p95 {pct(rx, 95):.1f} ms (n={len(rx)})",
            "p95 ≤ 5 ms", pct(rx, 95) <= 5,
            "router.audio wrapper time → sink.write() call carrying the chunk's first byte, pace 1.0")
    release_how = ("hold mode: pin edge (drive_high) → PlaybackStarted of the reply; a 0.8 s tone, "
                   "released as pacat ends; emulator reply_latency 0.05 s")
    row("release → first agent audio, Flux + ForceEndTurn", dist(rel_flux), "-", None,
        f"{release_how}; listen flux-general-en, eot_threshold 1.0: the release ends the turn")
    row("release → first agent audio, Nova", dist(rel_nova), "-", None,
        f"{release_how}; listen nova-3: the agent waits for {RELEASE_END_OF_SPEECH:.1f} s of "
        "silence (the emulator's end of speech)")
    row("  end-of-turn wait gone with Flux", f"{pct(rel_nova, 50) - pct(rel_flux, 50):.0f} ms at "
        "p50", f"≈ {RELEASE_END_OF_SPEECH * 1000:.0f} ms", None,
        "p50 of Nova minus p50 of Flux, same rig and emulator")
    row("idle mic: press → first frame", dist(resume), "≤ 250 ms", pct(resume, 95) <= 250,
        "Mic alone on the pulse PCM, paused with no socket: set_gate + set_uplink(stream) → first send()")
    row("stop mid-reply", dist(stop), "≤ 2000 ms", max(stop) <= 2000,
        "Daemon.stop() while an 8 s reply plays (what run() does on SIGTERM/SIGINT), in process")
    cpu_rows(sec)
    w = [max(len(r[i]) for r in ROWS) for i in range(3)]
    print(f"speakerd benchmark ({'quick' if args.quick else 'full'}), {machine()}")
    print(f"{'figure':<{w[0]}}  {'value':<{w[1]}}  {'target':<{w[2]}}  method")
    for r in ROWS:
        print(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
    print(f"CPU of the workload by output rate and period (% of one core; the playback buffer "
          f"kept at {cpu.BUFFER_MS} ms; seconds {sec.grid_window[0]:.0f}-{sec.grid_window[1]:.0f} "
          f"of a shorter reply), and by uplink frame length:")
    for line in cpu.grid_table(sec):
        print(line)
    print(f"({now() - t_start:.0f} s; load average now {cpu.load_average()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
