"""The daemon alone in its own process, for CPU and memory figures: mock pins, commands on stdin.

Usage: python bench/daemon_proc.py CONFIG.json KEY   (ALSA_CONFIG_PATH set by the caller)
stdin lines: "press", "release", "threads" (prints {native id: name}), "stats" (prints the
speaker's underruns and the mic's overruns so far), "quit".
Prints "ready" once the daemon is serving.
"""

from __future__ import annotations

import json
import os
import sys
import threading

os.environ["GPIOZERO_PIN_FACTORY"] = "mock"

from gpiozero import Device  # noqa: E402
from gpiozero.pins.mock import MockFactory, MockPWMPin  # noqa: E402

from speakerd.config import parse_config  # noqa: E402
from speakerd.daemon import Daemon, configure_logging  # noqa: E402
from speakerd.notify import Notifier  # noqa: E402


def main() -> int:
    raw = json.loads(open(sys.argv[1]).read())
    key = sys.argv[2]
    configure_logging("WARNING")
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    cfg = parse_config(raw)
    daemon = Daemon(None, cfg, key, notifier=Notifier(environ={}))
    daemon.start()
    pin = Device.pin_factory.pin(cfg.button.pin)  # type: ignore[union-attr]
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd in ("press", "release"):
            # From another thread, as the Pi's GPIO callback thread delivers an edge.
            t = threading.Thread(target=pin.drive_low if cmd == "press" else pin.drive_high)
            t.start()
            t.join(5)
            print(cmd, flush=True)
        elif cmd == "threads":
            # native thread id -> name, so per-thread CPU from /proc can be told apart
            print(json.dumps({t.native_id: t.name for t in threading.enumerate()}), flush=True)
        elif cmd == "stats":
            parts = daemon.parts
            assert parts is not None
            print(json.dumps({"underruns": parts.speaker.underruns, "xruns": parts.mic.xruns,
                              "frames_sent": parts.mic.frames_sent}), flush=True)
        elif cmd == "quit":
            break
    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
