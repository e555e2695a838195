"""`speakerd selftest`: a hardware bring-up check of speaker, microphone, LEDs and button."""

from __future__ import annotations

import array
import math
import threading

from .config import EX_CONFIG, ConfigError, load_config
from .events import State

# Levels are fractions of full scale: below this the mic is probably muted or unplugged.
QUIET = 0.002
CLIP = 32767 * 0.99


def _tone(rate: int, seconds: float, freq: float = 440.0, volume: float = 0.3) -> bytes:
    n = int(rate * seconds)
    amp = 32767 * volume
    return array.array("h", (int(amp * math.sin(2 * math.pi * freq * i / rate))
                             for i in range(n))).tobytes()


def selftest(config_path: str, *, seconds: float = 3.0, button_timeout: float = 10.0,
             led_seconds: float = 1.5) -> int:
    """Run each check in turn and print what it found; exit 0 if all passed."""
    from .audio import AudioDeviceError, AudioFormat, open_sink, open_source
    from .button import PushButton
    from .leds import StatusLeds

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        print("\n".join(exc.problems))
        return EX_CONFIG
    failures = 0

    out = cfg.audio.output
    print(f"speaker: playing a 1 s tone on {out.device!r} at {out.sample_rate} Hz ...")
    try:
        sink = open_sink(out)
        fmt = AudioFormat.from_output(out)
        pcm = _tone(out.sample_rate, 1.0) if out.encoding == "linear16" else fmt.silence() * 50
        for i in range(0, len(pcm) - fmt.period_bytes + 1, fmt.period_bytes):
            sink.write(pcm[i:i + fmt.period_bytes])
        sink.drain()
        sink.close()
        print("speaker: ok (did you hear it?)")
    except AudioDeviceError as exc:
        failures += 1
        print(f"speaker: FAILED: {exc}")

    inp = cfg.audio.input
    print(f"microphone: recording {seconds:.0f} s from {inp.device!r} at {inp.sample_rate} Hz; speak now ...")
    try:
        src = open_source(inp)
        fmt_in = AudioFormat.from_input(inp)
        samples = array.array("h")
        for _ in range(max(1, int(seconds / fmt_in.period_seconds))):
            samples.frombytes(src.read())
        src.close()
        rms = math.sqrt(sum(s * s for s in samples) / max(1, len(samples))) / 32768
        peak = max((abs(s) for s in samples), default=0)
        clipped = sum(1 for s in samples if abs(s) >= CLIP)
        print(f"microphone: level rms {rms:.4f}, peak {peak / 32768:.3f}, clipped samples {clipped}")
        if rms < QUIET:
            failures += 1
            print("microphone: FAILED: almost silent; check the mic, its gain (alsamixer) and the device")
        elif clipped > len(samples) // 1000:
            print("microphone: warning: clipping; lower the capture gain in alsamixer")
    except AudioDeviceError as exc:
        failures += 1
        print(f"microphone: FAILED: {exc}")

    print(f"leds: showing every state for {led_seconds:g} s each ...")
    leds = StatusLeds(cfg.leds)
    watching = threading.Event()  # never set: its wait is how long a person watches a pattern
    try:
        for state in State:
            print(f"  {state}")
            leds.show(state)
            watching.wait(led_seconds)
        leds.show(State.IDLE)
    finally:
        leds.close()

    if button_timeout > 0:
        pressed = threading.Event()
        print(f"button: press the button on {cfg.button.pin} within {button_timeout:.0f} s ...")
        button = PushButton(cfg.button, on_press=lambda t: pressed.set(), on_release=lambda t: None)
        try:
            if pressed.wait(button_timeout):
                print("button: ok")
            else:
                failures += 1
                print("button: FAILED: no press seen; check the wiring and button.pin/pull_up")
        finally:
            button.close()
    print("selftest: all checks passed" if not failures else f"selftest: {failures} check(s) failed")
    return 0 if not failures else 1
