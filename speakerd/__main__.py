"""The command line: run, check-config, devices, selftest, emulate, ctl."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .config import (
    DEFAULT_PATH,
    EX_CONFIG,
    SPEAK_CREDENTIAL,
    THINK_CREDENTIAL,
    ConfigError,
    load_api_key,
    load_config,
    load_provider_secrets,
    needs_aws,
)


def _check_config(args: argparse.Namespace) -> int:
    try:
        try:
            cfg = load_config(args.path)
            if cfg.agent.api_key_file and os.access(cfg.agent.api_key_file, os.R_OK):
                # Checked here too (a second line would inject a header), if we may read it:
                # the service reads it as root's copy, which a user's check cannot.
                load_api_key(cfg.agent, environ={})
            # The credentials files are checked where they can be read; the service's systemd
            # credentials are not visible from here, so missing AWS keys are only a note.
            secrets = load_provider_secrets(cfg.agent, require=False)
        except (ValueError, RecursionError, OSError) as exc:  # a reader bug is still a bad file
            raise ConfigError([f"{args.path}: cannot read: {type(exc).__name__}"]) from None
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{args.path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return EX_CONFIG
    for section, credential in (("think", THINK_CREDENTIAL), ("speak", SPEAK_CREDENTIAL)):
        provider = getattr(cfg.agent, section).provider
        if needs_aws(provider) and getattr(secrets, section).aws is None:
            print(f"note: agent.{section}.credentials_file: {provider} needs AWS credentials; "
                  f"none readable here (the service reads the systemd credential {credential})")
    print(f"{args.path}: ok")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .daemon import run_daemon

    return run_daemon(args.config)


def _devices(args: argparse.Namespace) -> int:
    from .audio import list_devices

    devices = list_devices()
    print_devices(devices, as_json=args.json)
    return 0


def print_devices(devices: dict[str, Any], as_json: bool = False) -> None:
    """The cards and PCMs, then the board profiles that fit these cards and the lines to use."""
    from . import boards

    seen = [str(card.get("id", "")) for card in devices.get("cards", [])]
    fits: list[dict[str, Any]] = [
        {"board": m.board.name, "description": m.board.description, "card": m.card,
         "config": boards.advice(m, seen)}
        for m in boards.matching(devices.get("cards", []))]
    if as_json:
        print(json.dumps({**devices, "boards": fits}, indent=2))
        return
    for section, names in devices.items():
        print(f"{section}:")
        for name in names or ["(none)"]:
            print(f"  {name}")
    print("boards that fit these cards:" if fits else "boards: none of the profiles fits these cards")
    for fit in fits:
        card = fit["card"]
        print(f"  {fit['board']}: {fit['description']} (card {card.get('index', '?')}: {card.get('id')})")
        for line in fit["config"]:
            print(f"    {line}")
    if len({f["card"].get("id") for f in fits}) < len(fits):
        print("  (boards built on the same codec show the same card: pick yours by its LEDs and button)")


def _selftest(args: argparse.Namespace) -> int:
    from .selftest import selftest

    return selftest(args.config, seconds=args.seconds, button_timeout=args.button_timeout,
                    led_seconds=args.led_seconds)


def _emulate(args: argparse.Namespace) -> int:
    from .emulator import main as emulator_main

    return emulator_main(args.rest)


def _format_status(status: dict[str, object]) -> str:
    lines = [f"state: {status.get('state')}",
             f"last error: {status.get('last_error') or '-'}",
             f"agent connected: {'yes' if status.get('agent_connected') else 'no'}",
             f"connected: {status.get('connected_seconds')} s of {status.get('uptime_seconds')} s "
             "since start (billed per connected second)"]
    turn = status.get("last_turn")
    lines.append(f"last turn: {turn.get('line') if isinstance(turn, dict) else '-'}")
    reload = status.get("reload")
    if isinstance(reload, dict) and reload.get("count"):
        lines.append(f"last reload: {reload.get('message')}")
    return "\n".join(lines)


def _ctl(args: argparse.Namespace) -> int:
    from .control import ControlError, request, wait_reload

    try:
        if args.action == "reload":
            outcome = wait_reload(args.socket, timeout=args.timeout)
            print(outcome.get("message", ""), file=sys.stdout if outcome.get("ok") else sys.stderr)
            return 0 if outcome.get("ok") else 1
        reply = request(args.action, args.socket, timeout=args.timeout)
    except ControlError as exc:
        print(f"speakerd ctl: {exc}", file=sys.stderr)
        return 1
    if args.action == "status":
        reply.pop("ok", None)
        print(json.dumps(reply, indent=2) if args.json else _format_status(reply))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speakerd",
        description="A push-to-talk voice assistant on Deepgram's Voice Agent API.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon (what the systemd unit starts)",
                       description="Run the daemon until SIGTERM/SIGINT; SIGHUP reloads the config. "
                                   "Exit codes: 0 after a signal, 1 after a crash, 78 for a bad config. "
                                   "The API key comes from DEEPGRAM_API_KEY, the systemd credential "
                                   "deepgram_api_key, or agent.api_key_file; a provider's secrets "
                                   "from the systemd credentials speakerd.think_credentials and "
                                   "speakerd.speak_credentials, or "
                                   "agent.think/speak.credentials_file.")
    p.add_argument("--config", default=DEFAULT_PATH, help=f"the YAML config (default {DEFAULT_PATH})")
    p.set_defaults(func=_run)

    p = sub.add_parser("check-config", help="validate a config file and list every problem",
                       description="Validate PATH; print every problem as 'section.key: message'. "
                                   "Exit 0 when valid, 78 otherwise.")
    p.add_argument("path", nargs="?", default=DEFAULT_PATH, help=f"the YAML config (default {DEFAULT_PATH})")
    p.set_defaults(func=_check_config)

    p = sub.add_parser("devices", help="list ALSA cards and PCM names",
                       description="List ALSA cards and PCM names to put in audio.input.device and "
                                   "audio.output.device (prefer names such as plughw:CARD=Name), and "
                                   "the board profiles (board: NAME) that fit the cards seen.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_devices)

    p = sub.add_parser("selftest", help="hardware bring-up check: tone, mic level, LEDs, button",
                       description="Play a tone, record a few seconds and report level and clipping, "
                                   "cycle the LEDs through every state, then wait for a button press.")
    p.add_argument("--config", default=DEFAULT_PATH, help=f"the YAML config (default {DEFAULT_PATH})")
    p.add_argument("--seconds", type=float, default=3.0, help="how long to record (default 3)")
    p.add_argument("--button-timeout", type=float, default=10.0,
                   help="how long to wait for a press (default 10; 0 skips)")
    p.add_argument("--led-seconds", type=float, default=1.5,
                   help="how long each LED state is shown (default 1.5)")
    p.set_defaults(func=_selftest)

    p = sub.add_parser("emulate", help="a local Voice Agent server for offline use and tests",
                       description="Run the local agent emulator; 'speakerd emulate --help' lists its "
                                   "options.", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="emulator options (see --help)")
    p.set_defaults(func=_emulate)

    from .control import DEFAULT_SOCKET, GROUP

    p = sub.add_parser("ctl", help="control the running service: press, release, status, reload",
                       description="Talk to the running service over its local socket "
                                   f"({DEFAULT_SOCKET}; root or members of the group {GROUP}). "
                                   "press/release act like the button; status prints the state, the "
                                   "last error, the agent link, connected seconds and the last turn; "
                                   "reload re-reads the config and waits for the outcome (exit 1 if "
                                   "the file was refused).")
    p.add_argument("action", choices=["press", "release", "status", "reload"])
    p.add_argument("--json", action="store_true", help="status as JSON, for scripts")
    p.add_argument("--socket", default=DEFAULT_SOCKET, help=f"the socket (default {DEFAULT_SOCKET})")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the service (default 30)")
    p.set_defaults(func=_ctl)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulate"]:
        # argparse's REMAINDER does not take arguments that begin with an option
        # ('emulate --port 0', 'emulate --help'): hand them to the emulator's own parser untouched.
        from .emulator import main as emulator_main

        return emulator_main(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
