"""Shared test setup: mock GPIO before anything creates a device, and the fixture plugins."""

import os

# gpiozero picks its pin factory when the first device is created; tests never touch real GPIO.
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
os.environ.setdefault("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")
# A developer's own key must never reach a test; tests set the key they need.
os.environ.pop("DEEPGRAM_API_KEY", None)

pytest_plugins = [
    "tests.support.alsa",
    "tests.support.sound",
    "tests.support.pins",
    "tests.support.emulator",
    "tests.support.daemon",
    "tests.support.process",
    "tests.support.hostile",
]
