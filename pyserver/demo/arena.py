"""Orb Rush's simulation and its state sync (:mod:`pyserver.demo.game` is the game around it).

Plain code with no I/O and no clock, testable as functions: :class:`World` is one match's
players, orbs and tick counter; :meth:`World.step` moves everyone along the held direction
(:func:`move`, at ``SPEED``, diagonals no faster), pushes overlapping players apart
(:func:`separate`) and hands out orbs (:func:`touches`), with ``dt`` passed by the caller's
loop. :func:`diff` turns two public views into the delta a client applies with
:func:`apply_delta` (the page does the same). The arena's sizes live here; the game's
limits on matches, names and rates live with the game.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ARENA_H",
    "ARENA_W",
    "COLOURS",
    "MAX_PLAYERS",
    "ORBS",
    "ORB_R",
    "PLAYER_R",
    "SPEED",
    "BadInput",
    "Json",
    "Player",
    "World",
    "apply_delta",
    "clamp",
    "diff",
    "move",
    "separate",
    "touches",
]

ARENA_W = 800
ARENA_H = 500
PLAYER_R = 16.0
ORB_R = 9.0
SPEED = 220.0  # px per second
ORBS = 5
MAX_PLAYERS = 8
"""Players per match (a world's default; the game passes its own)."""
COLOURS = (
    "#ef4444",
    "#3b82f6",
    "#22c55e",
    "#f59e0b",
    "#a855f7",
    "#14b8a6",
    "#ec4899",
    "#84cc16",
)

Json = dict[str, Any]


class BadInput(ValueError):
    """The client sent something the game refuses; the message goes back in the ack."""


# -- the simulation ------------------------------------------------------------------------


@dataclass
class Player:
    id: str
    name: str
    colour: str
    x: float
    y: float
    score: int = 0
    dx: int = 0
    dy: int = 0
    seq: int = -1
    token: str | None = field(default=None, repr=False)

    def view(self) -> Json:
        return {
            "name": self.name,
            "colour": self.colour,
            "x": round(self.x, 1),
            "y": round(self.y, 1),
            "score": self.score,
        }


def move(player: Player, dt: float) -> None:
    """Move along the held direction at ``SPEED`` (diagonals no faster), inside the arena."""
    dx, dy = player.dx, player.dy
    if dx or dy:
        scale = SPEED * dt / math.hypot(dx, dy)
        player.x += dx * scale
        player.y += dy * scale
    clamp(player)


def clamp(player: Player) -> None:
    player.x = min(max(player.x, PLAYER_R), ARENA_W - PLAYER_R)
    player.y = min(max(player.y, PLAYER_R), ARENA_H - PLAYER_R)


def separate(a: Player, b: Player) -> bool:
    """Push two overlapping players apart, half the overlap each; True if they touched."""
    ddx, ddy = b.x - a.x, b.y - a.y
    dist = math.hypot(ddx, ddy)
    overlap = 2 * PLAYER_R - dist
    if overlap <= 0:
        return False
    if dist < 1e-9:  # same spot: part them horizontally
        ddx, ddy, dist = 1.0, 0.0, 1.0
    push = overlap / 2 / dist
    a.x -= ddx * push
    a.y -= ddy * push
    b.x += ddx * push
    b.y += ddy * push
    clamp(a)
    clamp(b)
    return True


def touches(player: Player, orb: tuple[float, float]) -> bool:
    return math.hypot(player.x - orb[0], player.y - orb[1]) < PLAYER_R + ORB_R


class World:
    """One match's simulation: players, orbs and the tick counter."""

    def __init__(self, rng: random.Random | None = None, max_players: int = MAX_PLAYERS) -> None:
        self.rng = rng or random.Random()
        self.max_players = max_players
        self.players: dict[str, Player] = {}
        self.orbs: dict[str, tuple[float, float]] = {}
        self.tick = 0
        self._next_id = 1
        for i in range(ORBS):
            self.orbs[f"o{i}"] = self._free_spot(ORB_R)

    def _free_spot(self, radius: float) -> tuple[float, float]:
        """A random point whose circle overlaps no player (the last try if none is free)."""
        spot = (0.0, 0.0)
        for _ in range(30):
            spot = (
                self.rng.uniform(radius + 4, ARENA_W - radius - 4),
                self.rng.uniform(radius + 4, ARENA_H - radius - 4),
            )
            if all(
                math.hypot(p.x - spot[0], p.y - spot[1]) > PLAYER_R + radius + 4
                for p in self.players.values()
            ):
                break
        return spot

    def add_player(self, name: str, token: str | None = None) -> Player:
        if len(self.players) >= self.max_players:
            raise BadInput(f"this match is full ({self.max_players} players)")
        used = {p.colour for p in self.players.values()}
        colour = next((c for c in COLOURS if c not in used), COLOURS[0])
        x, y = self._free_spot(PLAYER_R)
        player = Player(f"p{self._next_id}", name, colour, x, y, token=token)
        self._next_id += 1
        self.players[player.id] = player
        return player

    def remove_player(self, pid: str) -> None:
        self.players.pop(pid, None)

    def by_token(self, token: str | None) -> Player | None:
        if token is None:
            return None
        return next((p for p in self.players.values() if p.token == token), None)

    def set_input(self, pid: str, seq: int, dx: int, dy: int) -> bool:
        """Hold ``(dx, dy)`` from now on; False (ignored) for an old ``seq``."""
        player = self.players.get(pid)
        if player is None or seq <= player.seq:
            return False
        player.seq, player.dx, player.dy = seq, dx, dy
        return True

    def step(self, dt: float) -> None:
        """One tick: move, resolve collisions between players, collect orbs."""
        self.tick += 1
        players = list(self.players.values())
        for player in players:
            move(player, dt)
        for i, a in enumerate(players):
            for b in players[i + 1 :]:
                separate(a, b)
        for oid, orb in self.orbs.items():
            for player in players:
                if touches(player, orb):
                    player.score += 1
                    self.orbs[oid] = self._free_spot(ORB_R)
                    break

    def view(self) -> Json:
        """The public state, as clients see it (JSON)."""
        return {
            "tick": self.tick,
            "players": {pid: p.view() for pid, p in self.players.items()},
            "orbs": {oid: [round(x, 1), round(y, 1)] for oid, (x, y) in self.orbs.items()},
        }


# -- state sync: a delta is what changed between two views ---------------------------------


def diff(old: Json, new: Json) -> Json | None:
    """The delta turning view ``old`` into ``new``, None when only the tick moved."""
    players: Json = {}
    for pid, fields in new["players"].items():
        before = old["players"].get(pid)
        if before is None:
            players[pid] = dict(fields)
        else:
            changed = {k: v for k, v in fields.items() if before.get(k) != v}
            if changed:
                players[pid] = changed
    left = [pid for pid in old["players"] if pid not in new["players"]]
    orbs = {oid: xy for oid, xy in new["orbs"].items() if old["orbs"].get(oid) != xy}
    if not (players or left or orbs):
        return None
    delta: Json = {"tick": new["tick"]}
    if players:
        delta["players"] = players
    if left:
        delta["left"] = left
    if orbs:
        delta["orbs"] = orbs
    return delta


def apply_delta(state: Json, delta: Json) -> Json:
    """Merge ``delta`` into ``state`` (in place; the client does the same)."""
    state["tick"] = delta["tick"]
    players = state["players"]
    for pid, fields in delta.get("players", {}).items():
        players.setdefault(pid, {}).update(fields)
    for pid in delta.get("left", ()):
        players.pop(pid, None)
    state["orbs"].update(delta.get("orbs", {}))
    return state
