"""The API key: from the environment, a systemd credential or a key file; never logged."""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from .schema import CREDENTIAL_NAME, AgentConfig, ConfigError

log = logging.getLogger(__name__)

ENV_NAME = "DEEPGRAM_API_KEY"
# A key is one token of visible ASCII: anything else (a second line, a space, a control
# character) would end up inside the Authorization header and could inject another header.
_KEY = re.compile(r"[\x21-\x7e]{1,512}")
# A key file is a line; anything much larger is the wrong file.
_MAX_FILE = 4096


def _checked(raw: bytes, where: str, shown: str) -> str:
    """The key in a file's bytes, or ConfigError saying what is wrong (never the content)."""
    if len(raw) > _MAX_FILE:
        raise ConfigError([f"{where}: {shown} is not a key file (over {_MAX_FILE} bytes)"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{where}: {shown} is not UTF-8 text"]) from None
    key = text.strip()
    if not key:
        raise ConfigError([f"{where}: {shown} is empty"])
    if not _KEY.fullmatch(key):
        raise ConfigError([f"{where}: {shown} must hold the key alone on one line (no spaces, "
                           "no second line, visible ASCII only)"])
    return key


def load_api_key(cfg: AgentConfig, environ: Mapping[str, str] | None = None) -> str:
    """The API key from the environment, a systemd credential or the key file.

    Raises ConfigError naming where it looked; the message never contains the key. Read from
    the process environment, the variable is removed from it at once, so nothing started later
    (a function's command, a crash report) inherits it.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    key = env.get(ENV_NAME, "").strip()
    if environ is None and ENV_NAME in os.environ:
        del os.environ[ENV_NAME]
    if key:
        if not _KEY.fullmatch(key):
            raise ConfigError([f"agent.api_key_file: ${ENV_NAME} must hold the key alone "
                               "(no spaces or line breaks)"])
        return key
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds:
        cred = Path(creds) / CREDENTIAL_NAME
        if cred.is_file():
            try:
                raw = cred.read_bytes()
            except OSError as exc:
                raise ConfigError([f"agent.api_key_file: cannot read the credential "
                                   f"{CREDENTIAL_NAME}: {exc.strerror or exc}"]) from None
            if raw.strip():
                return _checked(raw, "agent.api_key_file", f"the credential {CREDENTIAL_NAME}")
    if cfg.api_key_file:
        path = Path(cfg.api_key_file)
        # The path is echoed only when it looks like one: a key pasted here must not be logged.
        shown = str(path) if "/" in str(path) else "the file"
        try:
            st = path.stat()
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError([f"agent.api_key_file: cannot read {shown}: "
                               f"{exc.strerror or exc}"]) from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("agent.api_key_file: %s is readable by other users; chmod 600 it", shown)
        return _checked(raw, "agent.api_key_file", shown)
    raise ConfigError([f"agent.api_key_file: no API key: set {ENV_NAME}, name a key file "
                       f"here, or pass the systemd credential '{CREDENTIAL_NAME}'"])

