"""The device layer and chimes against real alsa-lib (file-backed devices)."""

from __future__ import annotations

import math

import alsaaudio
import pytest

from speakerd import chimes
from speakerd.audio import AudioDeviceError, AudioFormat, Throttle, open_sink, open_source
from speakerd.config import AudioInputConfig, AudioOutputConfig
from tests.support.alsa import AlsaFiles, load_wav, ramp, samples


def test_format_from_config() -> None:
    """Periods, sizes and silence follow the config for linear16 and mu-law."""
    mic = AudioFormat.from_input(AudioInputConfig(sample_rate=16000, period_ms=20))
    assert (mic.rate, mic.period_frames, mic.period_bytes) == (16000, 320, 640)
    assert mic.period_seconds == pytest.approx(0.02)
    assert mic.bytes_per_second == 32000
    assert mic.silence() == b"\x00" * 640
    spk = AudioFormat.from_output(AudioOutputConfig(sample_rate=8000, encoding="mulaw",
                                                    period_ms=10))
    assert (spk.sample_width, spk.period_frames, spk.period_bytes) == (1, 80, 80)
    assert spk.silence() == b"\xff" * 80  # mu-law's code for zero is 0xFF, not 0x00


def test_source_reads_fixture_bit_exact(alsa_files: AlsaFiles) -> None:
    """Capture through alsa-lib returns the infile bit for bit, one period per read."""
    speech = load_wav("hello")
    total = alsa_files.set_mic(speech)
    src = open_source(alsa_files.input_config())
    try:
        period = src.fmt.period_bytes
        got = b"".join(src.read() for _ in range(total // period))  # never past the end
    finally:
        src.close()
    assert got == (speech + bytes(total - len(speech)))[: len(got)]
    assert len(got) >= len(speech)


def test_sink_writes_bit_exact(alsa_files: AlsaFiles) -> None:
    """Playback through alsa-lib writes exactly the frames given, and reports nothing queued."""
    sink = open_sink(alsa_files.output_config(periods=3))
    data = ramp(320 * 25)
    for i in range(0, len(data), 640):
        sink.write(data[i:i + 640])
    assert sink.delay_frames() == 0  # null consumes at once
    sink.drop()
    sink.close()
    assert alsa_files.speaker_bytes() == data


def test_sink_mulaw(alsa_files: AlsaFiles) -> None:
    """A mu-law sink opens with one byte per frame and passes bytes through unchanged."""
    sink = open_sink(alsa_files.output_config(encoding="mulaw", sample_rate=8000, period_ms=20))
    assert sink.fmt.period_bytes == 160
    data = bytes(range(256)) * 5
    sink.write(data[:1120])
    sink.close()
    assert alsa_files.speaker_bytes() == data[:1120]


def test_missing_devices_name_key_and_device(alsa_files: AlsaFiles) -> None:
    """Opening an absent device raises AudioDeviceError naming the key and the device."""
    alsa_files.remove_mic()
    with pytest.raises(AudioDeviceError) as err:
        open_source(alsa_files.input_config())
    assert err.value.key == "audio.input.device"
    assert "'default'" in str(err.value)
    with pytest.raises(AudioDeviceError) as err2:
        open_sink(alsa_files.output_config(device="nosuchpcm"))
    assert err2.value.key == "audio.output.device"
    assert "nosuchpcm" in str(err2.value)


class _GrantingPcm:
    """A PCM whose device grants a different rate than asked (as a bare hw: device does)."""

    closed = False

    def __init__(self, **kw: object):
        self.kw = kw

    def info(self) -> dict[str, object]:
        return {"rate": 48000, "channels": 1, "format": self.kw["format"], "format_name": "S16_LE",
                "period_size": 960, "buffer_size": 2880}

    def close(self) -> None:
        _GrantingPcm.closed = True


def test_rate_mismatch_suggests_plughw(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device that cannot do the rate is refused, closed, and a plughw: device is suggested."""
    monkeypatch.setattr(alsaaudio, "PCM", _GrantingPcm)
    with pytest.raises(AudioDeviceError) as err:
        open_sink(AudioOutputConfig(device="hw:CARD=Device", sample_rate=16000))
    msg = str(err.value)
    assert "48000" in msg and "16000" in msg and "plughw:CARD=Device" in msg
    assert _GrantingPcm.closed


def test_sink_counts_underrun_and_recovers(alsa_files: AlsaFiles) -> None:
    """A write to a PCM left in XRUN counts one underrun and still plays the data."""
    sink = open_sink(alsa_files.output_config())

    class XrunOnce:
        def __init__(self, pcm: object):
            self.pcm = pcm
            self.first = True

        def state(self) -> int:
            if self.first:
                self.first = False
                return alsaaudio.PCM_STATE_XRUN
            return self.pcm.state()  # type: ignore[attr-defined, no-any-return]

        def __getattr__(self, name: str) -> object:
            return getattr(self.pcm, name)

    sink._pcm = XrunOnce(sink._pcm)
    sink.write(ramp(320))
    sink.close()
    assert sink.xruns == 1
    assert alsa_files.speaker_bytes() == ramp(320)


def test_throttle_limits_lines() -> None:
    """A throttle lets one line per interval through and counts the rest."""
    now = [0.0]
    t = Throttle(5.0, clock=lambda: now[0])
    assert t.ready() == 0
    assert t.ready() is None and t.ready() is None
    now[0] = 5.0
    assert t.ready() == 2


@pytest.mark.parametrize("name", chimes.NAMES)
@pytest.mark.parametrize("encoding,rate",
                         [("linear16", 24000), ("linear16", 16000), ("mulaw", 8000)])
def test_chimes_are_short_and_in_format(name: str, encoding: str, rate: int) -> None:
    """Each chime is at most 300 ms of audio at the output rate and encoding, and not silent."""
    fmt = AudioFormat.from_output(AudioOutputConfig(sample_rate=rate, encoding=encoding))
    pcm = chimes.render(name, fmt, 0.5)
    seconds = len(pcm) / fmt.bytes_per_second
    assert 0.05 < seconds <= 0.3
    assert len(pcm) % fmt.frame_bytes == 0
    assert set(pcm) != {fmt.silence_byte[0]}


def _zero_crossings(x: list[int]) -> int:
    return sum(1 for a, b in zip(x, x[1:], strict=False) if (a < 0) != (b < 0))


def test_chime_shapes_and_volume() -> None:
    """press rises, goodbye falls, error is two tones with a gap; volume scales the peak."""
    fmt = AudioFormat(rate=16000, period_frames=320)
    press = list(samples(chimes.render("press", fmt, 1.0)))
    half = len(press) // 2
    assert _zero_crossings(press[half:]) > _zero_crossings(press[:half])
    bye = list(samples(chimes.render("goodbye", fmt, 1.0)))
    half = len(bye) // 2
    assert _zero_crossings(bye[:half]) / half > _zero_crossings(bye[half:]) / (len(bye) - half)
    err = list(samples(chimes.render("error", fmt, 1.0)))
    middle = err[int(0.115 * 16000):int(0.135 * 16000)]
    assert middle == [0] * len(middle)  # the gap between the two tones
    loud = max(abs(s) for s in samples(chimes.render("press", fmt, 1.0)))
    quiet = max(abs(s) for s in samples(chimes.render("press", fmt, 0.25)))
    assert loud > 30000 and math.isclose(quiet / loud, 0.25, rel_tol=0.02)
    assert set(chimes.render("press", fmt, 0.0)) == {0}
    with pytest.raises(ValueError):
        chimes.render("fanfare", fmt, 1.0)


def test_mulaw_encoding_matches_g711() -> None:
    """The mu-law encoder maps known 16-bit values to their G.711 codes."""
    enc = chimes._linear_to_mulaw
    assert enc(0) == 0xFF
    assert enc(-1) == 0x7E  # the reference shifts first: -1 >> 2 is -1
    assert enc(32767) == 0x80
    assert enc(-32768) == 0x00
    assert enc(1000) == 0xCE
