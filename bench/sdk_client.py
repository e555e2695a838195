"""Deepgram's early-access SDK agent client alone in its own process, for the side-by-side CPU row.

Runs in the SDK's own venv (bench/sdk.py makes it), never in speakerd's: the SDK and PyAudio are
not speakerd dependencies. The client is set up as the SDK's getting-started guide does: the
agent websocket client with the SDK's own Microphone and Speaker (`microphone_record`,
`speaker_playback`), KeepAlive on, a SettingsConfiguration message from its options classes.
PortAudio opens ALSA's default device; the caller points it at the bench's sound server.

Usage: python bench/sdk_client.py URL KEY OUTPUT_RATE
stdin lines: "threads" (prints {native id: name}), "quit". Prints "ready" once started.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from deepgram import DeepgramClientOptions  # type: ignore[import-not-found]
from deepgram.clients.agent import (  # type: ignore[import-not-found]
    AgentWebSocketClient,
    AgentWebSocketEvents,
    SettingsConfigurationOptions,
)


def on_error(_client: Any, error: Any = None, **_kw: Any) -> None:
    print(f"sdk error: {error}", file=sys.stderr, flush=True)


def main() -> int:
    url, key, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
    config = DeepgramClientOptions(api_key=key, options={
        "keepalive": "true", "microphone_record": "true", "speaker_playback": "true",
        # The Speaker opens PortAudio at its own rate (16 kHz unless told): the reply's rate.
        "speaker_playback_rate": rate,
    })
    client = AgentWebSocketClient(config)
    # The client pins its host to Deepgram's in its constructor; the URL it connects to is the
    # one attribute it reads at start(), so the loopback emulator goes there.
    client._websocket_url = url
    client.on(AgentWebSocketEvents.Error, on_error)
    options = SettingsConfigurationOptions()
    options.agent.think.provider.type = "open_ai"
    options.agent.think.model = "gpt-4o-mini"
    options.agent.think.instructions = "You are a helpful voice assistant."
    options.audio.output.sample_rate = rate
    if not client.start(options):
        print("sdk client did not start", file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "threads":
            print(json.dumps({t.native_id: t.name for t in threading.enumerate()}), flush=True)
        elif cmd == "quit":
            break
    client.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
