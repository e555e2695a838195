"""The shipped config file, every error path of the loader, and where the API key comes from."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from speakerd.config import (
    DEFAULT_PIXEL_PATTERNS,
    ActionConfig,
    Config,
    ConfigError,
    EndpointConfig,
    FunctionConfig,
    LedConfig,
    Pattern,
    config_to_dict,
    load_api_key,
    load_config,
    parse_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "speakerd.yaml"
# Example lines in the shipped file start with this; deleting it is how a user uncomments one.
EXAMPLE_PREFIX = "#|"
# A fake key that is easy to spot in any output it leaks into.
FAKE_KEY = "dgFAKEkey-3f9a0c7e51b2d864"


# --- the shipped example -------------------------------------------------------------------

def _lines() -> list[str]:
    return EXAMPLE.read_text(encoding="utf-8").splitlines()


def _example_blocks() -> list[tuple[int, int]]:
    """(first, end) line ranges of each run of example lines."""
    blocks: list[tuple[int, int]] = []
    lines = _lines()
    i = 0
    while i < len(lines):
        if lines[i].startswith(EXAMPLE_PREFIX):
            j = i
            while j < len(lines) and lines[j].startswith(EXAMPLE_PREFIX):
                j += 1
            blocks.append((i, j))
            i = j
        else:
            i += 1
    return blocks


def _uncommented(blocks: list[tuple[int, int]]) -> str:
    """The shipped file with the given example blocks uncommented, as a user would."""
    lines = _lines()
    for first, end in blocks:
        for n in range(first, end):
            lines[n] = lines[n][len(EXAMPLE_PREFIX):]
    return "\n".join(lines) + "\n"


def _keys(raw: Any, path: str = "") -> set[str]:
    """Dotted key paths of a YAML document; list items as [] so every item contributes."""
    out: set[str] = set()
    if isinstance(raw, dict):
        for k, v in raw.items():
            p = f"{path}.{k}" if path else str(k)
            out.add(p)
            out |= _keys(v, p)
    elif isinstance(raw, list):
        for item in raw:
            out |= _keys(item, f"{path}[]")
    return out


def test_example_file_equals_the_built_in_defaults() -> None:
    """config/speakerd.yaml parses to exactly Config(): the file documents the real defaults."""
    assert config_to_dict(load_config(EXAMPLE)) == config_to_dict(Config())


def test_example_file_spells_out_every_key() -> None:
    """Each key of every section, and of each LED, function and action in the examples, is shown."""
    raw = yaml.safe_load(_uncommented(_example_blocks()))
    shown = _keys(raw)

    def fields(cls: Any, prefix: str) -> set[str]:
        return {f"{prefix}.{f.name}" if prefix else f.name for f in dataclasses.fields(cls)}

    def walk(cls: Any, prefix: str) -> set[str]:
        out = fields(cls, prefix)
        for f in dataclasses.fields(cls):
            value = getattr(cls(), f.name)
            if dataclasses.is_dataclass(value):
                out |= walk(type(value), f"{prefix}.{f.name}" if prefix else f.name)
        return out

    wanted = walk(Config, "")
    wanted |= fields(LedConfig, "leds[]")
    wanted |= {f"leds[].patterns.{state}" for state in Config().leds[0].patterns}
    # Each pattern field shown for at least one state.
    shown |= {re.sub(r"^leds\[\]\.patterns\.[a-z]+\.", "leds[].patterns.*.", k) for k in shown}
    wanted |= fields(Pattern, "leds[].patterns.*")
    wanted |= fields(FunctionConfig, "functions[]")
    wanted |= fields(ActionConfig, "functions[].action")
    wanted |= fields(EndpointConfig, "functions[].endpoint")
    assert sorted(wanted - shown) == []


def test_example_file_explains_every_key() -> None:
    """Every active key has a comment above it; keys grouped under one comment are named in it."""
    key_line = re.compile(r"^(\s*)(- )?([A-Za-z_]+):")
    # Example lines count as blank, so line numbers stay those of the file.
    lines = ["" if ln.startswith(EXAMPLE_PREFIX) else ln for ln in _lines()]
    docs: dict[int, str] = {}  # line number of a key -> the comment text that explains it
    undocumented: list[str] = []
    for n, line in enumerate(lines):
        m = key_line.match(line)
        if m is None:
            continue
        indent, key = len(m.group(1)) + len(m.group(2) or ""), m.group(3)
        prev = n - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        comment: list[str] = []
        while prev >= 0 and lines[prev].lstrip().startswith("#"):
            comment.insert(0, lines[prev])
            prev -= 1
        above = key_line.match(lines[prev]) if prev >= 0 and not comment else None
        if comment:
            docs[n] = "\n".join(comment)
        elif above is not None and prev in docs:
            above_indent = len(above.group(1)) + len(above.group(2) or "")
            if above_indent < indent:
                docs[n] = docs[prev]  # the first key under a documented parent
            elif re.search(rf"\b{key}\b", docs[prev]):
                docs[n] = docs[prev]  # a sibling named in the group's comment
        if n not in docs:
            undocumented.append(f"line {n + 1}: {line.strip()}")
    assert not undocumented, "\n".join(undocumented)


def test_example_file_has_examples_for_leds_and_functions() -> None:
    """The leds and functions sections carry commented examples of each LED kind and action type."""
    text = _uncommented(_example_blocks())
    cfg = parse_config(yaml.safe_load(text))
    assert len(cfg.leds) >= 4 and {led.kind for led in cfg.leds} == {"led", "pwm", "rgb", "apa102"}
    types = {fn.action.type for fn in cfg.functions if fn.action is not None}
    assert types == {"volume", "gpio", "end_conversation", "http", "command"}
    assert any(fn.endpoint is not None for fn in cfg.functions)


def test_the_pixel_example_shows_the_pixel_defaults() -> None:
    """The apa102 example's pattern table is exactly what pixels show when a config names none."""
    cfg = parse_config(yaml.safe_load(_uncommented(_example_blocks())))
    (pixels,) = [led for led in cfg.leds if led.kind == "apa102"]
    assert dict(pixels.patterns) == dict(DEFAULT_PIXEL_PATTERNS)
    assert parse_config({"leds": [{"kind": "apa102"}]}).leds[0].patterns == DEFAULT_PIXEL_PATTERNS


@pytest.mark.parametrize("block", range(len(_example_blocks())))
def test_each_example_uncommented_alone_is_a_valid_config(block: int) -> None:
    """Deleting the '#|' of one example gives a valid config that differs from the defaults."""
    blocks = _example_blocks()
    text = _uncommented([blocks[block]])
    cfg = parse_config(yaml.safe_load(text))
    assert config_to_dict(cfg) != config_to_dict(Config()), "the example changes nothing"


def test_all_examples_uncommented_together_are_a_valid_config() -> None:
    """The examples do not clash with each other (pins, function names) or with the defaults."""
    cfg = parse_config(yaml.safe_load(_uncommented(_example_blocks())))
    assert len(cfg.functions) == 7


# --- error paths: one `section.key: message` per problem ---------------------------------

def _problems(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    # The exception text is the same lines, so a log of str(exc) reads the same.
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def _load_problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


@pytest.mark.parametrize(("raw", "expected"), [
    ({"session": {"idle_timout": 5}},
     "session.idle_timout: unknown key (did you mean 'idle_timeout'?)"),
    ({"sesion": {"idle_timeout": 5}}, "sesion: unknown key (did you mean 'session'?)"),
    ({"audio": {"input": {"devcie": "default"}}},
     "audio.input.devcie: unknown key (did you mean 'device'?)"),
    ({"session": {"zzz": 1}}, "session.zzz: unknown key"),
], ids=["key", "section", "nested", "no-suggestion"])
def test_unknown_key_is_named_with_a_suggestion(raw: Any, expected: str) -> None:
    """An unknown key is reported by its full path, with the closest known key when there is one."""
    assert _problems(raw) == [expected]


@pytest.mark.parametrize(("raw", "expected"), [
    ({"audio": {"input": {"sample_rate": "fast"}}},
     "audio.input.sample_rate: must be an integer, got a string 'fast'"),
    ({"audio": {"input": {"period_ms": 20.5}}},
     "audio.input.period_ms: must be an integer, got a number 20.5"),
    ({"session": {"idle_timeout": True}},
     "session.idle_timeout: must be a number, got a boolean True"),
    ({"button": {"pull_up": "yes please"}},
     "button.pull_up: must be true or false, got a string 'yes please'"),
    ({"button": {"pin": ["GPIO17"]}}, "button.pin: must be a string, got a list"),
    ({"session": 5}, "session: must be a mapping, got a number"),
    ({"agent": {"listen": {"keyterms": "pi"}}},
     "agent.listen.keyterms: must be a list, got a string"),
    ({"agent": {"listen": {"keyterms": ["pi", {"x": 1}]}}},
     "agent.listen.keyterms[1]: must be a string, got a mapping"),
    ({"agent": {"settings_passthrough": [1]}},
     "agent.settings_passthrough: must be a mapping, got a list"),
    ([1, 2], "(top): must be a mapping, got a list"),
], ids=["int-string", "int-fraction", "float-bool", "bool", "str-list", "section", "list",
        "list-item", "mapping", "top"])
def test_wrong_type_is_named(raw: Any, expected: str) -> None:
    """A value of the wrong type names its key, what it must be and what it got."""
    assert _problems(raw) == [expected]


def test_whole_number_float_is_accepted_for_an_integer() -> None:
    """20.0 where an integer is wanted is 20 (YAML writers often add .0)."""
    assert parse_config({"audio": {"input": {"period_ms": 20.0}}}).audio.input.period_ms == 20


@pytest.mark.parametrize(("raw", "expected"), [
    ({"session": {"idle_timeout": -1}}, "session.idle_timeout: must be between 0 and 3600, got -1"),
    ({"audio": {"output": {"periods": 64}}},
     "audio.output.periods: must be between 2 and 32, got 64"),
    ({"chimes": {"press": {"volume": 1.5}}}, "chimes.press.volume: must be between 0 and 1, got 1.5"),
    ({"agent": {"think": {"temperature": 3}}},
     "agent.think.temperature: must be between 0 and 2, got 3"),
], ids=["timeout", "periods", "volume", "optional"])
def test_out_of_range_is_named(raw: Any, expected: str) -> None:
    """A number outside its bounds names the key and the allowed range."""
    assert _problems(raw) == [expected]


@pytest.mark.parametrize(("raw", "expected"), [
    ({"button": {"mode": "hod"}}, "button.mode: must be one of hold, toggle, got 'hod' "
                                  "(did you mean 'hold'?)"),
    ({"agent": {"dialect": "early-access"}},
     "agent.dialect: must be one of v1, early_access, got 'early-access' "
     "(did you mean 'early_access'?)"),
    ({"log": {"level": "LOUD"}}, "log.level: must be one of DEBUG, INFO, WARNING, ERROR, "
                                 "got 'LOUD'"),
], ids=["mode", "dialect", "level"])
def test_bad_choice_is_named_with_the_choices(raw: Any, expected: str) -> None:
    """A value outside a fixed set lists the allowed values."""
    assert _problems(raw) == [expected]


def test_upper_case_choices_accept_any_case() -> None:
    """log.level and an http method may be written in lower case."""
    cfg = parse_config({"log": {"level": "debug"}, "functions": [
        {"name": "hook", "action": {"type": "http", "url": "http://x", "method": "put"}}]})
    assert cfg.log.level == "DEBUG"
    assert cfg.functions[0].action is not None and cfg.functions[0].action.method == "PUT"


@pytest.mark.parametrize(("raw", "expected"), [
    ({"session": {"reconnect_initial": 10, "reconnect_max": 5}},
     "session.reconnect_initial: must not exceed session.reconnect_max"),
    ({"audio": {"output": {"encoding": "mulaw", "sample_rate": 24000}}},
     "audio.output.sample_rate: mulaw output supports only 8000 or 16000"),
    ({"audio": {"output": {"sample_rate": 44100}}},
     "audio.output.sample_rate: linear16 output supports 8000, 16000, 24000, 32000 or 48000"),
    ({"audio": {"input": {"frame_ms": 90}}},
     "audio.input.frame_ms: must be a multiple of audio.input.period_ms (20)"),
    ({"audio": {"input": {"frame_ms": 160, "periods": 8}}},
     "audio.input.periods: the capture buffer (8 x 20 ms) must hold audio.input.frame_ms (160) "
     "plus two periods"),
], ids=["backoff", "mulaw-rate", "linear16-rate", "frame-of-periods", "frame-fits-buffer"])
def test_cross_checks_name_the_key(raw: Any, expected: str) -> None:
    """Rules spanning two keys name the key to change."""
    assert _problems(raw) == [expected]


@pytest.mark.parametrize(("leds", "expected"), [
    ([{"kind": "rgb", "pins": ["GPIO5"]}], "leds[0].pins: a rgb LED needs 3 pin(s), got 1"),
    ([{}, {"kind": "led", "pins": ["GPIO5", "GPIO6"]}],
     "leds[1].pins: a led LED needs 1 pin(s), got 2"),
    ([{"kind": "neon"}], "leds[0].kind: must be one of led, pwm, rgb, apa102, got 'neon'"),
    ([{"kind": "led", "pins": ["GPIO5", ["GPIO6"]]}],
     "leds[0].pins[1]: must be a string, got a list"),
    ([{"patterns": {"idel": "off"}}],
     "leds[0].patterns.idel: unknown state (did you mean 'idle'?)"),
    ([{"patterns": {"idle": {"effect": "strobe"}}}],
     "leds[0].patterns.idle.effect: must be one of off, on, blink, pulse, spin, meter, got 'strobe'"),
    ([{"patterns": {"idle": {"on_time": 0}}}],
     "leds[0].patterns.idle.on_time: must be between 0.01 and 10, got 0"),
    ([{"patterns": ["on"]}], "leds[0].patterns: must be a mapping of state to pattern, got a list"),
    ([{"colour": "red"}], "leds[0].colour: unknown key"),
    ("GPIO25", "leds: must be a list, got a string"),
], ids=["rgb-pins", "second-led", "kind", "pin-item", "state", "effect", "on_time", "patterns",
        "unknown", "not-a-list"])
def test_led_list_items_are_named_by_index(leds: Any, expected: str) -> None:
    """A problem in one LED names it as leds[i] and the key within it."""
    assert _problems({"leds": leds}) == [expected]


def test_pattern_shorthand_and_merge_with_defaults() -> None:
    """A pattern may be just its effect, and states left out keep the default pattern."""
    cfg = parse_config({"leds": [{"patterns": {"idle": "on"}}]})
    patterns = cfg.leds[0].patterns
    assert patterns["idle"] == Pattern("on")
    assert patterns["error"] == Config().leds[0].patterns["error"]


_GOOD_ACTION = {"type": "end_conversation"}


@pytest.mark.parametrize(("functions", "expected"), [
    ([{"name": "bad name!", "action": _GOOD_ACTION}],
     ["functions[0].name: must be a non-empty name of letters, digits, _ or -"]),
    ([{"action": _GOOD_ACTION}],
     ["functions[0].name: must be a non-empty name of letters, digits, _ or -"]),
    ([{"name": "bye", "action": _GOOD_ACTION}, {"name": "bye", "action": _GOOD_ACTION}],
     ["functions[1].name: duplicate function name 'bye'"]),
    ([{"name": "f"}],
     ["functions[0]: needs exactly one of 'action' (run here) or 'endpoint' (run by the server)"]),
    ([{"name": "f", "action": _GOOD_ACTION, "endpoint": {"url": "https://x"}}],
     ["functions[0]: needs exactly one of 'action' (run here) or 'endpoint' (run by the server)"]),
    ([{"name": "f", "action": _GOOD_ACTION, "parameters": {"type": "string"}}],
     ["functions[0].parameters: must be a JSON schema with type: object"]),
    ([{"name": "f", "endpoint": {"method": "get"}}], ["functions[0].endpoint.url: is required"]),
    ([{"name": "f", "action": {"type": "gpio"}}],
     ["functions[0].action.pin: is required for a gpio action"]),
    ([{"name": "f", "action": {"type": "gpio", "pin": "GPIO17"}}],
     ["functions[0].action.pin: GPIO17 is already in use"]),
    ([{"name": "f", "action": {"type": "gpio", "pin": "GPIO25"}}],
     ["functions[0].action.pin: GPIO25 is already in use"]),
    ([{"name": "f", "action": {"type": "gpio", "pin": "GPIO27"}},
      {"name": "g", "action": {"type": "gpio", "pin": "GPIO27"}}],
     ["functions[1].action.pin: GPIO27 is already in use"]),
    ([{"name": "f", "action": {"type": "http", "url": "ftp://x"}}],
     ["functions[0].action.url: must be an http:// or https:// URL"]),
    ([{"name": "f", "action": {"type": "command"}}],
     ["functions[0].action.argv: must be a non-empty list (no shell is used)"]),
    ([{"name": "f", "action": {"type": "volume", "min": 80, "max": 20}}],
     ["functions[0].action.min: must not exceed action.max"]),
    ([{"name": "f", "action": {"type": "shell"}}],
     ["functions[0].action.type: must be one of volume, gpio, end_conversation, http, command, "
      "got 'shell'"]),
    ([{"name": "f", "action": {"type": "http", "url": "http://x", "method": "DELETE"}}],
     ["functions[0].action.method: must be one of GET, POST, PUT, got 'DELETE'"]),
], ids=["name", "no-name", "duplicate", "neither", "both", "parameters", "endpoint-url",
        "gpio-pin", "button-pin", "led-pin", "pin-twice", "http-url", "argv", "volume",
        "action-type", "method"])
def test_function_cross_checks(functions: Any, expected: list[str]) -> None:
    """Each function rule names functions[i] and the key at fault."""
    assert _problems({"functions": functions}) == expected


def test_every_problem_is_reported_at_once() -> None:
    """A file with many mistakes lists them all, in file order, instead of stopping at the first."""
    raw = {
        "agent": {"dialect": "v3", "connect_timout": 5},
        "session": {"idle_timeout": "long"},
        "audio": {"output": {"periods": 1}},
        "leds": [{"kind": "rgb"}],
        "functions": [{"name": "x"}],
    }
    problems = _problems(raw)
    assert [p.split(":")[0] for p in problems] == [
        "agent.dialect", "agent.connect_timout", "session.idle_timeout", "audio.output.periods",
        "leds[0].pins", "functions[0]"]


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    """A YAML syntax error names the file and the line and column where it was found."""
    path = tmp_path / "speakerd.yaml"
    path.write_text("session:\n  idle_timeout: 5\n button:\n  pin: GPIO17\n", encoding="utf-8")
    [problem] = _load_problems(path)
    assert problem.startswith(f"{path}: not valid YAML at line 3, column 2: ")


def test_tab_indentation_names_the_line(tmp_path: Path) -> None:
    """A tab in the indentation (a common editor slip) is reported with its line."""
    path = tmp_path / "speakerd.yaml"
    path.write_text("session:\n\tidle_timeout: 5\n", encoding="utf-8")
    [problem] = _load_problems(path)
    assert problem.startswith(f"{path}: not valid YAML at line 2")


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_unreadable_file_is_a_config_error(tmp_path: Path, what: str) -> None:
    """A missing file or a directory gives one problem naming the path and why."""
    path = tmp_path / "speakerd.yaml"
    if what == "directory":
        path.mkdir()
    [problem] = _load_problems(path)
    reason = "No such file or directory" if what == "missing" else "Is a directory"
    assert problem == f"{path}: cannot read: {reason}"


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    """An empty file (or one of only comments) means every default."""
    path = tmp_path / "speakerd.yaml"
    path.write_text("# nothing here\n", encoding="utf-8")
    assert load_config(path) == Config()


def test_a_partial_file_keeps_the_other_defaults(tmp_path: Path) -> None:
    """Only the keys written change; the rest of the section keeps its defaults."""
    path = tmp_path / "speakerd.yaml"
    path.write_text("audio:\n  output:\n    device: plughw:CARD=seeed2micvoicec\n",
                    encoding="utf-8")
    cfg = load_config(path)
    assert cfg.audio.output.device == "plughw:CARD=seeed2micvoicec"
    assert cfg.audio.output.sample_rate == 24000
    assert cfg.audio.input == Config().audio.input


def test_led_pin_clashing_with_the_button_is_named() -> None:
    """An LED on the button's pin is a config problem, not a GPIOPinInUse crash at start."""
    problems = _problems({"leds": [{"pins": ["GPIO17"]}]})
    assert problems == ["leds[0].pins: GPIO17 is already in use"]


def test_empty_pin_is_named() -> None:
    """An empty pin name (e.g. `pin:` with nothing after it) is a config problem."""
    problems = _problems({"button": {"pin": None}})
    assert problems and problems[0].startswith("button.pin: ")


def test_unquoted_off_effect_says_to_quote_it() -> None:
    """`idle: {effect: off}` (YAML reads off as false) tells the user to write "off"."""
    raw = yaml.safe_load("leds:\n  - patterns:\n      idle: {effect: off}\n")
    [problem] = _problems(raw)
    assert problem.startswith("leds[0].patterns.idle.effect: ") and '"off"' in problem


# --- the API key -----------------------------------------------------------------------------

@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A private key file holding the fake key (written at run time, never shipped)."""
    path = tmp_path / "deepgram_api_key"
    path.write_text(FAKE_KEY + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _agent(key_file: Path | str = "") -> Any:
    return parse_config({"agent": {"api_key_file": str(key_file)}}).agent


def test_key_from_the_environment_comes_first(key_file: Path, tmp_path: Path) -> None:
    """DEEPGRAM_API_KEY wins over a credential and a key file."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "deepgram_api_key").write_text("credential-key", encoding="utf-8")
    env = {"DEEPGRAM_API_KEY": f"  {FAKE_KEY}\n", "CREDENTIALS_DIRECTORY": str(creds)}
    assert load_api_key(_agent(key_file), env) == FAKE_KEY


def test_key_from_the_systemd_credential(tmp_path: Path) -> None:
    """Under systemd, LoadCredential's copy in $CREDENTIALS_DIRECTORY is used."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "deepgram_api_key").write_text(FAKE_KEY + "\n", encoding="utf-8")
    assert load_api_key(_agent(), {"CREDENTIALS_DIRECTORY": str(creds)}) == FAKE_KEY


def test_empty_credential_falls_back_to_the_key_file(key_file: Path, tmp_path: Path) -> None:
    """A credential directory without the key (or with an empty one) moves on to the key file."""
    creds = tmp_path / "creds"
    creds.mkdir()
    assert load_api_key(_agent(key_file), {"CREDENTIALS_DIRECTORY": str(creds)}) == FAKE_KEY
    (creds / "deepgram_api_key").write_text("\n", encoding="utf-8")
    assert load_api_key(_agent(key_file), {"CREDENTIALS_DIRECTORY": str(creds)}) == FAKE_KEY


def test_key_from_a_private_key_file_without_warning(
        key_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A chmod 600 key file is read, its newline stripped, and nothing is logged."""
    caplog.set_level(logging.DEBUG)
    assert load_api_key(_agent(key_file), {}) == FAKE_KEY
    assert caplog.records == []


def test_key_file_readable_by_others_warns_without_the_key(
        key_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A key file others can read still works, with a warning naming the file but not the key."""
    caplog.set_level(logging.DEBUG)
    key_file.chmod(0o644)
    assert load_api_key(_agent(key_file), {}) == FAKE_KEY
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(key_file) in warnings[0].getMessage()
    assert "chmod 600" in warnings[0].getMessage()
    assert FAKE_KEY not in caplog.text


@pytest.mark.parametrize(("setup", "expected"), [
    ("none", "agent.api_key_file: no API key: set DEEPGRAM_API_KEY, name a key file here, or "
             "pass the systemd credential 'deepgram_api_key'"),
    ("missing", "agent.api_key_file: cannot read {path}: No such file or directory"),
    ("empty", "agent.api_key_file: {path} is empty"),
], ids=["nowhere", "missing-file", "empty-file"])
def test_no_key_is_a_config_error(tmp_path: Path, setup: str, expected: str) -> None:
    """Without a key the error names agent.api_key_file and every place it looked."""
    path = tmp_path / "deepgram_api_key"
    if setup == "empty":
        path.write_text("  \n", encoding="utf-8")
    agent = _agent() if setup == "none" else _agent(path)
    with pytest.raises(ConfigError) as info:
        load_api_key(agent, {"DEEPGRAM_API_KEY": "  "})
    assert info.value.problems == [expected.format(path=path)]


def test_the_key_never_appears_in_any_message(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever happens around the key, no log line or error message contains it."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    readable = tmp_path / "readable"
    readable.write_text(FAKE_KEY, encoding="utf-8")
    readable.chmod(0o644)
    load_api_key(_agent(readable), {})
    # A key pasted into the YAML by mistake: the unknown key is named, its value is not echoed.
    config = tmp_path / "speakerd.yaml"
    config.write_text(f"agent:\n  api_key: {FAKE_KEY}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    seen.append(str(info.value))
    # No key anywhere: the error lists where it looked.
    with pytest.raises(ConfigError) as info:
        load_api_key(_agent(), {"DEEPGRAM_API_KEY": ""})
    seen.append(str(info.value))
    seen.append(caplog.text)
    for text in seen:
        assert FAKE_KEY not in text, text


def test_a_key_pasted_as_the_key_file_path_is_not_echoed() -> None:
    """A key written where the key file's path belongs is not repeated in the error."""
    with pytest.raises(ConfigError) as info:
        load_api_key(_agent(FAKE_KEY), {})
    assert FAKE_KEY not in str(info.value)


ROOT = EXAMPLE.parents[1]
# Everything the repository ships: the config, the unit, the scripts, the package, the bench,
# the docs, and the tests with their fixtures (binary ones too, read as bytes).
SHIPPED = ("README.md", "pyproject.toml", ".ci", "config", "systemd", "scripts", "speakerd",
           "bench", "tests")
DEEPGRAM_KEY = re.compile(rb"(?<![0-9A-Za-z])[0-9a-f]{40}(?![0-9A-Za-z])")  # 40 hex characters


def _shipped_files() -> list[Path]:
    files: list[Path] = []
    for name in SHIPPED:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [p for p in files if "__pycache__" not in p.parts]


def test_shipped_files_hold_no_key() -> None:
    """No shipped file (the example config and every test fixture among them) holds anything like a key."""
    files = _shipped_files()
    assert EXAMPLE in files and any(p.suffix == ".wav" for p in files)  # it reads what it claims
    assert "api_key:" not in EXAMPLE.read_text(encoding="utf-8")
    carrying = [str(p.relative_to(ROOT)) for p in files if DEEPGRAM_KEY.search(p.read_bytes())]
    assert carrying == []



def test_a_repeated_key_is_named_with_both_lines(tmp_path: Path) -> None:
    """A second `session:` would silently replace the first; the loader names both lines instead."""
    path = tmp_path / "speakerd.yaml"
    path.write_text("session:\n  idle_timeout: 5\nbutton:\n  pin: GPIO5\nsession:\n  reply_timeout: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == ["session: appears again at line 5 (first at line 1)"]


def test_a_key_pasted_into_a_number_field_is_not_echoed() -> None:
    """A long string in the wrong field is described by its length, never repeated."""
    problems = _problems({"agent": {"connect_timeout": FAKE_KEY}})
    assert problems == [f"agent.connect_timeout: must be a number, got a string ({len(FAKE_KEY)} characters)"]
    assert FAKE_KEY not in "\n".join(problems)


def test_toggle_mode_needs_an_idle_timeout_a_conversation_can_live_with() -> None:
    """idle_timeout 0 would end a hands-free conversation the moment it connects: refused."""
    with pytest.raises(ConfigError) as err:
        parse_config({"button": {"mode": "toggle"}, "session": {"idle_timeout": 0}})
    assert any(p.startswith("session.idle_timeout: must be at least 5 s in toggle mode")
               for p in err.value.problems)
    parse_config({"button": {"mode": "hold"}, "session": {"idle_timeout": 0}})  # hold: fine


@pytest.mark.parametrize(("rate", "period_ms", "step_ms"), [
    (24000, 40, 20), (24000, 20, 20), (16000, 10, 10), (48000, 30, 15), (24000, 100, 20),
    (16000, 25, 12.5), (8000, 15, 15)])
def test_the_speakers_write_step_divides_the_period_and_is_at_most_20_ms(
        rate: int, period_ms: int, step_ms: float) -> None:
    """The speaker writes in the largest divisor of the device's period no longer than 20 ms."""
    from speakerd.audio import AudioFormat
    from speakerd.config import AudioOutputConfig

    fmt = AudioFormat.from_output(AudioOutputConfig(sample_rate=rate, period_ms=period_ms))
    step = fmt.write_unit()
    assert step.period_frames == round(rate * step_ms / 1000)
    assert fmt.period_frames % step.period_frames == 0
    assert dataclasses.replace(step, period_frames=fmt.period_frames) == fmt


def test_the_speaking_batch_is_whole_frames_that_fit_the_capture_buffer() -> None:
    """Three 80 ms frames by default; whole frames of what is asked; never more than half the
    capture buffer; 0 (or less than a frame) means one at a time."""
    def frames(**inp: Any) -> int:
        return parse_config({"audio": {"duplex": "full", "input": inp}}).audio.input.batch_frames
    assert frames() == 3
    assert frames(speaking_batch_ms=200) == 2
    assert frames(speaking_batch_ms=0) == frames(speaking_batch_ms=79) == 1
    assert frames(periods=10) == 2  # 10 x 40 ms: half of it holds two frames
    assert frames(periods=6) == 1
    assert frames(period_ms=10) == 1  # 16 x 10 ms: half of it holds one


def test_the_capture_period_follows_the_duplex_mode_unless_set() -> None:
    """Unset, the capture period is 20 ms in half duplex, 40 ms in full (if frames hold whole ones)."""
    assert parse_config({}).audio.input.period_ms == 20
    assert parse_config({"audio": {"duplex": "full"}}).audio.input.period_ms == 40
    assert parse_config({"audio": {"duplex": "full", "input": {"period_ms": 10}}}
                        ).audio.input.period_ms == 10
    assert parse_config({"audio": {"duplex": "full", "input": {"frame_ms": 100}}}
                        ).audio.input.period_ms == 20
