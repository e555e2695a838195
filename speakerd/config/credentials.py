"""Third-party provider secrets (an endpoint's API key header, AWS keys): from a systemd
credential or a root-only file, never from the YAML; never logged, never echoed.

One file per provider section (think, speak), a small YAML mapping:

    headers:                 # added to endpoint_headers, e.g. an API key
      authorization: Bearer ...
    credentials:             # AWS, for aws_bedrock and aws_polly, as the API names them
      type: iam              # or sts, which also needs session_token
      region: us-east-1
      access_key_id: ...
      secret_access_key: ...
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .agent import AWS_PROVIDERS
from .schema import SPEAK_CREDENTIAL, THINK_CREDENTIAL, AgentConfig, ConfigError

log = logging.getLogger(__name__)

AWS_TYPES = ("iam", "sts")
_AWS_KEYS = ("type", "region", "access_key_id", "secret_access_key", "session_token")
MAX_FILE_BYTES = 64 * 1024  # a credentials file is a few lines; anything larger is not one
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class AwsCredentials:
    """AWS keys as the API's provider.credentials names them (the keys never in a repr)."""
    type: str
    region: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class ProviderSecret:
    """One provider section's secrets: headers added to its endpoint's, and AWS keys."""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    aws: AwsCredentials | None = None


@dataclass(frozen=True)
class ProviderSecrets:
    """The secrets of the think and the speak provider."""
    think: ProviderSecret = field(default_factory=ProviderSecret)
    speak: ProviderSecret = field(default_factory=ProviderSecret)


def load_provider_secrets(cfg: AgentConfig, environ: Mapping[str, str] | None = None, *,
                          require: bool = True) -> ProviderSecrets:
    """Each section's secrets from its systemd credential, else its credentials_file, checked
    against what its provider needs. Raises ConfigError naming `agent.<section>.credentials_file`.

    require=False: a provider that needs AWS keys may have none here (check-config, which runs
    outside the service and so cannot see its systemd credentials).
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    found: dict[str, ProviderSecret] = {}
    for section, credential in (("think", THINK_CREDENTIAL), ("speak", SPEAK_CREDENTIAL)):
        sub = getattr(cfg, section)
        path = f"agent.{section}.credentials_file"
        before = len(problems)
        secret = _read(sub.credentials_file, env.get("CREDENTIALS_DIRECTORY"), credential, path,
                       problems)
        if secret is None and len(problems) > before:
            continue  # unreadable or malformed: said so; what it lacks would be a second message
        found[section] = secret or ProviderSecret()
    secrets = ProviderSecrets(found.get("think", ProviderSecret()),
                              found.get("speak", ProviderSecret()))
    problems += [p for p in check_provider_secrets(cfg, secrets, require=require)
                 if p.split(":")[0].split(".")[1] in found]
    if problems:
        raise ConfigError(problems)
    return secrets


def check_provider_secrets(cfg: AgentConfig, secrets: ProviderSecrets, *,
                           require: bool = True) -> list[str]:
    """What the providers' secrets lack or must not have, one `section.key: message` each."""
    problems: list[str] = []
    for section, credential in (("think", THINK_CREDENTIAL), ("speak", SPEAK_CREDENTIAL)):
        sub, secret = getattr(cfg, section), getattr(secrets, section)
        path = f"agent.{section}.credentials_file"
        if secret.aws is None and sub.provider in AWS_PROVIDERS and require:
            problems.append(f"{path}: {sub.provider} needs AWS credentials (type iam or sts, "
                            "region, access_key_id, secret_access_key): none in the systemd "
                            f"credential {credential} nor in a file named here")
        elif secret.aws is not None and sub.provider not in AWS_PROVIDERS:
            problems.append(f"{path}: only {' and '.join(AWS_PROVIDERS)} take AWS credentials")
        if secret.headers and not sub.endpoint_url:
            problems.append(f"{path}: its headers are for agent.{section}.endpoint_url, which "
                            "is empty")
    return problems


def needs_aws(provider: str) -> bool:
    """Whether the provider's settings carry AWS credentials."""
    return provider in AWS_PROVIDERS


def _read(file: str, creds_dir: str | None, credential: str, path: str,
          problems: list[str]) -> ProviderSecret | None:
    """The systemd credential if present, else the file; None when neither holds anything."""
    source: Path | None = None
    if creds_dir and (Path(creds_dir) / credential).is_file():
        source = Path(creds_dir) / credential
    elif file:
        source = Path(file)
    if source is None:
        return None
    try:
        with source.open("rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        shown = f" {source}" if "/" in str(source) else ""
        problems.append(f"{path}: cannot read{shown}: {exc.strerror or exc}")
        return None
    if len(data) > MAX_FILE_BYTES:
        problems.append(f"{path}: {source} is larger than {MAX_FILE_BYTES} bytes")
        return None
    if source.parent != Path(creds_dir or "/nonexistent") and st.st_mode & (
            stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: %s is readable by other users; chmod 600 it", path, source)
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        # No detail: the parser's message would quote the line, which holds a secret.
        problems.append(f"{path}: {source} is not a YAML mapping of headers and credentials")
        return None
    if raw is None:
        return None
    return _parse(raw, f"{path} ({source})", problems)


def _parse(raw: Any, where: str, problems: list[str]) -> ProviderSecret | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a mapping with headers and/or credentials")
        return None
    before = len(problems)
    for key in raw:
        if key not in ("headers", "credentials"):
            problems.append(f"{where}: unknown key (it holds only headers and credentials)")
    headers = _headers(raw.get("headers"), where, problems)
    aws = _aws(raw.get("credentials"), where, problems)
    return ProviderSecret(headers, aws) if len(problems) == before else None


def _headers(raw: Any, where: str, problems: list[str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in raw.items()):
        problems.append(f"{where}: headers must map header names to text values")
        return {}
    for name, value in raw.items():
        # A CR or LF would end the header and start another: the same rule as the YAML's.
        if not _HEADER_NAME.fullmatch(name) or _BAD_VALUE_CHAR.search(value):
            problems.append(f"{where}: headers must be valid names with one-line values")
            return {}
    return dict(raw)


def _aws(raw: Any, where: str, problems: list[str]) -> AwsCredentials | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: credentials must be a mapping")
        return None
    values: dict[str, str] = {}
    for key, value in raw.items():
        if key not in _AWS_KEYS:
            problems.append(f"{where}: credentials: unknown key (known: {', '.join(_AWS_KEYS)})")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: credentials.{key} must be non-empty text")
        else:
            values[key] = value.strip()
    missing = [k for k in _AWS_KEYS[:4] if k not in values and k not in raw]
    if missing:
        problems.append(f"{where}: credentials need {', '.join(missing)}")
    kind = values.get("type", "")
    if kind and kind not in AWS_TYPES:
        problems.append(f"{where}: credentials.type must be iam or sts")
    if kind == "sts" and "session_token" not in values:
        problems.append(f"{where}: credentials of type sts need session_token")
    if kind == "iam" and "session_token" in values:
        problems.append(f"{where}: credentials of type iam take no session_token (that is sts)")
    if any(k not in values for k in _AWS_KEYS[:4]) or kind not in AWS_TYPES:
        return None
    return AwsCredentials(values["type"], values["region"], values["access_key_id"],
                          values["secret_access_key"], values.get("session_token", ""))
