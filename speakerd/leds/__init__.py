"""The status LEDs: plain, PWM and RGB LEDs (gpio), chains of APA102 pixels (apa102), the looks
they show (patterns), and StatusLeds, which shows each state on all of them (status)."""

from .patterns import parse_color
from .status import HISTORY_MAX, PixelAnimator, StatusLeds

__all__ = ["HISTORY_MAX", "PixelAnimator", "StatusLeds", "parse_color"]
