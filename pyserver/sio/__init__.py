"""The Trio side of Socket.IO: sockets, namespaces, broadcasting, adapters, room nurseries.

The public entry point is :class:`pyserver.Server` (``pyserver/server.py``); the sans-IO
protocol cores are in :mod:`pyserver.socketio`.
"""

from pyserver.sio.adapter import (
    AckSink,
    Adapter,
    BroadcastOptions,
    InMemoryAdapter,
    RemoteSocket,
    RequestTimeout,
)
from pyserver.sio.broadcast import BroadcastOperator
from pyserver.sio.namespace import DynamicNamespace, Namespace
from pyserver.sio.ratelimit import RateLimiter, Verdict
from pyserver.sio.rooms import RoomHandle, current_room
from pyserver.sio.socket import Handshake, Socket

__all__ = [
    "AckSink",
    "Adapter",
    "BroadcastOperator",
    "BroadcastOptions",
    "DynamicNamespace",
    "Handshake",
    "InMemoryAdapter",
    "Namespace",
    "RateLimiter",
    "RemoteSocket",
    "RequestTimeout",
    "RoomHandle",
    "Socket",
    "Verdict",
    "current_room",
]
