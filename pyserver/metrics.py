"""The server's counters and their Prometheus text exposition (sans-IO).

What an operator alerts on is counted where it happens, as plain ``int`` attributes (and a
few small dicts keyed by a bounded label) bumped in place: no lock, no label lookup per
message, nothing read until someone asks. Reading is :func:`render`, the Prometheus text
exposition format 0.0.4, written here (``prometheus_client`` is only the tests' parser).

The counters, the attribute names (stable: the Admin UI reads them too) and where they are
bumped:

:class:`EngineCounters` (``EngineIOServer.counters``, one per Engine.IO server, always on: a
bump is one slot increment), Engine.IO message packets only (no pings, no noops):

* ``packets_in`` / ``bytes_in``: every message packet received, and its payload length
  (characters of a text message, bytes of a binary one, without the ``4``): WebSocket in
  ``EngineSession._receive_ws``, long-polling in ``SessionTable._process``
  (``MessageReceived``). The admin UI's ``packetsIn`` / ``bytesIn``.
* ``packets_out`` / ``bytes_out``: every message packet queued for a client, the same way:
  ``EngineSession.send`` and ``send_encoded``, and ``send_encoded_many`` (a broadcast adds
  its recipients times its packets once). The admin UI's ``packetsOut`` / ``bytesOut``.
* ``opened[transport]``: sessions opened, by the transport they opened on
  (``SessionTable._new_session``); the admin UI's ``rawConnection``.
* ``closed[reason]``: sessions ended, by their Engine.IO ``CloseReason`` value ("transport
  close", "ping timeout", ..., ``SessionTable._closed``); the admin UI's
  ``rawDisconnection`` with that reason.
* ``upgrades``: sessions upgraded from polling to WebSocket (``WebSocketTransport._probe_loop``).
* ``slow_consumers[transport]``: sessions closed because their outbox was full: a WebSocket
  closed 1008 "slow consumer" by its outbox (``WebSocketTransport._ws_ended``), a polling
  session whose queue overflowed ("outgoing queue full", ``SessionTable._closed``).
* ``refused[code]``: requests refused, by Engine.IO error code (``SessionTable._report_refusal``).

Live values (sessions by transport, outbox depths, rooms, ...) are not counters: the Trio
side reads them when scraped (:mod:`pyserver.trio.metrics`).

:class:`NamespaceCounters` (``Namespace.counters``; a dynamic namespace's children share
their parent's, so the ``namespace`` label stays bounded) count the Socket.IO layer; see its
docstring.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = [
    "CONTENT_TYPE",
    "DEPTH_BUCKETS",
    "DURATION_BUCKETS",
    "HANDLER_SAMPLE",
    "OTHER_EVENT",
    "EngineCounters",
    "Exposition",
    "Histogram",
    "NamespaceCounters",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of :func:`render`'s output."""

HANDLER_SAMPLE = 8
"""Metrics on, one event in this many (per namespace) has its handlers timed."""

OTHER_EVENT = "_other"
"""The ``event`` label of events whose name is not in the allowlist."""

DURATION_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.0005,
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
)
"""Seconds: the handler duration histogram's upper bounds (``+Inf`` is implied)."""

DEPTH_BUCKETS: tuple[float, ...] = (0, 1, 4, 16, 64, 256, 1024, 4096)
"""Messages: the outbox depth histogram's upper bounds."""


Watch = Callable[[str, str, str | None, str, int], None]
"""``watch(direction, namespace, sid, event, count)``: see :class:`NamespaceCounters`."""


class EngineCounters:
    """The Engine.IO server's counters (see the module docstring for where each is bumped)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "closed",
        "opened",
        "packets_in",
        "packets_out",
        "refused",
        "slow_consumers",
        "upgrades",
    )

    def __init__(self) -> None:
        self.packets_in = 0
        self.packets_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.opened: dict[str, int] = {}
        self.closed: dict[str, int] = {}
        self.upgrades = 0
        self.refused: dict[int, int] = {}
        self.slow_consumers: dict[str, int] = {}


class NamespaceCounters:
    """One namespace's Socket.IO counters (a dynamic namespace's children share these).

    * ``connects``: sockets admitted (``Socket._connected``); ``recovered``: of which
      restored by connection state recovery; ``refused``: CONNECTs to this namespace refused
      (its middleware, ``Admission._refuse``).
    * ``disconnects[reason]``: sockets that left, by disconnect reason ("client namespace
      disconnect", "transport close", "ping timeout", ..., ``Socket._left``).
    * ``events_in``: EVENT packets received from clients on joined sockets
      (``Client.receive``, rate-limited ones included); ``events_out``: EVENT packets queued
      for clients (``Socket.emit``, ``Socket.emit_with_callback``, and a broadcast once per
      local recipient in ``InMemoryAdapter.broadcast``).
    * ``acks_requested``: events emitted with an ack asked for (``emit_with_callback``, what
      ``emit_with_ack`` and broadcasts with acks use); ``acks_answered``: answers received
      for them; ``acks_timed_out``: deadlines passed first (``Client._handle``).
      ``acks_sent``: acks sent for the handlers' results (``HandlerQueue._ack``).
    * ``rate_limited``: events refused by the socket's rate limit (``Client._within_rate``).
    * ``volatile_skipped``: volatile packets not sent as the recipient was not writable
      (``InMemoryAdapter.broadcast``, ``local_broadcast_with_ack``).
    * ``handler_seconds``: how long each event's handlers ran (``HandlerQueue._run``), only
      sampled: while ``timed`` is not 0 (metrics on) one event in :data:`HANDLER_SAMPLE`
      is timed (``timed`` counts down to it), which keeps the two clock reads and the
      bucket search off the other events (timing every event cost 5% of an echo).
    * ``recovery_kept``: sockets whose session connection state recovery kept when they
      left (``Socket._left``); restored ones are ``recovered``.
    * ``watch``: None, or ``watch(direction, namespace, sid, event, count)`` called for every
      event received (``"in"``) or sent (``"out"``; ``sid`` None and ``count`` the
      recipients for a broadcast): the per-event log (:meth:`add_listener`) and the counts
      by event name (:meth:`count_by_name`) hang there, so neither costs more than one
      attribute test while off.
    * ``events_by_name[(direction, event)]``: the events by name once :meth:`count_by_name`
      was called (a name outside its allowlist counts as ``_other``).
    """

    __slots__ = (
        "acks_answered",
        "acks_requested",
        "acks_sent",
        "acks_timed_out",
        "connects",
        "disconnects",
        "event_names",
        "events_by_name",
        "events_in",
        "events_out",
        "handler_seconds",
        "listeners",
        "name",
        "rate_limited",
        "recovered",
        "recovery_kept",
        "refused",
        "timed",
        "volatile_skipped",
        "watch",
    )

    def __init__(self, name: str) -> None:
        #: The ``namespace`` label (a dynamic namespace's pattern, not a child's name).
        self.name = name
        self.connects = 0
        self.recovered = 0
        self.refused = 0
        self.disconnects: dict[str, int] = {}
        self.events_in = 0
        self.events_out = 0
        self.events_by_name: dict[tuple[str, str], int] = {}
        self.acks_requested = 0
        self.acks_answered = 0
        self.acks_timed_out = 0
        self.acks_sent = 0
        self.rate_limited = 0
        self.volatile_skipped = 0
        self.recovery_kept = 0
        self.handler_seconds = Histogram(DURATION_BUCKETS)
        self.timed = 0
        self.watch: Watch | None = None
        self.event_names: frozenset[str] | None = None
        self.listeners: list[Watch] = []

    def count_by_name(self, names: Iterable[str]) -> None:
        """Count events by name from now on: those in ``names`` under their name, the others
        under ``_other`` (event names are the client's choice: never an unbounded label)."""
        self.event_names = frozenset(names)
        self._rewatch()

    def add_listener(self, listener: Watch) -> None:
        """Call ``listener(direction, namespace, sid, event, count)`` for every event from
        now on (once, however often it is added)."""
        if listener not in self.listeners:
            self.listeners.append(listener)
        self._rewatch()

    def _rewatch(self) -> None:
        self.watch = self._watch if self.event_names is not None or self.listeners else None

    def _watch(
        self, direction: str, namespace: str, sid: str | None, event: str, count: int
    ) -> None:
        names = self.event_names
        if names is not None:
            key = (direction, event if event in names else OTHER_EVENT)
            by_name = self.events_by_name
            by_name[key] = by_name.get(key, 0) + count
        for listener in self.listeners:
            listener(direction, namespace, sid, event, count)


class Histogram:
    """A Prometheus histogram: counts per upper bound (``le``), a sum and a count."""

    __slots__ = ("bounds", "buckets", "count", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.buckets = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` for every bound and ``+Inf``."""
        out = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.buckets, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out


Labels = Mapping[str, str]


class Exposition:
    """Builds the text exposition: one family at a time, then :meth:`text`."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self, name: str, kind: str, help: str, samples: Iterable[tuple[Labels, float]]
    ) -> None:
        """A counter (``name`` without ``_total``: added here), gauge or untyped family."""
        lines = self._lines
        sample_name = f"{name}_total" if kind == "counter" else name
        # (a counter's HELP and TYPE name its samples, ``_total`` included, as
        # prometheus_client writes them and its text parser reads them)
        lines.append(f"# HELP {sample_name} {_escape_help(help)}")
        lines.append(f"# TYPE {sample_name} {kind}")
        for labels, value in samples:
            lines.append(f"{sample_name}{_labels(labels)} {_number(value)}")

    def counter(self, name: str, help: str, samples: Iterable[tuple[Labels, float]]) -> None:
        self.family(name, "counter", help, samples)

    def gauge(self, name: str, help: str, samples: Iterable[tuple[Labels, float]]) -> None:
        self.family(name, "gauge", help, samples)

    def histogram(self, name: str, help: str, samples: Iterable[tuple[Labels, Histogram]]) -> None:
        lines = self._lines
        lines.append(f"# HELP {name} {_escape_help(help)}")
        lines.append(f"# TYPE {name} histogram")
        for labels, histogram in samples:
            for le, total in histogram.cumulative():
                lines.append(f"{name}_bucket{_labels({**labels, 'le': le})} {total}")
            lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.sum)}")
            lines.append(f"{name}_count{_labels(labels)} {histogram.count}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def render(exposition: Exposition) -> bytes:
    """The exposition as the body of a ``/metrics`` answer (:data:`CONTENT_TYPE`)."""
    return exposition.text().encode()


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_value(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(float(value))
