"""The Socket.IO client for Trio: :func:`connect`, :class:`Manager`, :class:`ClientSocket`.

``manager`` holds the connection (reconnection, namespaces) and ``connect``; ``socket`` the
per-namespace API; ``engine`` one Engine.IO connection (handshake, upgrade, heartbeats, the
writer); ``transports`` WebSocket and long-polling; ``http`` a small HTTP/1.1 client;
``testing`` what :mod:`pyserver.testing` exports; ``cli`` ``pyserver client``. The protocol
decisions without I/O are in :mod:`pyserver.engineio.client` and
:mod:`pyserver.socketio.client`.
"""

from pyserver.socketio.client import BufferFull, ConnectionLost
from pyserver.trio.client.manager import Manager, connect
from pyserver.trio.client.socket import ClientSocket, ReceivedEvent

__all__ = ["BufferFull", "ClientSocket", "ConnectionLost", "Manager", "ReceivedEvent", "connect"]
