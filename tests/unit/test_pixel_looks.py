"""APA102 frames as the datasheet gives them, and what each pattern shows on pixels over time."""

from __future__ import annotations

import pytest

from speakerd.config import Pattern
from speakerd.leds.apa102 import encode, encode_uniform, end_frame_bytes
from speakerd.leds.patterns import (
    FRAME_RATE,
    METER_GLOW,
    PULSE_STRIDE,
    PeakFollower,
    meter_fraction,
    moves,
    next_change,
    next_level_change,
    pixels_at,
    scaled,
    share,
    spin_tail,
    uniform_levels,
)

RED, WHITE = (1.0, 0.0, 0.0), (1.0, 1.0, 1.0)
DARK = (0.0, 0.0, 0.0)


def test_a_frame_is_start_pixels_end() -> None:
    """32 zero bits, then per pixel 0b111 + 5-bit brightness and blue, green, red, then ones."""
    frame = encode([(1.0, 0.5, 0.0), (0.0, 0.0, 1.0)], brightness=9)
    assert frame[:4] == b"\x00\x00\x00\x00"
    assert frame[4:8] == bytes([0b111_01001, 0x00, 0x80, 0xFF])  # blue, green, red of orange-ish
    assert frame[8:12] == bytes([0b111_01001, 0xFF, 0x00, 0x00])
    assert frame[12:] == b"\xff\xff\xff\xff"


@pytest.mark.parametrize("brightness", [0, 1, 16, 31])
def test_the_brightness_field_is_five_bits_under_three_ones(brightness: int) -> None:
    """The first byte of every pixel is 111 followed by the global brightness, 0-31."""
    frame = encode([RED] * 3, brightness)
    heads = frame[4:16:4]
    assert all(h >> 5 == 0b111 and h & 0x1F == brightness for h in heads)


@pytest.mark.parametrize("n", [1, 3, 12, 64, 65, 100, 256])
def test_the_end_frame_is_at_least_32_bits_and_half_a_bit_per_pixel(n: int) -> None:
    """Enough ones to clock the data through n pixels, each of which passes it on half a clock late."""
    frame = encode([DARK] * n, 31)
    end = frame[4 + 4 * n:]
    assert set(end) == {0xFF}
    assert len(end) * 8 >= max(32, n / 2)
    assert len(end) == end_frame_bytes(n) == max(4, -(-n // 16))


def test_the_colour_order_follows_the_config() -> None:
    """order names the colour bytes as they go on the wire after the brightness byte."""
    rgb = (1.0, 0.5, 0.25)  # 255, 128, 64
    assert encode([rgb], 1, "bgr")[5:8] == bytes([64, 128, 255])
    assert encode([rgb], 1, "rgb")[5:8] == bytes([255, 128, 64])
    assert encode([rgb], 1, "grb")[5:8] == bytes([128, 255, 64])


def test_off_on_and_brightness() -> None:
    """off is dark, on is the colour scaled by the pattern's brightness, on every pixel."""
    assert pixels_at(Pattern("off", color="red"), RED, 3, 0.7) == [DARK] * 3
    assert pixels_at(Pattern("on", brightness=0.5), WHITE, 2, 5.0) == [(0.5, 0.5, 0.5)] * 2
    assert pixels_at(Pattern("on", brightness=0), WHITE, 2, 0) == [DARK] * 2
    assert not moves(Pattern("on")) and not moves(Pattern("off"))
    assert not moves(Pattern("pulse", brightness=0)) and moves(Pattern("pulse"))


def test_blink_alternates_with_its_times() -> None:
    """blink is on for on_time, then dark for off_time, over and over."""
    p = Pattern("blink", 0.2, 0.3)
    assert pixels_at(p, RED, 2, 0.0) == [RED, RED]
    assert pixels_at(p, RED, 2, 0.19) == [RED, RED]
    assert pixels_at(p, RED, 2, 0.25) == [DARK, DARK]
    assert pixels_at(p, RED, 2, 0.51) == [RED, RED]
    assert next_change(p, 2, 0.0) == pytest.approx(0.2)
    assert next_change(p, 2, 0.2) == pytest.approx(0.5)
    assert next_change(p, 2, 0.6) == pytest.approx(0.7)


def test_pulse_fades_in_and_out() -> None:
    """pulse rises linearly to the colour over on_time and falls over off_time."""
    p = Pattern("pulse", 0.4, 0.8)
    assert pixels_at(p, RED, 1, 0.0) == [DARK]
    assert pixels_at(p, RED, 1, 0.2)[0][0] == pytest.approx(0.5)
    assert pixels_at(p, RED, 1, 0.4)[0][0] == pytest.approx(1.0)
    assert pixels_at(p, RED, 1, 0.8)[0][0] == pytest.approx(0.5)
    assert pixels_at(p, RED, 1, 1.2)[0][0] == pytest.approx(0.0, abs=1e-9)
    assert next_change(p, 1, 0.3) == pytest.approx(0.3 + 1 / FRAME_RATE)


def test_spin_runs_a_head_with_a_fading_tail_once_per_turn() -> None:
    """spin lights one pixel fully and the ones behind it at half steps; a turn takes on_time."""
    p = Pattern("spin", 1.2)
    n = 12
    assert spin_tail(n) == 3 and spin_tail(3) == 1
    first = pixels_at(p, WHITE, n, 0.0)
    assert first[0] == WHITE
    assert [first[i][0] for i in (11, 10, 9)] == [0.5, 0.25, 0.125]
    assert all(px == DARK for px in first[1:9])
    later = pixels_at(p, WHITE, n, 0.35)  # 0.1 s per step: the head is on pixel 3
    assert later[3] == WHITE and later[2][0] == 0.5 and later[4] == DARK
    assert pixels_at(p, WHITE, n, 1.2) == first
    assert next_change(p, n, 0.35) == pytest.approx(0.4)


def test_meter_lights_as_many_pixels_as_the_share_and_glows_under_the_rest() -> None:
    """meter lights the first share x n pixels fully, the edge one in part, the rest at the glow."""
    p = Pattern("meter", color="blue")
    pixels = pixels_at(p, RED, 4, 0.0, meter=0.625)  # 2.5 of 4 pixels
    assert [px[0] for px in pixels] == [1.0, 1.0, 0.5, METER_GLOW]
    assert [px[0] for px in pixels_at(p, RED, 4, 0.0, meter=0.0)] == [METER_GLOW] * 4
    assert [px[0] for px in pixels_at(p, RED, 4, 0.0, meter=1.0)] == [1.0] * 4


def test_the_meter_reads_decibels() -> None:
    """Full scale lights every pixel, 48 dB below none; silence none."""
    assert meter_fraction(1.0) == 1.0
    assert meter_fraction(0.0) == 0.0
    assert meter_fraction(10 ** (-24 / 20)) == pytest.approx(0.5)
    assert meter_fraction(10 ** (-60 / 20)) == 0.0


def test_a_peak_falls_back_over_the_fall_time() -> None:
    """The needle jumps up at once and falls linearly: halfway down after half the fall time."""
    needle = PeakFollower(fall=0.5)
    assert needle.update(0.8, 0.0) == 0.8
    assert needle.update(0.0, 0.25) == pytest.approx(0.3)
    assert needle.update(0.6, 0.3) == 0.6
    assert needle.update(0.0, 10.0) == 0.0


@pytest.mark.parametrize("pattern", [Pattern("pulse", 0.6, 0.6, brightness=0.7),
                                     Pattern("pulse", 0.37, 1.1), Pattern("blink", 0.2, 0.3),
                                     Pattern("on", brightness=0.3), Pattern("off")])
@pytest.mark.parametrize("order", ["bgr", "grb"])
def test_a_uniform_frame_is_the_frame_of_its_pixels(pattern: Pattern, order: str) -> None:
    """The frame built from one pixel's levels is, byte for byte, encode() of the look's pixels."""
    color = (0.0, 128 / 255, 0.3)
    lit = scaled(color, pattern.brightness)
    for k in range(80):
        t = k / FRAME_RATE
        levels = uniform_levels(lit, share(pattern, t))
        assert encode_uniform(levels, 12, 8, order) == encode(pixels_at(pattern, color, 12, t), 8, order), k


def levels_at(p: Pattern, c: tuple[float, float, float], k: int) -> tuple[int, int, int]:
    return uniform_levels(c, share(p, k / FRAME_RATE))


def test_a_slow_dim_pulse_wakes_only_when_its_level_changes() -> None:
    """A pulse that holds a level for several steps is next drawn at the first step whose levels
    differ, never later: no step it skips would have shown anything new."""
    p, c = Pattern("pulse", 2.0, 2.0), (0.0, 0.0, 16 / 255)  # 16 levels up in 25 steps
    k, skipped = 0, 0
    while k < 150:
        later = next_level_change(p, c, k / FRAME_RATE)
        nxt = round(later * FRAME_RATE)
        assert nxt > k and (nxt - k) % PULSE_STRIDE == 0
        assert all(levels_at(p, c, j) == levels_at(p, c, k)
                   for j in range(k + PULSE_STRIDE, nxt, PULSE_STRIDE))
        assert levels_at(p, c, nxt) != levels_at(p, c, k)
        skipped += (nxt - k) // PULSE_STRIDE - 1
        k = nxt
    assert skipped > 25  # most steps of this pulse show nothing new


def test_the_default_pulse_steps_every_other_frame() -> None:
    """speaking's 1.2 s green pulse moves by several levels a step, and steps 12.5 times a
    second: every PULSE_STRIDE frames (two at its peak, whose levels repeat), never between."""
    p, c = Pattern("pulse", 0.6, 0.6), (0.0, 128 / 255, 0.0)
    assert FRAME_RATE / PULSE_STRIDE == 12.5
    k, drawn = 0, [0]
    while k < 60:
        k = round(next_level_change(p, c, k / FRAME_RATE) * FRAME_RATE)
        drawn.append(k)
    pairs = list(zip(drawn, drawn[1:], strict=False))
    gaps = [b - a for a, b in pairs]
    assert set(gaps) <= {PULSE_STRIDE, 2 * PULSE_STRIDE} and gaps.count(PULSE_STRIDE) >= len(gaps) - 2
    steps = [abs(levels_at(p, c, b)[1] - levels_at(p, c, a)[1]) for a, b in pairs]
    assert min(steps) >= 8


def test_a_pulse_that_never_changes_level_is_checked_once_a_period() -> None:
    """A pulse too dim to light a level still wakes, at most once per period, bounded."""
    p = Pattern("pulse", 0.5, 0.5)
    assert next_level_change(p, (0.0, 0.0, 0.001), 0.0) == pytest.approx(1.0)
