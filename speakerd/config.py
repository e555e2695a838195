"""The configuration: frozen dataclasses per YAML section, their validation, and the API key."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import stat
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .events import State

log = logging.getLogger(__name__)

DEFAULT_PATH = "/etc/speakerd/speakerd.yaml"
EX_CONFIG = 78
STATES = tuple(State)
CREDENTIAL_NAME = "deepgram_api_key"


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
    """Speech-to-text settings sent to the agent."""
    model: str = "nova-3"
    keyterms: tuple[str, ...] = ()
    smart_format: bool = False


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


@dataclass(frozen=True)
class SpeakConfig:
    """Text-to-speech voice."""
    provider: str = "deepgram"
    model: str = "aura-2-thalia-en"
    voice_id: str = ""


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

@dataclass(frozen=True)
class AudioInputConfig:
    """The microphone PCM."""
    device: str = "default"
    sample_rate: int = _opt(16000, min=8000, max=48000)
    period_ms: int = _opt(20, min=5, max=100)
    # Deep on purpose: capture latency is one period whatever the buffer, and 200 ms rides out
    # a stall of the mic thread (e.g. while the socket connects) without losing speech.
    periods: int = _opt(10, min=2, max=32)
    connect_buffer_seconds: float = _opt(10.0, min=0.5, max=60)


@dataclass(frozen=True)
class AudioOutputConfig:
    """The speaker PCM."""
    device: str = "default"
    sample_rate: int = _opt(24000, min=8000, max=48000)
    encoding: str = _opt("linear16", choices=("linear16", "mulaw"))
    period_ms: int = _opt(20, min=5, max=100)
    periods: int = _opt(3, min=2, max=32)


@dataclass(frozen=True)
class AudioConfig:
    """Audio devices and the duplex policy."""
    duplex: str = _opt("half", choices=("half", "full"))
    input: AudioInputConfig = _opt(AudioInputConfig())
    output: AudioOutputConfig = _opt(AudioOutputConfig())


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


@dataclass(frozen=True)
class Pattern:
    """How one LED shows one state."""
    effect: str = _opt("off", choices=("off", "on", "blink", "pulse"))
    on_time: float = _opt(0.5, min=0.01, max=10)
    off_time: float = _opt(0.5, min=0.01, max=10)
    brightness: float = _opt(1.0, min=0, max=1)
    color: str = ""  # RGB LEDs only: a name ("red") or "#rrggbb"


DEFAULT_PATTERNS: Mapping[State, Pattern] = {
    State.IDLE: Pattern("off"),
    State.CONNECTING: Pattern("blink", 0.1, 0.4, color="white"),
    State.LISTENING: Pattern("on", color="blue"),
    State.THINKING: Pattern("blink", 0.15, 0.15, color="yellow"),
    State.SPEAKING: Pattern("pulse", 0.6, 0.6, color="green"),
    State.OFFLINE: Pattern("blink", 0.05, 1.95, color="orange"),
    State.ERROR: Pattern("blink", 1.0, 0.2, color="red"),
}


@dataclass(frozen=True)
class LedConfig:
    """One LED (plain, PWM or RGB) and its state-to-pattern table."""
    kind: str = _opt("pwm", choices=("led", "pwm", "rgb"))
    pins: tuple[str, ...] = ("GPIO25",)
    active_high: bool = True
    patterns: Mapping[State, Pattern] = _opt(dict(DEFAULT_PATTERNS))


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
    # http
    url: str = ""
    method: str = _opt("POST", choices=("GET", "POST", "PUT"))
    headers: Mapping[str, str] = _opt({})
    # command
    argv: tuple[str, ...] = ()
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
    agent: AgentConfig = _opt(AgentConfig())
    session: SessionConfig = _opt(SessionConfig())
    audio: AudioConfig = _opt(AudioConfig())
    chimes: ChimesConfig = _opt(ChimesConfig())
    button: ButtonConfig = _opt(ButtonConfig())
    leds: tuple[LedConfig, ...] = (LedConfig(),)
    functions: tuple[FunctionConfig, ...] = ()
    log: LogConfig = _opt(LogConfig())


# --- loading -----------------------------------------------------------------------------

_LIST_ITEM = {"leds": LedConfig, "functions": FunctionConfig}


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Loader:
    """Walks raw YAML against the dataclasses, collecting every problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def has(self, path: str) -> bool:
        """Whether a problem was already reported at or under `path` (no second message for it)."""
        return any(p.startswith((f"{path}:", f"{path}.", f"{path}[")) for p in self.problems)

    def dataclass(self, cls: type, raw: Any, path: str) -> Any:
        hints = typing.get_type_hints(cls)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.problem(path or "(top)", f"must be a mapping, got {_kind(raw)}")
            return cls()
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {}
        for key, value in raw.items():
            key_path = f"{path}.{key}" if path else str(key)
            if key not in names:
                self.problem(key_path, "unknown key" + _did_you_mean(str(key), names))
                continue
            f = next(f for f in dataclasses.fields(cls) if f.name == key)
            if cls is LedConfig and key == "patterns":
                values[key] = self.patterns(value, key_path)
                continue
            values[key] = self.value(hints[key], value, key_path, f.metadata)
        try:
            return cls(**values)
        except TypeError as exc:  # pragma: no cover - guarded by the checks above
            self.problem(path, str(exc))
            return cls()

    def patterns(self, raw: Any, path: str) -> Mapping[State, Pattern]:
        merged = dict(DEFAULT_PATTERNS)
        if not isinstance(raw, Mapping):
            self.problem(path, f"must be a mapping of state to pattern, got {_kind(raw)}")
            return merged
        for state, spec in raw.items():
            if state not in STATES:
                self.problem(f"{path}.{state}", "unknown state" + _did_you_mean(str(state), list(STATES)))
                continue
            if isinstance(spec, str):  # shorthand: "on", "off", "blink", "pulse"
                spec = {"effect": spec}
            merged[State(state)] = self.dataclass(Pattern, spec, f"{path}.{state}")
        return merged

    def value(self, hint: Any, raw: Any, path: str, meta: Mapping[str, Any]) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if raw is None:
                return None
            return self.value(inner[0], raw, path, meta)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self.dataclass(hint, raw, path)
        if origin is tuple:
            item_cls = _LIST_ITEM.get(path)
            if raw is None:
                return ()
            if not isinstance(raw, list):
                self.problem(path, f"must be a list, got {_kind(raw)}")
                return ()
            if item_cls is not None:
                return tuple(self.dataclass(item_cls, item, f"{path}[{i}]") for i, item in enumerate(raw))
            out = []
            for i, item in enumerate(raw):
                if not isinstance(item, str | int | float) or isinstance(item, bool):
                    self.problem(f"{path}[{i}]", f"must be a string, got {_kind(item)}")
                    continue
                out.append(str(item))
            return tuple(out)
        if origin in (Mapping, dict) or hint is Mapping:
            if raw is None:
                return {}
            if not isinstance(raw, Mapping):
                self.problem(path, f"must be a mapping, got {_kind(raw)}")
                return {}
            return dict(raw)
        if hint is bool:
            if not isinstance(raw, bool):
                self.problem(path, f"must be true or false, got {_kind(raw)} {_show(raw)}")
                return False
            return raw
        if hint in (int, float):
            if isinstance(raw, bool) or not isinstance(raw, int | float) or (
                    hint is int and isinstance(raw, float) and not raw.is_integer()):
                self.problem(path, f"must be {'an integer' if hint is int else 'a number'}, "
                                   f"got {_kind(raw)} {_show(raw)}")
                return 0
            val = hint(raw)
            if not math.isfinite(val):  # NaN slips past every range comparison
                self.problem(path, f"must be a finite number, got {raw!r}")
                return 0
            lo, hi = meta.get("min"), meta.get("max")
            if lo is not None and val < lo or hi is not None and val > hi:
                self.problem(path, f"must be between {lo} and {hi}, got {raw!r}")
            return val
        if hint is str:
            if raw is None:
                raw = ""
            if isinstance(raw, bool):
                word = "on" if raw else "off"
                self.problem(path, f"must be a string, got a boolean (YAML reads unquoted on/off/yes/no "
                                   f'as true/false): write "{word}" in quotes')
                return ""
            if not isinstance(raw, str):
                if isinstance(raw, int | float) and not isinstance(raw, bool):
                    raw = str(raw)
                else:
                    self.problem(path, f"must be a string, got {_kind(raw)}")
                    return ""
            choices = meta.get("choices")
            if choices:
                wanted = raw.upper() if all(c.isupper() for c in choices) else raw
                if wanted not in choices:
                    self.problem(path, f"must be one of {', '.join(choices)}, got {_show(raw)}"
                                 + _did_you_mean(raw, list(choices)))
                return wanted
            return raw
        if hint is Any:
            return raw
        raise TypeError(f"config field {path} has an unsupported type {hint!r}")


def _show(value: Any) -> str:
    """A value for an error message; long strings are not repeated (a secret pasted into the
    wrong field must not end up in the journal)."""
    if isinstance(value, str) and len(value) > 24:
        return f"({len(value)} characters)"
    return repr(value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a second `session:` would wipe the first."""

    duplicates: list[str]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                self.duplicates.append(f"line {line}: key {key!r} appears again (first at line {seen[key]})")
            elif isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _cross_checks(cfg: Config, loader: _Loader) -> None:
    """Rules that involve more than one key."""
    s = cfg.session
    if s.reconnect_initial > s.reconnect_max:
        loader.problem("session.reconnect_initial", "must not exceed session.reconnect_max")
    if cfg.audio.output.encoding == "mulaw" and cfg.audio.output.sample_rate not in (8000, 16000):
        loader.problem("audio.output.sample_rate", "mulaw output supports only 8000 or 16000")
    if cfg.audio.output.encoding == "linear16" and cfg.audio.output.sample_rate not in (
            8000, 16000, 24000, 32000, 48000):
        loader.problem("audio.output.sample_rate", "linear16 output supports 8000, 16000, 24000, "
                                                   "32000 or 48000")
    for i, led in enumerate(cfg.leds):
        want = 3 if led.kind == "rgb" else 1
        if len(led.pins) != want:
            loader.problem(f"leds[{i}].pins", f"a {led.kind} LED needs {want} pin(s), got {len(led.pins)}")
    if not cfg.button.pin.strip() and not loader.has("button.pin"):
        loader.problem("button.pin", "must name a GPIO pin, e.g. GPIO17 or BOARD11")
    claimed = {cfg.button.pin}
    for i, led in enumerate(cfg.leds):
        for pin in led.pins:
            if not pin.strip():
                if not loader.has(f"leds[{i}].pins"):
                    loader.problem(f"leds[{i}].pins", "must name GPIO pins, e.g. GPIO25")
            elif pin in claimed:
                loader.problem(f"leds[{i}].pins", f"{pin} is already in use")
            claimed.add(pin)
    used_pins = [cfg.button.pin] + [p for led in cfg.leds for p in led.pins]
    seen: set[str] = set()
    names: set[str] = set()
    for i, fn in enumerate(cfg.functions):
        path = f"functions[{i}]"
        if not fn.name or not fn.name.replace("_", "").replace("-", "").isalnum():
            loader.problem(f"{path}.name", "must be a non-empty name of letters, digits, _ or -")
        if fn.name in names:
            loader.problem(f"{path}.name", f"duplicate function name {fn.name!r}")
        names.add(fn.name)
        if (fn.action is None) == (fn.endpoint is None):
            loader.problem(path, "needs exactly one of 'action' (run here) or 'endpoint' (run by the server)")
        if not isinstance(fn.parameters, Mapping) or fn.parameters.get("type") != "object":
            loader.problem(f"{path}.parameters", "must be a JSON schema with type: object")
        if fn.endpoint is not None and not fn.endpoint.url:
            loader.problem(f"{path}.endpoint.url", "is required")
        a = fn.action
        if a is None:
            continue
        if a.type == "gpio":
            if not a.pin:
                loader.problem(f"{path}.action.pin", "is required for a gpio action")
            elif a.pin in used_pins or a.pin in seen:
                loader.problem(f"{path}.action.pin", f"{a.pin} is already in use")
            seen.add(a.pin)
        if a.type == "http" and not a.url.startswith(("http://", "https://")):
            loader.problem(f"{path}.action.url", "must be an http:// or https:// URL")
        if a.type == "command" and not a.argv:
            loader.problem(f"{path}.action.argv", "must be a non-empty list (no shell is used)")
        if a.type == "volume" and a.min > a.max:
            loader.problem(f"{path}.action.min", "must not exceed action.max")


def parse_config(raw: Any) -> Config:
    """Validate an already-parsed YAML document; raise ConfigError listing every problem."""
    loader = _Loader()
    cfg = loader.dataclass(Config, raw, "")
    _cross_checks(cfg, loader)
    if loader.problems:
        raise ConfigError(loader.problems)
    return cfg


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML file; raise ConfigError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    loader: _UniqueKeyLoader | None = None
    try:
        loader = _UniqueKeyLoader(text)  # reading starts here, so a bad character raises here
        loader.duplicates = []
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join((getattr(exc, "problem", None) or str(exc)).split())
        raise ConfigError([f"{path}: not valid YAML{where}: {problem}"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if loader.duplicates:
        raise ConfigError([f"{path}: {d}" for d in loader.duplicates])
    return parse_config(raw)


def config_to_dict(cfg: Any) -> Any:
    """A plain-data view of a config (for comparing and printing)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple | list):
        return [config_to_dict(v) for v in cfg]
    return cfg


# --- the API key -------------------------------------------------------------------------

def load_api_key(cfg: AgentConfig, environ: Mapping[str, str] | None = None) -> str:
    """The API key from the environment, a systemd credential or the key file.

    Raises ConfigError naming where it looked; the message never contains the key.
    """
    env = os.environ if environ is None else environ
    key = env.get("DEEPGRAM_API_KEY", "").strip()
    if key:
        return key
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds:
        cred = Path(creds) / CREDENTIAL_NAME
        if cred.is_file():
            key = cred.read_text(encoding="utf-8").strip()
            if key:
                return key
    if cfg.api_key_file:
        path = Path(cfg.api_key_file)
        try:
            st = path.stat()
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            # The path is echoed only when it looks like one: a key pasted here must not be logged.
            shown = f" {path}" if "/" in str(path) else ""
            raise ConfigError([f"agent.api_key_file: cannot read{shown}: {exc.strerror or exc}"]) from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("agent.api_key_file: %s is readable by other users; chmod 600 it", path)
        if key:
            return key
        raise ConfigError([f"agent.api_key_file: {path} is empty"])
    raise ConfigError(["agent.api_key_file: no API key: set DEEPGRAM_API_KEY, name a key file "
                       f"here, or pass the systemd credential '{CREDENTIAL_NAME}'"])
