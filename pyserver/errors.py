"""Shared error types, split the way h11 splits them.

* :class:`RemoteProtocolError`: the peer misbehaved. It carries its wire answer: an HTTP
  ``status`` (with optional extra ``headers``) before a WebSocket is accepted, or a WebSocket
  ``close_code`` after.
* :class:`LocalProtocolError`: our own API was misused (sending on a closed connection from
  the sans-IO core, two tasks receiving at once, ...).
* :class:`ConnectionClosed`: the WebSocket is closed; raised by ``receive``/``send`` on the
  Trio shell, carrying the close code and reason that ended it.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "ConnectionRefused",
    "LocalProtocolError",
    "PyserverError",
    "RemoteProtocolError",
    "SocketDisconnected",
]


class PyserverError(Exception):
    """Base class of every error raised by pyserver."""


class RemoteProtocolError(PyserverError):
    """The peer broke a protocol rule.

    ``status`` is the HTTP status to answer with (400 unless told), ``headers`` extra response
    headers (e.g. ``Sec-WebSocket-Version: 13`` with a 426), ``close_code`` the WebSocket close
    code once a WebSocket is open (None before the upgrade).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        headers: tuple[tuple[str, str], ...] = (),
        close_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers
        self.close_code = close_code


class LocalProtocolError(PyserverError):
    """Our side misused the API (a programming error, never the peer's fault)."""


class ConnectionClosed(PyserverError):
    """The WebSocket is closed. ``code`` is the close code (1005 when the peer's close frame
    had none, 1006 when the TCP connection ended without a close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectionRefused(PyserverError):
    """Raised by Socket.IO connection middleware to refuse a client's namespace connection.

    The client gets CONNECT_ERROR ``{"message": message, "data": data}`` (``data`` only when
    given) and sees it in its ``connect_error`` handler (``err.message``, ``err.data``).
    """

    def __init__(self, message: str = "Connection refused", *, data: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class SocketDisconnected(PyserverError):
    """An awaited answer will never come: the socket disconnected first (``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"socket disconnected: {reason}")
        self.reason = reason
