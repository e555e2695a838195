"""The running service: one generation of parts at a time, signals, readiness, reload, the
control socket and the exit codes."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from . import protocol
from .config import (
    EX_CONFIG,
    Config,
    ConfigError,
    ProviderSecrets,
    config_to_dict,
    load_api_key,
    load_config,
    load_provider_secrets,
)
from .config.secrets import ENV_NAME
from .control import SOCKET_NAME, ControlServer, LinkMeter, ServiceControls
from .journal import configure_logging
from .parts import Hooks, Parts, PartsStuck
from .textsafe import shown

log = logging.getLogger(__name__)

EX_OK = 0
EX_CRASH = 1
# EX_UNAVAILABLE from sysexits.h: a library the daemon needs (a GPIO pin factory) is missing.
# A restart cannot install it, so the unit lists it in RestartPreventExitStatus= next to 78;
# a code of its own (not 78) keeps "fix the config" and "install a package" apart in
# `systemctl status`.
EX_UNAVAILABLE = 69


class Daemon:
    """The running service: one Parts at a time, signals, readiness, reload and the control socket."""

    def __init__(self, config_path: str | None, cfg: Config, api_key: str, *,
                 notifier: Any = None, hooks: Hooks | None = None,
                 control_path: str | None = None, env_key: str = "",
                 secrets: ProviderSecrets | None = None) -> None:
        from .notify import Notifier

        self.config_path = config_path
        self.cfg = cfg
        self._api_key = api_key
        # The key given in the environment: the variable is cleared once read, so a reload
        # looks for it here.
        self._env_key = env_key
        self._secrets = secrets or ProviderSecrets()
        self.notifier = notifier if notifier is not None else Notifier()
        self.hooks = hooks or Hooks()
        self.parts: Parts | None = None
        self.control_path = control_path
        self.control: ControlServer | None = None
        self.meter = LinkMeter()
        self.controls = ServiceControls(lambda: self.parts, self.request_reload, self.meter)
        # `speakerd run` sets this so that a reload applies log.level too; tests leave the
        # logging of their own process alone.
        self.set_log_level: Callable[[str], None] | None = None
        self._wake = threading.Event()
        self._stop_requested = False
        self._reload_requested = False
        self._crash: BaseException | None = None
        self._saved_excepthook: Any = None
        self.exit_code: int | None = None

    # --- signals and crashes (any thread: they only set a flag and wake the main loop) ----

    def request_stop(self, *_: object) -> None:
        self._stop_requested = True
        self._wake.set()

    def request_reload(self, *_: object) -> None:
        self._reload_requested = True
        self._wake.set()

    def _thread_crashed(self, args: threading.ExceptHookArgs) -> None:
        log.critical("thread %s crashed", args.thread.name if args.thread else "?",
                     exc_info=args.exc_value)
        self._crash = args.exc_value or RuntimeError("thread crash")
        self._wake.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.request_reload()
        else:
            self.request_stop()

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._saved_excepthook = threading.excepthook
        threading.excepthook = self._thread_crashed
        self.parts = self._build(self.cfg, self._api_key)
        if self.control_path is not None:
            # Before READY=1: the unit hands the socket to its group once the service is up.
            self.control = ControlServer(self.control_path, self.controls).start()
        # Ready once the devices are being served; the network is not waited for (connect on press).
        self.notifier.ready()
        log.info("speakerd ready (%s dialect, button %s in %s mode)", self.cfg.agent.dialect,
                 self.cfg.button.pin, self.cfg.button.mode)

    def run(self) -> int:
        """Serve until a signal or a crash; return the exit code."""
        from .button import NoPinFactory

        try:
            self.start()
        except NoPinFactory as exc:
            log.error("%s", exc)
            self._shutdown()
            return EX_UNAVAILABLE
        except Exception as exc:  # noqa: BLE001 - a failure to start is a crash: systemd restarts us
            log.critical("cannot start: %s", exc, exc_info=True)
            self._shutdown()
            return EX_CRASH
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._crash is not None:
                self._shutdown()
                self.exit_code = EX_CRASH
                return EX_CRASH
            if self._stop_requested:
                self._shutdown()
                self.exit_code = EX_OK
                return EX_OK
            if self._reload_requested:
                self._reload_requested = False
                try:
                    self.reload()
                except Exception as exc:  # noqa: BLE001 - no parts run now: exit, systemd restarts us
                    log.critical("reload failed and the previous config could not be restored: %s",
                                 exc, exc_info=True)
                    self._shutdown()
                    self.exit_code = EX_CRASH
                    return EX_CRASH

    def reload(self) -> bool:
        """Re-read the config; a broken file leaves the running config in place."""
        # Every request numbered so far was made before the file is read below.
        covers = self.controls.tickets
        self.notifier.reloading()
        path = self.config_path
        try:
            if path is None:
                raise ConfigError(["(no config file to reload)"])
            cfg = load_config(path)
            env = {**os.environ, ENV_NAME: self._env_key} if self._env_key else None
            key = load_api_key(cfg.agent, env)
            secrets = load_provider_secrets(cfg.agent)
        except (ConfigError, ValueError, RecursionError, OSError) as exc:
            if not isinstance(exc, ConfigError):  # a reader bug must not take the speaker down
                exc = ConfigError([f"{path}: cannot read: {type(exc).__name__}"])
            for problem in exc.problems:
                log.error("reload: %s", problem)
            log.error("reload failed; still running the previous config")
            self.notifier.status(f"reload failed: {shown(exc.problems[0], 180)}")
            self.notifier.ready()
            self.controls.reloaded(covers, False, f"refused, still running the previous config: "
                                          f"{'; '.join(exc.problems)}")
            return False
        if self.parts is not None and key == self._api_key and secrets == self._secrets and \
                _only_listen_retuned(self.cfg, cfg):
            log.info("reloading the config from %s: only the listen settings changed; the "
                     "connection is kept and updated", path)
            self.parts.retune_listen(cfg)
            self.cfg = cfg
            self.notifier.ready()
            self.controls.reloaded(covers, True, f"applied {path} (listen settings updated on "
                                                 "the open connection)")
            return True
        log.info("reloading the config from %s", path)
        if self.set_log_level is not None:
            self.set_log_level(cfg.log.level)
        if self.parts is not None:
            parts, self.parts = self.parts, None
            stuck = parts.stop()
            if stuck:
                # They still own their devices: a new generation would be a second owner.
                raise PartsStuck(f"{', '.join(stuck)} did not stop")
        try:
            self.parts = self._build(cfg, key, secrets)
        except Exception as exc:  # noqa: BLE001 - a busy pin or a device error: keep serving
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            log.error("reload: cannot start with the new config (%s); back to the previous one",
                      reason)
            self.parts = self._build(self.cfg, self._api_key)  # failing again: run() exits
            self.notifier.status(f"reload failed: {reason}"[:200])
            self.notifier.ready()
            self.controls.reloaded(covers, False, f"cannot start with the new config ({reason}); "
                                          "back to the previous one")
            return False
        self.cfg, self._api_key, self._secrets = cfg, key, secrets
        self.notifier.ready()
        self.controls.reloaded(covers, True, f"applied {path}")
        return True

    def _build(self, cfg: Config, key: str, secrets: ProviderSecrets | None = None) -> Parts:
        """Build and start one generation; on failure nothing of it stays claimed."""
        parts = Parts(cfg, key, self.notifier, self.hooks, self.meter,
                      self._secrets if secrets is None else secrets)
        parts.start()
        return parts

    def stop(self) -> None:
        """Stop everything (idempotent): drop audio rather than drain it."""
        self._shutdown()

    def _shutdown(self) -> None:
        self.notifier.stopping()
        started = time.monotonic()
        if self.control is not None:
            # First, so that no command reaches parts being taken down.
            self.control.stop()
            self.control = None
        if self.parts is not None:
            self.parts.stop()
            self.parts = None
        if self._saved_excepthook is not None:
            threading.excepthook = self._saved_excepthook
            self._saved_excepthook = None
        log.info("stopped in %.2f s", time.monotonic() - started)


def _only_listen_retuned(old: Config, new: Config) -> bool:
    """Whether new differs from old in agent.listen alone, by a change an UpdateListen carries
    (Flux re-tuned, same model). Anything else rebuilds the parts, and with them the link: the
    next press reconnects with the new settings."""
    same_rest = dataclasses.replace(new, agent=dataclasses.replace(new.agent,
                                                                  listen=old.agent.listen))
    return (old.agent.listen != new.agent.listen
            and config_to_dict(same_rest) == config_to_dict(old)
            and protocol.encode_update_listen(old, new) is not None)


def run_daemon(config_path: str) -> int:
    """`speakerd run`: load the config and the key, then serve. Exit 78 on bad config."""
    from .audio import quiet_alsa_lib

    configure_logging("INFO")
    # alsa-lib's own lines would reach the journal around our one line per missing device.
    quiet_alsa_lib()
    env_key = os.environ.get(ENV_NAME, "").strip()
    try:
        cfg = load_config(config_path)
        configure_logging(cfg.log.level)
        key = load_api_key(cfg.agent)  # clears the variable from the environment
        secrets = load_provider_secrets(cfg.agent)
    except (ConfigError, ValueError, RecursionError, OSError) as exc:
        if not isinstance(exc, ConfigError):
            exc = ConfigError([f"{config_path}: cannot read: {type(exc).__name__}"])
        for problem in exc.problems:
            log.error("%s", problem)
        return EX_CONFIG
    # systemd's RuntimeDirectory=speakerd: the control socket lives there (nowhere else).
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    control = os.path.join(runtime, SOCKET_NAME) if runtime else None
    daemon = Daemon(config_path, cfg, key, control_path=control,
                    env_key=env_key if key == env_key else "", secrets=secrets)
    daemon.set_log_level = configure_logging
    daemon.install_signals()
    return daemon.run()
