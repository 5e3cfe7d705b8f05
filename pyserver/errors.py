"""The one error tree of pyserver, split the way h11 splits it.

::

    PyserverError                    every error pyserver raises
    ├── ProtocolError                a protocol rule was broken, by one side or the other
    │   ├── RemoteProtocolError      the peer misbehaved; carries its wire answer
    │   │   ├── _frames.FrameError              WebSocket frames (close_code 1002/1007/1009)
    │   │   ├── engineio.packets.PacketError    Engine.IO packets (ValueError; status 400,
    │   │   │                                   close_reason "parse error")
    │   │   ├── socketio.packets.PacketError    Socket.IO packets (close_reason "parse error")
    │   │   ├── redis.resp.RespProtocolError    RESP replies from Redis (ValueError)
    │   │   └── redis.codec.CodecError          another node's adapter message (ValueError)
    │   └── LocalProtocolError       our API was misused (a bug in the caller)
    │       ├── socketio.packets.PacketTooLarge an emit or ack over max_emit_bytes (ValueError)
    │       └── socketio.binary.TooLarge        the attachments codec's bound (ValueError)
    ├── ConnectionClosed             the WebSocket is closed (code, reason)
    ├── ConnectionRefused            middleware refuses a Socket.IO connection (CONNECT_ERROR)
    └── SocketDisconnected           an awaited answer will never come

* :class:`RemoteProtocolError`: the peer misbehaved. It carries its wire answer: an HTTP
  ``status`` (with optional extra ``headers``) before a WebSocket is accepted or on a polling
  request, a WebSocket ``close_code`` after, and ``close_reason``, the reason the connection
  or session is closed with (the close frame's reason for a WebSocket, Engine.IO's reason
  such as "parse error" for Engine.IO and Socket.IO).
* :class:`LocalProtocolError`: our own API was misused, in any layer: sending on a closed
  connection from the sans-IO core, ``socket.emit("connect")`` (a reserved name), data JSON
  cannot carry, ... so one ``except pyserver.LocalProtocolError`` catches them all.
* Every layer raises these very classes or subclasses of them; a layer's old name for one
  (``pyserver.socketio.LocalProtocolError``, ``.RemoteProtocolError``, ``.ProtocolError``)
  is the same object, not a look-alike. Subclasses keep ``ValueError`` as a second base
  where callers catch that.
* :class:`ConnectionClosed`, :class:`ConnectionRefused`, :class:`SocketDisconnected`: not
  protocol errors but outcomes the application handles.
* Outside the tree so far (not protocol errors, and defined in the Trio shell): the cluster's
  ``RequestTimeout`` (a ``TimeoutError``), the Redis subscriber's ``SubscriberError`` and the
  supervisor's ``ClusterError``.

No imports: the Rust extension ``pyserver._frames`` imports this module at its own import
to base ``FrameError`` on :class:`RemoteProtocolError`.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "ConnectionRefused",
    "LocalProtocolError",
    "ProtocolError",
    "PyserverError",
    "RemoteProtocolError",
    "SocketDisconnected",
]


class PyserverError(Exception):
    """Base class of pyserver's errors: every protocol error of every layer, and the
    outcomes an application handles (a closed WebSocket, a refused or vanished socket)."""


class ProtocolError(PyserverError):
    """A protocol rule was broken: by the peer (:class:`RemoteProtocolError`) or by our own
    side (:class:`LocalProtocolError`). h11's name and place for the common base."""


class RemoteProtocolError(ProtocolError):
    """The peer broke a protocol rule; the attributes are the wire answer.

    ``status`` is the HTTP status to answer with (400 unless told), ``headers`` extra response
    headers (e.g. ``Sec-WebSocket-Version: 13`` with a 426), ``close_code`` the WebSocket close
    code once a WebSocket is open (None before the upgrade and above the WebSocket layer),
    ``close_reason`` the reason the connection or session is closed with (None when the
    answer is the status alone). A subclass may set ``close_reason`` for all its instances.
    """

    close_reason: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        headers: tuple[tuple[str, str], ...] = (),
        close_code: int | None = None,
        close_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers
        self.close_code = close_code
        if close_reason is not None:
            self.close_reason = close_reason


class LocalProtocolError(ProtocolError):
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
