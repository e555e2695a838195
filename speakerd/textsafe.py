"""Text from the network made safe for one journal line: control characters escaped, length capped."""

from __future__ import annotations

# Enough to recognise a message; a hostile peer must not fill the journal through us.
DEFAULT_LIMIT = 120


def shown(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """`text` with every character that could start a line or hide one escaped, then truncated.

    Newlines, carriage returns, escape sequences and the Unicode line and format separators
    could forge a journal line or hide part of one; they appear as \\n, \\x1b, \\u2028 and so on.
    """
    s = text if isinstance(text, str) else str(text)
    out: list[str] = []
    size = 0
    for ch in s:
        if ch.isprintable() and ch != "\\":
            piece = ch
        elif ch == "\\":
            piece = "\\\\"
        else:
            piece = ch.encode("unicode_escape").decode("ascii")
        if size + len(piece) > limit:
            out.append("…")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)
