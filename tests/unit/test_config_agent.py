"""check-config on the agent section: per dialect, each provider gets what the API needs, and
the providers' secrets come from a credentials file or systemd credential, never the YAML."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from speakerd import protocol
from speakerd.__main__ import main
from speakerd.config import (
    SPEAK_CREDENTIAL,
    THINK_CREDENTIAL,
    ConfigError,
    load_provider_secrets,
    parse_config,
)

NOVA = {"version": "v1", "model": "nova-3"}
EA = {"dialect": "early_access"}
SECRET = "sk-FAKEsecret-0d2f7a9c"


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


# Every provider of the table a dialect lacks, and what check-config answers.
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("v1 x_ai", {"think": {"provider": "x_ai"}},
     "agent.think.provider: x_ai was removed from the API; v1 offers open_ai, anthropic, google, "
     "groq, aws_bedrock"),
    ("v1 custom", {"think": {"provider": "custom"}},
     "agent.think.provider: v1 has no custom provider: an OpenAI-compatible server is open_ai "
     "with endpoint_url; v1 offers open_ai, anthropic, google, groq, aws_bedrock"),
    ("ea google", {**EA, "think": {"provider": "google"}},
     "agent.think.provider: 'google' is not one; early_access offers open_ai, anthropic, custom"),
    ("ea groq", {**EA, "think": {"provider": "groq"}},
     "agent.think.provider: 'groq' is not one; early_access offers open_ai, anthropic, custom"),
    ("ea aws_bedrock", {**EA, "think": {"provider": "aws_bedrock"}},
     "agent.think.provider: 'aws_bedrock' is not one; early_access offers open_ai, anthropic, "
     "custom"),
    ("ea x_ai", {**EA, "think": {"provider": "x_ai"}},
     "agent.think.provider: x_ai was removed from the API; early_access offers open_ai, "
     "anthropic, custom"),
    ("ea open_ai voice", {**EA, "speak": {"provider": "open_ai", "model": "tts-1",
                                          "voice_id": "alloy"}},
     "agent.speak.provider: 'open_ai' is not a voice provider of early_access; it offers "
     "deepgram, eleven_labs, cartesia"),
    ("ea aws_polly", {**EA, "speak": {"provider": "aws_polly", "model": "neural",
                                      "voice_id": "Joanna"}},
     "agent.speak.provider: 'aws_polly' is not a voice provider of early_access; it offers "
     "deepgram, eleven_labs, cartesia"),
]


@pytest.mark.parametrize("what,agent,problem", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_provider_the_dialect_lacks_is_refused_naming_what_it_offers(
        what: str, agent: dict[str, Any], problem: str) -> None:
    """check-config refuses each provider the dialect does not have, and lists those it has."""
    assert _problems({"agent": agent}) == [problem]


NEEDS: list[tuple[str, dict[str, Any], str]] = [
    ("groq endpoint", {"think": {"provider": "groq", "model": "openai/gpt-oss-20b"}},
     "agent.think.endpoint_url: groq needs its endpoint, e.g. "
     "https://api.groq.com/openai/v1/chat/completions (its secrets go in the credentials file, "
     "never here)"),
    ("bedrock endpoint", {"think": {"provider": "aws_bedrock", "model": "m"}},
     "agent.think.endpoint_url: aws_bedrock needs its endpoint"),
    ("anthropic temperature", {"think": {"provider": "anthropic", "model": "claude",
                                         "temperature": 1.5}},
     "agent.think.temperature: anthropic takes 0 to 1, got 1.5"),
    ("ea url for open_ai", {**EA, "think": {"endpoint_url": "https://x.invalid/v1"}},
     "agent.think.endpoint_url: early_access sends a URL only for the custom provider"),
    ("ea custom url", {**EA, "think": {"provider": "custom", "model": "llama"}},
     "agent.think.endpoint_url: custom needs the URL of an OpenAI-compatible chat completions "
     "endpoint"),
    ("cartesia voice", {"speak": {"provider": "cartesia", "model": "sonic-2"}},
     "agent.speak.voice_id: cartesia needs the voice's id"),
    ("open_ai voice", {"speak": {"provider": "open_ai", "model": "tts-1",
                                 "endpoint_url": "https://api.openai.com/v1/audio/speech"}},
     "agent.speak.voice_id: open_ai needs the voice: one of alloy, echo, fable, onyx, nova, "
     "shimmer"),
    ("open_ai endpoint", {"speak": {"provider": "open_ai", "model": "tts-1",
                                    "voice_id": "alloy"}},
     "agent.speak.endpoint_url: open_ai needs its endpoint, e.g. "
     "https://api.openai.com/v1/audio/speech"),
    ("eleven_labs endpoint", {"speak": {"provider": "eleven_labs",
                                        "model": "eleven_turbo_v2_5"}},
     "agent.speak.endpoint_url: eleven_labs needs its endpoint, e.g. wss://api.elevenlabs.io/"),
    ("polly language", {"speak": {"provider": "aws_polly", "model": "neural", "voice_id": "Joanna",
                                  "endpoint_url": "https://polly.us-east-1.amazonaws.com/v1/speech"}},
     "agent.speak.language: aws_polly needs the voice's language, e.g. en-US"),
    ("polly engine", {"speak": {"provider": "aws_polly", "model": "Neural", "voice_id": "Joanna",
                                "language": "en-US",
                                "endpoint_url": "https://polly.us-east-1.amazonaws.com/v1/speech"}},
     "agent.speak.model: for aws_polly the model is the engine: generative, long-form, "
     "standard, neural"),
    ("an aura model elsewhere", {"speak": {"provider": "cartesia", "voice_id": "v"}},
     "agent.speak.model: aura-2-thalia-en is a Deepgram voice; cartesia needs its own model, "
     "e.g. sonic-2"),
    ("ea voice id", {**EA, "speak": {"provider": "eleven_labs", "model": "eleven_turbo_v2_5"}},
     "agent.speak.voice_id: eleven_labs needs the voice's id"),
    ("flux on ea", {"dialect": "early_access", "listen": {"version": "v2"}},
     "agent.listen.version: early_access has no Flux (v2) listen; set version: auto (Nova) or "
     "v1"),
    ("flux model on ea", {"dialect": "early_access", "listen": {"model": "flux-general-en"}},
     "agent.listen.model: early_access has no Flux models"),
    ("flux model on nova", {"listen": {"version": "v1", "model": "flux-general-en"}},
     "agent.listen.model: flux-general-en is a Flux model: set agent.listen.version: v2 (or "
     "auto)"),
    ("nova model on flux", {"listen": {"version": "v2", "model": "nova-3"}},
     "agent.listen.model: Flux (version v2) takes flux-general-en or flux-general-multi, "
     "got 'nova-3'"),
    ("smart_format on flux", {"listen": {"version": "v2", "smart_format": True}},
     "agent.listen.smart_format: Flux (version v2) has no smart_format; set it false or use "
     "version v1"),
    ("flux tunables on nova", {"listen": {**NOVA, "eot_threshold": 0.8}},
     "agent.listen.eot_threshold: only Flux (version v2) takes it"),
    ("german on flux-general-en", {"language": "de", "listen": {"model": "flux-general-en"}},
     "agent.language: flux-general-en hears English only; for de leave agent.listen.model empty "
     "(flux-general-multi where Flux hears it, else Nova) or set it to flux-general-multi"),
    ("polish on flux", {"language": "pl", "listen": {"model": "flux-general-multi"}},
     "agent.language: Flux hears en, es, fr, de, hi, ru, pt, ja, it, nl; for pl set "
     "agent.listen.version: auto or v1 (Nova)"),
    ("flux tunables for polish", {"language": "pl", "listen": {"eot_threshold": 0.8}},
     "agent.listen.eot_threshold: only Flux (version v2) takes it; Flux does not hear pl"),
    ("hints on flux-general-en", {"listen": {"language_hints": ["en"]}},
     "agent.listen.language_hints: only flux-general-multi takes language hints"),
    ("eager above eot", {"listen": {"eot_threshold": 0.6, "eager_eot_threshold": 0.8}},
     "agent.listen.eager_eot_threshold: must not exceed the eot_threshold sent (0.6)"),
    ("eot out of range", {"listen": {"eot_threshold": 1.2}},
     "agent.listen.eot_threshold: must be between 0.5 and 1.0, got 1.2"),
]


@pytest.mark.parametrize("what,agent,problem", NEEDS, ids=[r[0] for r in NEEDS])
def test_what_a_provider_needs_is_demanded(what: str, agent: dict[str, Any],
                                           problem: str) -> None:
    """Each provider's required fields, per dialect, are named with what the API needs."""
    problems = _problems({"agent": agent})
    assert any(p.startswith(problem) for p in problems), problems


def test_eot_threshold_one_needs_the_button_to_end_turns() -> None:
    """1.0 leaves the turn's end to the release: refused where there is no release to do it."""
    assert _problems({"agent": {"listen": {"eot_threshold": 1.0}}, "button": {"mode": "toggle"}})
    assert _problems({"agent": {"listen": {"eot_threshold": 1.0}}, "audio": {"duplex": "full"}})
    parse_config({"agent": {"listen": {"eot_threshold": 1.0}}})


@pytest.mark.parametrize("raw,provider", [
    ({}, {"type": "deepgram", "version": "v2", "model": "flux-general-en", "eot_threshold": 1.0,
          "eot_timeout_ms": 60000}),
    ({"agent": {"language": "ja"}, "button": {"mode": "toggle"}},
     {"type": "deepgram", "version": "v2", "model": "flux-general-multi",
      "language_hints": ["ja"]}),
    ({"agent": {"language": "sv"}}, {"type": "deepgram", "model": "nova-3", "language": "sv"}),
    ({"agent": {"language": "multi", "listen": {"keyterms": ["Pi"]}}, "audio": {"duplex": "full"}},
     {"type": "deepgram", "version": "v2", "model": "flux-general-multi", "keyterms": ["Pi"]}),
    ({"agent": {"listen": {"model": "nova-2"}}},
     {"type": "deepgram", "model": "nova-2", "language": "en"}),
], ids=["english", "japanese-toggle", "swedish", "multi-full-duplex", "named-nova"])
def test_the_automatic_listen_settings_follow_the_language(raw: dict[str, Any],
                                                           provider: dict[str, Any]) -> None:
    """Flux for English and the nine other Flux languages (with the language as the hint),
    Nova for the rest; a named model decides the version."""
    sent = protocol.build_settings(parse_config(raw), "v1")["agent"]["listen"]["provider"]
    assert sent == provider
    ea = protocol.build_settings(parse_config({"agent": {"dialect": "early_access",
                                                         "language": "de"}}), "early_access")
    assert ea["agent"]["listen"] == {"model": "nova-3"}


@pytest.mark.parametrize("agent", [
    {"language": "de", "listen": {"model": "flux-general-multi", "language_hints": ["de"]}},
    {"language": "pt-BR", "listen": {"model": "flux-general-multi"}},
    {"language": "pl", "listen": NOVA},
    {"think": {"provider": "groq", "model": "openai/gpt-oss-20b",
               "endpoint_url": "https://api.groq.com/openai/v1/chat/completions"}},
    {"speak": {"provider": "eleven_labs", "model": "eleven_turbo_v2_5", "language": "en-US",
               "endpoint_url": "wss://api.elevenlabs.io/v1/text-to-speech/v/multi-stream-input"}},
    {**EA, "think": {"provider": "custom", "model": "llama",
                     "endpoint_url": "https://llm.invalid/v1/chat/completions"},
     "speak": {"provider": "cartesia", "model": "sonic-2", "voice_id": "v"}},
], ids=["german-flux", "brazilian-flux", "polish-nova", "groq", "eleven-labs", "ea-custom"])
def test_what_the_docs_say_to_write_is_accepted(agent: dict[str, Any]) -> None:
    """The configurations the example file describes pass check-config."""
    parse_config({"agent": agent})


# --- the providers' secrets ---------------------------------------------------------------

POLLY = {"provider": "aws_polly", "model": "neural", "voice_id": "Joanna", "language": "en-US",
         "endpoint_url": "https://polly.us-east-1.amazonaws.com/v1/speech"}
AWS_FILE = (f"credentials:\n  type: sts\n  region: us-east-1\n  access_key_id: AKIDEXAMPLE\n"
            f"  secret_access_key: {SECRET}\n  session_token: tok\n")


def _polly(file: Path | str = "") -> Any:
    return parse_config({"agent": {"speak": {**POLLY, "credentials_file": str(file)}}}).agent


def test_secrets_come_from_the_systemd_credential_first(tmp_path: Path) -> None:
    """$CREDENTIALS_DIRECTORY/speakerd.speak_credentials wins over the file named in the YAML."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / SPEAK_CREDENTIAL).write_text(AWS_FILE, encoding="utf-8")
    other = tmp_path / "other"
    other.write_text("credentials: {type: iam}\n", encoding="utf-8")
    secrets = load_provider_secrets(_polly(other), {"CREDENTIALS_DIRECTORY": str(creds)})
    assert secrets.speak.aws is not None and secrets.speak.aws.session_token == "tok"
    assert SECRET not in repr(secrets)
    assert THINK_CREDENTIAL == "speakerd.think_credentials"


def test_secrets_from_a_root_only_file_and_a_warning_for_a_readable_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The file named by credentials_file is read; chmod 644 works but warns, without secrets."""
    path = tmp_path / "speak_credentials"
    path.write_text(AWS_FILE + "headers:\n  x-api-key: " + SECRET + "\n", encoding="utf-8")
    path.chmod(0o600)
    caplog.set_level(logging.WARNING)
    secrets = load_provider_secrets(_polly(path), {})
    assert secrets.speak.headers == {"x-api-key": SECRET} and caplog.records == []
    path.chmod(0o644)
    load_provider_secrets(_polly(path), {})
    assert "chmod 600" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize("content,expected", [
    ("", "agent.speak.credentials_file: aws_polly needs AWS credentials"),
    ("credentials: {type: sts, region: r, access_key_id: a, secret_access_key: "
     + SECRET + "}\n", "credentials of type sts need session_token"),
    ("credentials: {type: IAM, region: r, access_key_id: a, secret_access_key: s}\n",
     "credentials.type must be iam or sts"),
    ("credentials: {type: iam, region: r}\n", "credentials need access_key_id, secret_access_key"),
    ("secret_access_key: " + SECRET + "\n", "unknown key"),
    ("credentials: [" + SECRET + "\n", "is not a YAML mapping"),
    ("headers: {x-api-key: \"" + SECRET + "\\r\\nX-Evil: 1\"}\n", "one-line values"),
], ids=["none", "sts-without-token", "upper-case", "incomplete", "flat", "not-yaml",
        "header-injection"])
def test_bad_or_missing_secrets_are_named_without_their_values(tmp_path: Path, content: str,
                                                               expected: str) -> None:
    """Every problem names agent.speak.credentials_file and never repeats a secret."""
    path = tmp_path / "speak_credentials"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_provider_secrets(_polly(path if content else ""), {})
    text = "\n".join(info.value.problems)
    assert text.startswith("agent.speak.credentials_file") and expected in text
    assert SECRET not in text


def test_aws_keys_for_a_provider_without_them_are_refused(tmp_path: Path) -> None:
    """Only aws_bedrock and aws_polly take AWS credentials; headers need an endpoint."""
    path = tmp_path / "think_credentials"
    path.write_text(AWS_FILE + "headers: {authorization: x}\n", encoding="utf-8")
    agent = parse_config({"agent": {"think": {"credentials_file": str(path)}}}).agent
    with pytest.raises(ConfigError) as info:
        load_provider_secrets(agent, {})
    assert info.value.problems == [
        "agent.think.credentials_file: only aws_bedrock and aws_polly take AWS credentials",
        "agent.think.credentials_file: its headers are for agent.think.endpoint_url, which is "
        "empty"]


def test_check_config_notes_aws_keys_it_cannot_see(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Outside the service the systemd credential is invisible: a note, not a failure."""
    path = tmp_path / "speakerd.yaml"
    path.write_text("agent:\n  speak:\n" + "".join(f"    {k}: {v}\n" for k, v in POLLY.items()),
                    encoding="utf-8")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "note: agent.speak.credentials_file: aws_polly needs AWS credentials" in out
    assert out.rstrip().endswith(": ok")
