"""The API key: from the environment, a systemd credential or a key file; never logged."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .schema import CREDENTIAL_NAME, AgentConfig, ConfigError

log = logging.getLogger(__name__)


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
