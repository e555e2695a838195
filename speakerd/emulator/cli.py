"""`speakerd emulate`: the emulator as a command, its knobs as options, one line per event."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time
import types
from typing import Any

from .options import EmulatorOptions
from .server import Emulator

log = logging.getLogger(__name__)


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
    p.add_argument("--reply-gap", type=float, default=d.reply_gap, metavar="SECONDS",
                   help="halfway through each reply, pause until the client has played what it "
                        "got, then this many seconds more (default %(default)s: no pause)")
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
                   help="send no AgentAudioDone for an interrupted reply (by default it comes "
                        "late, after the next user turn's EndOfThought, as on the real server)")
    p.add_argument("--duplicate-user-started-speaking", action="store_true",
                   help="send UserStartedSpeaking twice at each speech onset")
    p.add_argument("--no-flux-turns", action="store_true",
                   help="take Flux settings but end turns by end-of-speech and answer "
                        "ForceEndTurn with FORCE_END_TURN_UNSUPPORTED")
    p.add_argument("--lenient-keys", action="store_true",
                   help="accept unknown fields in client messages (the real server refuses "
                        "them)")
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
        reply_pace=args.reply_pace, reply_gap=args.reply_gap, reply_frame_ms=args.reply_frame_ms,
        reply_seconds=args.reply_seconds,
        transcripts=args.transcript or list(d.transcripts),
        agent_started_speaking=not args.no_agent_started_speaking,
        history=not args.no_history, slip_frames=args.slip_frames,
        audio_done_after_interrupt=not args.no_audio_done_after_interrupt,
        duplicate_user_started_speaking=args.duplicate_user_started_speaking,
        strict_keys=not args.lenient_keys, flux_turns=not args.no_flux_turns,
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
