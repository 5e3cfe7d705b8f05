"""The per-event log: every event a server receives or sends, one line each.

``log_events(sio)`` (``pyserver demo --log-events``) is the realtime guide's monitoring
``onAny`` log for a whole server: a line on the ``pyserver.events`` logger (INFO) for every
event received from a client and every event sent (a broadcast once, with its recipient
count), with ``direction``, ``namespace``, ``sid`` and ``event`` as ``extra=`` fields (the
JSON log lines of :mod:`pyserver.logjson` carry them). It hangs on the namespaces' ``watch``
hook (:class:`pyserver.metrics.NamespaceCounters`): off, it costs one attribute test per
event; on, it logs from the reading task, so it is for development and debugging.
"""

from __future__ import annotations

import logging
from typing import Any

from pyserver.logtext import shown

__all__ = ["log_events"]

logger = logging.getLogger("pyserver.events")


def log_events(server: Any) -> None:
    """Log every event of ``server`` (a :class:`~pyserver.trio.socketio.server.Server`),
    in its namespaces now and those made later. Idempotent."""

    for nsp in [*server.namespaces.values(), *server.dynamic_namespaces]:
        _watch(nsp)
    server.on_new_namespace(_watch)  # (twice is harmless: a listener is added once)


def _watch(nsp: Any) -> None:
    nsp.counters.add_listener(_log_event)


def _log_event(direction: str, namespace: str, sid: str | None, event: str, count: int) -> None:
    if sid is not None:
        logger.info(
            "event %s %s socket %s in %s",
            shown(event),
            "from" if direction == "in" else "to",
            sid,
            shown(namespace),
            extra={"direction": direction, "namespace": namespace, "sid": sid, "event": event},
        )
    else:
        logger.info(
            "event %s broadcast in %s to %d socket(s)",
            shown(event),
            shown(namespace),
            count,
            extra={
                "direction": direction,
                "namespace": namespace,
                "event": event,
                "recipients": count,
            },
        )
