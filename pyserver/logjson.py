"""Structured logs: the server's log lines as one JSON object per line (sans-IO).

``configure_logging(format="json")`` (``pyserver --log-format json``) sends every record of
the process to stderr as::

    {"time": "2026-12-06T22:15:03.123Z", "level": "INFO", "logger": "pyserver.socketio",
     "message": "socket ... connected to '/chat' ...", "sid": "...", "namespace": "/chat",
     "eio_sid": "...", "remote": "127.0.0.1:50412"}

``time`` (UTC, milliseconds), ``level``, ``logger`` and ``message`` always; then the fields
the log call passed with ``extra=`` (:data:`FIELDS`: the socket's ``sid``, its
``namespace``, the ``event``, the Engine.IO session ``eio_sid``, the peer's ``remote``
address, an event's ``direction`` and ``recipients``), and ``exception`` with the traceback
when there is one. The values are the program's own (``json.dumps`` escapes whatever a peer
chose), so a line can never be split or forged by a client.

``format="text"`` (the default) is the usual one-line text, as ``logging.basicConfig``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = ["FIELDS", "JsonFormatter", "configure_logging"]

FIELDS = ("sid", "namespace", "event", "eio_sid", "remote", "direction", "recipients", "node")
"""The ``extra=`` fields a JSON line carries when the log call gave them."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring)."""

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.node is not None:
            line["node"] = self.node
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure_logging(
    format: Literal["text", "json"] = "text",
    level: int | str = "INFO",
    *,
    node: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Log every record of the process at ``level`` and above to ``stream`` (stderr) as
    text lines or JSON lines (``format="json"``), replacing the root logger's handlers.
    ``node``: a name added to every line (``pyserver cluster`` gives each node's)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if format == "json":
        handler.setFormatter(JsonFormatter(node))
    elif format == "text":
        where = f" [node {node}]" if node else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s")
        )
    else:
        raise ValueError(f"format must be 'text' or 'json', not {format!r}")
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
