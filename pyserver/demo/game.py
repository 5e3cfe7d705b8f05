"""Orb Rush, the demo's multiplayer game: players are coloured circles in an arena, moving
with the arrow keys to collect orbs. Page ``/game/``, namespace ``/game``.

The server is authoritative. Clients send only their key state; the server simulates the
match at ``TICK_RATE`` Hz in a task of the match room's nursery
(``sio.of("/game").room("match:<name>").start_soon(...)``), so the loop starts with the first
player and is cancelled when the room empties. Each match's public state is a
:class:`~pyserver.extras.statesync.SyncedState`: a snapshot for a joiner, one numbered delta per
tick in which something changed, and a short history (``HISTORY`` ticks) so a client that missed
deltas gets only those (or a fresh snapshot when it is further behind).

The simulation (:class:`World`, :func:`move`, :func:`separate`, ...) and the deltas
(:func:`diff`, :func:`apply_delta`) are plain code with no I/O and no clock, in
:mod:`pyserver.demo.arena` (re-exported here): the loop passes ``dt``.

Wire (client -> server; every answer is the ack, ``{"error": msg}`` for bad input):

* ``join {"match", "name", "token"?, "known"?}`` -> ``{"ok", "you", "match", "arena", "tick",
  "sync"}``: ``sync`` is ``catch_up(known)`` (a snapshot, or the deltas missed since
  ``known = {"epoch", "version"}``). ``token`` (16 to 64 url-safe characters, kept by the
  page) lets a reconnecting page take its player back (score and place) before the server
  has noticed that the old connection is gone; the old socket then gets ``replaced``.
* ``input {"seq", "dx", "dy"}`` -> ``{"ok"}``: ``dx``/``dy`` in -1, 0, 1; ``seq`` increases
  (an older or repeated one is ignored, so reordered input never wins).
* ``sync {"epoch", "version"}`` -> ``{"sync", "tick"}``: what the client missed.

Server -> client: ``delta`` (the ``SyncedState`` live update, whose ``delta`` carries
``tick``, changed ``players`` fields, ``left`` player ids and moved ``orbs``). Tick deltas
go **volatile** to WebSocket clients: a client whose outbox still holds data (a slow link)
skips that tick rather than queueing stale positions behind it; the gap in sequence numbers
tells it to ask ``sync``, which answers the missed deltas in one message (or a snapshot). So
a slow client costs no backlog and always converges on the current state. Long-polling
clients get every delta queued instead (see :meth:`Game._broadcast`). Joins and leaves are
never volatile.

Bounds: ``MAX_MATCHES`` matches, ``MAX_PLAYERS`` per match, one player per socket,
``HISTORY`` deltas per match, names of ``MAX_NAME`` characters, ``RATE_LIMIT`` events per
socket. Matches live in this process: with the Redis adapter each node runs its own copy of
a match (deltas are sent ``local``), so players of one match should reach the same node.
"""

from __future__ import annotations

import random
import re
import secrets
import unicodedata
import weakref
from collections.abc import Mapping
from typing import Any, TypeGuard

import trio

from pyserver import Namespace, Server, Socket
from pyserver.demo.arena import (
    ARENA_H,
    ARENA_W,
    MAX_PLAYERS,
    ORB_R,
    ORBS,
    PLAYER_R,
    SPEED,
    BadInput,
    Json,
    Player,
    World,
    apply_delta,
    diff,
    move,
    separate,
    touches,
)
from pyserver.extras.statesync import SyncedState

# the simulation's names re-exported: this module is the game's one entry point
__all__ = [
    "ARENA_H",
    "ARENA_W",
    "MAX_PLAYERS",
    "ORBS",
    "ORB_R",
    "PLAYER_R",
    "SPEED",
    "BadInput",
    "Game",
    "Player",
    "World",
    "apply_delta",
    "diff",
    "game_of",
    "move",
    "register",
    "separate",
    "touches",
]

TICK_RATE = 20
MAX_MATCHES = 64
MAX_NAME = 20
HISTORY = 3 * TICK_RATE  # deltas kept for catching up: three seconds
RATE_LIMIT = (40, 1.0)  # events per socket per second (inputs are sent on key changes)
MAX_SEQ = 2**53
MATCH_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


# -- input validation ----------------------------------------------------------------------


def _int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_input(payload: object) -> tuple[int, int, int]:
    """``{"seq", "dx", "dy"}`` -> ``(seq, dx, dy)``, or :class:`BadInput`."""
    if not isinstance(payload, Mapping):
        raise BadInput("input must be an object {seq, dx, dy}")
    seq, dx, dy = payload.get("seq"), payload.get("dx"), payload.get("dy")
    if not _int(seq) or not 0 <= seq < MAX_SEQ:
        raise BadInput("seq must be an integer from 0 to 2**53")
    if not _int(dx) or not _int(dy) or dx not in (-1, 0, 1) or dy not in (-1, 0, 1):
        raise BadInput("dx and dy must be -1, 0 or 1")
    return seq, dx, dy


def clean_name(value: object) -> str:
    """A display name: printable, trimmed, at most ``MAX_NAME`` characters."""
    if not isinstance(value, str):
        return "Player"
    text = "".join(c for c in value[: MAX_NAME * 4] if unicodedata.category(c)[0] != "C")
    text = " ".join(text.split())[:MAX_NAME]
    return text or "Player"


def parse_join(payload: object) -> tuple[str, str, str | None, Any]:
    """``{"match", "name", "token"?, "known"?}`` -> its parts, or :class:`BadInput`."""
    if not isinstance(payload, Mapping):
        raise BadInput("join needs an object {match, name}")
    match = payload.get("match", "lobby")
    if not isinstance(match, str) or not MATCH_RE.fullmatch(match):
        raise BadInput("a match name is 1 to 32 letters, digits, '-' or '_'")
    token = payload.get("token")
    if token is not None and (not isinstance(token, str) or not TOKEN_RE.fullmatch(token)):
        raise BadInput("token must be 16 to 64 letters, digits, '-' or '_'")
    return match, clean_name(payload.get("name")), token, payload.get("known")


# -- matches and the Socket.IO side --------------------------------------------------------


class Match:
    """A match: its world, its synced public state, and which socket plays which player."""

    def __init__(self, name: str, rng: random.Random | None = None) -> None:
        self.name = name
        self.room = f"match:{name}"
        self.world = World(rng, max_players=MAX_PLAYERS)
        self.synced: SyncedState[Json, Json] = SyncedState(
            self.world.view(),
            apply_delta,
            new_epoch=lambda: secrets.token_hex(6),  # random: a restart is a new epoch
            max_deltas=HISTORY,
        )
        self.owners: dict[str, str] = {}  # player id -> socket id

    def publish(self) -> Json | None:
        """Commit what changed since the last commit; the live message, or None."""
        delta = diff(self.synced.state, self.world.view())
        if delta is None:
            return None
        return self.synced.delta_message(self.synced.commit(delta), delta)


def _error(exc: BadInput) -> Json:
    return {"error": str(exc)}


class Game:
    """The ``/game`` namespace's handlers and its matches."""

    def __init__(self, nsp: Namespace) -> None:
        self.nsp = nsp
        self.matches: dict[str, Match] = {}

    def register(self) -> None:
        self.nsp.on("join", self.join)
        self.nsp.on("input", self.input)
        self.nsp.on("sync", self.sync)
        self.nsp.on("disconnect", self.disconnect)

    def _broadcast(self, match: Match, message: Json | None, *, volatile: bool) -> None:
        """Send a live delta to the match (this node's sockets: the world lives here).

        Tick deltas go volatile to WebSocket clients only: on long-polling the outbox is
        normally not empty between two polls, so volatile would drop most ticks there and
        turn every other one into a ``sync``; polling clients get each delta queued."""
        if message is None:
            return
        op = self.nsp.to(match.room).local
        if volatile:
            polling = [
                sid
                for sid in match.owners.values()
                if (s := self.nsp.sockets.get(sid)) is not None and s.transport == "polling"
            ]
            if polling:
                self.nsp.to(polling).local.emit("delta", message)
                op = op.except_(polling)
            op = op.volatile
        op.emit("delta", message)

    def _joined(self, socket: Socket) -> tuple[Match, str] | None:
        entry = socket.data.get("game")
        if entry is None:
            return None
        match = self.matches.get(entry[0])
        if match is None or match.owners.get(entry[1]) != socket.id:
            return None
        return match, entry[1]

    async def join(self, socket: Socket, payload: object = None) -> Json:
        try:
            name, player_name, token, known = parse_join(payload)
            if self._joined(socket) is not None:
                self._leave(socket)
            match = self.matches.get(name)
            if match is None:
                if len(self.matches) >= MAX_MATCHES:
                    raise BadInput("too many matches are running; join an existing one")
                match = self.matches[name] = Match(name)
            player = match.world.by_token(token)
            if player is not None:  # the same page, back before its old socket timed out
                self._replace(match, player.id, socket)
                player.name, player.seq, player.dx, player.dy = player_name, -1, 0, 0
            else:
                player = match.world.add_player(player_name, token)
        except BadInput as exc:
            return _error(exc)
        match.owners[player.id] = socket.id
        socket.data["game"] = (match.name, player.id)
        self._broadcast(match, match.publish(), volatile=False)
        socket.join(match.room)
        room = self.nsp.room(match.room)
        if not room.active:
            room.start_soon(self._run, match.name)
        return {
            "ok": True,
            "you": player.id,
            "match": match.name,
            "arena": {
                "w": ARENA_W,
                "h": ARENA_H,
                "player_r": PLAYER_R,
                "orb_r": ORB_R,
                "tick_rate": TICK_RATE,
            },
            "tick": match.world.tick,
            "sync": match.synced.catch_up(known if isinstance(known, Mapping) else None),
        }

    def _replace(self, match: Match, pid: str, socket: Socket) -> None:
        old = self.nsp.sockets.get(match.owners.get(pid, ""))
        if old is not None and old is not socket:
            old.data.pop("game", None)
            old.leave(match.room)
            old.emit("replaced", {"message": "this player joined from another page"})

    async def input(self, socket: Socket, payload: object = None) -> Json:
        try:
            seq, dx, dy = parse_input(payload)
            joined = self._joined(socket)
            if joined is None:
                raise BadInput("join a match first")
        except BadInput as exc:
            return _error(exc)
        match, pid = joined
        return {"ok": match.world.set_input(pid, seq, dx, dy)}

    async def sync(self, socket: Socket, known: object = None) -> Json:
        joined = self._joined(socket)
        if joined is None:
            return {"error": "join a match first"}
        match = joined[0]
        known_map = known if isinstance(known, Mapping) else None
        return {"sync": match.synced.catch_up(known_map), "tick": match.world.tick}

    async def disconnect(self, socket: Socket, reason: str) -> None:
        self._leave(socket)

    def _leave(self, socket: Socket) -> None:
        joined = self._joined(socket)
        socket.data.pop("game", None)
        if joined is None:
            return
        match, pid = joined
        socket.leave(match.room)
        match.owners.pop(pid, None)
        match.world.remove_player(pid)
        self._broadcast(match, match.publish(), volatile=False)
        self._drop_if_empty(match)

    def _drop_if_empty(self, match: Match) -> None:
        if not match.world.players and self.matches.get(match.name) is match:
            del self.matches[match.name]

    async def _run(self, name: str) -> None:
        """The tick loop of match ``name``, in its room's nursery: cancelled when the room
        empties (after the server's room grace period, if any). It looks the match up by
        name each tick, so a match dropped and made again during a grace period ticks on."""
        period = 1 / TICK_RATE
        deadline = trio.current_time()
        try:
            while True:
                deadline += period
                await trio.sleep_until(deadline)
                late = trio.current_time() - deadline
                if late > 5 * period:  # the process stalled: skip ticks, never spiral
                    deadline += late
                match = self.matches.get(name)
                if match is not None:
                    match.world.step(period)
                    self._broadcast(match, match.publish(), volatile=True)
        finally:
            match = self.matches.get(name)
            if match is not None:
                self._drop_if_empty(match)


_games: weakref.WeakKeyDictionary[Server, Game] = weakref.WeakKeyDictionary()


def register(sio: Server, **options: Any) -> Game:
    """Set up ``/game`` on ``sio`` (``rate_limit=(events, seconds)`` overrides the default)."""
    nsp = sio.of("/game", rate_limit=options.get("rate_limit", RATE_LIMIT))
    assert isinstance(nsp, Namespace)
    game = _games[sio] = Game(nsp)
    game.register()
    return game


def game_of(sio: Server) -> Game | None:
    """The game :func:`register` set up on ``sio`` (for monitoring and tests)."""
    return _games.get(sio)
