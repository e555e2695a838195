"""One generation of running parts, built from one config: what claims which device, in which
order they start and stop, and how a failed build releases what it claimed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import protocol
from .agent import AgentLink
from .config import (
    Config,
    ProviderSecrets,
)
from .control import LinkMeter
from .events import (
    AgentConnected,
    AgentDisconnected,
    AgentEventReceived,
    ButtonPressed,
    ButtonReleased,
    DeviceChanged,
    Event,
    ListenChanged,
    State,
    TurnAudioSent,
    UplinkStarted,
)
from .router import Router
from .session import Session

log = logging.getLogger(__name__)

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
                 meter: LinkMeter | None = None, secrets: ProviderSecrets | None = None) -> None:
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
                frame_periods=cfg.audio.input.frame_ms // cfg.audio.input.period,
                batch_frames=cfg.audio.input.batch_frames,
                buffer_seconds=cfg.audio.input.connect_buffer_seconds,
                on_device=lambda ok, msg: post(DeviceChanged("microphone", ok, msg)),
                on_first_send=lambda t: post(UplinkStarted(t)),
                on_turn_end=lambda number, t: post(TurnAudioSent(number, t)))
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
                watchdog_interval=notifier.watchdog_interval() if notifier is not None else None,
                secrets=secrets)
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

    def retune_listen(self, cfg: Config) -> None:
        """Only agent.listen changed: the live link takes an UpdateListen instead of a rebuild."""
        self.cfg = cfg
        self._post(ListenChanged(cfg))

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
