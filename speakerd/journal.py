"""How the daemon's log lines are written: timestamps on a terminal, priorities for journald."""

from __future__ import annotations

import logging
import os


class JournalFormatter(logging.Formatter):
    """Starts every line with its syslog priority (<3> error ... <7> debug) for journald.

    journald reads that prefix from a service's stderr (SyslogLevelPrefix= is on by default),
    so `journalctl -p err -u speakerd` shows only errors. Each line of a multi-line record (a
    traceback) carries it, since journald stores every line as an entry of its own.
    """

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelno
        priority = (7 if level < logging.INFO else 6 if level < logging.WARNING else
                    4 if level < logging.ERROR else 3 if level < logging.CRITICAL else 2)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def configure_logging(level: str) -> None:
    """Thread name in every line; under journald no timestamps (it adds its own) but priorities."""
    fmt = "%(threadName)s %(levelname)s %(name)s: %(message)s"
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    formatter = JournalFormatter(fmt) if journal else logging.Formatter("%(asctime)s " + fmt)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler], force=True)
