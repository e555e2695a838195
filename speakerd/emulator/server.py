"""A local Voice Agent server speaking both dialects, for offline use and tests."""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from .connection import EmulatedSession
from .link import EmulatorOptions, RecordedFrame, ReplyRecord
from .wire import EA, PATHS, V1

__all__ = ["Emulator", "EmulatorOptions", "EmulatedSession", "RecordedFrame", "ReplyRecord",
           "main"]

log = logging.getLogger(__name__)

_PATH_OF = {V1: "/v1/agent/converse", EA: "/agent"}
_DIALECT_ALIASES = {"v1": V1, "early_access": EA, "ea": EA}
_AUTH_SCHEMES = ("token", "bearer")
# The knobs reset to these when a one-shot fault fires.
_ONE_SHOT = {"drop_mid_reply": False, "stall_mid_reply": False, "error_then_close": None}


class Emulator:
    """The server: accepts, authenticates and routes connections, and owns their sessions."""

    def __init__(self, options: EmulatorOptions | None = None, host: str = "127.0.0.1",
                 port: int = 0, on_event: Callable[[str], None] | None = None) -> None:
        self.options = options if options is not None else EmulatorOptions()
        self.host = host
        self.port = port
        self.sessions: list[EmulatedSession] = []
        self.rejected: list[tuple[float, int]] = []  # (time, HTTP status) of refused upgrades
        self._on_event = on_event
        # Guards sessions, rejected, the pending calls, the transcript cursor and one-shot knobs.
        self._lock = threading.Lock()
        # Notified whenever a session records or sends something; wait_for() sleeps on it.
        self._changed = threading.Condition()
        self._calls: list[tuple[str, dict[str, Any]]] = []
        self._transcript_index = 0
        self._request_ids: dict[int, str] = {}
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Emulator:
        """Listen and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        self._server = serve(
            self._handle, self.host, self.port,
            process_request=self._process_request, process_response=self._process_response,
            select_subprotocol=_select_subprotocol,
            # close_timeout bounds every close handshake with a client that never answers it.
            close_timeout=1, compression=None,
            # The real server's pings are undocumented; none keeps an idle emulator at 0 % CPU.
            ping_interval=None, max_size=2**22,
            logger=logging.getLogger(f"{__name__}.server"))
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="emulator-accept", daemon=True)
        self._thread.start()
        log.info("agent emulator listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        """Close every connection and stop serving; bounded, idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._lock:
            sessions = list(self.sessions)
        for session in sessions:
            session.begin_stop()
        # shutdown() closes each connection with a handshake of up to close_timeout and waits
        # for the handlers; run it aside so a wedged peer cannot hold stop() for long.
        stopper = threading.Thread(target=server.shutdown, name="emulator-stop", daemon=True)
        stopper.start()
        stopper.join(timeout=5.0)
        if stopper.is_alive():
            for session in sessions:
                session.abort()
            stopper.join(timeout=5.0)
            if stopper.is_alive():
                log.warning("agent emulator: connections did not close")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        log.info("agent emulator stopped")

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        self.stop()

    # --- what tests and the CLI use --------------------------------------------------------

    def url(self, dialect: str = "v1") -> str:
        """The websocket URL of a dialect ("v1", or "early_access"/"ea")."""
        path = _PATH_OF[_DIALECT_ALIASES[dialect]]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{path}"

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until predicate() is true (re-checked on every change and every 50 ms)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # Short waits too, since a predicate may depend on the client, not on us.
                self._changed.wait(min(remaining, 0.05))
        return True

    def call_function(self, name: str, arguments: dict[str, Any]) -> None:
        """At the next user turn, call this function before replying (calls queue up in order)."""
        with self._lock:
            self._calls.append((name, dict(arguments)))

    def say(self, text: str, seconds: float) -> None:
        """Make the newest live session speak unsolicited, like InjectAgentMessage."""
        with self._lock:
            live = [s for s in self.sessions if s.live and s.applied.is_set()]
        if not live:
            raise RuntimeError("no connected session has applied its settings")
        live[-1].say(text, seconds)

    @property
    def last_session(self) -> EmulatedSession | None:
        """The newest session, if any."""
        with self._lock:
            return self.sessions[-1] if self.sessions else None

    # --- SessionHost -----------------------------------------------------------------------

    def next_transcript(self) -> str:
        """The next scripted user transcript (cycled)."""
        with self._lock:
            scripted = list(self.options.transcripts) or ["hello"]
            text = scripted[self._transcript_index % len(scripted)]
            self._transcript_index += 1
            return text

    def take_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """The queued function calls, now owned by the caller."""
        with self._lock:
            calls, self._calls = self._calls, []
            return calls

    def take_fault(self, name: str) -> Any:
        """Read a one-shot fault knob and reset it when it is set."""
        with self._lock:
            value = getattr(self.options, name)
            if value:
                setattr(self.options, name, _ONE_SHOT[name])
            return value

    def changed(self) -> None:
        """Wake wait_for()."""
        with self._changed:
            self._changed.notify_all()

    def emit(self, number: int, dialect: str, line: str) -> None:
        """One event line for the CLI."""
        if self._on_event is not None:
            self._on_event(f"[{number} {dialect}] {line}")

    # --- handshake and connections -----------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """Route by path, then the refuse knob, then auth; None lets the upgrade proceed."""
        with self._lock:
            self._request_ids[id(conn)] = str(uuid.uuid4())
        status: int | None = None
        if urlsplit(request.path).path not in PATHS:
            status, text = 404, "Not Found\n"
        elif self.options.refuse_status:
            status = self.options.refuse_status
            text = "Refused by the emulator.\n"
        elif not _authorized(request.headers, self.options.api_key):
            status, text = 401, "Unauthorized: send 'Authorization: Token <key>'.\n"
        if status is None:
            return None
        with self._lock:
            self.rejected.append((time.monotonic(), status))
        log.info("agent emulator refused an upgrade with %d", status)
        if self._on_event is not None:
            self._on_event(f"[-] refused {request.path} with HTTP {status}")
        self.changed()
        return conn.respond(status, text)

    def _process_response(self, conn: ServerConnection, request: Request,
                          response: Response) -> Response | None:
        with self._lock:
            if response.status_code == 101:
                request_id = self._request_ids.get(id(conn))
            else:
                request_id = self._request_ids.pop(id(conn), None)
        if request_id is not None:
            response.headers["dg-request-id"] = request_id
        return None

    def _handle(self, conn: ServerConnection) -> None:
        """One connection's handler thread: build its session and serve it."""
        with self._lock:
            request_id = self._request_ids.pop(id(conn), None) or str(uuid.uuid4())
            assert conn.request is not None
            dialect = PATHS[urlsplit(conn.request.path).path]
            session = EmulatedSession(len(self.sessions) + 1, dialect, request_id, conn, self)
            self.sessions.append(session)
        self.changed()
        session.run()


def _authorized(headers: Headers, key: str) -> bool:
    """Whether the upgrade carries the key as `Token`/`Bearer` or as sub-protocols."""
    wanted = key.encode()
    auth = headers.get("Authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() in _AUTH_SCHEMES and hmac.compare_digest(value.strip().encode(),
                                                                   wanted):
            return True
    offered = [p.strip() for h in headers.get_all("Sec-WebSocket-Protocol") for p in h.split(",")]
    return (len(offered) >= 2 and offered[0].lower() in _AUTH_SCHEMES
            and hmac.compare_digest(offered[1].encode(), wanted))


def _select_subprotocol(conn: ServerConnection, offered: Any) -> Any:
    """Echo `token`/`bearer` when the key came as sub-protocols, as Deepgram does."""
    for proto in offered:
        if str(proto).lower() in _AUTH_SCHEMES:
            return proto
    return None


# --- the CLI -------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    d = EmulatorOptions()
    p = argparse.ArgumentParser(
        prog="speakerd emulate",
        description="Run a local Deepgram Voice Agent emulator on loopback. It speaks both "
                    "dialects (V1 at /v1/agent/converse, early access at /agent), detects "
                    "speech in the uplink, replies with audio (by default it repeats what it "
                    "heard), calls functions and can inject faults. One line per event goes "
                    "to stdout. Stop it with Ctrl-C or SIGTERM.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; anything but loopback "
                        "exposes it to the network)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free)")
    p.add_argument("--key", default=None,
                   help="API key clients must send (default: $SPEAKERD_EMULATOR_KEY, else "
                        f"{d.api_key!r}); never printed")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout,
                   help="seconds without any client frame before CLIENT_MESSAGE_TIMEOUT "
                        "(default %(default)s; agent speech does not reset it)")
    p.add_argument("--speech-threshold", type=float, default=d.speech_threshold,
                   help="RMS (int16 scale) above which a 20 ms uplink window is speech "
                        "(default %(default)s)")
    p.add_argument("--end-of-speech", type=float, default=d.end_of_speech,
                   help="seconds of trailing silence that end a user turn (default %(default)s)")
    p.add_argument("--reply-latency", type=float, default=d.reply_latency,
                   help="seconds from the end of a turn to the first reply audio "
                        "(default %(default)s)")
    p.add_argument("--reply-pace", type=float, default=d.reply_pace,
                   help="reply audio is sent at this multiple of real time; 0 = as fast as "
                        "possible (default %(default)s)")
    p.add_argument("--reply-frame-ms", type=int, default=d.reply_frame_ms,
                   help="nominal reply frame length in ms, varied a little "
                        "(default %(default)s)")
    p.add_argument("--reply-seconds", type=float, default=None,
                   help="reply with a synthetic voice of this length instead of repeating the "
                        "user's words")
    p.add_argument("--transcript", action="append", default=None, metavar="TEXT",
                   help="scripted user transcript, used in turn (repeatable)")
    p.add_argument("--no-agent-started-speaking", action="store_true",
                   help="do not send AgentStartedSpeaking before replies")
    p.add_argument("--no-history", action="store_true", help="do not echo V1 History messages")
    p.add_argument("--slip-frames", type=int, default=d.slip_frames,
                   help="old-reply frames still sent after a barge-in (default %(default)s)")
    p.add_argument("--no-audio-done-after-interrupt", action="store_true",
                   help="send no AgentAudioDone for an interrupted reply")
    p.add_argument("--lenient-keys", action="store_true",
                   help="accept settings keys the real server rejects as mis-placed")
    p.add_argument("--call", action="append", default=[], metavar="NAME=JSON",
                   help="call this client function at the next user turn, e.g. "
                        "'set_volume={\"level\": 3}' (repeatable, in order)")
    faults = p.add_argument_group("faults")
    faults.add_argument("--refuse-status", type=int, default=None, metavar="HTTP",
                        help="answer every upgrade with this HTTP status (401, 429, 500)")
    faults.add_argument("--settings-delay", type=float, default=d.settings_delay,
                        help="delay SettingsApplied by this many seconds")
    faults.add_argument("--drop-mid-reply", action="store_true",
                        help="drop the TCP connection halfway through the next reply (once)")
    faults.add_argument("--stall-mid-reply", action="store_true",
                        help="go silent halfway through the next reply (once)")
    faults.add_argument("--error-then-close", default=None, metavar="CODE",
                        help="at the next user turn send Error with this code and close (once)")
    faults.add_argument("--error-close-code", type=int, default=None, metavar="CODE",
                        help="websocket close code after an Error (default: none, the client "
                             "sees 1005 as with the real server)")
    faults.add_argument("--unknown-types", action="store_true",
                        help="sprinkle unknown message types into the stream")
    faults.add_argument("--warnings", action="store_true",
                        help="send Warning messages during turns (V1)")
    faults.add_argument("--function-timeout", type=float, default=d.function_timeout,
                        help="seconds to wait for a FunctionCallResponse (default %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging to stderr")
    return p


def _options(args: argparse.Namespace) -> EmulatorOptions:
    d = EmulatorOptions()
    return dataclasses.replace(
        d,
        api_key=args.key or os.environ.get("SPEAKERD_EMULATOR_KEY") or d.api_key,
        idle_timeout=args.idle_timeout, speech_threshold=args.speech_threshold,
        end_of_speech=args.end_of_speech, reply_latency=args.reply_latency,
        reply_pace=args.reply_pace, reply_frame_ms=args.reply_frame_ms,
        reply_seconds=args.reply_seconds,
        transcripts=args.transcript or list(d.transcripts),
        agent_started_speaking=not args.no_agent_started_speaking,
        history=not args.no_history, slip_frames=args.slip_frames,
        audio_done_after_interrupt=not args.no_audio_done_after_interrupt,
        strict_keys=not args.lenient_keys,
        record=False,  # a long-running server must not keep every uplink byte
        refuse_status=args.refuse_status, settings_delay=args.settings_delay,
        drop_mid_reply=args.drop_mid_reply, stall_mid_reply=args.stall_mid_reply,
        error_then_close=args.error_then_close,
        error_close_code=args.error_close_code, unknown_types=args.unknown_types,
        warnings=args.warnings, function_timeout=args.function_timeout)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """`speakerd emulate`: serve until SIGINT/SIGTERM; exit 0 then, 2 on bad arguments."""
    parser = _parser()
    args = parser.parse_args(argv)
    calls: list[tuple[str, dict[str, Any]]] = []
    for spec in args.call:
        name, _, raw = spec.partition("=")
        try:
            arguments = json.loads(raw) if raw else {}
        except ValueError:
            parser.error(f"--call {name}: arguments are not JSON")
        if not name or not isinstance(arguments, dict):
            parser.error(f"--call {spec!r}: expected NAME=JSON-object")
        calls.append((name, arguments))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(threadName)s %(name)s: %(message)s")
    if not _is_loopback(args.host):
        warning = (f"WARNING: the emulator is listening on {args.host}, not loopback: anyone "
                   "who can reach this address can use it.")
        print(warning, file=sys.stderr, flush=True)
        log.warning("%s", warning)

    def event(line: str) -> None:
        print(f"{time.monotonic() - started:9.3f} {line}", flush=True)

    started = time.monotonic()
    emulator = Emulator(_options(args), args.host, args.port, on_event=event)
    for name, arguments in calls:
        emulator.call_function(name, arguments)
    stop = threading.Event()  # set by the signal handlers; the main thread waits on it

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            emulator.start()
        except OSError as exc:
            print(f"speakerd emulate: cannot listen on {args.host}:{args.port}: {exc}",
                  file=sys.stderr)
            return 1
        print(f"listening: {emulator.url('v1')} (V1), {emulator.url('early_access')} "
              "(early access)", flush=True)
        # A timed wait keeps the loop responsive to signals on every platform.
        while not stop.wait(1.0):
            pass
        print("stopping", flush=True)
    finally:
        emulator.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
