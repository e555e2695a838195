"""The allow-listed local actions the agent may call, each run on a worker thread with a timeout."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

from .config import ActionConfig, FunctionConfig
from .events import FunctionFinished

if TYPE_CHECKING:  # typing only: this module must not import gpiozero at run time
    from .outputs import GpioOutputs

log = logging.getLogger(__name__)

# A misbehaving agent must not be able to pile up threads: calls beyond this are refused.
MAX_CALLS_IN_FLIGHT = 8
# close() waits at most this long in all for running actions before leaving them behind.
CLOSE_TIMEOUT = 2.0
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


def _error(message: str, **extra: Any) -> str:
    return json.dumps({"error": message, **extra}, ensure_ascii=False)


def _ok(**fields: Any) -> str:
    return json.dumps({"ok": True, **fields}, ensure_ascii=False)


def _truncate(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


class _Call:
    """One call in flight: delivers exactly one result, whichever of action or timer is first,
    or none once the agent has withdrawn it."""

    def __init__(self, call_id: str, name: str, deliver: Callable[[FunctionFinished], None]) -> None:
        self.call_id = call_id
        self.name = name
        self._deliver = deliver
        # The worker, the timeout timer and a cancel race; the lock makes the first one win.
        self._lock = threading.Lock()
        self.done = False
        self._cancelled = False
        self._on_cancel: list[Callable[[], None]] = []

    def finish(self, content: str, ok: bool, end_conversation: bool = False) -> bool:
        with self._lock:
            if self.done:
                return False
            self.done = True
        self._deliver(FunctionFinished(self.call_id, self.name, content, ok, end_conversation))
        return True

    def on_cancel(self, stop: Callable[[], None]) -> None:
        """Have `stop` end the running action if the call is withdrawn (at once if it was)."""
        with self._lock:
            if not self._cancelled:
                self._on_cancel.append(stop)
                return
        stop()

    def cancel(self) -> None:
        """The agent withdrew the call: no answer goes back, and the action is stopped."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            self.done = True  # a result that comes now is not delivered
            stops, self._on_cancel = self._on_cancel, []
        for stop in stops:
            stop()


class FunctionRunner:
    """Owns the declared client-side functions and runs their actions off the session thread."""

    def __init__(self, functions: Sequence[FunctionConfig], *,
                 on_result: Callable[[FunctionFinished], None],
                 mixer_factory: Callable[[str, str], Mixer],
                 outputs: GpioOutputs | None = None) -> None:
        self._functions = {f.name: f for f in functions}
        self._on_result = on_result
        self._mixer_factory = mixer_factory
        self._outputs = outputs
        # Guards the running workers, the calls they serve and the closed flag (run(), cancel()
        # and close() come from other threads than the workers).
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._calls: dict[str, _Call] = {}
        self._closed = False
        # A "change" reads then writes the volume; two at once must not lose one of them.
        self._volume_lock = threading.Lock()

    # --- the entry point -----------------------------------------------------------------

    def run(self, call_id: str, name: str, arguments: Mapping[str, Any],
            arguments_error: str = "") -> None:
        """Start one call and return at once; on_result gets exactly one result for it."""
        call = _Call(call_id, name, self._deliver)
        fn = self._functions.get(name)
        if fn is None:
            log.warning("function call %s: unknown function %r refused", call_id, name)
            call.finish(_error(f"unknown function: {name}"), False)
            return
        if fn.action is None:
            call.finish(_error(f"{name} is not a client-side function"), False)
            return
        if arguments_error:
            call.finish(_error(f"invalid arguments: {arguments_error}"), False)
            return
        problems = validate_arguments(fn.parameters, arguments)
        if not problems and not isinstance(arguments, Mapping):
            problems = ["arguments: must be an object"]
        if problems:
            log.info("function %s: invalid arguments: %s", name, "; ".join(problems))
            call.finish(_error("invalid arguments: " + "; ".join(problems)), False)
            return
        action = fn.action
        worker = threading.Thread(target=self._work, args=(call, action, dict(arguments)),
                                  name=f"function-{name}", daemon=True)
        with self._lock:
            if self._closed:
                refusal = "shutting down"
            elif len(self._threads) >= MAX_CALLS_IN_FLIGHT:
                refusal = "busy: too many calls in progress"
            else:
                refusal = ""
                self._threads.add(worker)
                self._calls[call_id] = call
        if refusal:
            call.finish(_error(refusal), False)
            return
        # The timer answers for an action that overruns; the action itself is also bounded
        # (socket and process timeouts) so the worker does not live on for long after.
        timer = threading.Timer(action.timeout, self._timed_out, args=(call, action.timeout))
        timer.name = f"function-{name}-timeout"
        timer.daemon = True
        timer.start()
        worker.start()
        log.info("function %s (%s) started", name, action.type)

    def _work(self, call: _Call, action: ActionConfig, args: dict[str, Any]) -> None:
        try:
            content, ok, end = self._perform(call, action, args)
        except ActionError as exc:
            content, ok, end = _error(str(exc)), False, False
        except Exception as exc:
            log.exception("function %s failed", call.name)
            content, ok, end = _error(f"failed: {exc}"), False, False
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                if self._calls.get(call.call_id) is call:
                    del self._calls[call.call_id]
        if call.finish(content, ok, end):
            log.info("function %s %s", call.name, "done" if ok else f"failed: {content}")
        else:
            log.info("function %s finished after its timeout or withdrawal; result dropped",
                     call.name)

    def cancel(self, call_id: str) -> None:
        """The agent withdrew a call: it gets no answer, and a running command is killed."""
        with self._lock:
            call = self._calls.pop(call_id, None)
        if call is not None:
            call.cancel()

    def _timed_out(self, call: _Call, timeout: float) -> None:
        if call.finish(_error(f"timed out after {timeout:g} s"), False):
            log.warning("function %s timed out after %g s", call.name, timeout)

    def _deliver(self, result: FunctionFinished) -> None:
        try:
            self._on_result(result)
        except Exception:  # the receiver only posts an event; a failure there is a bug to log
            log.exception("function %s: delivering the result failed", result.name)

    def _perform(self, call: _Call, action: ActionConfig,
                 args: dict[str, Any]) -> tuple[str, bool, bool]:
        if action.type == "volume":
            return self._volume(action, args), True, False
        if action.type == "gpio":
            return self._gpio(action, args), True, False
        if action.type == "end_conversation":
            return _ok(end_conversation=True), True, True
        if action.type == "http":
            return _http(action, args)
        if action.type == "command":
            return _command(action, args, call)
        raise ActionError(f"unsupported action {action.type}")

    # --- actions -------------------------------------------------------------------------

    def _volume(self, action: ActionConfig, args: dict[str, Any]) -> str:
        level, change = args.get("level"), args.get("change")
        if (level is None) == (change is None):
            raise ActionError("give either level (0-100) or change (-100..100)")
        value: Any = level if level is not None else change
        if not _num(value) or not math.isfinite(value):
            raise ActionError("invalid arguments: level and change must be numbers")
        with self._volume_lock:
            mixer = self._mixer_factory(action.card, action.control)
            target = value if level is not None else mixer.get_percent() + value
            new = int(round(min(max(target, action.min), action.max)))
            mixer.set_percent(new)
        log.info("volume of %s/%s set to %d%%", action.card, action.control, new)
        return _ok(volume=new)

    def _gpio(self, action: ActionConfig, args: dict[str, Any]) -> str:
        if self._outputs is None:
            raise ActionError("no GPIO outputs are configured")
        state = args.get("state", "toggle")
        wanted = {"on": True, "off": False, "toggle": None, True: True, False: False}
        if not isinstance(state, str | bool) or state not in wanted:
            raise ActionError("invalid arguments: state must be on, off or toggle")
        new = self._outputs.set(action.pin, wanted[state])
        return _ok(state="on" if new else "off")

    # --- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new calls and wait a bounded time for running ones; safe to call twice."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        deadline = threading.Event()
        timer = threading.Timer(CLOSE_TIMEOUT, deadline.set)
        timer.daemon = True
        timer.start()
        try:
            for t in threads:
                # Each join is bounded; the shared deadline keeps the total bounded too.
                while t.is_alive() and not deadline.is_set():
                    t.join(timeout=0.05)
                if t.is_alive():
                    log.warning("function thread %s still running at shutdown; left behind", t.name)
        finally:
            timer.cancel()


# --- http ---------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The URL is fixed in the config: a redirect elsewhere is an answer, not a place to go."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None


def _query_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _http(action: ActionConfig, args: dict[str, Any]) -> tuple[str, bool, bool]:
    parts = urllib.parse.urlsplit(action.url)
    body: bytes | None = None
    headers = {"User-Agent": "speakerd", **action.headers}
    if action.method == "GET":
        # Arguments only ever extend the query string; scheme, host and path stay as configured.
        extra = urllib.parse.urlencode([(k, _query_value(v)) for k, v in args.items()])
        query = "&".join(q for q in (parts.query, extra) if q)
        url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    else:
        url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
        body = json.dumps(args, ensure_ascii=False).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=body, headers=headers, method=action.method)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        # The timeout bounds the connect and every read; the call's own timer bounds the total.
        with opener.open(req, timeout=action.timeout) as resp:
            status = resp.status
            raw = resp.read(action.max_output + 1)
    except urllib.error.HTTPError as exc:
        raw = exc.read(action.max_output + 1) if exc.fp is not None else b""
        text, cut = _truncate(raw.decode("utf-8", "replace"), action.max_output)
        return _error(f"HTTP {exc.code}", body=text, truncated=cut), False, False
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise ActionError(f"timed out after {action.timeout:g} s") from None
        raise ActionError(f"request failed: {reason}") from None
    text, cut = _truncate(raw.decode("utf-8", "replace"), action.max_output)
    if len(raw) > action.max_output:
        cut = True
    result: Any = text
    if not cut:
        try:
            result = json.loads(text)  # JSON reaches the agent as JSON, not as a quoted string
        except ValueError:
            pass
    return _ok(status=status, body=result, truncated=cut), True, False


# --- command ------------------------------------------------------------------------------

def build_argv(argv: Sequence[str], args: Mapping[str, Any]) -> list[str]:
    """The command line: each argv item that is exactly `{name}` becomes that argument's text."""
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
        if isinstance(value, Mapping | list):
            raise ActionError(f"invalid arguments: {name}: must be a single value")
        text = value if isinstance(value, str) else json.dumps(value)
        if "\0" in text:
            raise ActionError(f"invalid arguments: {name}: must not contain NUL")
        out.append(text)  # one item stays one item, whatever characters it holds
    return out


def _read_bounded(stream: IO[bytes], limit: int) -> tuple[bytes, bool]:
    """Read to EOF keeping the first `limit` bytes, so a chatty command cannot fill memory."""
    kept = bytearray()
    cut = False
    while chunk := stream.read(65536):
        room = limit - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > max(room, 0):
            cut = True
    return bytes(kept), cut


def _command(action: ActionConfig, args: dict[str, Any], call: _Call) -> tuple[str, bool, bool]:
    argv = build_argv(action.argv, args)
    try:
        # No shell, no inherited environment, no stdin; a session of its own so a timeout
        # can kill everything the command started.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=dict(COMMAND_ENV), cwd="/",
                                close_fds=True, start_new_session=True)
    except OSError as exc:
        raise ActionError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    # Set when the command is over, when it overran, or when the agent withdrew the call.
    stop = threading.Event()
    timed_out = threading.Event()

    def watch() -> None:
        if not stop.wait(action.timeout):
            timed_out.set()
        if proc.returncode is None:  # already reaped: the group id may no longer be ours
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # also ends the read below at EOF
            except ProcessLookupError:
                pass

    watcher = threading.Thread(target=watch, name=f"function-{call.name}-watch", daemon=True)
    watcher.start()
    call.on_cancel(stop.set)
    try:
        assert proc.stdout is not None
        with proc.stdout:
            raw, cut = _read_bounded(proc.stdout, action.max_output)
        code = proc.wait()
    finally:
        stop.set()
    if timed_out.is_set():
        raise ActionError(f"timed out after {action.timeout:g} s")
    text, cut2 = _truncate(raw.decode("utf-8", "replace"), action.max_output)
    if code != 0:
        return _error(f"exit code {code}", output=text, truncated=cut or cut2), False, False
    return _ok(output=text, truncated=cut or cut2), True, False


# --- argument validation ------------------------------------------------------------------

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list | tuple),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}
_TYPE_WORDS = {"object": "an object", "array": "a list", "string": "a string",
               "boolean": "true or false", "null": "null", "number": "a number",
               "integer": "an integer"}


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _fmt(v: Any) -> str:
    return format(v, "g") if isinstance(v, float) else str(v)


def validate_arguments(schema: Mapping[str, Any], args: Any) -> list[str]:
    """Check arguments against a JSON-schema subset; the problems as `path: message` lines."""
    problems: list[str] = []
    try:
        _check(schema, args, "", problems)
    except RecursionError:
        problems.append("arguments: nested too deeply")
    return problems


def _check(schema: Any, value: Any, path: str, problems: list[str]) -> None:
    if not isinstance(schema, Mapping):
        return  # not a schema we understand: no constraint
    where = path or "arguments"

    def bad(message: str) -> None:
        problems.append(f"{where}: {message}")

    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind) if isinstance(kind, list) else []
    kinds = [k for k in kinds if isinstance(k, str) and k in _TYPES]
    if kinds and not any(_TYPES[k](value) for k in kinds):
        bad("must be " + " or ".join(_TYPE_WORDS[k] for k in kinds))
        return  # the other checks would only repeat the same problem
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and not any(_same(value, e) for e in enum):
        bad("must be one of " + ", ".join(json.dumps(e, default=str) for e in enum))
    lo: Any
    hi: Any
    if _num(value):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if _num(lo) and value < lo:
            bad(f"must be ≥ {_fmt(lo)}")
        if _num(hi) and value > hi:
            bad(f"must be ≤ {_fmt(hi)}")
    if isinstance(value, str):
        lo, hi = schema.get("minLength"), schema.get("maxLength")
        if _num(lo) and len(value) < lo:
            bad(f"must be at least {_fmt(lo)} characters")
        if _num(hi) and len(value) > hi:
            bad(f"must be at most {_fmt(hi)} characters")
    if isinstance(value, list | tuple):
        lo, hi = schema.get("minItems"), schema.get("maxItems")
        if _num(lo) and len(value) < lo:
            bad(f"must have at least {_fmt(lo)} items")
        if _num(hi) and len(value) > hi:
            bad(f"must have at most {_fmt(hi)} items")
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                _check(items, item, f"{path}[{i}]" if path else f"[{i}]", problems)
    if isinstance(value, Mapping):
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = schema.get("required")
        if isinstance(required, list):
            for key in required:
                if isinstance(key, str) and key not in value:
                    problems.append(f"{_join(path, key)}: is required")
        for key, item in value.items():
            if key in props:
                _check(props[key], item, _join(path, str(key)), problems)
            elif schema.get("additionalProperties") is False:
                problems.append(f"{_join(path, str(key))}: is not allowed")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, and 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    try:
        return bool(a == b)
    except Exception:
        return False
