"""Fixtures: emulator (a started local Voice Agent server with fast timings) and speech-like PCM."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from speakerd.emulator import Emulator, EmulatorOptions

TEST_KEY = "test-emulator-key"


def fast_options(**changes: object) -> EmulatorOptions:
    """Options with short timings so a whole turn takes a fraction of a second."""
    options = EmulatorOptions(api_key=TEST_KEY, idle_timeout=10.0, end_of_speech=0.3,
                              reply_latency=0.02, reply_pace=10.0, function_timeout=2.0)
    for name, value in changes.items():
        setattr(options, name, value)
    return options


def tone(seconds: float, rate: int, freq: float = 300.0, amplitude: int = 8000) -> bytes:
    """A linear16 tone burst: loud enough to count as speech for the emulator."""
    n = round(seconds * rate)
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * freq * i / rate))
                                   for i in range(n)))


def silence(seconds: float, rate: int) -> bytes:
    """Linear16 digital silence."""
    return bytes(2 * round(seconds * rate))


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A started emulator on 127.0.0.1 with fast options (key TEST_KEY); stopped at teardown."""
    emu = Emulator(fast_options()).start()
    try:
        yield emu
    finally:
        emu.stop()


# --- a plain websocket-client peer ---------------------------------------------------------

Item = dict[str, Any] | bytes


def v1_settings(in_encoding: str = "linear16", in_rate: int = 16000,
                out_encoding: str = "linear16", out_rate: int = 24000,
                **agent: Any) -> dict[str, Any]:
    """A V1 Settings message as Deepgram documents it."""
    body: dict[str, Any] = {
        "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
        "think": {"provider": {"type": "open_ai", "model": "gpt-4o-mini"},
                  "prompt": "You are a test."},
        "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
    }
    functions = agent.pop("functions", None)
    if functions is not None:
        body["think"]["functions"] = functions
    body.update(agent)
    return {"type": "Settings",
            "audio": {"input": {"encoding": in_encoding, "sample_rate": in_rate},
                      "output": {"encoding": out_encoding, "sample_rate": out_rate,
                                 "container": "none"}},
            "agent": body}


def ea_settings(in_encoding: str = "linear16", in_rate: int = 16000,
                out_encoding: str = "linear16", out_rate: int = 16000,
                functions: list[dict[str, Any]] | None = None,
                context: dict[str, Any] | None = None) -> dict[str, Any]:
    """An early-access SettingsConfiguration message."""
    think: dict[str, Any] = {"provider": {"type": "open_ai"}, "model": "gpt-4o-mini",
                             "instructions": "You are a test."}
    if functions is not None:
        think["functions"] = functions
    msg: dict[str, Any] = {
        "type": "SettingsConfiguration",
        "audio": {"input": {"encoding": in_encoding, "sample_rate": in_rate},
                  "output": {"encoding": out_encoding, "sample_rate": out_rate,
                             "container": "none"}},
        "agent": {"listen": {"model": "nova-2"}, "think": think,
                  "speak": {"model": "aura-asteria-en"}}}
    if context is not None:
        msg["context"] = context
    return msg


class AgentClient:
    """A websocket-client connection that keeps every item it read, in order."""

    def __init__(self, url: str, key: str = TEST_KEY, timeout: float = 5.0) -> None:
        self.ws = websocket.create_connection(url, header=[f"Authorization: Token {key}"],
                                              timeout=timeout)
        self.items: list[Item] = []

    def send(self, msg: dict[str, Any]) -> None:
        self.ws.send(json.dumps(msg))

    def send_audio(self, data: bytes, chunk: int = 0) -> None:
        """Send audio, in chunks of `chunk` bytes when given (one frame otherwise)."""
        step = chunk or len(data) or 1
        for i in range(0, len(data), step):
            self.ws.send_binary(data[i:i + step])

    def recv(self) -> Item:
        """The next item (JSON as a dict, audio as bytes); raises on timeout or close."""
        data = self.ws.recv()
        if data == "":
            raise ConnectionError("closed by the server")
        item: Item = data if isinstance(data, bytes) else json.loads(data)
        self.items.append(item)
        return item

    def until(self, type_: str) -> list[Item]:
        """Read until a JSON message of this type arrives; return what was read, it included."""
        got: list[Item] = []
        while True:
            item = self.recv()
            got.append(item)
            if isinstance(item, dict) and item.get("type") == type_:
                return got

    def start(self, settings: dict[str, Any]) -> list[Item]:
        """Welcome, settings, SettingsApplied; returns the items read."""
        got = self.until("Welcome")
        self.send(settings)
        return got + self.until("SettingsApplied")

    def close_status(self) -> bytes:
        """Read up to the server's close frame, answer it and hang up; return its payload
        (b'' = no status, which a client reports as 1005)."""
        while True:
            opcode, data = self.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                # websocket-client answers the close but keeps TCP open until shutdown().
                self.ws.shutdown()
                return data
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self.items.append(json.loads(data))
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                self.items.append(data)

    def close(self) -> None:
        """Close politely if still open, then release the socket."""
        try:
            if self.ws.connected:
                self.ws.close(timeout=1)
        finally:
            self.ws.shutdown()


def types_of(items: list[Item]) -> list[str]:
    """Message types in order, with "audio" for each binary frame."""
    return ["audio" if isinstance(i, bytes) else str(i.get("type")) for i in items]


def audio_of(items: list[Item]) -> bytes:
    """All binary frames joined."""
    return b"".join(i for i in items if isinstance(i, bytes))
