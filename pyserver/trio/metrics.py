"""Prometheus metrics for a :class:`~pyserver.trio.socketio.server.Server`: ``/metrics``.

``Server(metrics=True)`` (or ``metrics=Metrics(events=["chat message"], path="/metrics")``)
answers ``GET /metrics`` on the server's own App; :func:`serve_metrics` serves it on a
listener of its own (``pyserver run --metrics-port 9100``). Either way the answer is the
Prometheus text exposition format 0.0.4, written by :mod:`pyserver.metrics`.

The counters are bumped where things happen, always (each is an attribute incremented in
place: see :mod:`pyserver.metrics` for the list and where); turning metrics on adds only the
handler duration histogram (two clock reads, for one event in
:data:`~pyserver.metrics.HANDLER_SAMPLE` per namespace) and, with an ``events`` allowlist,
the counts by event name. Everything else (sessions by transport, outbox depths, rooms, room
tasks, the Redis publish queue, kept recovery sessions) is read when scraped, which costs
one pass over the connections and namespaces per scrape.

Labels stay bounded: never a sid, a room or a user; the ``namespace`` of a dynamic
namespace's children is their parent's pattern (or ``_dynamic``); event names only from the
allowlist, the others as ``_other``.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import trio

from pyserver.http import Request, Response
from pyserver.metrics import (
    CONTENT_TYPE,
    DEPTH_BUCKETS,
    Exposition,
    Histogram,
    NamespaceCounters,
    render,
)

Server = Any
"""A :class:`~pyserver.trio.socketio.server.Server` (not imported: ``server.py`` imports this
module; it reads ``eio``, ``namespaces``, ``dynamic_namespaces``, ``adapter_factory``,
``app`` and ``on_new_namespace``)."""
Namespace = Any
__all__ = ["Metrics", "enable_metrics", "exposition", "metrics_endpoint", "serve_metrics"]


@dataclass(frozen=True)
class Metrics:
    """What ``Server(metrics=...)`` takes beside ``True``.

    ``events``: event names counted by name (``pyserver_events_total``'s ``event`` label;
    any other name counts as ``_other``); None: events counted per namespace only.
    ``path``: where the server's App answers (None: no route, for :func:`serve_metrics`
    alone)."""

    events: Iterable[str] | None = None
    path: str | None = "/metrics"


def enable_metrics(server: Server, options: Metrics | None = None) -> None:
    """Turn metrics on for ``server``: the handler durations timed, the events counted by
    name if asked, and ``GET options.path`` on ``server.app``. Idempotent per path."""
    options = options or Metrics()
    names = frozenset(options.events) if options.events is not None else None

    def instrument(nsp: Any) -> None:
        counters: NamespaceCounters = nsp.counters
        if not counters.timed:
            counters.timed = 1  # (the next event is timed, then one in HANDLER_SAMPLE)
        if names is not None:
            counters.count_by_name(names)

    for nsp in [*server.namespaces.values(), *server.dynamic_namespaces]:
        instrument(nsp)
    server.on_new_namespace(instrument)
    if options.path is not None:
        server.app.add_route(options.path, metrics_endpoint(server))


def metrics_endpoint(server: Server) -> Any:
    """An App route handler answering the exposition of ``server``."""

    async def metrics(request: Request) -> Response:
        body = render(exposition(server))
        return Response(200, [("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store")], body)

    return metrics


async def serve_metrics(
    server: Server,
    host: str | None,
    port: int,
    *,
    task_status: trio.TaskStatus[list[Any]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` of ``server`` on ``host:port``, a listener of its own (an App
    with that one route), until cancelled; ``task_status.started`` gets the listeners."""
    from pyserver.trio.http.app import App

    app = App(serve_client=False, health_path=None)
    app.add_route("/metrics", metrics_endpoint(server))
    await app.serve(host, port, task_status=task_status)


def exposition(server: Server) -> Exposition:
    """Every metric of ``server`` now (counters as they are, live values read now)."""
    out = Exposition()
    out.gauge(
        "pyserver_build_info",
        "pyserver's version and the Python running it (always 1).",
        [({"version": _version(), "python": platform.python_version()}, 1)],
    )
    _engine(out, server)
    _namespaces(out, server)
    _adapter(out, server)
    return out


def _version() -> str:
    """The installed pyserver's version (not ``pyserver.__version__``: importing the
    package from here would be an import cycle)."""
    try:
        return version("pyserver")
    except PackageNotFoundError:
        return "unknown"


def _engine(out: Exposition, server: Server) -> None:
    eio = server.eio
    counters = eio.counters
    transports = {"polling": 0, "websocket": 0}
    depths = {"polling": Histogram(DEPTH_BUCKETS), "websocket": Histogram(DEPTH_BUCKETS)}
    for session in list(eio.sessions.values()):
        transport = session.transport.value
        transports[transport] = transports.get(transport, 0) + 1
        depths[transport].observe(session.outbox_depth)
    out.gauge(
        "pyserver_engine_connections",
        "Engine.IO sessions open now, by transport.",
        [({"transport": name}, count) for name, count in transports.items()],
    )
    out.counter(
        "pyserver_engine_connections_opened",
        "Engine.IO sessions opened, by the transport they opened on.",
        _by("transport", counters.opened, ("polling", "websocket")),
    )
    out.counter(
        "pyserver_engine_connections_closed",
        "Engine.IO sessions ended, by close reason.",
        _by("reason", counters.closed),
    )
    out.counter(
        "pyserver_engine_upgrades", "Sessions upgraded to WebSocket.", [({}, counters.upgrades)]
    )
    out.counter(
        "pyserver_engine_requests_refused",
        "Engine.IO requests refused, by Engine.IO error code.",
        [({"code": str(code)}, count) for code, count in sorted(counters.refused.items())],
    )
    out.counter(
        "pyserver_engine_packets",
        "Engine.IO message packets, by direction (a broadcast counts once per recipient).",
        [({"direction": "in"}, counters.packets_in), ({"direction": "out"}, counters.packets_out)],
    )
    out.counter(
        "pyserver_engine_bytes",
        "Payload length of the Engine.IO message packets (characters of text, bytes of binary).",
        [({"direction": "in"}, counters.bytes_in), ({"direction": "out"}, counters.bytes_out)],
    )
    out.counter(
        "pyserver_slow_client_disconnects",
        "Sessions closed because their outbox was full (slow consumers), by transport.",
        _by("transport", counters.slow_consumers, ("polling", "websocket")),
    )
    out.histogram(
        "pyserver_send_queue_depth",
        "Messages queued per session and not yet written, sampled when scraped.",
        [({"transport": name}, histogram) for name, histogram in depths.items()],
    )


def _namespaces(out: Exposition, server: Server) -> None:
    groups: dict[int, tuple[NamespaceCounters, list[Namespace]]] = {}
    for parent in server.dynamic_namespaces:
        groups.setdefault(id(parent.counters), (parent.counters, []))
    for nsp in list(server.namespaces.values()):
        groups.setdefault(id(nsp.counters), (nsp.counters, []))[1].append(nsp)
    rows = list(groups.values())

    def each(value: Any) -> list[tuple[dict[str, str], float]]:
        return [({"namespace": c.name}, value(c)) for c, _ in rows]

    def live(value: Any) -> list[tuple[dict[str, str], float]]:
        return [({"namespace": c.name}, sum(value(nsp) for nsp in group)) for c, group in rows]

    out.gauge("pyserver_sockets", "Sockets connected now.", live(lambda n: len(n.sockets)))
    out.counter(
        "pyserver_socket_connects",
        "Sockets admitted (ok: new, recovered: given back by connection state recovery) "
        "and CONNECTs refused.",
        [
            ({"namespace": c.name, "result": result}, value)
            for c, _ in rows
            for result, value in (
                ("ok", c.connects - c.recovered),
                ("recovered", c.recovered),
                ("refused", c.refused),
            )
        ],
    )
    out.counter(
        "pyserver_socket_disconnects",
        "Sockets that left, by disconnect reason.",
        [
            ({"namespace": c.name, "reason": reason}, count)
            for c, _ in rows
            for reason, count in sorted(c.disconnects.items())
        ],
    )
    by_name = server_counts_by_name(rows)
    out.counter(
        "pyserver_events",
        "Socket.IO events received from clients (in) and queued for them (out; a broadcast "
        "once per local recipient). With an event allowlist, by event name.",
        by_name
        if by_name is not None
        else [
            ({"namespace": c.name, "direction": direction}, value)
            for c, _ in rows
            for direction, value in (("in", c.events_in), ("out", c.events_out))
        ],
    )
    out.counter(
        "pyserver_acks_requested", "Events emitted asking for an ack.", each(_acks_requested)
    )
    out.counter("pyserver_acks_answered", "Acks received in time.", each(_acks_answered))
    out.counter("pyserver_ack_timeouts", "Acks whose deadline passed first.", each(_ack_timeouts))
    out.counter("pyserver_acks_sent", "Acks sent for clients' events.", each(_acks_sent))
    out.counter(
        "pyserver_rate_limited_events",
        "Events refused by the rate limit.",
        each(lambda c: c.rate_limited),
    )
    out.counter(
        "pyserver_volatile_dropped",
        "Volatile packets not sent as the recipient was not writable.",
        each(lambda c: c.volatile_skipped),
    )
    out.histogram(
        "pyserver_handler_duration_seconds",
        "How long an event's handlers ran (middleware, on_any and the handler).",
        [({"namespace": c.name}, c.handler_seconds) for c, _ in rows],
    )
    out.gauge(
        "pyserver_rooms",
        "Rooms now (a socket's own room not counted).",
        live(lambda n: sum(1 for room in n.adapter.room_sizes() if room not in n.sockets)),
    )
    out.gauge(
        "pyserver_room_tasks",
        "Tasks running in room nurseries now.",
        live(lambda n: sum(room.tasks for room in n.room_nurseries.values())),
    )
    out.gauge(
        "pyserver_pending_events",
        "Events waiting for their socket's handlers now.",
        live(lambda n: sum(socket.pending for socket in n.sockets.values())),
    )
    out.gauge(
        "pyserver_recovery_sessions",
        "Sessions connection state recovery keeps now for sockets that may come back.",
        live(lambda n: n.recovery.sessions_kept if n.recovery is not None else 0),
    )
    out.counter(
        "pyserver_recovery_sessions_kept",
        "Sessions kept by connection state recovery when their socket left.",
        each(lambda c: c.recovery_kept),
    )


def server_counts_by_name(
    rows: list[tuple[NamespaceCounters, list[Namespace]]],
) -> list[tuple[dict[str, str], float]] | None:
    """The by-name event counts, or None when no namespace counts by name."""
    if all(c.event_names is None for c, _ in rows):
        return None
    return [
        ({"namespace": c.name, "direction": direction, "event": event}, count)
        for c, _ in rows
        for (direction, event), count in sorted(c.events_by_name.items())
    ]


def _acks_requested(c: NamespaceCounters) -> int:
    return c.acks_requested


def _acks_answered(c: NamespaceCounters) -> int:
    return c.acks_answered


def _ack_timeouts(c: NamespaceCounters) -> int:
    return c.acks_timed_out


def _acks_sent(c: NamespaceCounters) -> int:
    return c.acks_sent


def _adapter(out: Exposition, server: Server) -> None:
    """The Redis adapter's publish queue and reconnects (:class:`RedisAdapter` only)."""
    factory = server.adapter_factory
    queued = getattr(factory, "publish_queued", None)
    if queued is None:
        return
    messages, size = queued
    out.gauge(
        "pyserver_adapter_publish_queue",
        "Messages for other nodes waiting to be published, and their bytes.",
        [({"unit": "messages"}, messages), ({"unit": "bytes"}, size)],
    )
    out.counter(
        "pyserver_adapter_reconnects",
        "Times the Redis adapter got its subscriptions back after losing them.",
        [({}, getattr(factory, "reconnects", 0))],
    )
    out.counter(
        "pyserver_adapter_publish_dropped",
        "Messages for other nodes dropped as the publish queue was full.",
        [({}, getattr(factory, "dropped_total", 0))],
    )


def _by(
    label: str, counts: dict[str, int], always: Iterable[str] = ()
) -> list[tuple[dict[str, str], float]]:
    keys = [*always, *sorted(key for key in counts if key not in always)]
    return [({label: key}, counts.get(key, 0)) for key in keys]
