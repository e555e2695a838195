"""The built-in LED pattern table: what each state looks like by default."""

from __future__ import annotations

from speakerd.config import STATES, LedConfig, Pattern


def pwm_look(p: Pattern) -> tuple[object, ...]:
    """What a single-colour PWM LED can show of a pattern, as speakerd/leds.py drives one: no
    colour, and the times only for the effects that use them."""
    if p.effect == "off" or p.brightness == 0:
        return ("off",)
    if p.effect == "on":
        return ("on", p.brightness)
    return (p.effect, p.on_time, p.off_time, p.brightness)


def test_default_patterns_are_distinct_on_the_default_single_colour_led() -> None:
    """The built-in table gives each state a look of its own on the default PWM LED; colour does not count."""
    default = LedConfig()
    assert default.kind == "pwm"
    looks = {state: pwm_look(default.patterns[state]) for state in STATES}
    assert len(set(looks.values())) == len(STATES), looks


def test_the_look_ignores_colour_and_unused_times() -> None:
    """Two patterns that differ only in colour, or in times an effect ignores, look the same."""
    assert pwm_look(Pattern("blink", 0.1, 0.4, color="red")) == pwm_look(Pattern("blink", 0.1, 0.4))
    assert pwm_look(Pattern("on", 0.1, 0.4)) == pwm_look(Pattern("on", 0.9, 0.2, color="blue"))
    assert pwm_look(Pattern("pulse", brightness=0)) == pwm_look(Pattern("off"))
    assert pwm_look(Pattern("blink", 0.1, 0.4)) != pwm_look(Pattern("pulse", 0.1, 0.4))
