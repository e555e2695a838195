"""The current agent link, the calls it is owed an answer to, and the conversation carried
from one link to the next. The session thread alone uses it."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from . import protocol
from .config import Config, ProviderSecrets, is_flux
from .events import FunctionFinished
from .reconnect import Reconnect
from .router import Router
from .textsafe import shown

log = logging.getLogger(__name__)

# The conversation carried across a reconnect is bounded so the settings message stays small:
# in lines, in characters a line (a longer one is cut), and in characters in all (the oldest
# lines go first).
MAX_CONTEXT = 50
MAX_CONTEXT_ITEM = 2000
MAX_CONTEXT_TOTAL = 16000


class Link(Protocol):
    """One agent connection (AgentLink): built unstarted, started once the router knows it."""
    def start(self) -> object: ...
    def send_audio(self, pcm: bytes) -> None: ...
    def send_text(self, text: str) -> None: ...
    def fail(self, reason: str) -> None: ...
    def close(self) -> None: ...


class Runner(Protocol):
    """The local functions (FunctionRunner): runs a call off this thread, stops a withdrawn one."""
    def run(self, call_id: str, name: str, arguments: Mapping[str, Any],
            arguments_error: str = "", request: object = None) -> None: ...
    def cancel(self, call_id: str) -> None: ...


class Log(Protocol):
    """The conversation log (ConversationLog)."""
    def new_conversation(self) -> str: ...
    def append(self, kind: str, **fields: Any) -> None: ...


class Connection:
    """Opens links, knows which one is current, and keeps what must survive a drop."""

    def __init__(self, cfg: Config, connect: Callable[[str], Link], router: Router,
                 reconnect: Reconnect, clock: Callable[[], float], runner: Runner | None = None,
                 convlog: Log | None = None, secrets: ProviderSecrets | None = None) -> None:
        self._cfg = cfg
        self._secrets = secrets or ProviderSecrets()
        self._connect = connect
        self._router = router
        self.reconnect = reconnect
        self._clock = clock
        self._runner = runner
        self._convlog = convlog
        self.link: Link | None = None
        self.ready = False
        self.deadline = 0.0          # the settings must be applied by then, whatever the state
        self._up_at: float | None = None
        self._billed = 0.0           # seconds earlier sockets were open
        self._context: list[protocol.ContextItem] = []
        self._conversation_id: str | None = None
        self._owed: dict[str, str] = {}  # client-side calls of this link still owed an answer
        self._requests = 0  # FunctionCallRequests seen: the runner bounds calls per request
        # Per link: the config its listen settings came from, whether it takes ForceEndTurn
        # (Flux, until the server says otherwise), and an UpdateListen waiting for its
        # SettingsApplied.
        self._listen_cfg = cfg
        self._force_end_turn = False
        self._refusal_logged = False
        self._update_listen: str | None = None

    # --- the link ----------------------------------------------------------------------

    def open(self) -> str:
        """Connect with the settings and the conversation so far (session thread).

        Returns "" once a link is on its way, or why none could be opened (settings that cannot
        be encoded: the session shows an error instead of its thread dying).
        """
        if self._conversation_id is None and self._convlog is not None:
            self._conversation_id = self._convlog.new_conversation()
        cfg = self._cfg
        if self._context and cfg.agent.greeting:
            # Carrying on after a drop: the agent must not greet the user again mid-conversation.
            cfg = dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, greeting=""))
        dialect = protocol.Dialect(cfg.agent.dialect)
        try:
            settings = protocol.encode_settings(cfg, dialect, tuple(self._context), self._secrets)
        except (ValueError, TypeError, RecursionError) as exc:
            reason = f"cannot send the settings: {str(exc).splitlines()[0][:160]}"
            log.error("%s", reason)
            return reason
        link = self._connect(settings)
        self.link, self.ready, self._up_at = link, False, None
        self._listen_cfg, self._update_listen, self._refusal_logged = cfg, None, False
        self._force_end_turn = dialect is protocol.Dialect.V1 and is_flux(cfg)
        self.deadline = self._clock() + cfg.agent.connect_timeout + cfg.session.reply_timeout
        # The router must know the link before its threads run: a fast server's first frames
        # (a greeting, a reply's first audio) would otherwise fail the "is this my link" check.
        self._router.reset(link)
        link.start()
        return ""

    def is_current(self, link: object) -> bool:
        return self.link is not None and link is self.link

    @property
    def pending(self) -> bool:
        """A link exists whose settings are not applied yet."""
        return self.link is not None and not self.ready

    def opened(self, t: float) -> None:
        """The socket is open: from now on it is billed."""
        self._up_at = t

    def applied(self) -> float | None:
        """SettingsApplied: the link is ready; returns how long the outage before it lasted."""
        self.ready = True
        if self._update_listen is not None and self.link is not None:
            self.link.send_text(self._update_listen)
            self._update_listen = None
        return self.reconnect.connected()

    # --- turn-taking -------------------------------------------------------------------

    def end_turn(self) -> None:
        """The user handed the turn over (a release): end it now on a link that can.

        ForceEndTurn goes into the link's outbox after the mic frames already queued, so the
        server ends the turn on all of its audio. Without Flux nothing is sent: the agent's own
        end-of-speech detection ends the turn.
        """
        if self.link is not None and self.ready and self._force_end_turn:
            self.link.send_text(protocol.encode_force_end_turn())

    def force_end_turn_refused(self) -> bool:
        """The server answered FORCE_END_TURN_UNSUPPORTED: stop sending it on this link.
        True the first time for the link (so it is logged once per link, not per turn)."""
        self._force_end_turn = False
        first, self._refusal_logged = not self._refusal_logged, True
        return first

    def listen_changed(self, cfg: Config) -> None:
        """A reload changed only agent.listen: later links use it, the live one is updated."""
        self._cfg = cfg
        if self.link is None:
            return
        update = protocol.encode_update_listen(self._listen_cfg, cfg)
        if update is None:
            # The daemon sends only changes an update can carry; this one waits for a new link.
            log.warning("the new listen settings need a new connection; they apply from the next")
            return
        self._listen_cfg = cfg
        if self.ready:
            self.link.send_text(update)
        else:
            self._update_listen = update  # after SettingsApplied, like any other message

    def forget(self) -> None:
        """The link is gone (or going): stop routing to it and drop what it was owed."""
        if self.link is None:
            return
        if self._up_at is not None:
            self._billed += self._clock() - self._up_at
        self.link, self.ready, self._up_at = None, False, None
        self._router.reset(None)
        for call_id in self._owed:
            if self._runner is not None:
                self._runner.cancel(call_id)  # nobody is left to hear the answer: stop the work
        self._owed.clear()

    def close(self) -> None:
        link = self.link
        self.forget()
        if link is not None:
            link.close()

    def connected_seconds(self) -> float:
        """Seconds a socket was open since start: what the agent bills (any thread may read)."""
        up = self._up_at
        return self._billed + (0.0 if up is None else self._clock() - up)

    # --- the conversation --------------------------------------------------------------

    def remember(self, role: str, content: str) -> None:
        """One transcript line: kept for the next link's settings and written to the log."""
        self._context.append(protocol.ContextItem(role, content[:MAX_CONTEXT_ITEM]))
        del self._context[:-MAX_CONTEXT]
        total = sum(len(c.content) for c in self._context)
        while total > MAX_CONTEXT_TOTAL:
            total -= len(self._context.pop(0).content)
        if self._convlog is not None:
            self._convlog.append("text", role=role, content=content)

    def context_size(self) -> tuple[int, int]:
        """Lines and characters carried to the next link now (figures)."""
        return len(self._context), sum(len(c.content) for c in self._context)

    def forget_conversation(self) -> None:
        self._context.clear()
        self._conversation_id = None

    # --- local function calls ----------------------------------------------------------

    def calls_requested(self, calls: tuple[protocol.FunctionCall, ...]) -> None:
        """Run each new client-side call once; a call asked twice is answered once."""
        self._requests += 1
        for call in calls:
            if self._convlog is not None:
                self._convlog.append("function_call", id=call.id, name=call.name,
                                     arguments=dict(call.arguments), client_side=call.client_side)
            if not call.client_side:
                continue  # the server runs it; nothing to do here
            if call.id in self._owed:
                log.warning("function call %s asked for twice; answering once", shown(call.id))
                continue
            self._owed[call.id] = call.name
            if self._runner is None:
                self.answer(FunctionFinished(call.id, call.name, '{"error": "no local functions"}',
                                             False))
            else:
                self._runner.run(call.id, call.name, call.arguments, call.arguments_error,
                                 request=self._requests)

    @property
    def owes_calls(self) -> bool:
        """Whether a local function call of this link is still running."""
        return bool(self._owed)

    def calls_cancelled(self, ids: tuple[str, ...]) -> None:
        """The agent withdrew calls: they get no answer, and their work is stopped."""
        for call_id in ids:
            if self._owed.pop(call_id, None) is not None:
                log.info("function call %s withdrawn by the agent", shown(call_id))
                if self._runner is not None:
                    self._runner.cancel(call_id)

    def answer(self, res: FunctionFinished) -> bool:
        """Send a finished call's answer if the current link still expects it."""
        if self._owed.pop(res.call_id, None) is None or self.link is None:
            # Withdrawn, or asked on a link that is gone: nobody expects this answer.
            log.info("function %s finished after its call was withdrawn; result dropped",
                     shown(res.name))
            return False
        if self._convlog is not None:
            self._convlog.append("function_result", id=res.call_id, name=res.name, ok=res.ok,
                                 content=res.content)
        dialect = protocol.Dialect(self._cfg.agent.dialect)
        self.link.send_text(protocol.encode_function_response(dialect, res.call_id, res.name,
                                                              res.content))
        return True
