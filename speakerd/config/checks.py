"""Rules of the config that involve more than one key, one function per section."""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from .. import boards
from .agent import check_agent
from .schema import PIXEL_EFFECTS, SPI0_CLOCK, SPI0_MOSI, SPI0_SELECT, Config, LedConfig

Problem = Callable[[str, str], None]  # (path, message): report one problem
Reported = Callable[[str], bool]      # whether a problem was reported at or under a path already

_LINEAR16_RATES = (8000, 16000, 24000, 32000, 48000)
_MULAW_RATES = (8000, 16000)
TOGGLE_MIN_IDLE = 5.0


def cross_checks(cfg: Config, problem: Problem, has: Reported) -> None:
    """Every rule across keys; each reports through `problem`."""
    _board(cfg, problem)
    _session(cfg, problem)
    _audio(cfg, problem)
    _uplink_frame(cfg, problem, has)
    _pins(cfg, problem, has)
    _pixels(cfg, problem)
    _functions(cfg, problem)
    _agent(cfg, problem)
    _trusted_url(cfg, problem)
    _function_trust(cfg, problem)
    _data_only(cfg, problem, has)


def _board(cfg: Config, problem: Problem) -> None:
    """The profile named must be one of the files shipped (the loader merged it when it was)."""
    if not cfg.board or boards.board(cfg.board) is not None:
        return
    known = boards.names()
    close = difflib.get_close_matches(cfg.board, known, n=1, cutoff=0.5)
    hint = f"'{close[0]}'" if close else "one of " + ", ".join(known)
    problem("board", f"unknown board {cfg.board!r} (did you mean {hint}?)")


def led_pins(led: LedConfig) -> list[tuple[str, str]]:
    """Every pin an LED claims, with the key that claims it: its pins, and for pixels on
    hardware SPI the SPI0 pins, and their power pin."""
    pins = [("pins", pin) for pin in led.pins]
    if led.kind == "apa102":
        if not led.pins:
            pins = [("spi_device", pin) for pin in (SPI0_CLOCK, SPI0_MOSI, SPI0_SELECT[led.spi_device])]
        if led.power_pin:
            pins.append(("power_pin", led.power_pin))
    return pins


def _pixels(cfg: Config, problem: Problem) -> None:
    """spin and meter need a row or ring of pixels to show on."""
    for i, led in enumerate(cfg.leds):
        if led.kind == "apa102":
            continue
        for state, pattern in led.patterns.items():
            if pattern.effect in PIXEL_EFFECTS:
                problem(f"leds[{i}].patterns.{state}.effect",
                        f"{pattern.effect} needs pixels (kind: apa102); a {led.kind} LED can show "
                        "off, on, blink or pulse")


def _session(cfg: Config, problem: Problem) -> None:
    s = cfg.session
    if s.reconnect_initial > s.reconnect_max:
        problem("session.reconnect_initial", "must not exceed session.reconnect_max")
    if cfg.button.mode == "toggle" and s.idle_timeout < TOGGLE_MIN_IDLE:
        problem("session.idle_timeout", f"must be at least {TOGGLE_MIN_IDLE:g} s in toggle mode: a "
                                        "hands-free conversation ends after this long with nothing said")


def _audio(cfg: Config, problem: Problem) -> None:
    out = cfg.audio.output
    if out.encoding == "mulaw" and out.sample_rate not in _MULAW_RATES:
        problem("audio.output.sample_rate", "mulaw output supports only 8000 or 16000")
    if out.encoding == "linear16" and out.sample_rate not in _LINEAR16_RATES:
        problem("audio.output.sample_rate", "linear16 output supports 8000, 16000, 24000, "
                                            "32000 or 48000")


def _uplink_frame(cfg: Config, problem: Problem, has: Reported) -> None:
    """The uplink frame is built of whole capture periods and must fit the capture buffer."""
    inp = cfg.audio.input
    period = inp.period
    if has("audio.input") or period <= 0:
        return  # a key of its own is wrong already; the rule says nothing more
    if inp.frame_ms % period:
        problem("audio.input.frame_ms", f"must be a multiple of audio.input.period_ms "
                                        f"({period})")
    elif inp.periods * period < inp.frame_ms + 2 * period:
        # The thread sleeps while a frame is captured; the buffer must hold it with room to spare.
        problem("audio.input.periods", f"the capture buffer ({inp.periods} x {period} ms) "
                                       f"must hold audio.input.frame_ms ({inp.frame_ms}) plus two "
                                       "periods")


def _pins(cfg: Config, problem: Problem, has: Reported) -> None:
    """The button and the LEDs: named, the right number, none claimed twice."""
    for i, led in enumerate(cfg.leds):
        if led.kind == "apa102":
            if len(led.pins) not in (0, 2):
                problem(f"leds[{i}].pins", "apa102 pixels take no pins (hardware SPI0) or two, "
                                           f"[clock, data] (bit-banged), got {len(led.pins)}")
            continue
        want = 3 if led.kind == "rgb" else 1
        if len(led.pins) != want:
            problem(f"leds[{i}].pins", f"a {led.kind} LED needs {want} pin(s), got {len(led.pins)}")
    if not cfg.button.pin.strip() and not has("button.pin"):
        problem("button.pin", "must name a GPIO pin, e.g. GPIO17 or BOARD11")
    claimed = {cfg.button.pin}
    for i, led in enumerate(cfg.leds):
        for key, pin in led_pins(led):
            if not pin.strip():
                if not has(f"leds[{i}].{key}"):
                    problem(f"leds[{i}].{key}", "must name GPIO pins, e.g. GPIO25")
            elif pin in claimed and not has(f"leds[{i}].{key}"):  # one line per key is enough
                problem(f"leds[{i}].{key}", f"{pin} is already in use")
            claimed.add(pin)


def _functions(cfg: Config, problem: Problem) -> None:
    used_pins = [cfg.button.pin] + [p for led in cfg.leds for _, p in led_pins(led)]
    seen: set[str] = set()
    names: set[str] = set()
    for i, fn in enumerate(cfg.functions):
        path = f"functions[{i}]"
        if not fn.name or not fn.name.replace("_", "").replace("-", "").isalnum():
            problem(f"{path}.name", "must be a non-empty name of letters, digits, _ or -")
        if fn.name in names:
            problem(f"{path}.name", f"duplicate function name {fn.name!r}")
        names.add(fn.name)
        if (fn.action is None) == (fn.endpoint is None):
            problem(path, "needs exactly one of 'action' (run here) or 'endpoint' (run by the server)")
        if not isinstance(fn.parameters, Mapping) or fn.parameters.get("type") != "object":
            problem(f"{path}.parameters", "must be a JSON schema with type: object")
        if fn.endpoint is not None and not fn.endpoint.url:
            problem(f"{path}.endpoint.url", "is required")
        a = fn.action
        if a is None:
            continue
        if a.type == "gpio":
            if not a.pin:
                problem(f"{path}.action.pin", "is required for a gpio action")
            elif a.pin in used_pins or a.pin in seen:
                problem(f"{path}.action.pin", f"{a.pin} is already in use")
            seen.add(a.pin)
        if a.type == "http" and not a.url.startswith(("http://", "https://")):
            problem(f"{path}.action.url", "must be an http:// or https:// URL")
        if a.type == "command" and not a.argv:
            problem(f"{path}.action.argv", "must be a non-empty list (no shell is used)")
        if a.type == "volume" and a.min > a.max:
            problem(f"{path}.action.min", "must not exceed action.max")


def _agent(cfg: Config, problem: Problem) -> None:
    """The listen, think and speak providers: offered by the dialect, each with what it needs."""
    check_agent(cfg, problem)


# --- trust: what the network and the agent may do with what the config says --------------------

# Headers: an RFC 9110 token for the name; no control character (a CR or LF would end the
# header and start another) in the value.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# A key with whitespace or a control character is a typo or a trick, never a real name.
_BAD_KEY_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Pass-through data and parameters are sent in every settings message: bounded in size and depth.
MAX_PASSTHROUGH_BYTES = 64 * 1024
MAX_PARAMETERS_BYTES = 16 * 1024
MAX_SETTINGS_BYTES = 256 * 1024
MAX_DATA_DEPTH = 32


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _trusted_url(cfg: Config, problem: Problem) -> None:
    """agent.url: the key goes in its header, so only to a verified host (or this machine)."""
    url = cfg.agent.url
    if not url:
        return
    where = "agent.url"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        problem(where, "is not a valid URL")
        return
    if parts.scheme not in ("wss", "ws"):
        problem(where, "must be a wss:// URL (ws:// only to this machine)")
    elif "@" in parts.netloc:
        problem(where, "must not carry a user name or password (the key is sent in a header)")
    elif not host:
        problem(where, "must name a host")
    elif _BAD_KEY_CHAR.search(url):
        problem(where, "must not contain spaces or control characters")
    elif parts.scheme == "ws" and not _is_loopback(host):
        problem(where, "ws:// would send the API key in clear: use wss:// (ws:// is only for "
                       "this machine: localhost, 127.0.0.1, ::1)")


def _headers(headers: Mapping[str, str], where: str, problem: Problem) -> None:
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            problem(f"{where}.{str(name)[:40]!r}", "is not a valid header name")
        elif not isinstance(value, str) or _BAD_VALUE_CHAR.search(value):
            # The value is not echoed: headers carry secrets.
            problem(f"{where}.{name}", "must be one line of text without control characters")


def _function_trust(cfg: Config, problem: Problem) -> None:
    """Schemas hold only what is enforced; a command's placeholders cannot become options."""
    from ..functions.actions import placeholders
    from ..functions.arguments import placeholder_problems, schema_problems

    _headers(cfg.agent.think.endpoint_headers, "agent.think.endpoint_headers", problem)
    _headers(cfg.agent.speak.endpoint_headers, "agent.speak.endpoint_headers", problem)
    for i, fn in enumerate(cfg.functions):
        path = f"functions[{i}]"
        if isinstance(fn.parameters, Mapping):
            for line in schema_problems(fn.parameters, f"{path}.parameters"):
                where, _, message = line.partition(": ")
                problem(where, message)
        if fn.endpoint is not None:
            _headers(fn.endpoint.headers, f"{path}.endpoint.headers", problem)
        a = fn.action
        if a is None:
            continue
        if a.type == "http":
            _headers(a.headers, f"{path}.action.headers", problem)
            if "@" in urllib.parse.urlsplit(a.url).netloc:
                problem(f"{path}.action.url", "must not carry a user name or password")
        if a.type == "command" and a.argv:
            if placeholders(a.argv[:1]):
                problem(f"{path}.action.argv", "the program (the first item) must be fixed text")
            params = fn.parameters if isinstance(fn.parameters, Mapping) else {}
            for line in placeholder_problems(a.argv, params, a.allow_leading_dash,
                                             placeholders(a.argv), f"{path}.action"):
                where, _, message = line.partition(": ")
                problem(where, message)


def json_problems(value: Any, path: str, depth: int = 0) -> list[str]:
    """Why `value` is not plain JSON data (finite numbers, text keys without odd characters)."""
    if depth > MAX_DATA_DEPTH:
        return [f"{path}: nested deeper than {MAX_DATA_DEPTH} levels"]
    if value is None or isinstance(value, bool | str):
        return []
    if isinstance(value, int):
        return []
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{path}: must be a finite number"]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in json_problems(v, f"{path}[{i}]", depth + 1)]
    if isinstance(value, Mapping):
        out: list[str] = []
        for key, v in value.items():
            if not isinstance(key, str):
                out.append(f"{path}: key {str(key)[:40]!r} must be text")
            elif not key or _BAD_KEY_CHAR.search(key):
                out.append(f"{path}: key {key[:40]!r} must not be empty or hold whitespace or "
                           "control characters")
            else:
                out.extend(json_problems(v, f"{path}.{key}", depth + 1))
        return out
    return [f"{path}: must be JSON data (text, a number, true/false, null, a list or a mapping), "
            f"not {type(value).__name__}"]


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))


def _data_only(cfg: Config, problem: Problem, has: Reported) -> None:
    """Pass-through settings and function parameters are JSON data, bounded; the settings encode."""
    clean = True
    for where, value, limit in (
            [("agent.settings_passthrough", cfg.agent.settings_passthrough, MAX_PASSTHROUGH_BYTES)]
            + [(f"functions[{i}].parameters", fn.parameters, MAX_PARAMETERS_BYTES)
               for i, fn in enumerate(cfg.functions)]):
        if has(where):
            clean = False
            continue
        found = json_problems(value, where)
        for line in found[:20]:
            at, _, message = line.partition(": ")
            problem(at, message)
        if found:
            clean = False
        elif _size(value) > limit:
            problem(where, f"is larger than {limit // 1024} KiB of JSON")
            clean = False
    if not clean:
        return
    # The settings message is built from the whole config: try both dialects now, so that a
    # value the codec cannot send fails here and not on the first press.
    from ..protocol import Dialect, encode_settings

    for dialect in Dialect:
        try:
            size = len(encode_settings(cfg, dialect).encode("utf-8", "surrogatepass"))
        except (ValueError, TypeError, RecursionError) as exc:
            problem("agent.settings_passthrough", f"cannot be sent ({dialect.value}): "
                    + str(exc).splitlines()[0][:160])
            return
        if size > MAX_SETTINGS_BYTES:
            problem("agent", f"the {dialect.value} settings message would be {size // 1024} KiB "
                             f"(at most {MAX_SETTINGS_BYTES // 1024} KiB)")
            return
