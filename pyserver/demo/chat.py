"""The chat demo: namespace ``/chat``, page ``/chat/``, login at ``POST /chat/login``.

Login: ``POST /chat/login`` with ``{"name": "ada"}`` answers ``{"token", "name", "expires"}``,
an HS256 JWT signed with the server's secret. The page keeps it in ``localStorage`` (so the
tabs of one browser are one user) and connects with ``auth: {token}``; the namespace's
connection middleware verifies it and refuses with CONNECT_ERROR ``{"message": "invalid
token", "data": {"reason": "missing" | "expired" | "invalid"}}``.

Events from the client (each answers its ack with ``{"ok": true, ...}`` or ``{"error": why}``):

* ``join(room)``: leave the previous room, enter ``room``; the ack carries ``history`` (the
  room's last :data:`HISTORY_LIMIT` messages) and ``users`` (who is in the room).
* ``message({room, text, cid})`` and ``image({room, cid, data})`` (``data`` is binary, at most
  :data:`IMAGE_LIMIT` bytes of PNG, JPEG, GIF or WebP, recognised by its first bytes): the
  ack is ``{ok, id, ts}``; the room's other sockets get ``message(msg)``. ``cid`` is the
  client's id for the message: a retry with a ``cid`` already seen from that user is
  answered with the first ack and not shown again (a bounded memory, :data:`DEDUP_LIMIT`).
* ``typing({room, typing})``: relayed as a volatile ``typing({room, user, typing})`` to the
  room's other sockets.

To the client: ``welcome({user, rooms, limits})`` on connection, ``message(msg)``,
``typing(...)``, and ``presence({room, users})`` whenever someone enters or leaves a room.
Presence counts users, not sockets: it is computed from ``socket.data["user"]`` of the
room's sockets (``fetch_sockets``, so it spans nodes with a multi-node adapter); a user with
two tabs is listed once and stays until the last tab leaves. History and the dedup memory
are per process.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import OrderedDict, deque
from typing import Any

import jwt

from pyserver import ConnectionRefused, Namespace, Request, Response, Server, Socket

__all__ = [
    "Dedup",
    "History",
    "Invalid",
    "TokenError",
    "issue_token",
    "register",
    "sniff_image",
    "validate_cid",
    "validate_name",
    "validate_room",
    "validate_text",
    "verify_token",
]

FIXED_ROOMS = ("general", "random")
HISTORY_LIMIT = 100
"""Messages kept per room for late joiners."""
MAX_ROOMS = 200
"""Rooms whose history is kept (the least recently used other than the fixed ones go)."""
IMAGE_LIMIT = 512 * 1024
ROOM_IMAGE_BUDGET = 2 << 20
"""Bytes of images kept in one room's history (a join's answer stays a few MiB at most)."""
IMAGE_BUDGET = 16 << 20
"""Bytes of images kept in all histories. Past either budget the oldest images lose their
data (the message stays, with ``image: None``)."""
TEXT_LIMIT = 2000
DEDUP_LIMIT = 10_000
TOKEN_TTL = 8 * 3600.0
RATE_LIMIT: tuple[int, float] = (30, 10.0)
ISSUER = "pyserver-chat"
CLOCK_SKEW = 60.0
"""Seconds a token's issue time may be ahead of ours (several nodes' clocks differ)."""
LOGIN_BODY_LIMIT = 1024

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{1,23}")
_ROOM_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_CID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

# -- validation ----------------------------------------------------------------------------


class Invalid(ValueError):
    """Bad input; the message is what the client is told."""


def validate_name(value: object) -> str:
    """A user name: 2 to 24 ASCII letters, digits, ``_ . -``, starting with a letter or digit."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value.strip()):
        raise Invalid(
            "a name is 2 to 24 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return value.strip()


def validate_room(value: object) -> str:
    """A room name (a leading ``#`` is dropped, case folded): 1 to 32 of ``a-z 0-9 _ -``."""
    if isinstance(value, str):
        name = value.strip().removeprefix("#").lower()
        if _ROOM_RE.fullmatch(name):
            return name
    raise Invalid("a room name is 1 to 32 letters, digits, '_' or '-'")


def validate_text(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("text must be a string")
    text = value.replace("\r\n", "\n").strip()
    if not text:
        raise Invalid("empty message")
    if len(text) > TEXT_LIMIT:
        raise Invalid(f"message too long (max {TEXT_LIMIT} characters)")
    return text


def validate_cid(value: object) -> str:
    if not isinstance(value, str) or not _CID_RE.fullmatch(value):
        raise Invalid("cid must be 1 to 64 letters, digits, '_' or '-'")
    return value


def sniff_image(data: object) -> str:
    """The MIME type of an image given as bytes, judged by its first bytes."""
    if not isinstance(data, bytes):
        raise Invalid("image data must be binary")
    if len(data) > IMAGE_LIMIT:
        raise Invalid(f"image too large (max {IMAGE_LIMIT // 1024} KiB)")
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise Invalid("not a PNG, JPEG, GIF or WebP image")


def _payload(args: tuple[Any, ...]) -> dict[str, Any]:
    if len(args) != 1 or not isinstance(args[0], dict):
        raise Invalid("expected one object")
    return args[0]


# -- tokens --------------------------------------------------------------------------------


class TokenError(Exception):
    """A token was refused; ``reason`` is ``missing``, ``expired`` or ``invalid``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def issue_token(name: str, secret: str, *, now: float, ttl: float = TOKEN_TTL) -> str:
    """An HS256 token for the user ``name`` (validated), valid ``ttl`` seconds from ``now``."""
    claims = {"sub": validate_name(name), "iss": ISSUER, "iat": int(now), "exp": int(now + ttl)}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(token: object, secret: str, *, now: float) -> str:
    """The user name a token was issued to; raises :class:`TokenError`."""
    if not isinstance(token, str) or not token:
        raise TokenError("missing")
    if len(token) > 2048:
        raise TokenError("invalid")
    try:
        # times are checked below against ``now`` (PyJWT would read its own clock)
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={
                "require": ["sub", "exp", "iat", "iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, int) or not isinstance(iat, int) or iat > now + CLOCK_SKEW:
            raise TokenError("invalid")
        if exp <= now:
            raise TokenError("expired")
        return validate_name(claims["sub"])
    except (jwt.InvalidTokenError, Invalid) as exc:
        raise TokenError("invalid") from exc


# -- state ---------------------------------------------------------------------------------


class History:
    """The last ``limit`` messages of each room, for at most ``max_rooms`` rooms (the fixed
    ones always kept), with at most ``room_image_budget`` bytes of image data in a room and
    ``image_budget`` in all of them."""

    def __init__(
        self,
        limit: int = HISTORY_LIMIT,
        max_rooms: int = MAX_ROOMS,
        image_budget: int = IMAGE_BUDGET,
        room_image_budget: int = ROOM_IMAGE_BUDGET,
        keep: tuple[str, ...] = FIXED_ROOMS,
    ) -> None:
        self.limit = limit
        self.max_rooms = max_rooms
        self.image_budget = image_budget
        self.room_image_budget = room_image_budget
        self.keep = frozenset(keep)
        self._rooms: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._images: OrderedDict[str, dict[str, Any]] = OrderedDict()  # id -> message
        self.image_bytes = 0

    def touch(self, room: str) -> deque[dict[str, Any]]:
        """The room's history, made the most recently used (created if new)."""
        messages = self._rooms.get(room)
        if messages is None:
            messages = self._rooms[room] = deque()
            self._evict_rooms()
        else:
            self._rooms.move_to_end(room)
        return messages

    def add(self, room: str, message: dict[str, Any]) -> None:
        messages = self.touch(room)
        messages.append(message)
        if isinstance(message.get("image"), bytes):
            self._images[message["id"]] = message
            self.image_bytes += len(message["image"])
            in_room = [m for m in messages if m["id"] in self._images]
            room_bytes = sum(len(m["image"]) for m in in_room)
            for old in in_room:
                if room_bytes <= self.room_image_budget:
                    break
                room_bytes -= len(old["image"])
                self._strip(old)
        while len(messages) > self.limit:
            self._forget(messages.popleft())
        while self.image_bytes > self.image_budget and self._images:
            self._strip(next(iter(self._images.values())))

    def get(self, room: str) -> list[dict[str, Any]]:
        messages = self._rooms.get(room)
        return list(messages) if messages is not None else []

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def _strip(self, message: dict[str, Any]) -> None:
        """Drop an image's data; the entry stays (the page says the image expired)."""
        self._forget(message)
        message["image"] = None

    def _forget(self, message: dict[str, Any]) -> None:
        if self._images.pop(message["id"], None) is not None:
            self.image_bytes -= len(message["image"])

    def _evict_rooms(self) -> None:
        if len(self._rooms) <= self.max_rooms:
            return
        for room in list(self._rooms):
            if room not in self.keep:
                for message in self._rooms.pop(room):
                    self._forget(message)
                if len(self._rooms) <= self.max_rooms:
                    return


class Dedup:
    """The acks of the last ``limit`` messages, by ``(user, cid)``."""

    def __init__(self, limit: int = DEDUP_LIMIT) -> None:
        self.limit = limit
        self._seen: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    def get(self, user: str, cid: str) -> dict[str, Any] | None:
        return self._seen.get((user, cid))

    def put(self, user: str, cid: str, ack: dict[str, Any]) -> None:
        self._seen[(user, cid)] = ack
        self._seen.move_to_end((user, cid))
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)


# -- the shell -----------------------------------------------------------------------------


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(
        status,
        [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
        json.dumps(body).encode(),
    )


def register(
    sio: Server,
    *,
    jwt_secret: str,
    token_ttl: float = TOKEN_TTL,
    rate_limit: tuple[int, float] = RATE_LIMIT,
) -> Namespace:
    """Add the chat's namespace ``/chat`` and its login route to ``sio``."""
    nsp = sio.of("/chat", rate_limit=rate_limit)
    assert isinstance(nsp, Namespace)
    history = History()
    dedup = Dedup()

    @sio.app.route("/chat/login", methods=("POST",))
    async def login(request: Request) -> Response:
        if len(request.body) > LOGIN_BODY_LIMIT:
            return _json(413, {"error": "request too large"})
        try:
            body = json.loads(request.body)
            name = validate_name(body.get("name") if isinstance(body, dict) else None)
        except ValueError as exc:  # Invalid, and JSON errors
            message = str(exc) if isinstance(exc, Invalid) else 'send JSON: {"name": ...}'
            return _json(400, {"error": message})
        now = time.time()
        token = issue_token(name, jwt_secret, now=now, ttl=token_ttl)
        return _json(200, {"token": token, "name": name, "expires": int(now + token_ttl)})

    @nsp.use
    async def authenticate(socket: Socket) -> None:
        try:
            user = verify_token(socket.handshake.auth.get("token"), jwt_secret, now=time.time())
        except TokenError as exc:
            raise ConnectionRefused("invalid token", data={"reason": exc.reason}) from None
        socket.data["user"] = user

    async def users_in(room: str) -> list[str]:
        # local sockets and, with a multi-node adapter, other nodes' (``data`` as sent)
        users: set[str] = set()
        for s in await nsp.in_(room).fetch_sockets():
            user = s.data.get("user") if isinstance(s.data, dict) else None
            if isinstance(user, str):
                users.add(user)
        return sorted(users)

    async def announce(room: str) -> list[str]:
        users = await users_in(room)
        nsp.to(room).emit("presence", {"room": room, "users": users})
        return users

    async def connected(socket: Socket) -> None:
        socket.emit(
            "welcome",
            {
                "user": socket.data["user"],
                "rooms": list(FIXED_ROOMS),
                "limits": {"text": TEXT_LIMIT, "image": IMAGE_LIMIT},
            },
        )

    async def join(socket: Socket, *args: Any) -> dict[str, Any]:
        try:
            room = validate_room(args[0] if len(args) == 1 else None)
        except Invalid as exc:
            return {"error": str(exc)}
        previous = socket.data.get("room")
        socket.data["room"] = room
        if previous is not None and previous != room:
            socket.leave(previous)
            await announce(previous)
        socket.join(room)
        history.touch(room)
        users = await announce(room)
        return {"ok": True, "room": room, "history": history.get(room), "users": users}

    def post(socket: Socket, args: tuple[Any, ...], kind: str) -> dict[str, Any]:
        try:
            payload = _payload(args)
            room = validate_room(payload.get("room"))
            cid = validate_cid(payload.get("cid"))
            if kind == "text":
                content: dict[str, Any] = {"text": validate_text(payload.get("text"))}
            else:
                data = payload.get("data")
                content = {"mime": sniff_image(data), "image": data}
        except Invalid as exc:
            return {"error": str(exc)}
        if socket.data.get("room") != room:
            return {"error": f"join #{room} first"}
        user: str = socket.data["user"]
        seen = dedup.get(user, cid)
        if seen is not None:
            return {**seen, "duplicate": True}
        now = time.time()
        message = {
            "id": secrets.token_urlsafe(9),
            "room": room,
            "user": user,
            "ts": int(now * 1000),
            "cid": cid,
            **content,
        }
        history.add(room, message)
        socket.to(room).emit("message", message)
        ack = {"ok": True, "id": message["id"], "ts": message["ts"]}
        dedup.put(user, cid, ack)
        return ack

    async def on_message(socket: Socket, *args: Any) -> dict[str, Any]:
        return post(socket, args, "text")

    async def on_image(socket: Socket, *args: Any) -> dict[str, Any]:
        return post(socket, args, "image")

    async def typing(socket: Socket, *args: Any) -> None:
        try:
            payload = _payload(args)
            room = validate_room(payload.get("room"))
        except Invalid:
            return
        if socket.data.get("room") == room:
            state = {
                "room": room,
                "user": socket.data["user"],
                "typing": bool(payload.get("typing")),
            }
            socket.to(room).volatile.emit("typing", state)

    async def disconnected(socket: Socket, reason: str) -> None:
        room = socket.data.get("room")
        if room is not None:
            await announce(room)

    nsp.on("connection", connected)
    nsp.on("join", join)
    nsp.on("message", on_message)
    nsp.on("image", on_image)
    nsp.on("typing", typing)
    nsp.on("disconnect", disconnected)
    return nsp
