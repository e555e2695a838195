"""The configuration schema: one frozen dataclass per YAML section, with each key's default and
validation limits (read by the loader)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..events import State

DEFAULT_PATH = "/etc/speakerd/speakerd.yaml"
EX_CONFIG = 78
STATES = tuple(State)
CREDENTIAL_NAME = "deepgram_api_key"
# The systemd credentials holding each provider section's secrets (config.credentials).
# The systemd credentials holding a provider's secrets. The shipped unit loads them by name from
# the system's credential store (/etc/credstore/<name>, root-only), so they are named for the
# service: the store is shared by every unit.
THINK_CREDENTIAL = "speakerd.think_credentials"
SPEAK_CREDENTIAL = "speakerd.speak_credentials"


class ConfigError(Exception):
    """Every problem found in a config, one `section.key: message` per line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _opt(default: Any, *, choices: tuple[str, ...] | None = None, min: float | None = None,
         max: float | None = None, doc: str = "") -> Any:
    """A dataclass field with validation metadata read by the loader."""
    meta = {"choices": choices, "min": min, "max": max, "doc": doc}
    if isinstance(default, (dict, list, tuple)) or dataclasses.is_dataclass(default):
        frozen = default
        return field(default_factory=lambda: frozen, metadata=meta)
    return field(default=default, metadata=meta)


# --- agent -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListenConfig:
    """Speech-to-text settings sent to the agent: Nova (version v1) or Flux (version v2); auto
    and an empty model are resolved from the dialect and agent.language (config.agent)."""
    version: str = _opt("auto", choices=("auto", "v1", "v2"))
    model: str = ""
    keyterms: tuple[str, ...] = ()
    smart_format: bool = False  # Nova only
    # Flux only. None: the default of the button mode (see config.agent.turn_taking).
    language_hints: tuple[str, ...] = ()
    eot_threshold: float | None = _opt(None, min=0.5, max=1.0)
    eager_eot_threshold: float | None = _opt(None, min=0.3, max=0.9)
    eot_timeout_ms: int | None = _opt(None, min=500, max=60000)


@dataclass(frozen=True)
class ThinkConfig:
    """The LLM behind the agent."""
    provider: str = "open_ai"
    model: str = "gpt-4o-mini"
    prompt: str = ("You are a helpful voice assistant on a small speaker. "
                   "Answer in one or two short spoken sentences.")
    temperature: float | None = _opt(None, min=0, max=2)
    endpoint_url: str = ""
    endpoint_headers: Mapping[str, str] = _opt({})
    # Secret headers and AWS keys: read from the systemd credential THINK_CREDENTIAL or this
    # root-only file, never from the YAML (config.credentials).
    credentials_file: str = ""


@dataclass(frozen=True)
class SpeakConfig:
    """Text-to-speech voice."""
    provider: str = "deepgram"
    model: str = "aura-2-thalia-en"
    voice_id: str = ""
    language: str = ""
    endpoint_url: str = ""
    endpoint_headers: Mapping[str, str] = _opt({})
    credentials_file: str = ""


@dataclass(frozen=True)
class AgentConfig:
    """The Voice Agent connection and what the settings message says."""
    dialect: str = _opt("v1", choices=("v1", "early_access"))
    url: str = ""  # empty: the dialect's Deepgram endpoint
    api_key_file: str = ""
    ca_file: str = ""  # extra CA bundle; verification is never switched off
    language: str = "en"
    greeting: str = ""
    listen: ListenConfig = _opt(ListenConfig())
    think: ThinkConfig = _opt(ThinkConfig())
    speak: SpeakConfig = _opt(SpeakConfig())
    tags: tuple[str, ...] = ()
    mip_opt_out: bool = False
    experimental: bool = False
    history: bool = True
    settings_passthrough: Mapping[str, Any] = _opt({})
    connect_timeout: float = _opt(10.0, min=0.5, max=120)
    keepalive_interval: float = _opt(4.0, min=0.5, max=8)
    ping_interval: float = _opt(5.0, min=1, max=60)


# --- session -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionConfig:
    """Timing of the conversation state machine."""
    idle_timeout: float = _opt(30.0, min=0, max=3600)
    reply_timeout: float = _opt(10.0, min=1, max=120)
    late_audio_timeout: float = _opt(1.5, min=0.1, max=10)
    max_turn_seconds: float = _opt(120.0, min=5, max=3600)
    reconnect_initial: float = _opt(0.5, min=0.05, max=60)
    reconnect_max: float = _opt(30.0, min=0.1, max=600)


# --- audio -------------------------------------------------------------------------------

# The capture period when the config names none. Half duplex: a press restarts the stopped
# stream and its first audio leaves after one period, so a short one. Full duplex: the stream
# runs the whole conversation and an uplink frame leaves when its last period is in, at the
# same moment whatever the period, so a longer one (if the frame is a whole number of them)
# only halves the device's wake-ups.
HALF_DUPLEX_PERIOD_MS = 20
FULL_DUPLEX_PERIOD_MS = 40


@dataclass(frozen=True)
class AudioInputConfig:
    """The microphone PCM."""
    device: str = "default"
    sample_rate: int = _opt(16000, min=8000, max=48000)
    # None: by the duplex mode (AudioConfig fills it in; see HALF_DUPLEX_PERIOD_MS).
    period_ms: int | None = _opt(None, min=5, max=100)
    # Deep on purpose: capture latency is one period whatever the buffer, and the buffer rides
    # out a stall of the mic thread (e.g. while the socket connects) without losing speech:
    # 320 ms in half duplex, 640 ms in full, where half of it may hold a speaking batch.
    periods: int = _opt(16, min=2, max=32)
    # Audio per uplink message: a whole number of periods. 80 ms is what Deepgram advises for
    # Flux; each message costs a thread hop and a websocket frame, so fewer cost less CPU.
    frame_ms: int = _opt(80, min=5, max=250)
    # While the agent speaks in full duplex the microphone is up only so that the user can
    # interrupt by voice, and its frames go up this much audio at a time (whole frames): three
    # 80 ms frames every 240 ms, so the mic and the socket's thread wake a third as often for
    # the longest stretch of a full-duplex conversation. The server hears an interruption's
    # first words up to 160 ms later (80 ms on average). Less than two frames: each goes as it
    # fills. The user's own turn, and an interruption once heard, always go frame by frame.
    speaking_batch_ms: int = _opt(240, min=0, max=480)
    connect_buffer_seconds: float = _opt(10.0, min=0.5, max=60)

    @property
    def period(self) -> int:
        """The capture period in ms (the half-duplex one where no AudioConfig filled it in)."""
        return HALF_DUPLEX_PERIOD_MS if self.period_ms is None else self.period_ms

    @property
    def batch_frames(self) -> int:
        """Uplink frames per hand-over while the agent speaks in full duplex: speaking_batch_ms
        in whole frames, at least 1, and at most half the capture buffer: the thread sleeps
        while a batch is captured, and the other half still rides out a stall of the thread."""
        room = self.periods * self.period // 2 // self.frame_ms
        return max(1, min(self.speaking_batch_ms // self.frame_ms, room))


@dataclass(frozen=True)
class AudioOutputConfig:
    """The speaker PCM."""
    device: str = "default"
    sample_rate: int = _opt(24000, min=8000, max=48000)
    encoding: str = _opt("linear16", choices=("linear16", "mulaw"))
    # A deep buffer on purpose: an interruption is drop(), which discards the whole buffer at
    # once, so its length costs no barge-in time, and a chunk of agent audio fits in one write.
    # A long period: each one wakes the device (with PulseAudio, a thread of ours: 48 wake-ups a
    # second while streaming at 80 ms, 62 at 40 ms); the speaker writes in steps of at most 20 ms
    # whatever the period (AudioFormat.write_unit).
    period_ms: int = _opt(80, min=5, max=100)
    periods: int = _opt(4, min=2, max=32)


@dataclass(frozen=True)
class AudioConfig:
    """Audio devices and the duplex policy."""
    duplex: str = _opt("half", choices=("half", "full"))
    input: AudioInputConfig = _opt(AudioInputConfig())
    output: AudioOutputConfig = _opt(AudioOutputConfig())

    def __post_init__(self) -> None:
        if self.input.period_ms is None:
            full = self.duplex == "full" and self.input.frame_ms % FULL_DUPLEX_PERIOD_MS == 0
            period = FULL_DUPLEX_PERIOD_MS if full else HALF_DUPLEX_PERIOD_MS
            object.__setattr__(self, "input", dataclasses.replace(self.input, period_ms=period))


@dataclass(frozen=True)
class ChimeConfig:
    """One local sound."""
    enabled: bool = True
    volume: float = _opt(0.3, min=0, max=1)


@dataclass(frozen=True)
class ChimesConfig:
    """Short sounds synthesised locally."""
    press: ChimeConfig = _opt(ChimeConfig())
    error: ChimeConfig = _opt(ChimeConfig())
    goodbye: ChimeConfig = _opt(ChimeConfig())


# --- button and LEDs ---------------------------------------------------------------------

@dataclass(frozen=True)
class ButtonConfig:
    """The push button."""
    pin: str = "GPIO17"
    pull_up: bool = True
    bounce_time: float = _opt(0.03, min=0, max=1)
    mode: str = _opt("hold", choices=("hold", "toggle"))


EFFECTS = ("off", "on", "blink", "pulse", "spin", "meter")
PIXEL_EFFECTS = ("spin", "meter")  # these need a row or ring of pixels (kind apa102)


@dataclass(frozen=True)
class Pattern:
    """How one LED shows one state.

    spin: a lit pixel with a fading tail runs round the pixels, one turn every on_time seconds.
    meter: every pixel glows dimly and as many light fully as the microphone is loud; a peak
    falls back over off_time seconds.
    """
    effect: str = _opt("off", choices=EFFECTS)
    on_time: float = _opt(0.5, min=0.01, max=10)
    off_time: float = _opt(0.5, min=0.01, max=10)
    brightness: float = _opt(1.0, min=0, max=1)
    color: str = ""  # RGB LEDs and pixels: a name ("red") or "#rrggbb"


DEFAULT_PATTERNS: Mapping[State, Pattern] = {
    State.IDLE: Pattern("off"),
    State.CONNECTING: Pattern("blink", 0.1, 0.4, color="white"),
    State.LISTENING: Pattern("on", color="blue"),
    State.THINKING: Pattern("blink", 0.15, 0.15, color="yellow"),
    State.SPEAKING: Pattern("pulse", 0.6, 0.6, color="green"),
    State.OFFLINE: Pattern("blink", 0.05, 1.95, color="orange"),
    State.ERROR: Pattern("blink", 1.0, 0.2, color="red"),
}

# What a row or ring of pixels shows when its config names no pattern: a chase while the link
# opens and while the agent thinks, the voice's level while listening (the looks the anchors'
# HAT examples use).
DEFAULT_PIXEL_PATTERNS: Mapping[State, Pattern] = {
    State.IDLE: Pattern("off"),
    State.CONNECTING: Pattern("spin", 1.2, color="white", brightness=0.6),
    State.LISTENING: Pattern("meter", 0.5, 0.5, color="blue"),
    State.THINKING: Pattern("spin", 0.6, color="yellow"),
    State.SPEAKING: Pattern("pulse", 0.6, 0.6, color="green"),
    State.OFFLINE: Pattern("blink", 0.05, 1.95, color="orange"),
    State.ERROR: Pattern("blink", 1.0, 0.2, color="red"),
}

# The Pi's hardware SPI0 as gpiozero knows it: clock, data out (MOSI), and the chip select of
# /dev/spidev0.0 and /dev/spidev0.1. APA102 pixels listen to clock and data only; the select
# pin of the device opened is claimed all the same.
SPI0_CLOCK = "GPIO11"
SPI0_MOSI = "GPIO10"
SPI0_SELECT = ("GPIO8", "GPIO7")
COLOR_ORDERS = ("bgr", "brg", "gbr", "grb", "rbg", "rgb")


@dataclass(frozen=True)
class LedConfig:
    """One LED (plain, PWM or RGB) or a chain of APA102 pixels, and its state-to-pattern table."""
    kind: str = _opt("pwm", choices=("led", "pwm", "rgb", "apa102"))
    # led, pwm: one pin; rgb: three; apa102: none (hardware SPI0) or [clock, data] (bit-banged)
    pins: tuple[str, ...] = ("GPIO25",)
    active_high: bool = True  # apa102: the polarity of power_pin
    patterns: Mapping[State, Pattern] = _opt(dict(DEFAULT_PATTERNS))
    # --- apa102 only ---
    pixels: int = _opt(3, min=1, max=256)
    spi_device: int = _opt(0, min=0, max=1)  # hardware SPI: /dev/spidev0.<spi_device>
    global_brightness: int = _opt(10, min=0, max=31)  # the datasheet's 5-bit field of every pixel
    order: str = _opt("bgr", choices=COLOR_ORDERS)  # colour bytes on the wire (datasheet: bgr)
    power_pin: str = ""  # a pin that switches the pixels' supply on (some HATs have one)


# --- functions ---------------------------------------------------------------------------

ACTIONS = ("volume", "gpio", "end_conversation", "http", "command")


@dataclass(frozen=True)
class ActionConfig:
    """The one allow-listed local action a function maps to."""
    type: str = _opt("end_conversation", choices=ACTIONS)
    # volume
    card: str = "default"
    control: str = "Master"
    min: int = _opt(0, min=0, max=100)
    max: int = _opt(100, min=0, max=100)
    # gpio
    pin: str = ""
    active_high: bool = True
    min_interval: float = _opt(1.0, min=0.05, max=3600)  # seconds between two switches of the pin
    # http
    url: str = ""
    method: str = _opt("POST", choices=("GET", "POST", "PUT"))
    headers: Mapping[str, str] = _opt({})
    # command
    argv: tuple[str, ...] = ()
    allow_leading_dash: tuple[str, ...] = ()  # placeholders whose value may start with '-'
    max_output: int = _opt(2000, min=16, max=100000)
    # all
    timeout: float = _opt(5.0, min=0.1, max=60)


@dataclass(frozen=True)
class EndpointConfig:
    """A server-side function: the agent server calls this URL itself."""
    url: str = ""
    method: str = "post"
    headers: Mapping[str, str] = _opt({})


@dataclass(frozen=True)
class FunctionConfig:
    """A function the agent may call."""
    name: str = ""
    description: str = ""
    parameters: Mapping[str, Any] = _opt({"type": "object", "properties": {}})
    action: ActionConfig | None = None
    endpoint: EndpointConfig | None = None


# --- logging, state, debug ---------------------------------------------------------------

@dataclass(frozen=True)
class LogConfig:
    """Logging, the conversation log and diagnostic recordings."""
    level: str = _opt("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    state_dir: str = "/var/lib/speakerd"
    conversation_log: bool = True
    conversation_log_max_bytes: int = _opt(1_000_000, min=1000, max=1_000_000_000)
    conversation_log_backups: int = _opt(3, min=0, max=100)
    debug_audio_dir: str = ""  # non-empty: save each reply and each uplink turn as WAV
    debug_audio_max_files: int = _opt(20, min=1, max=10000)


@dataclass(frozen=True)
class Config:
    """The whole of speakerd.yaml."""
    board: str = ""  # a board profile (speakerd/boards/<name>.yaml) merged under the file's keys
    agent: AgentConfig = _opt(AgentConfig())
    session: SessionConfig = _opt(SessionConfig())
    audio: AudioConfig = _opt(AudioConfig())
    chimes: ChimesConfig = _opt(ChimesConfig())
    button: ButtonConfig = _opt(ButtonConfig())
    leds: tuple[LedConfig, ...] = (LedConfig(),)
    functions: tuple[FunctionConfig, ...] = ()
    log: LogConfig = _opt(LogConfig())


