"""Diagnostic recordings: each agent reply and each uplink turn saved as a WAV file, bounded in count."""

from __future__ import annotations

import logging
import os
import re
import threading
import wave
from pathlib import Path

log = logging.getLogger(__name__)

# One recording is capped so a button held for minutes cannot fill the disk.
MAX_SECONDS = 120
# The name of a take: the writer's pid, its number, its stream.
_OURS = re.compile(r"[0-9]+-[0-9]{5,}-(uplink|reply)\.wav")


class WavRecorder:
    """Collects audio per stream ("uplink", "reply") and writes one WAV per take.

    Appends come from the mic and socket threads and boundaries from the session thread, so a
    lock guards the takes; the file is written when a take ends, off the audio hot path.
    """

    def __init__(self, directory: str, max_files: int, *, rates: dict[str, int],
                 widths: dict[str, int] | None = None) -> None:
        self.dir = Path(directory)
        self.max_files = max_files
        self.rates = rates
        self.widths = widths or {name: 2 for name in rates}
        self._lock = threading.Lock()
        self._takes: dict[str, bytearray] = {}
        self._count = 0
        self._failed = False
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            self._fail(exc)

    def begin(self, stream: str) -> None:
        """Start a new take of `stream`, ending the one before."""
        self.end(stream)
        with self._lock:
            self._takes[stream] = bytearray()

    def add(self, stream: str, pcm: bytes) -> None:
        with self._lock:
            take = self._takes.get(stream)
            limit = MAX_SECONDS * self.rates[stream] * self.widths[stream]
            if take is not None and len(take) < limit:
                take += pcm

    def end(self, stream: str) -> Path | None:
        """Write the take of `stream` (if any) and prune the oldest files."""
        with self._lock:
            take = self._takes.pop(stream, None)
            if not take or self._failed:
                return None
            self._count += 1
            number = self._count
        path = self.dir / f"{os.getpid()}-{number:05d}-{stream}.wav"
        try:
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(self.widths[stream])
                w.setframerate(self.rates[stream])
                w.writeframes(bytes(take))
            path.chmod(0o600)
            self._prune()
        except OSError as exc:
            self._fail(exc)
            return None
        return path

    def _prune(self) -> None:
        # Only takes this recorder writes (pid-number-stream.wav): the directory may hold the
        # user's own recordings, which are not ours to delete.
        files = sorted((p for p in self.dir.glob("*.wav") if _OURS.fullmatch(p.name)),
                       key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - self.max_files)]:
            old.unlink(missing_ok=True)

    def _fail(self, exc: OSError) -> None:
        if not self._failed:
            log.warning("debug audio recording off: %s", exc)
        self._failed = True
