"""The local functions: each action and refusal, on mock pins, an HTTP server, real processes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from gpiozero.pins.mock import MockFactory

from speakerd import functions
from speakerd.config import ActionConfig, EndpointConfig, FunctionConfig
from speakerd.events import FunctionFinished
from speakerd.functions import FunctionRunner
from speakerd.outputs import GpioOutputs
from tests.support.alsa import wait_until

WAIT = 10.0  # generous upper bound for every event wait


# --- helpers -------------------------------------------------------------------------------

class Results:
    """Collects results as the session would receive them."""

    def __init__(self) -> None:
        self.items: list[FunctionFinished] = []
        self.threads: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, result: FunctionFinished) -> None:
        with self.cond:
            self.items.append(result)
            self.threads.append(threading.current_thread().name)
            self.cond.notify_all()

    def wait(self, n: int = 1) -> list[FunctionFinished]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout=WAIT)
            return list(self.items)

    def one(self) -> tuple[FunctionFinished, dict[str, Any]]:
        (result,) = self.wait(1)
        return result, json.loads(result.content)


class FakeMixer:
    """A recording mixer (the real one is audio.AlsaMixer); may block or fail on demand."""

    def __init__(self, percent: int = 50) -> None:
        self.percent = percent
        self.opened: list[tuple[str, str]] = []
        self.sets: list[tuple[int, str]] = []
        self.block: threading.Event | None = None
        self.done = threading.Event()
        self.fail: Exception | None = None

    def factory(self, card: str, control: str) -> FakeMixer:
        self.opened.append((card, control))
        if self.fail is not None:
            raise self.fail
        return self

    def get_percent(self) -> int:
        return self.percent

    def set_percent(self, p: int) -> None:
        if self.block is not None:
            self.block.wait(WAIT)  # released by the test once it has seen the timeout
        self.percent = p
        self.sets.append((p, threading.current_thread().name))
        self.done.set()


def fn(name: str, action: ActionConfig | None = None, **params: Any) -> FunctionConfig:
    schema = {"type": "object", "properties": params, "additionalProperties": False}
    return FunctionConfig(name=name, description=name, parameters=schema, action=action)


VOLUME = fn("set_volume", ActionConfig(type="volume", card="hw:CARD=x", control="Speaker",
                                       min=10, max=80),
            level={"type": "integer", "minimum": 0, "maximum": 100},
            change={"type": "integer", "minimum": -100, "maximum": 100})


@pytest.fixture
def results() -> Results:
    return Results()


@pytest.fixture
def mixer() -> FakeMixer:
    return FakeMixer()


@pytest.fixture
def make_runner(results: Results, mixer: FakeMixer) -> Iterator[Callable[..., FunctionRunner]]:
    made: list[FunctionRunner] = []

    def make(*fns: FunctionConfig, outputs: GpioOutputs | None = None) -> FunctionRunner:
        r = FunctionRunner(fns, on_result=results, mixer_factory=mixer.factory, outputs=outputs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


# --- volume --------------------------------------------------------------------------------

def test_volume_level_is_set_on_a_worker_thread(make_runner: Callable[..., FunctionRunner],
                                                results: Results, mixer: FakeMixer) -> None:
    """A level goes to the configured card and control, off the calling thread."""
    make_runner(VOLUME).run("c1", "set_volume", {"level": 40})
    result, content = results.one()
    assert result == FunctionFinished("c1", "set_volume", result.content, True)
    assert content == {"ok": True, "volume": 40}
    assert mixer.opened == [("hw:CARD=x", "Speaker")]
    assert mixer.sets[0][0] == 40
    assert mixer.sets[0][1] != threading.current_thread().name
    assert results.threads[0] != threading.current_thread().name


@pytest.mark.parametrize("args, start, expected", [
    ({"level": 95}, 50, 80),        # clamped to action.max
    ({"level": 0}, 50, 10),         # clamped to action.min
    ({"change": -30}, 50, 20),
    ({"change": 50}, 50, 80),
    ({"change": -100}, 30, 10),
])
def test_volume_is_clamped_to_the_action_range(make_runner: Callable[..., FunctionRunner],
                                               results: Results, mixer: FakeMixer,
                                               args: dict[str, int], start: int,
                                               expected: int) -> None:
    """Levels and relative changes end inside action.min..max."""
    mixer.percent = start
    make_runner(VOLUME).run("c", "set_volume", args)
    _, content = results.one()
    assert content == {"ok": True, "volume": expected}
    assert mixer.percent == expected


@pytest.mark.parametrize("args", [{}, {"level": 10, "change": 5}])
def test_volume_needs_exactly_one_of_level_or_change(make_runner: Callable[..., FunctionRunner],
                                                     results: Results, mixer: FakeMixer,
                                                     args: dict[str, int]) -> None:
    """Neither or both arguments is an error and the mixer is not touched."""
    make_runner(VOLUME).run("c", "set_volume", args)
    result, content = results.one()
    assert not result.ok and "level" in content["error"]
    assert mixer.sets == []


def test_invalid_arguments_are_refused_listing_the_problems(
        make_runner: Callable[..., FunctionRunner], results: Results, mixer: FakeMixer) -> None:
    """Out-of-range and undeclared arguments give one error naming each, and nothing runs."""
    make_runner(VOLUME).run("c", "set_volume", {"level": 150, "mute": True})
    result, content = results.one()
    assert not result.ok
    assert content == {"error": "invalid arguments: level: must be ≤ 100; mute: is not allowed"}
    assert mixer.opened == []


def test_arguments_that_are_not_an_object_are_refused(
        make_runner: Callable[..., FunctionRunner], results: Results, mixer: FakeMixer) -> None:
    """Even under a schema without a type, a list or a string is not an argument object."""
    loose = FunctionConfig(name="loose", parameters={},
                           action=ActionConfig(type="volume"))
    make_runner(loose).run("c", "loose", ["level", 5])  # type: ignore[arg-type]
    result, content = results.one()
    assert content == {"error": "invalid arguments: arguments: must be an object"}
    assert mixer.opened == []


def test_unparseable_arguments_are_refused(make_runner: Callable[..., FunctionRunner],
                                           results: Results, mixer: FakeMixer) -> None:
    """When the arguments were not valid JSON the decoder's message is passed back."""
    make_runner(VOLUME).run("c", "set_volume", {}, arguments_error="Expecting value at 1:1")
    result, content = results.one()
    assert content == {"error": "invalid arguments: Expecting value at 1:1"}
    assert mixer.opened == []


def test_unknown_and_server_side_functions_are_not_run(make_runner: Callable[..., FunctionRunner],
                                                      results: Results, mixer: FakeMixer) -> None:
    """An undeclared name and an endpoint function each get an error; nothing runs."""
    server_side = FunctionConfig(name="weather", parameters={"type": "object"},
                                 endpoint=EndpointConfig(url="https://example.invalid/w"))
    runner = make_runner(VOLUME, server_side)
    runner.run("a", "rm_rf", {"level": 40})
    runner.run("b", "weather", {})
    items = results.wait(2)
    assert [(r.call_id, r.ok) for r in items] == [("a", False), ("b", False)]
    assert json.loads(items[0].content) == {"error": "unknown function: rm_rf"}
    assert json.loads(items[1].content) == {"error": "weather is not a client-side function"}
    assert mixer.opened == []


def test_failing_action_gives_an_error(make_runner: Callable[..., FunctionRunner],
                                       results: Results, mixer: FakeMixer) -> None:
    """An unexpected exception inside an action becomes a failure whose text is not sent (it may
    hold a secret, such as a header value)."""
    mixer.fail = RuntimeError("Token sekrit-header-value")
    make_runner(VOLUME).run("c", "set_volume", {"level": 40})
    result, content = results.one()
    assert not result.ok
    assert content == {"error": "failed: internal error (RuntimeError)"}


def test_slow_action_times_out_with_exactly_one_result(make_runner: Callable[..., FunctionRunner],
                                                      results: Results, mixer: FakeMixer) -> None:
    """An action past its timeout is answered with an error; its late outcome is dropped."""
    slow = fn("set_volume", ActionConfig(type="volume", timeout=0.2),
              level={"type": "integer"})
    mixer.block = threading.Event()
    runner = make_runner(slow)
    runner.run("c", "set_volume", {"level": 30})
    result, content = results.one()
    assert content == {"error": "timed out after 0.2 s"}
    mixer.block.set()
    assert mixer.done.wait(WAIT)
    runner.close()  # joins the worker, so its (dropped) result would have arrived by now
    assert len(results.items) == 1


def test_calls_beyond_the_limit_and_after_close_are_refused(
        make_runner: Callable[..., FunctionRunner], results: Results, mixer: FakeMixer) -> None:
    """Too many calls in flight get "busy"; calls after close get "shutting down"."""
    mixer.block = threading.Event()
    runner = make_runner(fn("set_volume", ActionConfig(type="volume", timeout=30),
                            level={"type": "integer"}))
    for i in range(functions.MAX_CALLS_IN_FLIGHT + 1):
        runner.run(f"c{i}", "set_volume", {"level": i})
    (busy,) = results.wait(1)
    assert busy.call_id == f"c{functions.MAX_CALLS_IN_FLIGHT}"
    assert json.loads(busy.content)["error"].startswith("busy")
    mixer.block.set()
    results.wait(functions.MAX_CALLS_IN_FLIGHT + 1)
    runner.close()
    runner.run("late", "set_volume", {"level": 1})
    late = results.wait(functions.MAX_CALLS_IN_FLIGHT + 2)[-1]
    assert (late.call_id, json.loads(late.content)) == ("late", {"error": "shutting down"})


# --- gpio and end_conversation -----------------------------------------------------------

def test_gpio_action_switches_a_real_mock_pin(mock_pins: MockFactory, results: Results,
                                              make_runner: Callable[..., FunctionRunner]) -> None:
    """on, off and toggle drive the configured output pin, honouring active_high."""
    # min_interval 0: this test is about the levels, the rate limit has tests of its own.
    lamp = fn("lamp", ActionConfig(type="gpio", pin="GPIO20", min_interval=0.0),
              state={"type": "string", "enum": ["on", "off", "toggle"]})
    relay = fn("relay", ActionConfig(type="gpio", pin="GPIO21", active_high=False,
                                     min_interval=0.0),
               state={"type": "string", "enum": ["on", "off", "toggle"]})
    outputs = GpioOutputs([(f.action.pin, f.action.active_high) for f in (lamp, relay)
                           if f.action is not None])
    try:
        assert outputs.pins == ("GPIO20", "GPIO21")
        runner = make_runner(lamp, relay, outputs=outputs)
        lamp_pin, relay_pin = mock_pins.pin("GPIO20"), mock_pins.pin("GPIO21")
        assert (lamp_pin.state, relay_pin.state) == (0, 1)  # both off at start
        steps = [("lamp", "on", lamp_pin, 1), ("lamp", "toggle", lamp_pin, 0),
                 ("lamp", "toggle", lamp_pin, 1), ("lamp", "off", lamp_pin, 0),
                 ("relay", "on", relay_pin, 0)]
        for i, (name, state, pin, level) in enumerate(steps):
            runner.run(f"c{i}", name, {"state": state})
            result = results.wait(i + 1)[-1]
            assert result.ok, result.content
            assert pin.state == level
            assert json.loads(result.content) == {"ok": True, "state": "on" if level ^ (
                name == "relay") else "off"}
        runner.run("bad", "lamp", {"state": "blink"})
        bad = results.wait(len(steps) + 1)[-1]
        assert "must be one of" in json.loads(bad.content)["error"]
    finally:
        outputs.close()


def test_gpio_action_without_outputs_is_an_error(make_runner: Callable[..., FunctionRunner],
                                                 results: Results) -> None:
    """A gpio function with no GpioOutputs wired in reports it instead of failing silently."""
    make_runner(fn("lamp", ActionConfig(type="gpio", pin="GPIO20"),
                   state={"type": "string"})).run("c", "lamp", {"state": "on"})
    result, content = results.one()
    assert content == {"error": "no GPIO outputs are configured"}


def test_outputs_refuse_pins_that_were_not_configured(mock_pins: MockFactory) -> None:
    """GpioOutputs switches only its own pins."""
    outputs = GpioOutputs([("GPIO20", True)])
    try:
        with pytest.raises(ValueError, match="GPIO4 is not a configured output"):
            outputs.set("GPIO4", True)
        assert outputs.set("GPIO20", None) is True
        assert outputs.get("GPIO20") is True
    finally:
        outputs.close()


def test_end_conversation_asks_the_session_to_hang_up(make_runner: Callable[..., FunctionRunner],
                                                      results: Results) -> None:
    """end_conversation succeeds and marks the result so the session ends after the goodbye."""
    make_runner(fn("goodbye", ActionConfig(type="end_conversation"))).run("c", "goodbye", {})
    result, content = results.one()
    assert result.ok and result.end_conversation
    assert content == {"ok": True, "end_conversation": True}


# --- http ----------------------------------------------------------------------------------

class Recorded:
    """What the local HTTP server saw."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()  # lets a deliberately slow request finish at teardown


@pytest.fixture
def http_server() -> Iterator[tuple[str, Recorded]]:
    """A real HTTP server on 127.0.0.1 that records requests and answers by path."""
    seen = Recorded()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.requests.append({"method": self.command, "path": self.path, "body": body,
                                  "headers": dict(self.headers)})
            route = urlsplit(self.path).path
            if route == "/slow":
                seen.release.wait(WAIT)
                code, payload = 200, b"late"
            elif route == "/big":
                code, payload = 200, b"x" * 5000
            elif route == "/fail":
                code, payload = 500, b"backend down"
            elif route == "/moved":
                self.send_response(302)
                self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            else:
                code, payload = 200, json.dumps({"lights": "on"}).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="http-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        seen.release.set()
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


HOSTILE = {"room": "../../admin?x=1#frag", "who": "@evil.example:81/", "n": 3, "on": True}
HOSTILE_SCHEMA = {"room": {"type": "string"}, "who": {"type": "string"},
                  "n": {"type": "integer"}, "on": {"type": "boolean"}}


def test_http_post_sends_arguments_only_as_json_body(
        http_server: tuple[str, Recorded], make_runner: Callable[..., FunctionRunner],
        results: Results) -> None:
    """POST goes to the fixed URL with the configured headers; the arguments are the JSON body."""
    base, seen = http_server
    action = ActionConfig(type="http", url=f"{base}/hook?token=abc", method="POST",
                          headers={"X-Home": "yes"})
    make_runner(fn("lights", action, **HOSTILE_SCHEMA)).run("c", "lights", HOSTILE)
    result, content = results.one()
    assert result.ok
    assert content == {"ok": True, "status": 200, "body": {"lights": "on"}, "truncated": False}
    (req,) = seen.requests
    assert (req["method"], req["path"]) == ("POST", "/hook?token=abc")
    assert json.loads(req["body"]) == HOSTILE
    assert req["headers"]["X-Home"] == "yes"
    assert req["headers"]["Content-Type"] == "application/json"


def test_http_get_sends_arguments_only_as_query_parameters(
        http_server: tuple[str, Recorded], make_runner: Callable[..., FunctionRunner],
        results: Results) -> None:
    """GET keeps the path and host; arguments are appended, encoded, to the query string."""
    base, seen = http_server
    action = ActionConfig(type="http", url=f"{base}/hook?token=abc", method="GET")
    make_runner(fn("lights", action, **HOSTILE_SCHEMA)).run("c", "lights", HOSTILE)
    result, _ = results.one()
    assert result.ok
    (req,) = seen.requests
    parts = urlsplit(req["path"])
    assert parts.path == "/hook"
    assert parse_qs(parts.query) == {"token": ["abc"], "room": [HOSTILE["room"]],
                                     "who": [HOSTILE["who"]], "n": ["3"], "on": ["true"]}
    assert req["body"] == b""


def test_http_put_is_supported(http_server: tuple[str, Recorded],
                               make_runner: Callable[..., FunctionRunner],
                               results: Results) -> None:
    """PUT sends the JSON body like POST."""
    base, seen = http_server
    action = ActionConfig(type="http", url=f"{base}/state", method="PUT")
    make_runner(fn("put", action, level={"type": "integer"})).run("c", "put", {"level": 3})
    assert results.one()[0].ok
    assert (seen.requests[0]["method"], json.loads(seen.requests[0]["body"])) == ("PUT",
                                                                                  {"level": 3})


def test_http_response_is_truncated(http_server: tuple[str, Recorded],
                                    make_runner: Callable[..., FunctionRunner],
                                    results: Results) -> None:
    """A long answer is cut to max_output and says so."""
    base, _ = http_server
    action = ActionConfig(type="http", url=f"{base}/big", method="GET", max_output=100)
    make_runner(fn("big", action)).run("c", "big", {})
    result, content = results.one()
    assert result.ok
    assert content == {"ok": True, "status": 200, "body": "x" * 100, "truncated": True}


def test_http_errors_redirects_and_refusals(http_server: tuple[str, Recorded],
                                            make_runner: Callable[..., FunctionRunner],
                                            results: Results) -> None:
    """A 500, a redirect (never followed) and a closed port each give an error result."""
    base, seen = http_server
    with socket_closed_port() as closed:
        runner = make_runner(
            fn("fail", ActionConfig(type="http", url=f"{base}/fail")),
            fn("moved", ActionConfig(type="http", url=f"{base}/moved", method="GET")),
            fn("closed", ActionConfig(type="http", url=f"http://127.0.0.1:{closed}/x")))
        runner.run("a", "fail", {})
        runner.run("b", "moved", {})
        runner.run("c", "closed", {})
        items = {r.call_id: json.loads(r.content) for r in results.wait(3)}
    assert items["a"] == {"error": "HTTP 500", "body": "backend down", "truncated": False}
    assert items["b"]["error"] == "HTTP 302"
    assert items["c"]["error"].startswith("request failed")
    assert "/elsewhere" not in [r["path"] for r in seen.requests]
    assert all(not r.ok for r in results.items)


def test_http_timeout(http_server: tuple[str, Recorded], make_runner: Callable[..., FunctionRunner],
                      results: Results) -> None:
    """A server that does not answer in time gives a timeout error."""
    base, _ = http_server
    make_runner(fn("slow", ActionConfig(type="http", url=f"{base}/slow", timeout=0.3))).run(
        "c", "slow", {})
    result, content = results.one()
    assert content == {"error": "timed out after 0.3 s"}


class socket_closed_port:
    """A loopback port with nothing listening (bound, then closed)."""

    def __enter__(self) -> int:
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        s.close()
        return port

    def __exit__(self, *exc: object) -> None:
        pass


# --- command -------------------------------------------------------------------------------

SHELLISH = ["; rm -rf / ;", "$(id)", "`id`", "a\nb", "--version", "-n", "'\"\\", "*", "{text}",
            "x > /tmp/out", "| cat /etc/passwd", "&& reboot", " spaced  out "]


@pytest.mark.parametrize("text", SHELLISH)
def test_command_arguments_stay_inert_text(tmp_path: Any,
                                           make_runner: Callable[..., FunctionRunner],
                                           results: Results, text: str) -> None:
    """Shell metacharacters, newlines and (where allowed) option-like values reach the command
    as one item."""
    marker = tmp_path / "ran"
    hostile = text.replace("/tmp/out", str(marker))
    say = fn("say", ActionConfig(type="command", argv=("printf", "%s|", "{text}", "--n={text}"),
                                 allow_leading_dash=("text",)),
             text={"type": "string"})
    make_runner(say).run("c", "say", {"text": hostile})
    result, content = results.one()
    assert result.ok, content
    assert content == {"ok": True, "output": f"{hostile}|--n={{text}}|", "truncated": False}
    assert not marker.exists()


@pytest.mark.parametrize("args, message", [
    ({}, "invalid arguments: text: is required by the command"),
    ({"text": ["a", "b"]}, "invalid arguments: text: must be a single value"),
    ({"text": "a\0b"}, "invalid arguments: text: must not contain NUL"),
])
def test_command_refuses_unusable_arguments(tmp_path: Any,
                                            make_runner: Callable[..., FunctionRunner],
                                            results: Results, args: dict[str, Any],
                                            message: str) -> None:
    """A missing, non-scalar or NUL-carrying value is an error and the command does not run."""
    marker = tmp_path / "ran"
    cmd = fn("touch", ActionConfig(type="command", argv=("touch", str(marker), "{text}")),
             text={})
    make_runner(cmd).run("c", "touch", args)
    result, content = results.one()
    assert content == {"error": message}
    assert not marker.exists()


def test_command_environment_is_minimal(make_runner: Callable[..., FunctionRunner],
                                        results: Results, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command sees only PATH and the locale: never the API key or the caller's environment."""
    monkeypatch.setenv("DEEPGRAM_API_KEY", "secret-key")
    make_runner(fn("env", ActionConfig(type="command", argv=("env",)))).run("c", "env", {})
    _, content = results.one()
    names = sorted(line.split("=", 1)[0] for line in content["output"].splitlines())
    assert names == ["LANG", "LC_ALL", "PATH"]
    assert "secret-key" not in content["output"]


def test_command_output_is_truncated(make_runner: Callable[..., FunctionRunner],
                                     results: Results) -> None:
    """Output past max_output is cut and flagged, however much the command writes."""
    cmd = fn("yes", ActionConfig(type="command", argv=("sh", "-c", "yes | head -c 200000"),
                                 max_output=50))
    make_runner(cmd).run("c", "yes", {})
    result, content = results.one()
    assert result.ok
    assert content == {"ok": True, "output": "y\n" * 25, "truncated": True}


def test_command_failures_are_reported(make_runner: Callable[..., FunctionRunner],
                                       results: Results) -> None:
    """A non-zero exit carries its output; a missing program cannot run."""
    runner = make_runner(
        fn("bad", ActionConfig(type="command", argv=("sh", "-c", "echo nope; exit 3"))),
        fn("gone", ActionConfig(type="command", argv=("/nonexistent/speakerd-tool",))))
    runner.run("a", "bad", {})
    runner.run("b", "gone", {})
    items = {r.call_id: (r.ok, json.loads(r.content)) for r in results.wait(2)}
    assert items["a"] == (False, {"error": "exit code 3", "output": "nope\n", "truncated": False})
    assert items["b"][0] is False
    assert items["b"][1]["error"].startswith("cannot run /nonexistent/speakerd-tool")


def test_command_timeout_kills_the_process_group(tmp_path: Any,
                                                 make_runner: Callable[..., FunctionRunner],
                                                 results: Results) -> None:
    """A command past its timeout is answered with an error and it and its children are killed."""
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pids}.tmp; echo $$ >> {pids}.tmp; mv {pids}.tmp {pids}; wait"
    cmd = fn("hang", ActionConfig(type="command", argv=("sh", "-c", script), timeout=0.5))
    make_runner(cmd).run("c", "hang", {})
    result, content = results.one()
    assert content == {"error": "timed out after 0.5 s"}
    assert pids.exists()
    for pid in (int(p) for p in pids.read_text().split()):
        assert wait_until(lambda pid=pid: gone(pid), WAIT), pid


def test_a_withdrawn_command_is_killed_and_never_answered(
        tmp_path: Any, make_runner: Callable[..., FunctionRunner], results: Results) -> None:
    """cancel() kills the command and its children at once; no result is delivered for it."""
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pids}.tmp; echo $$ >> {pids}.tmp; mv {pids}.tmp {pids}; wait"
    cmd = fn("hang", ActionConfig(type="command", argv=("sh", "-c", script), timeout=30))
    runner = make_runner(cmd)
    runner.run("c", "hang", {})
    assert wait_until(pids.exists, WAIT)
    runner.cancel("c")
    for pid in (int(p) for p in pids.read_text().split()):
        assert wait_until(lambda pid=pid: gone(pid), WAIT), pid
    runner.close()  # waits for the worker: whatever it was going to deliver, it has by now
    assert results.items == []


def gone(pid: int) -> bool:
    """Whether a process no longer exists (or is a zombie awaiting its parent's reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
