"""The local chimes (press, error, goodbye), synthesised at the output rate and encoding."""

from __future__ import annotations

import math
import sys
from array import array
from functools import lru_cache

from .audio import AudioFormat

NAMES = ("press", "error", "goodbye")

# Each chime is a list of (start Hz, end Hz, seconds) notes with a short gap between notes.
_NOTES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "press": ((660.0, 990.0, 0.07),),                       # a short rising blip
    "error": ((330.0, 330.0, 0.11), (262.0, 262.0, 0.11)),  # two low tones
    "goodbye": ((784.0, 784.0, 0.1), (523.0, 523.0, 0.14)),  # a falling pair
}
_GAP = 0.03
_FADE = 0.005  # seconds of fade in and out per note, so the edges do not click


def _linear_to_mulaw(sample: int) -> int:
    """G.711 mu-law code for a 16-bit sample (the reference 14-bit algorithm, as audioop had)."""
    value = sample >> 2  # an arithmetic shift, like the reference: -1 stays -1
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, 8159) + 33
    segment = 0
    while segment < 8 and value > _SEGMENT_END[segment]:
        segment += 1
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


_SEGMENT_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def _samples(name: str, rate: int, volume: float) -> array:
    notes = _NOTES[name]
    out = array("h")
    amplitude = 32767 * max(0.0, min(1.0, volume))
    fade = max(1, int(_FADE * rate))
    for i, (f0, f1, seconds) in enumerate(notes):
        n = int(seconds * rate)
        phase = 0.0
        for k in range(n):
            # A linear sweep: integrate the instantaneous frequency for a continuous phase.
            freq = f0 + (f1 - f0) * k / n
            phase += 2 * math.pi * freq / rate
            env = min(1.0, k / fade, (n - 1 - k) / fade)
            out.append(int(amplitude * env * math.sin(phase)))
        if i < len(notes) - 1:
            out.extend([0] * int(_GAP * rate))
    return out


@lru_cache(maxsize=32)
def render(name: str, fmt: AudioFormat, volume: float) -> bytes:
    """The chime `name` as PCM bytes in `fmt`, scaled by `volume` (0..1); at most 300 ms."""
    if name not in _NOTES:
        raise ValueError(f"unknown chime {name!r}; expected one of {', '.join(NAMES)}")
    samples = _samples(name, fmt.rate, volume)
    if fmt.channels > 1:
        samples = array("h", [s for s in samples for _ in range(fmt.channels)])
    if fmt.encoding == "mulaw":
        return bytes(_linear_to_mulaw(s) for s in samples)
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()
