"""The built-in LED pattern table: what each state looks like by default."""

from __future__ import annotations

from speakerd.config import STATES, LedConfig


def test_default_patterns_are_distinct_per_state() -> None:
    """The built-in table gives every state a different look on a PWM or RGB LED."""
    looks = {(p.effect, p.on_time, p.off_time, p.brightness, p.color)
             for p in LedConfig().patterns.values()}
    assert len(looks) == len(STATES)
