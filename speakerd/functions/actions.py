"""The allow-listed actions a function may map to: volume, gpio, end_conversation, http, command.

Each runs on a call's worker thread and ends by the call's deadline: the runner stops it then
(closes its socket, kills its processes) through the hooks the action registers on the call.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

from ..config import ActionConfig

if TYPE_CHECKING:  # typing only: this module must not import gpiozero at run time
    from ..outputs import GpioOutputs

log = logging.getLogger(__name__)

# A command sees only this environment: no key, no credentials directory, no user settings.
COMMAND_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
# An argv item that is exactly one placeholder; anything else in argv is literal text.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Mixer(Protocol):
    """A volume control (audio.AlsaMixer on a device)."""
    def get_percent(self) -> int: ...
    def set_percent(self, p: int) -> None: ...


class ActionError(Exception):
    """An action failed in an expected way; the message goes back to the agent."""


class CallControl(Protocol):
    """What an action needs of its call: the time left, and a way to be stopped at the end."""
    def remaining(self) -> float: ...
    @property
    def stopped(self) -> bool: ...
    def on_stop(self, stop: Callable[[], None]) -> None: ...


def error(message: str, **extra: Any) -> str:
    return json.dumps({"error": message, **extra}, ensure_ascii=False)


def ok(**fields: Any) -> str:
    return json.dumps({"ok": True, **fields}, ensure_ascii=False)


def _truncate(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# --- volume and gpio ----------------------------------------------------------------------

def volume(action: ActionConfig, args: Mapping[str, Any], mixer_factory: Callable[[str, str], Mixer],
           lock: threading.Lock) -> str:
    level, change = args.get("level"), args.get("change")
    if (level is None) == (change is None):
        raise ActionError("give either level (0-100) or change (-100..100)")
    value: Any = level if level is not None else change
    if not _num(value) or not math.isfinite(value):
        raise ActionError("invalid arguments: level and change must be numbers")
    # A "change" reads then writes the volume; two at once must not lose one of them.
    with lock:
        mixer = mixer_factory(action.card, action.control)
        target = value if level is not None else mixer.get_percent() + value
        new = int(round(min(max(target, action.min), action.max)))
        mixer.set_percent(new)
    log.info("volume of %s/%s set to %d%%", action.card, action.control, new)
    return ok(volume=new)


GPIO_STATES: Mapping[Any, bool | None] = {"on": True, "off": False, "toggle": None,
                                          True: True, False: False}


def gpio(action: ActionConfig, args: Mapping[str, Any], outputs: GpioOutputs | None) -> str:
    if outputs is None:
        raise ActionError("no GPIO outputs are configured")
    state = args.get("state", "toggle")
    if not isinstance(state, str | bool) or state not in GPIO_STATES:
        raise ActionError("invalid arguments: state must be on, off or toggle")
    new = outputs.set(action.pin, GPIO_STATES[state])
    return ok(state="on" if new else "off")


# --- http ---------------------------------------------------------------------------------

def _query_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _shutdown(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked on a dripping server
        except OSError:
            pass


def http_call(action: ActionConfig, args: Mapping[str, Any], call: CallControl) -> tuple[str, bool]:
    """One request to the configured URL; redirects are answers, never places to go."""
    parts = urllib.parse.urlsplit(action.url)
    body: bytes | None = None
    headers = {"User-Agent": "speakerd", **action.headers}
    query = parts.query
    if action.method == "GET":
        # Arguments only ever extend the query string; scheme, host and path stay as configured.
        extra = urllib.parse.urlencode([(k, _query_value(v)) for k, v in args.items()])
        query = "&".join(q for q in (parts.query, extra) if q)
    else:
        body = json.dumps(dict(args), ensure_ascii=False).encode()
        headers.setdefault("Content-Type", "application/json")
    target = (parts.path or "/") + (f"?{query}" if query else "")
    timeout = max(0.01, call.remaining())
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    # The socket timeout bounds each read; this hook bounds the total (a server that drips a
    # byte at a time would otherwise keep the worker for ever).
    call.on_stop(lambda: _shutdown(conn))
    try:
        conn.request(action.method, target, body=body, headers=headers)
        resp = conn.getresponse()
        raw, cut = _read_response(resp, action.max_output, call)
        status = resp.status
    except TimeoutError:
        raise ActionError(f"timed out after {action.timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        if call.stopped:
            raise ActionError(f"timed out after {action.timeout:g} s") from None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ActionError(f"request failed: {reason}") from None
    finally:
        conn.close()
    text, cut2 = _truncate(raw.decode("utf-8", "replace"), action.max_output)
    cut = cut or cut2
    if status >= 300:
        return error(f"HTTP {status}", body=text, truncated=cut), False
    result: Any = text
    if not cut:
        try:
            result = json.loads(text)  # JSON reaches the agent as JSON, not as a quoted string
        except ValueError:
            pass
    return ok(status=status, body=result, truncated=cut), True


def _read_response(resp: http.client.HTTPResponse, limit: int,
                   call: CallControl) -> tuple[bytes, bool]:
    kept: list[bytes] = []
    size = 0
    while size <= limit:
        if call.stopped:
            raise TimeoutError
        chunk = resp.read1(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(kept), False
        kept.append(chunk)
        size += len(chunk)
    return b"".join(kept)[:limit], True


# --- command ------------------------------------------------------------------------------

def build_argv(argv: Sequence[str], args: Mapping[str, Any],
               allow_leading_dash: Sequence[str] = ()) -> list[str]:
    """The command line: each argv item that is exactly `{name}` becomes that argument's text.

    A value that starts with '-' would be read as an option: refused unless the action says
    that placeholder may carry one.
    """
    out: list[str] = []
    for item in argv:
        m = PLACEHOLDER.fullmatch(item)
        if m is None:
            out.append(item)  # literal, even if it contains braces: no partial substitution
            continue
        name = m.group(1)
        if name not in args or args[name] is None:
            raise ActionError(f"invalid arguments: {name}: is required by the command")
        value = args[name]
        if isinstance(value, Mapping | list | tuple):
            raise ActionError(f"invalid arguments: {name}: must be a single value")
        if isinstance(value, float) and not math.isfinite(value):
            raise ActionError(f"invalid arguments: {name}: must be a finite number")
        text = value if isinstance(value, str) else json.dumps(value)
        if "\0" in text:
            raise ActionError(f"invalid arguments: {name}: must not contain NUL")
        if text.startswith("-") and name not in allow_leading_dash:
            raise ActionError(f"invalid arguments: {name}: must not start with '-'")
        out.append(text)  # one item stays one item, whatever characters it holds
    return out


def placeholders(argv: Sequence[str]) -> list[str]:
    """The placeholder names of an argv, in order."""
    return [m.group(1) for item in argv if (m := PLACEHOLDER.fullmatch(item)) is not None]


def pipe_holders(inode: int) -> list[int]:
    """Processes (ours to see) that hold the pipe with this inode: a command's escaped children
    (setsid, a new process group) still count, since they keep its output open."""
    wanted = f"pipe:[{inode}]"
    me = os.getpid()
    found = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        if pid == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to see (and then not ours to kill either)
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                    found.append(pid)
                    break
            except OSError:
                continue
    return found


def _kill(proc: subprocess.Popen[bytes], inode: int) -> None:
    """End the command, its process group and whatever else holds its output pipe."""
    if proc.returncode is None:  # once reaped, the group id may no longer be ours
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pipe_holders(inode):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def command(action: ActionConfig, args: Mapping[str, Any], call: CallControl) -> tuple[str, bool]:
    """Run the fixed argv with the arguments as whole items; bounded in output and in time."""
    argv = build_argv(action.argv, args, action.allow_leading_dash)
    try:
        # No shell, no inherited environment, no stdin; a session of its own so the deadline
        # can kill everything the command started.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=dict(COMMAND_ENV), cwd="/",
                                close_fds=True, start_new_session=True)
    except OSError as exc:
        raise ActionError(f"cannot run {argv[0]}: {exc.strerror or type(exc).__name__}") from None
    assert proc.stdout is not None
    inode = os.fstat(proc.stdout.fileno()).st_ino
    call.on_stop(lambda: _kill(proc, inode))
    try:
        with proc.stdout:
            raw, cut = _read_until(proc.stdout, action.max_output, call)
        try:
            code = proc.wait(timeout=max(0.05, call.remaining()))
        except subprocess.TimeoutExpired:
            code = None
    finally:
        # Nothing a call started outlives it: leftovers of its group are ended too.
        _kill(proc, inode)
        if proc.returncode is None:
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                log.warning("command %s would not die", argv[0])
    if code is None or call.stopped:
        raise ActionError(f"timed out after {action.timeout:g} s")
    text, cut2 = _truncate(raw.decode("utf-8", "replace"), action.max_output)
    if code != 0:
        return error(f"exit code {code}", output=text, truncated=cut or cut2), False
    return ok(output=text, truncated=cut or cut2), True


def _read_until(stream: IO[bytes], limit: int, call: CallControl) -> tuple[bytes, bool]:
    """Read to EOF or the deadline, keeping the first `limit` bytes (a chatty command cannot fill
    memory, a silent one cannot hold the worker past its time)."""
    fd = stream.fileno()
    kept: list[bytes] = []
    size = 0
    cut = False
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        left = call.remaining()
        if left <= 0 or call.stopped:
            break
        if not poller.poll(min(left, 60.0) * 1000):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        room = limit - size
        if room > 0:
            kept.append(chunk[:room])
            size += min(room, len(chunk))
        if len(chunk) > max(room, 0):
            cut = True
    return b"".join(kept), cut
