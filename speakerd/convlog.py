"""The conversation log: one JSON line per event in conversations.jsonl, rotated by size."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

FILENAME = "conversations.jsonl"


# Characters that some readers (Python's splitlines among them) take for a line break: escaped,
# so one record stays one line whatever the agent said.
_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085", "\x0b": "\\u000b",
           "\x0c": "\\u000c", "\x1c": "\\u001c", "\x1d": "\\u001d", "\x1e": "\\u001e"}


def _line(record: dict[str, Any]) -> bytes:
    """One JSON line of UTF-8 whatever the text holds: lone surrogates become \\udxxx escapes."""
    text = json.dumps(record, ensure_ascii=False, default=str)
    for ch, escaped in _BREAKS.items():
        if ch in text:
            text = text.replace(ch, escaped)
    return (text + "\n").encode("utf-8", "backslashreplace")


class ConversationLog:
    """Owns conversations.jsonl and its rotated backups; append() never raises."""

    def __init__(self, directory: str, *, enabled: bool = True, max_bytes: int = 1_000_000,
                 backups: int = 3, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.path = os.path.join(directory, FILENAME)
        self.enabled = enabled
        self.max_bytes = max_bytes
        self.backups = backups
        self._clock = clock
        # append() runs on the session thread, close() on main: the lock keeps a line whole
        # and a rotation from racing a write.
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._conversation: str | None = None
        self._failing = False  # warn once per run of failures, not once per line
        self._closed = False

    def new_conversation(self) -> str:
        """Start a conversation: a fresh id that the following lines carry."""
        cid = uuid.uuid4().hex
        with self._lock:
            self._conversation = cid
        return cid

    def append(self, kind: str, **fields: Any) -> None:
        """Write one line {ts, conversation, kind, **fields}; a disk problem is only logged."""
        if not self.enabled:
            return
        with self._lock:
            if self._closed:
                return
            try:
                record: dict[str, Any] = {"ts": self._timestamp(),
                                          "conversation": self._conversation, "kind": kind}
                for key, value in fields.items():
                    record.setdefault(key, value)  # the three fixed keys cannot be overwritten
                line = _line(record)
                self._write(line)
            except Exception as exc:  # never take the session down for a log line
                if not self._failing:
                    self._failing = True
                    log.warning("conversation log %s: cannot write (%s); carrying on without it",
                                self.path, exc)
                self._close_fd()  # reopen next time: the disk or directory may come back
                return
            if self._failing:
                self._failing = False
                log.info("conversation log %s is writable again", self.path)

    def _timestamp(self) -> str:
        t = datetime.fromtimestamp(self._clock(), tz=UTC)
        return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _write(self, line: bytes) -> None:
        fd = self._open()
        size = os.fstat(fd).st_size
        if size > 0 and size + len(line) > self.max_bytes:
            self._rotate()
            fd = self._open()
        # One os.write on an O_APPEND fd: the line lands whole, with no buffer to lose on a crash.
        os.write(fd, line)

    def _open(self) -> int:
        if self._fd is None:
            if not os.path.isdir(self.directory):
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                os.chmod(self.directory, 0o700)  # makedirs' mode is filtered by the umask
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                         | os.O_NOFOLLOW, 0o600)
            try:
                # The mode on O_CREAT applies only to a new file: one left 0644 by an older
                # version or a copy is made private too. The user's words are in it.
                os.fchmod(fd, 0o600)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _rotate(self) -> None:
        self._close_fd()
        if self.backups <= 0:
            os.unlink(self.path)
            return
        for i in range(self.backups - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        """Close the file; later appends are dropped. Safe to call twice."""
        with self._lock:
            self._closed = True
            self._close_fd()
