"""Fixtures: gpiozero mock pins (PWM-capable), fresh for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    """A fresh MockFactory with PWM pins as gpiozero's default; the previous one back afterwards."""
    saved = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        # reset() forgets every pin and reservation, so the next test can claim the same pins.
        factory.reset()
        Device.pin_factory = saved
