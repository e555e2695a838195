"""The daemon's log lines for journald: a syslog priority prefix on every line."""

from __future__ import annotations

import logging
import sys

from speakerd.journal import JournalFormatter


def test_journal_formatter_prefixes_every_line_with_its_priority() -> None:
    """<7> debug, <6> info, <4> warning, <3> error, <2> critical; each traceback line too."""
    formatter = JournalFormatter("%(levelname)s %(message)s")
    for level, prefix in ((logging.DEBUG, "<7>"), (logging.INFO, "<6>"), (logging.WARNING, "<4>"),
                          (logging.ERROR, "<3>"), (logging.CRITICAL, "<2>")):
        record = logging.LogRecord("x", level, __file__, 1, "hello", None, None)
        assert formatter.format(record).startswith(prefix + logging.getLevelName(level))
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    lines = formatter.format(record).splitlines()
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
