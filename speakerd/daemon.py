"""Builds and wires everything: start and stop order, signals, sd_notify, exit codes, control."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from . import protocol
from .agent import AgentLink
from .config import EX_CONFIG, Config, ConfigError, load_api_key, load_config
from .config.secrets import ENV_NAME
from .control import SOCKET_NAME, ControlServer, LinkMeter, ServiceControls
from .events import (
    AgentConnected,
    AgentDisconnected,
    AgentEventReceived,
    ButtonPressed,
    ButtonReleased,
    DeviceChanged,
    Event,
    State,
    UplinkStarted,
)
from .journal import configure_logging
from .router import Router
from .session import Session
from .textsafe import shown

log = logging.getLogger(__name__)

EX_OK = 0
EX_CRASH = 1
# EX_UNAVAILABLE from sysexits.h: a library the daemon needs (a GPIO pin factory) is missing.
# A restart cannot install it, so the unit lists it in RestartPreventExitStatus= next to 78;
# a code of its own (not 78) keeps "fix the config" and "install a package" apart in
# `systemctl status`.
EX_UNAVAILABLE = 69
STOP_TIMEOUT = 2.0
# The threads that own an audio device: one stuck in a read or write blocks a reload.
DEVICE_OWNERS = ("mic", "speaker")


@dataclass
class Hooks:
    """Seams for tests and the demo: device openers and observers (defaults: the real devices)."""
    open_source: Callable[[], Any] | None = None
    open_sink: Callable[[], Any] | None = None
    mixer_factory: Callable[[str, str], Any] | None = None
    on_state: Callable[[State], None] | None = None
    on_text: Callable[[str, str], None] | None = None


class PartsStuck(RuntimeError):
    """A thread of the old parts would not stop: it still owns its device."""


class Parts:
    """One generation of running components, built from one config (a reload builds anew).

    Building claims pins and devices; if any step fails, whatever was claimed is released
    before the error propagates, so the caller may build again.
    """

    def __init__(self, cfg: Config, api_key: str, notifier: Any, hooks: Hooks,
                 meter: LinkMeter | None = None) -> None:
        from .audio import AlsaMixer, AudioFormat, open_sink, open_source
        from .button import PushButton, load_pin_factory
        from .convlog import ConversationLog
        from .functions import FunctionRunner
        from .leds import StatusLeds
        from .mic import Mic
        from .outputs import GpioOutputs
        from .speaker import Speaker

        self.cfg = cfg
        self._api_key = api_key
        self.meter = meter
        # Before the first pin is claimed: no pin factory is one clear error, not a traceback.
        load_pin_factory()
        self.button: Any = None
        self.links: list[AgentLink] = []
        self.outputs: GpioOutputs | None = None
        self._built: list[tuple[str, Callable[[], object]]] = []  # how to undo each step, in order
        try:
            self.leds = StatusLeds(cfg.leds, level=self._mic_peak)
            self._built.append(("leds", self.leds.close))
            self.convlog = ConversationLog(cfg.log.state_dir, enabled=cfg.log.conversation_log,
                                           max_bytes=cfg.log.conversation_log_max_bytes,
                                           backups=cfg.log.conversation_log_backups)
            self._built.append(("conversation log", self.convlog.close))
            post = self._post
            self.speaker = Speaker(
                hooks.open_sink or (lambda: open_sink(cfg.audio.output)),
                AudioFormat.from_output(cfg.audio.output), on_event=post,
                late_audio_timeout=cfg.session.late_audio_timeout, chimes=cfg.chimes,
                on_device=lambda ok, msg: post(DeviceChanged("speaker", ok, msg)))
            recorder = None
            if cfg.log.debug_audio_dir:
                from .recorder import WavRecorder
                recorder = WavRecorder(
                    cfg.log.debug_audio_dir, cfg.log.debug_audio_max_files,
                    rates={"uplink": cfg.audio.input.sample_rate,
                           "reply": cfg.audio.output.sample_rate},
                    widths={"uplink": 2, "reply": 1 if cfg.audio.output.encoding == "mulaw" else 2})
            self.router = Router(self.speaker, recorder)
            self.mic = Mic(
                hooks.open_source or (lambda: open_source(cfg.audio.input)),
                AudioFormat.from_input(cfg.audio.input), self.router,
                frame_periods=cfg.audio.input.frame_ms // cfg.audio.input.period_ms,
                buffer_seconds=cfg.audio.input.connect_buffer_seconds,
                on_device=lambda ok, msg: post(DeviceChanged("microphone", ok, msg)),
                on_first_send=lambda t: post(UplinkStarted(t)))
            gpio_pins = [(f.action.pin, f.action.active_high) for f in cfg.functions
                         if f.action is not None and f.action.type == "gpio"]
            if gpio_pins:
                self.outputs = GpioOutputs(gpio_pins)
                self._built.append(("outputs", self.outputs.close))
            self.runner = FunctionRunner(cfg.functions, on_result=post,
                                         mixer_factory=hooks.mixer_factory or AlsaMixer,
                                         outputs=self.outputs)
            self._built.append(("functions", self.runner.close))
            self.session = Session(
                cfg, connect=self._connect, mic=self.mic, speaker=self.speaker, leds=self.leds,
                router=self.router, runner=self.runner, convlog=self.convlog, status=notifier,
                on_state=hooks.on_state, on_text=hooks.on_text,
                watchdog_interval=notifier.watchdog_interval() if notifier is not None else None)
        except BaseException:
            self._undo()
            raise
        self._button_cls = PushButton

    def _undo(self) -> None:
        for name, undo in reversed(self._built):
            try:
                undo()
            except Exception:  # noqa: BLE001 - release the rest whatever one part does
                log.exception("releasing %s failed", name)
        self._built.clear()

    def _mic_peak(self) -> float:
        # The LED thread's meter; the mic is built after the LEDs, and a meter shows only while
        # listening, by when it exists.
        mic = getattr(self, "mic", None)
        return mic.peak() if mic is not None else 0.0

    def _post(self, event: Event) -> None:
        self.session.post(event)

    def _connect(self, settings: str) -> AgentLink:
        cfg = self.cfg.agent
        dialect = protocol.Dialect(cfg.dialect)
        link = AgentLink(url=cfg.url or protocol.DEFAULT_URLS[dialect], api_key=self._api_key,
                         dialect=dialect, settings=settings, on_event=self._on_link_event,
                         on_audio=self.router.audio, connect_timeout=cfg.connect_timeout,
                         keepalive_interval=cfg.keepalive_interval, ping_interval=cfg.ping_interval,
                         ca_file=cfg.ca_file)
        # Old links are kept only until their threads are gone, so a stop can join them.
        self.links = [old for old in self.links if old.alive()] + [link]
        return link  # the session starts it once the router knows it

    def _on_link_event(self, event: AgentConnected | AgentDisconnected | AgentEventReceived) -> None:
        # agent-rx: the router acts in arrival order before the session hears of it.
        if isinstance(event, AgentEventReceived):
            self.router.event(event.link, event.event)
        elif self.meter is not None and isinstance(event, AgentConnected):
            self.meter.up(event.link)
        elif self.meter is not None and isinstance(event, AgentDisconnected):
            self.meter.down(event.link)
        self.session.post(event)

    def start(self) -> None:
        """Start in dependency order: outputs first, the button last (presses need a session).

        A failure part way stops what was started and releases every claimed device.
        """
        try:
            self.leds.show(State.IDLE)
            for name, start, stop in (
                    ("speaker", self.speaker.start, lambda: self.speaker.stop(STOP_TIMEOUT / 4)),
                    ("mic", self.mic.start, lambda: self.mic.stop(STOP_TIMEOUT / 4))):
                if not start():
                    raise PartsStuck(f"the previous {name} thread still owns its device")
                self._built.append((name, stop))
            self.session.start()
            self._built.append(("session", lambda: self.session.stop(STOP_TIMEOUT / 4)))
            self.button = self._button_cls(
                self.cfg.button, on_press=self.press, on_release=self.release)
        except BaseException:
            self._undo()
            raise

    def press(self, t: float) -> None:
        """The button went down (gpiozero's thread, or the control socket's)."""
        # Every press silences the agent, whatever the state, so the speaker is told here
        # (interrupt() only sets a flag) rather than after the session thread wakes: that hop
        # is what put a scheduling delay between the edge and silence. The press is posted
        # first: the session must see it before the speaker's report of the interrupt, or a
        # toggle press mid-reply would look like a press while listening.
        self._post(ButtonPressed(t))
        self.speaker.interrupt()

    def release(self, t: float) -> None:
        """The button came up."""
        self._post(ButtonReleased(t))

    def _close_button(self) -> None:
        if self.button is not None:
            self.button.close()

    def stop(self) -> list[str]:
        """Stop in reverse order; every step is bounded. Returns the device owners that would not
        stop (mic, speaker).

        A stuck thread is logged, not waited on. A stuck device owner still holds its PCM, which
        is why the caller must not build another generation over it; a link thread owns only its
        own socket (it ends with its connect timeout) and the session thread no device.
        """
        wait = STOP_TIMEOUT / 4
        steps: list[tuple[str, Callable[[], object]]] = [
            ("button", self._close_button),
            ("session", lambda: self.session.stop(wait)),
            ("agent link", lambda: all([link.join(wait) for link in self.links])),
            ("mic", lambda: self.mic.stop(wait)),
            ("speaker", lambda: self.speaker.stop(wait)),
            ("functions", self.runner.close),
            ("outputs", self.outputs.close if self.outputs is not None else lambda: None),
            ("leds", self.leds.close),
            ("conversation log", self.convlog.close),
        ]
        stuck: list[str] = []
        for name, step in steps:
            try:
                # A thread's stop() says False when the thread lives on (it has logged why).
                if step() is False and name in DEVICE_OWNERS:
                    stuck.append(name)
            except Exception:  # noqa: BLE001 - one part failing to stop must not keep the rest running
                log.exception("stopping %s failed", name)
        self._built.clear()
        return stuck


class Daemon:
    """The running service: one Parts at a time, signals, readiness, reload and the control socket."""

    def __init__(self, config_path: str | None, cfg: Config, api_key: str, *,
                 notifier: Any = None, hooks: Hooks | None = None,
                 control_path: str | None = None, env_key: str = "") -> None:
        from .notify import Notifier

        self.config_path = config_path
        self.cfg = cfg
        self._api_key = api_key
        # The key given in the environment: the variable is cleared once read, so a reload
        # looks for it here.
        self._env_key = env_key
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
            self.parts = self._build(cfg, key)
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
        self.cfg, self._api_key = cfg, key
        self.notifier.ready()
        self.controls.reloaded(covers, True, f"applied {path}")
        return True

    def _build(self, cfg: Config, key: str) -> Parts:
        """Build and start one generation; on failure nothing of it stays claimed."""
        parts = Parts(cfg, key, self.notifier, self.hooks, self.meter)
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
                    env_key=env_key if key == env_key else "")
    daemon.set_log_level = configure_logging
    daemon.install_signals()
    return daemon.run()
