"""The per-socket event rate limit (sans-IO: the shell passes ``now``).

A fixed window: at most ``events`` events per ``seconds``. An event over the limit is
refused (:attr:`Verdict.REFUSED`). A socket that is refused in ``flood_windows`` windows in a
row (each window in which it went over, consecutive in time) is flooding
(:attr:`Verdict.FLOODING`): the shell disconnects it. A window in which the socket stayed
under the limit resets that count.

:class:`Refusals` keeps what one connection was refused, so that its log lines and
``"error"`` events stay bounded (see :mod:`pyserver.trio.socketio.client`).
"""

from __future__ import annotations

import enum

__all__ = ["RateLimit", "RateLimiter", "Refusals", "Verdict"]

RateLimit = tuple[int, float]
"""``(events, seconds)``: at most ``events`` events per window of ``seconds``."""


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    REFUSED = "refused"
    FLOODING = "flooding"


class RateLimiter:
    """The rate limit state of one socket."""

    __slots__ = (
        "_count",
        "_over_streak",
        "_refused",
        "_window_start",
        "events",
        "flood_windows",
        "seconds",
    )

    def __init__(self, limit: RateLimit, *, flood_windows: int = 3) -> None:
        events, seconds = limit
        if events < 1 or seconds <= 0 or flood_windows < 1:
            raise ValueError("rate_limit must be (events >= 1, seconds > 0)")
        self.events = int(events)
        self.seconds = float(seconds)
        self.flood_windows = flood_windows
        self._window_start: float | None = None
        self._count = 0
        self._refused = False
        self._over_streak = 0

    def check(self, now: float) -> Verdict:
        """Count one event at ``now`` and say whether it may run."""
        start = self._window_start
        if start is None or now - start >= self.seconds:
            # a new window; the streak survives only if the previous window went over and
            # this one follows it directly
            if not self._refused or start is None or now - start >= 2 * self.seconds:
                self._over_streak = 0
            self._window_start = now
            self._count = 0
            self._refused = False
        self._count += 1
        if self._count <= self.events:
            return Verdict.ALLOWED
        if not self._refused:
            self._refused = True
            self._over_streak += 1
        return Verdict.FLOODING if self._over_streak >= self.flood_windows else Verdict.REFUSED


class Refusals:
    """What one connection was refused (events over a rate limit or a full queue), so that
    its log lines and its ``"error"`` events stay bounded: one log line per window, saying
    how many were refused since the previous one; one ``"error"`` event per window (a
    refused event with an ack id is always acked: see :mod:`pyserver.trio.socketio.client`). Made on
    the first refusal (an idle connection has none)."""

    __slots__ = ("_error_sent", "_window_start", "unlogged")

    def __init__(self) -> None:
        self._window_start: float | None = None
        self._error_sent = False
        #: Refusals since the last log line (not logged).
        self.unlogged = 0

    def refused(self, now: float, seconds: float) -> int | None:
        """Count one refusal at ``now`` (``seconds``: the window). The first of a window is
        logged: it gets how many were refused, unlogged, before it; the others get None."""
        start = self._window_start
        if start is None or now - start >= seconds:
            self._window_start = now
            self._error_sent = False
            earlier, self.unlogged = self.unlogged, 0
            return earlier
        self.unlogged += 1
        return None

    def may_send_error(self) -> bool:
        """Whether a refused event without ack gets its ``"error"`` event (once a window)."""
        if self._error_sent:
            return False
        self._error_sent = True
        return True
