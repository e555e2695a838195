"""Audio: the formats and device seams, and the only code that talks to ALSA (through pyalsaaudio)."""

from .card import AlsaMixer, list_devices, quiet_alsa_lib
from .formats import AudioDeviceError, AudioFormat, QueueFull, Sink, Source, Throttle
from .pcm import AlsaSink, AlsaSource, open_sink, open_source

__all__ = [
    "AlsaMixer",
    "AlsaSink",
    "AlsaSource",
    "AudioDeviceError",
    "AudioFormat",
    "QueueFull",
    "Sink",
    "Source",
    "Throttle",
    "list_devices",
    "open_sink",
    "open_source",
    "quiet_alsa_lib",
]
