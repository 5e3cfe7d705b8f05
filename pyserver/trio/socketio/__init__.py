"""The Trio side of Socket.IO: sockets, namespaces, broadcasting, adapters, room nurseries.

The public entry point is :class:`pyserver.Server` (``pyserver/trio/socketio/server.py``); the
sans-IO protocol cores are in :mod:`pyserver.socketio`. The modules:

* :mod:`.server`: ``Server`` (namespaces, the Engine.IO callbacks, the timer, running);
* :mod:`.namespace`: ``Namespace`` and dynamic namespaces; :mod:`.socket`: ``Socket`` (emit,
  acks, rooms), built on :mod:`.listeners` (``on_any``, ``on_any_outgoing`` and their
  families) and :mod:`.handlers` (its handler queue: ordering, ack replies);
* :mod:`.client`: one Engine.IO connection's Socket.IO side (packets in, namespace joins);
* :mod:`.broadcast`: ``to``/``except_``/``volatile`` operators; :mod:`.adapter_base` (the
  adapter interface) and :mod:`.adapter` (the in-memory adapter, encode-once broadcasts);
* :mod:`.room_tasks`: room nurseries; :mod:`.handshake`: ``socket.handshake``;
  :mod:`.host`: what namespaces and clients need of the server;
* :mod:`.class_handlers`: class-based namespaces (``NamespaceHandlers``); :mod:`.extras`: the
  Server's ``register_namespace``, ``new_namespace`` listeners and ``close()``;
* :mod:`.admin`: ``sio.instrument()``, the Admin UI's server side, and :mod:`.admin_page`,
  the UI's page served at ``/admin/``.

Imports go one way, server at the top: the namespaces and clients reach the server through
the :class:`~pyserver.trio.socketio.host.Host` protocol, adapters, broadcasts and room
nurseries reach the namespace through protocols of their own modules. Only the socket, its
namespace and its client name each other's classes (in types only; see
``tests/test_layout.py``).
"""

from pyserver.socketio.ratelimit import RateLimiter, Verdict
from pyserver.trio.socketio.adapter import (
    AckSink,
    Adapter,
    BroadcastOptions,
    InMemoryAdapter,
    RemoteSocket,
    RequestTimeout,
)
from pyserver.trio.socketio.broadcast import BroadcastOperator
from pyserver.trio.socketio.namespace import DynamicNamespace, Namespace
from pyserver.trio.socketio.room_tasks import RoomHandle, current_room
from pyserver.trio.socketio.socket import Handshake, Socket

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
