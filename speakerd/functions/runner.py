"""The bounded runner: each call the agent makes is checked, counted against the limits, run on a
worker thread and answered exactly once by its deadline, or refused as busy."""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..config import ActionConfig, FunctionConfig
from ..events import FunctionFinished
from ..textsafe import shown
from . import actions
from .actions import ActionError, Mixer, error, ok
from .arguments import validate_arguments

if TYPE_CHECKING:  # typing only: this module must not import gpiozero at run time
    from ..outputs import GpioOutputs

log = logging.getLogger(__name__)

# Worker threads in all, whatever arrives: a call beyond them is answered busy. A worker that
# overruns its deadline keeps its slot until its thread really ends, so this bounds threads.
MAX_CALLS_IN_FLIGHT = 8
# One FunctionCallRequest may ask for several calls; past this many the rest are answered busy.
MAX_CALLS_PER_REQUEST = 8
# Calls started within any RATE_WINDOW seconds; a prompt-injected loop gets "busy" past it.
MAX_CALLS_PER_MINUTE = 30
RATE_WINDOW = 60.0
# close() waits at most this long in all for running actions before leaving them behind.
CLOSE_TIMEOUT = 2.0


class _Call:
    """One call in flight: delivers exactly one result, whichever of action or deadline is
    first, or none once the agent has withdrawn it; its stop hooks end the action's work."""

    def __init__(self, call_id: str, name: str, started: float, timeout: float,
                 deliver: Callable[[FunctionFinished], None], clock: Callable[[], float]) -> None:
        self.call_id = call_id
        self.name = name
        self.timeout = timeout
        self.deadline = started + timeout
        self._deliver = deliver
        self._clock = clock
        # The worker, the deadline keeper and a cancel race; the lock makes the first one win.
        self._lock = threading.Lock()
        self.done = False
        self._stopped = False
        self._hooks: list[Callable[[], None]] = []

    def remaining(self) -> float:
        return self.deadline - self._clock()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def finish(self, content: str, ok: bool, end_conversation: bool = False) -> bool:
        with self._lock:
            if self.done:
                return False
            self.done = True
        self._deliver(FunctionFinished(self.call_id, self.name, content, ok, end_conversation))
        return True

    def on_stop(self, stop: Callable[[], None]) -> None:
        """Have `stop` end the running action at the deadline or a withdrawal (now if past)."""
        with self._lock:
            if not self._stopped:
                self._hooks.append(stop)
                return
        stop()

    def stop(self) -> None:
        """Run the stop hooks once (the deadline came, or the call was withdrawn)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception:  # noqa: BLE001 - one hook failing must not keep the others from running
                log.exception("function %s: stopping it failed", shown(self.name))

    def cancel(self) -> None:
        """The agent withdrew the call: no answer goes back, and the action is stopped."""
        with self._lock:
            self.done = True  # a result that comes now is not delivered
        self.stop()


class _Deadlines:
    """One thread for every call's deadline (a timer per call would be a thread per call)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        # Guards the heap and the closed flag; notified when an earlier deadline arrives.
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Call]] = []
        self._seq = itertools.count()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, call: _Call) -> None:
        """Watch a call; raises RuntimeError if the keeper thread cannot be started."""
        with self._cond:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="function-deadlines", daemon=True)
                thread.start()  # may raise: the caller answers busy
                self._thread = thread
            heapq.heappush(self._heap, (call.deadline, next(self._seq), call))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > self._clock()):
                    # Woken by add() for an earlier deadline, by close(), or by the time itself.
                    wait = self._heap[0][0] - self._clock() if self._heap else None
                    self._cond.wait(wait)
                if self._closed:
                    return
                _, _, call = heapq.heappop(self._heap)
            if call.finish(error(f"timed out after {call.timeout:g} s"), False):
                log.warning("function %s timed out", shown(call.name))
            call.stop()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()


class FunctionRunner:
    """Owns the declared client-side functions and runs their actions off the session thread."""

    def __init__(self, functions: Sequence[FunctionConfig], *,
                 on_result: Callable[[FunctionFinished], None],
                 mixer_factory: Callable[[str, str], Mixer],
                 outputs: GpioOutputs | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 start_thread: Callable[[threading.Thread], None] = threading.Thread.start) -> None:
        self._functions = {f.name: f for f in functions}
        self._on_result = on_result
        self._mixer_factory = mixer_factory
        self._outputs = outputs
        self._clock = clock
        self._start_thread = start_thread  # a seam: a test makes thread creation fail
        # Guards everything below (run(), cancel() and close() come from other threads than the
        # workers, which discard themselves when they end).
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._calls: dict[str, _Call] = {}
        self._closed = False
        self._started: collections.deque[float] = collections.deque()  # start times, one window
        self._per_request: dict[object, int] = {}
        self._pin_last: dict[str, float] = {}          # when each gpio pin was last switched
        self._pin_request: dict[str, object] = {}      # ...and in which request
        self._volume_lock = threading.Lock()
        self._deadlines = _Deadlines(clock)

    # --- the entry point -----------------------------------------------------------------

    def run(self, call_id: str, name: str, arguments: Mapping[str, Any],
            arguments_error: str = "", request: object = None) -> None:
        """Start one call and return at once; on_result gets exactly one result for it.

        `request` groups the calls of one FunctionCallRequest (None: each call alone).
        """
        fn = self._functions.get(name)
        action = fn.action if fn is not None else None
        timeout = action.timeout if action is not None else 0.0
        call = _Call(call_id, name, self._clock(), timeout, self._deliver, self._clock)
        refusal = self._admit(call, fn, arguments, arguments_error, request)
        if refusal:
            call.finish(error(refusal), False)
            return
        assert action is not None
        worker = threading.Thread(target=self._work, args=(call, action, dict(arguments)),
                                  name=f"function-{name}", daemon=True)
        with self._lock:
            self._threads.add(worker)
            self._calls[call_id] = call
        try:
            self._deadlines.add(call)
            self._start_thread(worker)
        except RuntimeError as exc:  # no thread to be had (address space, TasksMax): say so
            log.warning("function %s refused: cannot start a thread (%s)", shown(name),
                        type(exc).__name__)
            with self._lock:
                self._threads.discard(worker)
                self._calls.pop(call_id, None)
            call.finish(error("busy: cannot start the call now"), False)
            call.stop()
            return
        log.info("function %s (%s) started", shown(name), action.type)

    def _admit(self, call: _Call, fn: FunctionConfig | None, arguments: Mapping[str, Any],
               arguments_error: str, request: object) -> str:
        """Why the call is refused ("" when it may run); counts it against the limits."""
        name = call.name
        with self._lock:
            if request is not None:
                if request not in self._per_request:
                    self._per_request = {request: 0}  # only the newest request is counted
                self._per_request[request] += 1
                if self._per_request[request] > MAX_CALLS_PER_REQUEST:
                    return f"busy: at most {MAX_CALLS_PER_REQUEST} calls in one request"
        if fn is None:
            log.warning("function call %s: unknown function %s refused", shown(call.call_id),
                        shown(name))
            return f"unknown function: {name[:64]}"
        if fn.action is None:
            return f"{name} is not a client-side function"
        if arguments_error:
            return f"invalid arguments: {arguments_error}"
        problems = validate_arguments(fn.parameters, arguments)
        if problems:
            log.info("function %s: invalid arguments: %s", name, shown("; ".join(problems), 300))
            return "invalid arguments: " + "; ".join(problems)[:1000]
        now = self._clock()
        with self._lock:
            if self._closed:
                return "shutting down"
            if len(self._threads) >= MAX_CALLS_IN_FLIGHT:
                return "busy: too many calls in progress"
            while self._started and now - self._started[0] >= RATE_WINDOW:
                self._started.popleft()
            if len(self._started) >= MAX_CALLS_PER_MINUTE:
                return f"busy: at most {MAX_CALLS_PER_MINUTE} calls a minute"
            if fn.action.type == "gpio":
                refusal = self._pin_refusal(fn.action, request, now)
                if refusal:
                    return refusal
            self._started.append(now)
        return ""

    def _pin_refusal(self, action: ActionConfig, request: object, now: float) -> str:
        """Under the lock: an output pin switches at most once a request and once an interval."""
        pin = action.pin
        if request is not None and self._pin_request.get(pin) == request:
            return f"busy: {pin} was switched already in this request"
        last = self._pin_last.get(pin)
        if last is not None and now - last < action.min_interval:
            return f"busy: {pin} switches at most once every {action.min_interval:g} s"
        self._pin_last[pin] = now
        self._pin_request[pin] = request
        return ""

    def _work(self, call: _Call, action: ActionConfig, args: dict[str, Any]) -> None:
        try:
            content, ok_, end = self._perform(call, action, args)
        except ActionError as exc:
            content, ok_, end = error(str(exc)), False, False
        except Exception as exc:  # noqa: BLE001 - its text may hold secrets (a header): not sent
            log.error("function %s failed: %s", shown(call.name), type(exc).__name__)
            content, ok_, end = error(f"failed: internal error ({type(exc).__name__})"), False, False
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                if self._calls.get(call.call_id) is call:
                    del self._calls[call.call_id]
        if call.finish(content, ok_, end):
            log.info("function %s %s", shown(call.name), "done" if ok_ else
                     f"failed: {shown(content, 200)}")
        else:
            log.info("function %s finished after its deadline or withdrawal; result dropped",
                     shown(call.name))

    def cancel(self, call_id: str) -> None:
        """The agent withdrew a call: it gets no answer, and a running command is killed."""
        with self._lock:
            call = self._calls.pop(call_id, None)
        if call is not None:
            call.cancel()

    def _deliver(self, result: FunctionFinished) -> None:
        try:
            self._on_result(result)
        except Exception:  # the receiver only posts an event; a failure there is a bug to log
            log.exception("function %s: delivering the result failed", shown(result.name))

    def _perform(self, call: _Call, action: ActionConfig,
                 args: dict[str, Any]) -> tuple[str, bool, bool]:
        if action.type == "volume":
            return actions.volume(action, args, self._mixer_factory, self._volume_lock), True, False
        if action.type == "gpio":
            return actions.gpio(action, args, self._outputs), True, False
        if action.type == "end_conversation":
            return ok(end_conversation=True), True, True
        if action.type == "http":
            return (*actions.http_call(action, args, call), False)
        if action.type == "command":
            return (*actions.command(action, args, call), False)
        raise ActionError(f"unsupported action {action.type}")

    # --- what tests and the bench read ---------------------------------------------------

    def in_flight(self) -> int:
        """Worker threads alive now."""
        with self._lock:
            return len(self._threads)

    # --- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new calls, stop running ones and wait a bounded time; safe to call twice."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            calls = list(self._calls.values())
        for call in calls:
            call.stop()  # the daemon is going: their work ends now
        self._deadlines.close()
        deadline = time.monotonic() + CLOSE_TIMEOUT
        for t in threads:
            # Each join is bounded; the shared deadline keeps the total bounded too.
            t.join(timeout=max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("function thread %s still running at shutdown; left behind", t.name)
