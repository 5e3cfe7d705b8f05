"""State sync for rooms whose state every client must share: a versioned state, a snapshot
for late joiners and ordered deltas with sequence numbers for everyone else.

This is a sans-IO piece (no trio, no clock, no randomness, no sockets): the application owns
the state, the transport and where epochs come from (``new_epoch``, called for the first
epoch and at every ``reset``). The drawing board and the game of ``pyserver demo`` are
written on it::

    board = SyncedState(initial=[], apply=lambda strokes, batch: strokes + batch,
                        new_epoch=lambda: secrets.token_hex(6), max_deltas=2000)

    @sio.on("strokes")
    async def strokes(socket, batch):
        seq = board.commit(batch)                       # the delta gets the next number
        sio.to(room).emit("delta", board.delta_message(seq, batch))

    @sio.on("sync")                                     # a (re)connecting client says
    async def sync(socket, known):                      # what it has: {"epoch", "version"}
        return board.catch_up(known)                    # only what it missed, or a snapshot

The wire shapes (all JSON-friendly):

* snapshot ``{"type": "snapshot", "epoch": e, "version": v, "state": s}``
* deltas   ``{"type": "deltas", "epoch": e, "from": v0, "version": v, "deltas": [[seq, d], ...]}``
* one delta ``{"type": "delta", "epoch": e, "seq": n, "delta": d}`` (a live update)

Rules:

* The version is the sequence number of the last committed delta (0 for the initial state).
  Sequence numbers are consecutive, so a client that sees ``seq != its version + 1`` knows it
  missed something and asks for ``catch_up`` again.
* ``epoch`` is fresh for every ``SyncedState`` (and every ``reset``): a client that knows
  another epoch (the server restarted, the board was cleared) gets a snapshot. So
  ``new_epoch()`` must not repeat itself, across restarts too: random (``secrets``), as the
  demo draws it, not a counter. It is the caller's to draw, as ``now`` is a sans-IO core's
  caller's to read.
* Memory is bounded: at most ``max_deltas`` deltas, and at most ``max_delta_weight`` in total
  ``weight(delta)`` units, are kept for catching up. A client further behind than the oldest
  kept delta gets a snapshot instead. The state itself is the application's; its ``apply``
  is where it bounds it (the drawing board keeps at most so many strokes).
* ``apply(state, delta)`` returns the new state; it may mutate and return the old one. It
  runs before the delta is numbered, so a delta it rejects (by raising) is not committed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["SyncedState"]

S = TypeVar("S")
D = TypeVar("D")


def _one(delta: object) -> int:
    return 1


class SyncedState(Generic[S, D]):
    """A versioned state with bounded delta history. See the module docstring."""

    __slots__ = (
        "_apply",
        "_deltas",
        "_new_epoch",
        "_weight",
        "_weights",
        "epoch",
        "max_delta_weight",
        "max_deltas",
        "state",
        "version",
        "weight",
    )

    def __init__(
        self,
        initial: S,
        apply: Callable[[S, D], S],
        *,
        new_epoch: Callable[[], str],
        max_deltas: int = 1000,
        max_delta_weight: int | None = None,
        weight: Callable[[D], int] = _one,
    ) -> None:
        if max_deltas < 0:
            raise ValueError("max_deltas must be >= 0")
        self._apply = apply
        self._new_epoch = new_epoch
        self.max_deltas = max_deltas
        self.max_delta_weight = max_delta_weight
        self.weight = weight
        self.state: S = initial
        self.version = 0
        self.epoch = new_epoch()
        self._deltas: deque[tuple[int, D]] = deque()
        self._weights: deque[int] = deque()
        self._weight = 0

    # -- writing -----------------------------------------------------------------------------

    def commit(self, delta: D) -> int:
        """Apply ``delta`` to the state and number it; return its sequence number."""
        self.state = self._apply(self.state, delta)
        self.version += 1
        if self.max_deltas:
            w = self.weight(delta)
            self._deltas.append((self.version, delta))
            self._weights.append(w)
            self._weight += w
            self._trim()
        return self.version

    def reset(self, state: S) -> None:
        """Replace the whole state (a cleared board, a new match): a new epoch, no history,
        so every client resynchronises from a snapshot."""
        self.state = state
        self.version = 0
        self.epoch = self._new_epoch()
        self._deltas.clear()
        self._weights.clear()
        self._weight = 0

    def _trim(self) -> None:
        limit = self.max_delta_weight
        while len(self._deltas) > self.max_deltas or (
            limit is not None and self._weight > limit and self._deltas
        ):
            self._deltas.popleft()
            self._weight -= self._weights.popleft()

    # -- reading -----------------------------------------------------------------------------

    @property
    def oldest_version(self) -> int:
        """The oldest version a client can catch up from with deltas alone."""
        if self._deltas:
            return self._deltas[0][0] - 1
        return self.version

    @property
    def kept_deltas(self) -> int:
        return len(self._deltas)

    def snapshot(self) -> dict[str, Any]:
        return {
            "type": "snapshot",
            "epoch": self.epoch,
            "version": self.version,
            "state": self.state,
        }

    def delta_message(self, seq: int, delta: D) -> dict[str, Any]:
        """The live update for one committed delta."""
        return {"type": "delta", "epoch": self.epoch, "seq": seq, "delta": delta}

    def deltas_since(self, version: int) -> list[tuple[int, D]] | None:
        """The deltas after ``version``, or None when they are no longer all kept (or the
        version is from the future: a client of another life of this state)."""
        if version > self.version or version < self.oldest_version:
            return None
        if version == self.version:
            return []
        start = version - self.oldest_version  # deltas are consecutive
        return [self._deltas[i] for i in range(start, len(self._deltas))]

    def catch_up(self, known: Mapping[str, Any] | None) -> dict[str, Any]:
        """What a client that has ``known = {"epoch", "version"}`` needs: the missed deltas,
        or a snapshot (no ``known``, another epoch, too far behind, or malformed input)."""
        if not isinstance(known, Mapping) or known.get("epoch") != self.epoch:
            return self.snapshot()
        version = known.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            return self.snapshot()
        missed = self.deltas_since(version)
        if missed is None:
            return self.snapshot()
        return {
            "type": "deltas",
            "epoch": self.epoch,
            "from": version,
            "version": self.version,
            "deltas": [[seq, delta] for seq, delta in missed],
        }
