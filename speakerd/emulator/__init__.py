"""A local Voice Agent server, the stand-in for the cloud when speakerd runs offline.

`speakerd emulate` and the tests run it on loopback: it speaks both dialects, detects speech in
the uplink, replies with audio, calls functions and injects faults on request, and refuses
every client message the real server refuses, field by field (`api`, `rules`). It is a test
oracle, so it shares no code with `speakerd/protocol/` or the config's provider rules on
purpose: it reads and writes the wire from its own reading of Deepgram's published message
types, and an oracle that reused the codec it checks would agree with that codec's mistakes. A
device never imports this package.
"""

from .cli import main
from .connection import EmulatedSession
from .options import EmulatorOptions, RecordedFrame, ReplyRecord
from .server import Emulator

__all__ = ["Emulator", "EmulatorOptions", "EmulatedSession", "RecordedFrame", "ReplyRecord",
           "main"]
