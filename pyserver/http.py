"""The contracts between the HTTP shell and what is mounted on it (Engine.IO, user routes).

These are plain data and protocols: the HTTP server (``pyserver.trio.http.server``) builds
``Request`` objects, calls the mounted handler, and writes the ``Response`` it gets back.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

if TYPE_CHECKING:  # ``Message`` is a stub-only alias: the built module has no such name
    from pyserver._frames import Message


class Headers:
    """Case-insensitive, multi-valued request headers. Names are stored lower-case."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(k.lower(), v) for k, v in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The values of ``name`` joined with ", " (RFC 9110 5.3), or ``default``."""
        name = name.lower()
        values = [v for k, v in self._items if k == name]
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self._items if k == name]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k == name.lower() for k, _ in self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(slots=True)
class Request:
    """One HTTP request, body already read (bounded by the server's body limit)."""

    method: str
    path: str  # percent-decoded path, without the query string
    query_string: str
    headers: Headers
    body: bytes = b""
    remote_address: tuple[str, int] = ("", 0)
    http_version: str = "1.1"
    secure: bool = False
    """Whether it came over TLS (a listener given an ``ssl_context``)."""

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, the first value of each name."""
        return {k: v[0] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class WebSocket(Protocol):
    """An accepted WebSocket connection, as the shell gives it to a handler."""

    request: Request
    remote_address: tuple[str, int]
    subprotocol: str | None

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...
    async def receive(self) -> str | bytes: ...
    async def send(self, message: str | bytes) -> None: ...
    def send_nowait(self, message: str | bytes) -> None: ...
    @property
    def outbox_depth(self) -> int:
        """Frames queued for the writer and not yet written."""

    def send_frame_nowait(self, frame: bytes) -> None:
        """Queue an already encoded frame (the broadcast path: encode once, send many)."""

    def send_frames_nowait(self, frames: list[bytes]) -> bool:
        """Queue encoded frames in order when open (True); False, nothing queued, once
        closing."""

    async def serve_messages(
        self,
        on_message: Callable[[str | bytes], Callable[[], Coroutine[Any, Any, Any]] | None],
        on_end: Callable[[], None] | None = None,
        *,
        context: contextvars.Context | None = None,
    ) -> None:
        """Hand every message to the synchronous ``on_message`` as it is read, until the
        connection is closed (instead of ``async for``); what it returns (an async
        function without arguments, or None) runs in the reading task right after the
        batch; ``on_end()`` is called as soon as the reading ends (this may return later:
        see ``pyserver.trio.websocket.inline``). Both, and that work, run in ``context``
        (default: the calling task's)."""

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake without waiting for its end."""

    async def close(self, code: int = 1000, reason: str = "") -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def close_code(self) -> int | None:
        """The close code once closed (the peer's, or ours); None before."""


class Mount(Protocol):
    """Something that owns every request under a path prefix (Engine.IO is one).

    Optionally it also has ``websocket_origin_allowed(origin: str) -> bool``: the origins whose
    WebSocket upgrades it accepts although the App's own Origin rule (same-origin unless
    ``allowed_origins``) refuses them."""

    async def handle_http(self, request: Request) -> Response:
        """Answer a plain HTTP request. May wait (a long-polling GET does)."""

    def check_websocket(self, request: Request) -> Response | None:
        """Before the upgrade: None to accept the WebSocket handshake, or the refusal."""

    async def handle_websocket(self, ws: WebSocket) -> None:
        """Run an accepted WebSocket until it ends."""


WebSocketHandler = Callable[[WebSocket], Awaitable[None]]
HttpHandler = Callable[[Request], Awaitable[Response]]
MessageHandler = Callable[["Message"], None]
