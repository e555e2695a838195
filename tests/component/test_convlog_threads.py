"""The conversation log under concurrent writers: lines stay whole across rotations."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from speakerd.convlog import ConversationLog


def test_concurrent_appends_keep_lines_whole(tmp_path: Path) -> None:
    """Appends from several threads, across rotations, never interleave within a line."""
    log = ConversationLog(str(tmp_path), max_bytes=20_000, backups=50)
    start = threading.Event()

    def writer(w: int) -> None:
        start.wait(10)
        for i in range(200):
            log.append("text", writer=w, n=i, content="x" * 40)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    log.close()
    seen = [json.loads(line) for f in tmp_path.iterdir()
            for line in f.read_text(encoding="utf-8").splitlines()]
    assert len(seen) == 800
    for w in range(4):
        assert sorted(line["n"] for line in seen if line["writer"] == w) == list(range(200))
