"""The collaborative drawing board of the guide, at ``/drawing/`` (namespace ``/drawing``).

What the guide's app does, kept: a colour per user, the user count, clear for everyone,
mouse and touch. What it adds:

* **Boards as rooms.** The page connects with ``auth = {"board": name}`` (from
  ``?board=name``, default ``"main"``); the connection middleware checks the name and joins
  the socket to the board's room, so counts, strokes and clears stay on one board.
* **State sync** (:class:`~pyserver.extras.statesync.SyncedState`). A board's state is the list of
  committed stroke batches; each batch is a numbered delta broadcast to the room (the sender
  included, so every client sees one consecutive sequence). A client that connects or
  reconnects asks ``sync`` with the ``{"epoch", "version"}`` it has and gets only the
  deltas it missed, or a snapshot. Clearing resets the state (a new epoch) and broadcasts the
  empty snapshot.
* **Batches, validated.** The client sends ``strokes`` batches ``{"id", "w", "p"}`` (a batch
  id, a brush width, a flat list ``[x0, y0, x1, y1, ...]`` of segments in board coordinates)
  about every 40 ms. Every field is checked (types, ranges, sizes); a bad batch is answered
  with an ack ``{"error": ...}`` and changes nothing.
* **Bounded memory.** A board holds at most ``max_segments`` segments: past that a batch is
  **refused** with ``{"error": "board full", ...}`` (the page shows it and suggests
  clearing), so what everyone sees stays identical to what a late joiner gets. The delta
  history weighs at most ``max_segments`` segments too, and at most ``max_boards`` boards
  are kept: a new board evicts the least recently used board that nobody is on, or is
  refused when every board is in use.
* **Rate limit**: the namespace's ``rate_limit`` (events per second per socket).

* **Snapshots on disk** (optional: ``register(sio, snapshot_dir=...)`` or
  ``$PYSERVER_DRAWING_DIR``): each board's room runs a snapshotter task in its room nursery
  (it starts with the first user and ends when the board empties), writing the board to
  ``<dir>/<board>.json`` every ``snapshot_interval`` seconds when it changed, and once more
  when the room closes; a board opened again (after a restart, or after eviction) is restored
  from its file (a new epoch, so clients take a snapshot).

Boards live in this process's memory: with the Redis adapter each node keeps its own boards
(the rooms and user counts span the nodes, the drawings do not).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
from collections import OrderedDict
from pathlib import Path
from typing import Any

import trio

from pyserver import ConnectionRefused, Namespace, Server, Socket
from pyserver.extras.statesync import SyncedState

__all__ = [
    "BOARD_HEIGHT",
    "BOARD_WIDTH",
    "PALETTE",
    "BadBatch",
    "Board",
    "BoardFull",
    "Boards",
    "Snapshots",
    "board_name",
    "register",
    "validate_batch",
]

log = logging.getLogger("pyserver.demo")

NAMESPACE = "/drawing"
BOARD_WIDTH = 1200
BOARD_HEIGHT = 750
"""Board coordinates: every client scales its canvas to this logical size."""

WIDTHS = (2, 4, 8, 16)
"""The brush widths a batch may ask for."""

MAX_BATCH_SEGMENTS = 256
MAX_SEGMENTS = 20_000
MAX_BOARDS = 32
MAX_DELTAS = 1_000
RATE_LIMIT = (40, 1.0)
"""Events per second per socket: the page flushes at most 25 batches a second."""
# Worst case: a full board is 80,000 Python numbers (about 2.5 MB); 32 full boards about 80 MB.
# The delta history holds the same stroke objects as the state (no copies).

PALETTE = (
    "#e03131",
    "#1971c2",
    "#2f9e44",
    "#f08c00",
    "#9c36b5",
    "#0c8599",
    "#d6336c",
    "#5c940d",
    "#3b5bdb",
    "#e8590c",
    "#862e9c",
    "#495057",
)

_BOARD_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_BATCH_ID_RE = re.compile(r"[A-Za-z0-9_:-]{1,48}")

Stroke = dict[str, Any]
"""One committed batch: ``{"id": str, "c": colour, "w": width, "p": [x0, y0, x1, y1, ...]}``."""


class BadBatch(ValueError):
    """A ``strokes`` batch that breaks a rule; its message is the ack's error."""


def _new_epoch() -> str:
    """A board's epoch: random, so a client of a board from before a restart or a clear
    gets a snapshot (see :mod:`pyserver.extras.statesync`)."""
    return secrets.token_hex(6)


class BoardFull(Exception):
    """The board holds ``max_segments`` segments already."""


def board_name(raw: object) -> str:
    """The board a client asked for: ``"main"`` when absent, else 1 to 32 of
    ``[A-Za-z0-9_-]``; anything else raises :class:`ConnectionRefused`."""
    if raw is None or raw == "":
        return "main"
    if not isinstance(raw, str) or _BOARD_RE.fullmatch(raw) is None:
        raise ConnectionRefused(
            "invalid board name", data={"rule": "1 to 32 letters, digits, '-' or '_'"}
        )
    return raw


def _coordinate(value: object, limit: int) -> float:
    if type(value) is int:
        number = float(value)
    elif type(value) is float and math.isfinite(value):
        number = value
    else:
        raise BadBatch("points must be finite numbers")
    if not 0.0 <= number <= limit:
        raise BadBatch(f"points must lie on the board ({BOARD_WIDTH}x{BOARD_HEIGHT})")
    return round(number, 1)


def validate_batch(
    raw: object, *, max_segments: int = MAX_BATCH_SEGMENTS
) -> tuple[str, int, list[float]]:
    """Check a client's ``strokes`` batch; return ``(id, width, points)`` (points rounded to
    0.1) or raise :class:`BadBatch`."""
    if not isinstance(raw, dict):
        raise BadBatch("a batch is an object {id, w, p}")
    if set(raw) - {"id", "w", "p"}:
        raise BadBatch("unknown fields in batch")
    batch_id = raw.get("id")
    if not isinstance(batch_id, str) or _BATCH_ID_RE.fullmatch(batch_id) is None:
        raise BadBatch("id must be 1 to 48 of [A-Za-z0-9_:-]")
    width = raw.get("w")
    if type(width) is not int or width not in WIDTHS:
        raise BadBatch(f"w must be one of {list(WIDTHS)}")
    points = raw.get("p")
    if not isinstance(points, list) or not points or len(points) % 4:
        raise BadBatch("p must be a non-empty list of segments [x0, y0, x1, y1, ...]")
    if len(points) > 4 * max_segments:
        raise BadBatch(f"at most {max_segments} segments per batch")
    checked = [
        _coordinate(value, BOARD_WIDTH if i % 2 == 0 else BOARD_HEIGHT)
        for i, value in enumerate(points)
    ]
    return batch_id, width, checked


def _segments(stroke: Stroke) -> int:
    return len(stroke["p"]) // 4


class Board:
    """One board: its synced state (the committed batches) and who is drawing in which
    colour."""

    def __init__(
        self, name: str, *, max_segments: int = MAX_SEGMENTS, max_deltas: int = MAX_DELTAS
    ) -> None:
        self.name = name
        self.max_segments = max_segments
        self.segments = 0
        self.colors: dict[str, str] = {}  # socket id -> colour
        self.sync: SyncedState[list[Stroke], Stroke] = SyncedState(
            [],
            self._apply,
            new_epoch=_new_epoch,
            max_deltas=max_deltas,
            max_delta_weight=max_segments,
            weight=_segments,
        )

    def _apply(self, state: list[Stroke], stroke: Stroke) -> list[Stroke]:
        count = _segments(stroke)
        if self.segments + count > self.max_segments:
            raise BoardFull
        state.append(stroke)
        self.segments += count
        return state

    def add(self, stroke: Stroke) -> dict[str, Any]:
        """Commit ``stroke``; return the live delta message (raises :class:`BoardFull`)."""
        seq = self.sync.commit(stroke)
        return self.sync.delta_message(seq, stroke)

    def clear(self) -> dict[str, Any]:
        """Empty the board (a new epoch); return the snapshot every client gets."""
        self.sync.reset([])
        self.segments = 0
        return self.sync.snapshot()

    def restore(self, strokes: list[Stroke]) -> None:
        """Start from saved strokes (a new epoch)."""
        self.sync.reset(strokes)
        self.segments = sum(_segments(stroke) for stroke in strokes)

    def pick_color(self, wanted: object) -> str:
        """The colour for a newcomer: the one it had (a reconnect) when it is a palette
        colour, else the palette colour fewest people on this board use."""
        if isinstance(wanted, str) and wanted in PALETTE:
            return wanted
        used = list(self.colors.values())
        return min(PALETTE, key=lambda color: (used.count(color), PALETTE.index(color)))


class Boards:
    """The boards of this process, at most ``max_boards``, least recently used first."""

    def __init__(self, *, max_boards: int = MAX_BOARDS, max_segments: int = MAX_SEGMENTS) -> None:
        self.max_boards = max_boards
        self.max_segments = max_segments
        self._boards: OrderedDict[str, Board] = OrderedDict()

    def __len__(self) -> int:
        return len(self._boards)

    def __contains__(self, name: object) -> bool:
        return name in self._boards

    def get(self, name: str) -> Board | None:
        board = self._boards.get(name)
        if board is not None:
            self._boards.move_to_end(name)
        return board

    def open(self, name: str) -> Board:
        """The board ``name``, created if needed; raises :class:`ConnectionRefused` when the
        limit is reached and every board has someone on it."""
        board = self.get(name)
        if board is not None:
            return board
        if len(self._boards) >= self.max_boards:
            idle = next((n for n, b in self._boards.items() if not b.colors), None)
            if idle is None:
                raise ConnectionRefused("too many boards in use, try again later")
            del self._boards[idle]
        board = self._boards[name] = Board(name, max_segments=self.max_segments)
        return board


class Snapshots:
    """Boards saved as ``<directory>/<board>.json`` (at most ``max_files`` of them). File
    work runs in a worker thread; the JSON is made on the Trio thread, where the state lives."""

    def __init__(self, directory: Path, *, interval: float = 10.0, max_files: int = 256) -> None:
        self.directory = directory
        self.interval = interval
        self.max_files = max_files

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.json"  # names are [A-Za-z0-9_-]{1,32}

    def _read(self, name: str) -> bytes | None:
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the saved drawing board %s: %s", self.path(name), exc)
            return None

    async def load(self, name: str, max_segments: int) -> list[Stroke]:
        """The saved strokes of ``name`` (empty when none, or when the file is not valid)."""
        data = await trio.to_thread.run_sync(self._read, name)
        if data is None:
            return []
        try:
            strokes = json.loads(data)
            checked = []
            for raw in strokes:
                color = raw["c"]
                if color not in PALETTE:
                    raise BadBatch("unknown colour")
                batch_id, width, points = validate_batch(
                    {"id": raw["id"], "w": raw["w"], "p": raw["p"]}
                )
                checked.append({"id": batch_id, "c": color, "w": width, "p": points})
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring the saved drawing board %s: %s", self.path(name), exc)
            return []
        if sum(map(_segments, checked)) > max_segments:
            log.warning("ignoring the saved drawing board %s: too large", self.path(name))
            return []
        return checked

    def _write(self, name: str, data: bytes | None) -> None:
        path = self.path(name)
        if data is None:
            path.unlink(missing_ok=True)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if not path.exists() and sum(1 for _ in self.directory.glob("*.json")) >= self.max_files:
            log.warning(
                "not saving drawing board %r: %d boards saved already", name, self.max_files
            )
            return
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)

    async def save(self, board: Board) -> None:
        """Write ``board`` (remove its file when it is empty)."""
        state = board.sync.state
        data = json.dumps(state, separators=(",", ":")).encode() if state else None
        await trio.to_thread.run_sync(self._write, board.name, data)

    async def keep(self, board: Board) -> None:
        """The snapshotter: a room task saving ``board`` when it changed, and at the end."""
        saved = (board.sync.epoch, board.sync.version)
        try:
            while True:
                await trio.sleep(self.interval)
                if (board.sync.epoch, board.sync.version) != saved:
                    saved = (board.sync.epoch, board.sync.version)
                    await self.save(board)
        finally:
            if (board.sync.epoch, board.sync.version) != saved:
                with trio.CancelScope(shield=True):
                    await self.save(board)


def register(
    sio: Server,
    *,
    rate_limit: tuple[int, float] = RATE_LIMIT,
    max_boards: int = MAX_BOARDS,
    max_segments: int = MAX_SEGMENTS,
    snapshot_dir: str | Path | None = None,
    snapshot_interval: float = 10.0,
    **options: Any,
) -> Boards:
    """Serve the drawing board on ``sio``'s ``/drawing`` namespace; return its boards.
    ``snapshot_dir`` (default ``$PYSERVER_DRAWING_DIR``, else none) keeps boards on disk."""
    nsp = sio.of(NAMESPACE, rate_limit=rate_limit)
    if not isinstance(nsp, Namespace):  # pragma: no cover - a str name makes a Namespace
        raise TypeError(f"{NAMESPACE} must be a plain namespace")
    boards = Boards(max_boards=max_boards, max_segments=max_segments)
    directory = snapshot_dir or os.environ.get("PYSERVER_DRAWING_DIR")
    snapshots = Snapshots(Path(directory), interval=snapshot_interval) if directory else None

    def board_of(socket: Socket) -> Board:
        board = boards.get(socket.data["board"])
        if board is None:  # evicted: it had nobody on it, so this socket is not on it
            board = boards.open(socket.data["board"])
        return board

    async def user_count(room: str) -> None:
        count = len(await nsp.in_(room).fetch_sockets())
        nsp.to(room).emit("user count", count)

    @nsp.use
    async def choose_board(socket: Socket) -> None:
        auth = socket.handshake.auth
        name = board_name(auth.get("board"))
        restored = None
        if snapshots is not None and name not in boards:
            restored = await snapshots.load(name, max_segments)
        board = boards.open(name)
        if restored and not board.sync.state and board.sync.version == 0:
            board.restore(restored)
        socket.data.update(board=name, color=board.pick_color(auth.get("color")))
        socket.join(name)

    async def connected(socket: Socket) -> None:
        board = board_of(socket)
        board.colors[socket.id] = socket.data["color"]
        if snapshots is not None and not nsp.room(board.name).active:
            nsp.room(board.name).start_soon(snapshots.keep, board)
        socket.emit(
            "init",
            {
                "id": socket.id,
                "color": socket.data["color"],
                "board": board.name,
                "width": BOARD_WIDTH,
                "height": BOARD_HEIGHT,
                "widths": list(WIDTHS),
                "maxBatch": MAX_BATCH_SEGMENTS,
                "maxSegments": board.max_segments,
            },
        )
        await user_count(board.name)

    async def sync(socket: Socket, known: Any = None, *_: Any) -> dict[str, Any]:
        return board_of(socket).sync.catch_up(known)

    async def strokes(socket: Socket, batch: Any = None, *_: Any) -> dict[str, Any]:
        try:
            batch_id, width, points = validate_batch(batch)
        except BadBatch as exc:
            return {"error": str(exc)}
        board = board_of(socket)
        stroke = {"id": batch_id, "c": socket.data["color"], "w": width, "p": points}
        try:
            message = board.add(stroke)
        except BoardFull:
            return {"error": "board full", "max": board.max_segments}
        nsp.to(board.name).emit("delta", message)
        return {"ok": True, "seq": message["seq"]}

    async def clear(socket: Socket, *_: Any) -> dict[str, Any]:
        board = board_of(socket)
        nsp.to(board.name).emit("snapshot", board.clear())
        return {"ok": True}

    async def disconnected(socket: Socket, reason: str) -> None:
        name = socket.data.get("board")
        if name is None:
            return
        board = boards.get(name)
        if board is not None:
            board.colors.pop(socket.id, None)
        await user_count(name)

    nsp.on("connection", connected)
    nsp.on("sync", sync)
    nsp.on("strokes", strokes)
    nsp.on("clear", clear)
    nsp.on("disconnect", disconnected)
    return boards
