"""pyserver: a real-time server for Python on Trio, with a Rust WebSocket codec.

The public names below are loaded on first use, so that importing a sans-IO core
(``pyserver.engineio.session``, ``pyserver.socketio.packets``, ...) never loads trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "App": "pyserver.trio.http.app",
    "ASGIApp": "pyserver.trio.asgi",
    "DEFAULT_SECURITY_HEADERS": "pyserver.trio.http.static",
    "WebSocket": "pyserver.trio.websocket",
    "broadcast": "pyserver.ws",
    "EngineIOServer": "pyserver.trio.engineio",
    "ConnectionClosed": "pyserver.errors",
    "ConnectionRefused": "pyserver.errors",
    "Server": "pyserver.trio.socketio.server",
    "Metrics": "pyserver.trio.metrics",
    "serve_metrics": "pyserver.trio.metrics",
    "log_events": "pyserver.trio.logevents",
    "configure_logging": "pyserver.logjson",
    "basic_auth": "pyserver.trio.socketio.admin",
    "RedisStore": "pyserver.trio.socketio.admin_store",
    "Namespace": "pyserver.trio.socketio.namespace",
    "NamespaceHandlers": "pyserver.trio.socketio.class_handlers",
    "RedisAdapter": "pyserver.trio.redis.adapter",
    "RedisStreamsAdapter": "pyserver.trio.redis.streams",
    "RedisShardedAdapter": "pyserver.trio.redis.sharded",
    "Emitter": "pyserver.sync.emitter",
    "AsyncEmitter": "pyserver.sync.aio",
    "RequestTimeout": "pyserver.trio.socketio.adapter",
    "Socket": "pyserver.trio.socketio.socket",
    "StateRecovery": "pyserver.socketio.recovery",
    "PacketTooLarge": "pyserver.socketio.packets",
    "LocalProtocolError": "pyserver.errors",
    "RemoteProtocolError": "pyserver.errors",
    "ProtocolError": "pyserver.errors",
    "PyserverError": "pyserver.errors",
    "SocketDisconnected": "pyserver.errors",
    "Headers": "pyserver.http",
    "Mount": "pyserver.http",
    "Request": "pyserver.http",
    "Response": "pyserver.http",
    "FrameError": "pyserver._frames",
    "connect": "pyserver.trio.client",
    "ConnectionLost": "pyserver.socketio.client",
}

__all__ = [
    "DEFAULT_SECURITY_HEADERS",
    "ASGIApp",
    "App",
    "AsyncEmitter",
    "ConnectionClosed",
    "ConnectionLost",
    "ConnectionRefused",
    "Emitter",
    "EngineIOServer",
    "FrameError",
    "Headers",
    "LocalProtocolError",
    "Metrics",
    "Mount",
    "Namespace",
    "NamespaceHandlers",
    "PacketTooLarge",
    "ProtocolError",
    "PyserverError",
    "RedisAdapter",
    "RedisShardedAdapter",
    "RedisStore",
    "RedisStreamsAdapter",
    "RemoteProtocolError",
    "Request",
    "RequestTimeout",
    "Response",
    "Server",
    "Socket",
    "SocketDisconnected",
    "StateRecovery",
    "WebSocket",
    "basic_auth",
    "broadcast",
    "configure_logging",
    "connect",
    "log_events",
    "serve_metrics",
]

if TYPE_CHECKING:
    from pyserver._frames import FrameError
    from pyserver.errors import (
        ConnectionClosed,
        ConnectionRefused,
        LocalProtocolError,
        ProtocolError,
        PyserverError,
        RemoteProtocolError,
        SocketDisconnected,
    )
    from pyserver.http import Headers, Mount, Request, Response
    from pyserver.logjson import configure_logging
    from pyserver.socketio.client import ConnectionLost
    from pyserver.socketio.packets import PacketTooLarge
    from pyserver.socketio.recovery import StateRecovery
    from pyserver.sync.aio import AsyncEmitter
    from pyserver.sync.emitter import Emitter
    from pyserver.trio.asgi import ASGIApp
    from pyserver.trio.client import connect
    from pyserver.trio.engineio import EngineIOServer
    from pyserver.trio.http.app import App
    from pyserver.trio.http.static import DEFAULT_SECURITY_HEADERS
    from pyserver.trio.logevents import log_events
    from pyserver.trio.metrics import Metrics, serve_metrics
    from pyserver.trio.redis.adapter import RedisAdapter
    from pyserver.trio.redis.sharded import RedisShardedAdapter
    from pyserver.trio.redis.streams import RedisStreamsAdapter
    from pyserver.trio.socketio.adapter import RequestTimeout
    from pyserver.trio.socketio.admin import basic_auth
    from pyserver.trio.socketio.admin_store import RedisStore
    from pyserver.trio.socketio.class_handlers import NamespaceHandlers
    from pyserver.trio.socketio.namespace import Namespace
    from pyserver.trio.socketio.server import Server
    from pyserver.trio.socketio.socket import Socket
    from pyserver.trio.websocket import WebSocket
    from pyserver.ws import broadcast


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pyserver' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
