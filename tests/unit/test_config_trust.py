"""The config as data, not a program: what check-config refuses so that a hostile agent or server
never gets the key, and every parse, range and key-file error as `section.key: message`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from speakerd.config import AgentConfig, ConfigError, load_api_key, load_config, parse_config
from speakerd.textsafe import shown

KEY = "dgFAKEkey-3f9a0c7e51b2d864"


def _problems(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


def _file_problems(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "speakerd.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def _command(argv: list[str], props: dict[str, Any], **action: Any) -> dict[str, Any]:
    return {"functions": [{"name": "f", "parameters": {"type": "object", "properties": props},
                           "action": {"type": "command", "argv": argv, **action}}]}


# --- row 1: a command function cannot read the key ----------------------------------------

@pytest.mark.parametrize("props, where", [
    ({"fmt": {"type": "string"}}, "functions[0].action.argv: {fmt} may be any text"),
    ({"fmt": {"type": "string", "maxLength": 20}}, "functions[0].action.argv: {fmt} may be any text"),
    ({"fmt": {"type": "string", "pattern": "[%A-Z]"}}, "functions[0].action.argv: {fmt}'s pattern "
                                                       "must be anchored"),
    ({"fmt": {}}, "functions[0].action.argv: {fmt} may be any text"),
    ({"fmt": {"type": "array"}}, "functions[0].action.argv: {fmt} must be a single value"),
    ({}, "functions[0].action.argv: {fmt} is not a declared parameter"),
    ({"fmt": {"type": "string", "format": "date"}}, "functions[0].parameters.properties.fmt.format:"),
])
def test_an_unbounded_command_placeholder_is_a_config_error(props: dict[str, Any], where: str) -> None:
    """A placeholder that could carry any text (an option, a path) is refused by check-config."""
    problems = _problems(_command(["/bin/date", "{fmt}"], props))
    assert any(p.startswith(where) for p in problems), problems


def test_a_bounded_placeholder_is_accepted() -> None:
    """enum, const or an anchored pattern bound a string; numbers and booleans need nothing."""
    cfg = parse_config(_command(["/bin/date", "{fmt}", "{n}", "{k}"], {
        "fmt": {"type": "string", "pattern": r"^\+[%A-Za-z: ]+$"}, "n": {"type": "integer"},
        "k": {"type": "string", "enum": ["a", "b"]}}, allow_leading_dash=["n"]))
    assert cfg.functions[0].action is not None
    assert cfg.functions[0].action.allow_leading_dash == ("n",)


def test_the_program_is_fixed_and_allow_leading_dash_names_placeholders() -> None:
    """argv[0] cannot be a placeholder; allow_leading_dash must name placeholders of argv."""
    problems = _problems(_command(["{prog}"], {"prog": {"enum": ["ls"]}}, allow_leading_dash=["x"]))
    assert "functions[0].action.argv: the program (the first item) must be fixed text" in problems
    assert "functions[0].action.allow_leading_dash: x is not a placeholder in argv" in problems


@pytest.mark.parametrize("schema, where", [
    ({"type": "object", "properties": {"a": {"oneOf": []}}}, "functions[0].parameters.properties.a.oneOf"),
    ({"type": "object", "properties": {"a": {"type": "colour"}}},
     "functions[0].parameters.properties.a.type"),
    ({"type": "object", "patternProperties": {}}, "functions[0].parameters.patternProperties"),
    ({"type": "object", "properties": {"a": {"exclusiveMaximum": True}}},
     "functions[0].parameters.properties.a.exclusiveMaximum"),
])
def test_a_schema_keyword_that_is_not_enforced_is_a_config_error(schema: Any, where: str) -> None:
    """Fail closed: check-config refuses any keyword or type the checker would not enforce."""
    problems = _problems({"functions": [{"name": "f", "parameters": schema,
                                         "action": {"type": "end_conversation"}}]})
    assert any(p.startswith(where + ": ") for p in problems), problems


# --- rows 2 and 3: the key goes only where the user pointed it -----------------------------

@pytest.mark.parametrize("url, message", [
    ("ws://agent.example.com/v1/agent/converse", "ws:// would send the API key in clear"),
    ("http://agent.example.com/", "must be a wss:// URL"),
    ("ftp://agent.example.com/", "must be a wss:// URL"),
    ("not a url", "must be a wss:// URL"),
    ("wss://user:pw@agent.example.com/", "must not carry a user name or password"),
    ("wss://agent.example.com:99999/", "is not a valid URL"),
    ("wss:///v1", "must name a host"),
])
def test_agent_url_must_be_wss_or_loopback(url: str, message: str) -> None:
    """agent.url: wss:// only, ws:// only to this machine, no userinfo, no other scheme."""
    problems = _problems({"agent": {"url": url}})
    assert any(p.startswith("agent.url: ") and message in p for p in problems), problems


@pytest.mark.parametrize("url", ["wss://agent.deepgram.com/v1/agent/converse",
                                 "ws://127.0.0.1:8080/v1/agent/converse", "ws://localhost/agent",
                                 "ws://[::1]:9/agent", "ws://127.8.0.1/agent"])
def test_agent_url_accepts_wss_and_loopback_ws(url: str) -> None:
    """A verified host, or plain ws:// to this machine (the emulator), is accepted."""
    assert parse_config({"agent": {"url": url}}).agent.url == url


# --- row 8: data, not a program ------------------------------------------------------------

@pytest.mark.parametrize("text, where", [
    ("agent:\n  settings_passthrough: &a\n    x: *a\n", "agent.settings_passthrough.x: YAML aliases"),
    ("agent:\n  settings_passthrough:\n    x: !!binary aGVsbG8=\n",
     "agent.settings_passthrough.x: YAML tag tag:yaml.org,2002:binary"),
    ("agent:\n  settings_passthrough: !!set {a, b}\n", "agent.settings_passthrough: YAML tag"),
    ("agent:\n  settings_passthrough:\n    x: .nan\n", "agent.settings_passthrough.x: must be a finite"),
    ("agent:\n  settings_passthrough:\n    x: !!python/name:os.system ''\n",
     "agent.settings_passthrough.x: YAML tag"),
    ("a: &a [x, x, x]\nb: &b [*a, *a, *a]\n", "b[0]: YAML aliases"),
    ("functions:\n  - name: f\n    parameters: {type: object, properties: {a: {enum: [.inf]}}}\n",
     "functions[0].parameters.properties.a.enum[0]: must be a finite number"),
    ("agent:\n  settings_passthrough:\n    bad key: 1\n", "agent.settings_passthrough: key 'bad key'"),
    ("agent:\n  settings_passthrough:\n    \"x\\ny\": 1\n", "agent.settings_passthrough: key 'x\\ny'"),
])
def test_yaml_that_is_not_plain_data_is_refused_by_its_path(tmp_path: Path, text: str,
                                                            where: str) -> None:
    """Aliases, tags beyond JSON's, NaN and odd keys: each a `section.key: message`, never a crash."""
    problems = _file_problems(tmp_path, text)
    assert any(p.startswith(where) for p in problems), problems


def test_a_billion_laughs_is_refused_at_its_first_alias(tmp_path: Path) -> None:
    """The 452-byte expansion bomb stops at the first alias instead of building 47 MB of settings."""
    lines = ["agent:", "  settings_passthrough:", "    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    problems = _file_problems(tmp_path, "\n".join(lines) + "\n")
    assert problems == ["agent.settings_passthrough.l1[0]: YAML aliases (*l0) are not allowed: "
                        "write the value out"]


def test_unquoted_dates_are_text(tmp_path: Path) -> None:
    """YAML would make 2025-01-31 a date no JSON encoder takes; here it stays the text written."""
    path = tmp_path / "speakerd.yaml"
    path.write_text("agent:\n  settings_passthrough:\n    note: 2025-01-31\n", encoding="utf-8")
    assert load_config(path).agent.settings_passthrough == {"note": "2025-01-31"}


def test_passthrough_is_bounded_in_size_and_trial_encoded() -> None:
    """A pass-through of more than 64 KiB is refused; one that encodes is sent in both dialects."""
    problems = _problems({"agent": {"settings_passthrough": {"x": "y" * 70000}}})
    assert problems == ["agent.settings_passthrough: is larger than 64 KiB of JSON"]
    assert parse_config({"agent": {"settings_passthrough": {"agent": {"x": 1}}}})


# --- row 9: every error is section.key: message -------------------------------------------

@pytest.mark.parametrize("text, where", [
    ("session:\n  idle_timeout: " + "9" * 400 + ".0\n", "session.idle_timeout: a number of 401 digits"),
    ("session:\n  idle_timeout: " + "9" * 5000 + "\n", "session.idle_timeout: a number of 5000 digits"),
    ("session:\n  idle_timeout: 1.0e+400\n", "session.idle_timeout: must be a finite number"),
    ("agent:\n  settings_passthrough:\n    x: " + "[" * 3000 + "]" * 3000 + "\n",
     "agent.settings_passthrough.x" + "[0]" * 45 + ": nested deeper than 48 levels"),
    ("a: 1\n---\nb: 2\n", "(top): a second YAML document"),
])
def test_absurd_numbers_and_nesting_are_named_problems(tmp_path: Path, text: str, where: str) -> None:
    """A 400-digit float, a 5,000-digit int, 3,000 nested lists: `section.key: message`, no traceback."""
    problems = _file_problems(tmp_path, text)
    assert any(p.startswith(where) for p in problems), problems


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe" + KEY.encode(), "is not UTF-8 text"),
    (f"{KEY}\nX-Evil: 1\n".encode(), "must hold the key alone on one line"),
    (f"{KEY} extra".encode(), "must hold the key alone on one line"),
    (b"\n\n", "is empty"),
])
def test_a_bad_key_file_is_a_config_error_without_its_content(tmp_path: Path, content: bytes,
                                                              message: str) -> None:
    """A non-UTF-8 or two-line key file is refused (a second line would inject a header)."""
    key_file = tmp_path / "key"
    key_file.write_bytes(content)
    key_file.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_api_key(AgentConfig(api_key_file=str(key_file)), environ={})
    (problem,) = info.value.problems
    assert problem.startswith("agent.api_key_file: ") and message in problem
    assert KEY not in problem


def test_the_key_variable_is_cleared_once_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read from the process environment, DEEPGRAM_API_KEY is removed so no child inherits it."""
    monkeypatch.setenv("DEEPGRAM_API_KEY", KEY)
    assert load_api_key(AgentConfig()) == KEY
    assert "DEEPGRAM_API_KEY" not in os.environ


# --- row 10: headers and log lines ---------------------------------------------------------

@pytest.mark.parametrize("headers, where", [
    ({"X-Token": "secret\n"}, "functions[0].action.headers.X-Token: must be one line"),
    ({"X-Token": "a\rX-Evil: 1"}, "functions[0].action.headers.X-Token: must be one line"),
    ({"Bad Name": "v"}, "functions[0].action.headers.'Bad Name': is not a valid header name"),
    ({"X:y": "v"}, "functions[0].action.headers.'X:y': is not a valid header name"),
])
def test_header_names_and_values_are_checked_without_echoing_values(headers: dict[str, str],
                                                                   where: str) -> None:
    """A header value with a newline (which leaked the secret header) is refused at check time."""
    problems = _problems({"functions": [{"name": "f", "action": {
        "type": "http", "url": "https://example.invalid/h", "headers": headers}}]})
    assert any(p.startswith(where) for p in problems), problems
    assert all("secret" not in p for p in problems)


def test_journal_text_is_escaped_and_cut() -> None:
    """Agent text with newlines, escapes or Unicode line separators cannot forge a journal line."""
    text = shown("ok\nspeakerd: function lamp done\r\x1b[2J\u2028tail" + "x" * 500)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text and "\u2028" not in text
    assert text.startswith("ok\\nspeakerd: function lamp done\\r\\x1b[2J\\u2028tail")
    assert len(text) <= 121 and text.endswith("…")
