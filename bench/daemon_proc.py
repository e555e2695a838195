"""The daemon alone in its own process, for CPU and memory figures: mock pins, commands on stdin.

Usage: python bench/daemon_proc.py CONFIG.json KEY   (ALSA_CONFIG_PATH set by the caller)
stdin lines: "press", "release", "threads" (prints {native id: name}), "stats" (prints the
speaker's underruns and the mic's overruns so far), "frames" (prints how many SPI frames the LED
pixels were sent), "quit". Prints "ready" once the daemon is serving.

Hardware SPI here is a stand-in that counts each frame and drops it, as a Pi hands a frame to
the kernel in one write: the mock factory's own SPI bit-bangs mock pins, thousands of Python
calls a frame, which would measure the mock rather than the daemon.
"""

from __future__ import annotations

import json
import os
import sys
import threading

os.environ["GPIOZERO_PIN_FACTORY"] = "mock"

from typing import Any  # noqa: E402

from gpiozero import Device  # noqa: E402
from gpiozero.pins import SPI  # noqa: E402
from gpiozero.pins.mock import MockFactory, MockPWMPin  # noqa: E402

from speakerd.config import parse_config  # noqa: E402
from speakerd.daemon import Daemon, configure_logging  # noqa: E402
from speakerd.notify import Notifier  # noqa: E402


class CountingSPI(SPI):  # type: ignore[misc]
    """SPI0 as the kernel's spidev offers it: a frame is one write; here it is counted only."""

    frames = 0

    def __init__(self, clock_pin: Any, mosi_pin: Any, miso_pin: Any, select_pin: Any,
                 pin_factory: Any) -> None:
        self._open = True
        super().__init__(pin_factory=pin_factory)

    def write(self, data: Any) -> int:
        # What gpiozero's lgpio SPI does on a Pi: write() is one spi_write, no reply list.
        CountingSPI.frames += 1
        return len(data)

    def transfer(self, data: Any) -> list[int]:
        CountingSPI.frames += 1
        return [0] * len(data)

    def _get_clock_mode(self) -> int:
        return 0

    def close(self) -> None:
        self._open = False
        super().close()

    @property
    def closed(self) -> bool:
        return not self._open


class BenchFactory(MockFactory):  # type: ignore[misc]
    """Mock pins, and the counting stand-in for hardware SPI."""

    def _get_spi_class(self, shared: bool, hardware: bool) -> type:
        return CountingSPI if hardware else super()._get_spi_class(shared, hardware)


def main() -> int:
    raw = json.loads(open(sys.argv[1]).read())
    key = sys.argv[2]
    configure_logging("WARNING")
    Device.pin_factory = BenchFactory(pin_class=MockPWMPin)
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
        elif cmd == "frames":
            print(CountingSPI.frames, flush=True)
        elif cmd == "quit":
            break
    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
