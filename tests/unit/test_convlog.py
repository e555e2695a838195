"""The conversation log: JSON lines, private file modes, size rotation, and never raising."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from speakerd.convlog import FILENAME, ConversationLog


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_lines_carry_time_conversation_kind_and_fields(tmp_path: Path) -> None:
    """Each append is one JSON line: ISO-8601 UTC time, conversation id, kind and the fields."""
    log = ConversationLog(str(tmp_path), clock=lambda: 1_700_000_000.25)
    log.append("connected")
    first = log.new_conversation()
    log.append("text", role="user", content="wie spät ist es? 🕰")
    second = log.new_conversation()
    log.append("function_call", id="f1", name="lamp", arguments={"state": "on"})
    log.close()
    assert first != second and len(first) == 32 and int(first, 16) >= 0
    assert lines(tmp_path / FILENAME) == [
        {"ts": "2023-11-14T22:13:20.250Z", "conversation": None, "kind": "connected"},
        {"ts": "2023-11-14T22:13:20.250Z", "conversation": first, "kind": "text",
         "role": "user", "content": "wie spät ist es? 🕰"},
        {"ts": "2023-11-14T22:13:20.250Z", "conversation": second, "kind": "function_call",
         "id": "f1", "name": "lamp", "arguments": {"state": "on"}},
    ]


def test_fixed_keys_win_and_odd_values_are_stringified(tmp_path: Path) -> None:
    """A field named ts or conversation cannot forge the line; non-JSON values become text."""
    log = ConversationLog(str(tmp_path), clock=lambda: 0.0)
    cid = log.new_conversation()
    log.append("note", ts="forged", conversation="forged", blob=b"\x00", path=tmp_path)
    log.close()
    (line,) = lines(tmp_path / FILENAME)
    assert line["ts"] == "1970-01-01T00:00:00.000Z" and line["conversation"] == cid
    assert line["blob"] == "b'\\x00'" and line["path"] == str(tmp_path)


def test_file_and_directory_are_private(tmp_path: Path) -> None:
    """The log file is created 0600 and a directory we create is 0700, whatever the umask."""
    directory = tmp_path / "state" / "speakerd"
    old = os.umask(0)
    try:
        log = ConversationLog(str(directory))
        log.append("hello")
        log.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / FILENAME).stat().st_mode) == 0o600


def test_rotation_by_size_keeps_the_configured_backups(tmp_path: Path) -> None:
    """Past max_bytes the file moves to .1, .1 to .2, and the oldest beyond the backups is gone."""
    log = ConversationLog(str(tmp_path), max_bytes=400, backups=2, clock=lambda: 0.0)
    log.new_conversation()
    for i in range(60):
        log.append("text", n=i)
    log.close()
    base = tmp_path / FILENAME
    files = [Path(f"{base}.2"), Path(f"{base}.1"), base]
    assert all(f.exists() for f in files)
    assert not Path(f"{base}.3").exists()
    assert all(0 < f.stat().st_size <= 400 for f in files)
    numbers = [line["n"] for f in files for line in lines(f)]
    # Oldest to newest, contiguous, ending with the last line written.
    assert numbers == list(range(numbers[0], 60))
    assert numbers[0] > 0  # the oldest lines were rotated away
    assert stat.S_IMODE(base.stat().st_mode) == 0o600


def test_rotation_without_backups_starts_the_file_again(tmp_path: Path) -> None:
    """With backups 0 a full file is replaced, never kept."""
    log = ConversationLog(str(tmp_path), max_bytes=300, backups=0)
    for i in range(40):
        log.append("text", n=i)
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]
    assert lines(tmp_path / FILENAME)[-1]["n"] == 39
    assert (tmp_path / FILENAME).stat().st_size <= 300


def test_disabled_log_writes_nothing(tmp_path: Path) -> None:
    """enabled=False creates no directory or file but still hands out conversation ids."""
    directory = tmp_path / "never"
    log = ConversationLog(str(directory), enabled=False)
    assert log.new_conversation()
    log.append("text", content="secret")
    log.close()
    assert not directory.exists()


def test_disk_failure_is_logged_once_and_recovers(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """When the directory cannot be created appends do not raise, warn once, and resume later."""
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be")
    log = ConversationLog(str(blocker / "speakerd"))
    with caplog.at_level(logging.INFO, logger="speakerd.convlog"):
        for _ in range(5):
            log.append("text", content="lost")
        blocker.unlink()
        log.append("text", content="kept")
    log.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot write" in warnings[0].getMessage()
    assert "writable again" in caplog.text
    assert [line["content"] for line in lines(blocker / "speakerd" / FILENAME)] == ["kept"]


def test_close_is_idempotent_and_drops_later_lines(tmp_path: Path) -> None:
    """After close nothing is written and a second close is harmless."""
    log = ConversationLog(str(tmp_path))
    log.append("one")
    log.close()
    log.close()
    log.append("two")
    assert [line["kind"] for line in lines(tmp_path / FILENAME)] == ["one"]


def test_an_existing_log_is_made_private_on_open(tmp_path: Path) -> None:
    """A conversation log left 0644 (an older version, a copy) is re-moded 0600 when opened."""
    path = tmp_path / FILENAME
    path.write_text("", encoding="utf-8")
    path.chmod(0o644)
    log = ConversationLog(str(tmp_path))
    log.append("text", role="user", content="hello")
    log.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_odd_unicode_stays_one_line_each(tmp_path: Path) -> None:
    """Lone surrogates and Unicode line separators from the agent neither lose nor split a line."""
    log = ConversationLog(str(tmp_path))
    for content in ("half \ud800 a pair", "two\u2028lines\u2029here\x85", "plain"):
        log.append("text", role="assistant", content=content)
    log.close()
    raw = (tmp_path / FILENAME).read_text(encoding="utf-8")
    assert len(raw.splitlines()) == 3
    assert [r["content"] for r in lines(tmp_path / FILENAME)] == [
        "half \ud800 a pair", "two\u2028lines\u2029here\x85", "plain"]
