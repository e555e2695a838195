"""Diagnostic recordings: bounded in count, and pruning touches only the takes speakerd wrote."""

from __future__ import annotations

from pathlib import Path

from speakerd.recorder import WavRecorder


def test_pruning_deletes_only_takes_it_wrote(tmp_path: Path) -> None:
    """The user's own WAVs in debug_audio_dir survive; only the oldest takes beyond the cap go."""
    mine = [tmp_path / "holiday.wav", tmp_path / "1-2-reply.wav", tmp_path / "notes-00001-reply.wav"]
    for path in mine:
        path.write_bytes(b"RIFF")
    rec = WavRecorder(str(tmp_path), 2, rates={"reply": 16000})
    written = []
    for _ in range(4):
        rec.begin("reply")
        rec.add("reply", b"\x00\x01" * 160)
        path = rec.end("reply")
        assert path is not None
        written.append(path)
    assert all(p.exists() for p in mine)
    assert sorted(p.name for p in tmp_path.glob("*.wav") if p not in mine) == \
        sorted(p.name for p in written[-2:])
