"""Client-controlled text made safe for a log line (sans-IO).

Anything a peer chose (a namespace name, a path, an event name, a query value) may hold CR/LF
that would forge a log line of its own, or megabytes that would flood the log. ``shown(value)``
is what goes into the ``%s`` of such a line: the value's ``repr`` (so control characters come
out escaped and the quotes mark where the peer's text starts and ends), cut to ``limit``
characters with a note of how much was left out.
"""

from __future__ import annotations

__all__ = ["shown"]

#: The longest piece of peer text a log line shows (before escaping).
LIMIT = 120


def shown(value: object, limit: int = LIMIT) -> str:
    """``value`` as one escaped, bounded piece of a log line.

    ``str`` and ``bytes`` are cut to ``limit`` characters (bytes) before ``repr``; anything
    else is turned into ``str`` first. The result never holds a control character.
    """
    if not isinstance(value, (str, bytes, bytearray)):
        value = str(value)
    size = len(value)
    if size <= limit:
        return repr(value if not isinstance(value, bytearray) else bytes(value))
    head = value[:limit]
    if isinstance(head, bytearray):
        head = bytes(head)
    return f"{head!r}... ({size - limit} more)"
