"""pyserver: a real-time server for Python on Trio, with a Rust WebSocket codec.

The public names below are loaded on first use, so that importing a sans-IO core
(``pyserver.engineio.session``, ``pyserver.socketio.packets``, ...) never loads trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "App": "pyserver.app",
    "WebSocket": "pyserver.transports",
    "broadcast": "pyserver.ws",
    "EngineIOServer": "pyserver.engineio",
    "ConnectionClosed": "pyserver.errors",
    "ConnectionRefused": "pyserver.errors",
    "Server": "pyserver.server",
    "RedisAdapter": "pyserver.adapters.redis",
    "RequestTimeout": "pyserver.sio.adapter",
    "Socket": "pyserver.sio.socket",
    "StateRecovery": "pyserver.socketio.recovery",
    "PacketTooLarge": "pyserver.socketio.packets",
    "LocalProtocolError": "pyserver.errors",
    "RemoteProtocolError": "pyserver.errors",
    "Headers": "pyserver.http.types",
    "Mount": "pyserver.http.types",
    "Request": "pyserver.http.types",
    "Response": "pyserver.http.types",
    "FrameError": "pyserver._frames",
}

__all__ = [
    "App",
    "ConnectionClosed",
    "ConnectionRefused",
    "EngineIOServer",
    "FrameError",
    "Headers",
    "LocalProtocolError",
    "Mount",
    "PacketTooLarge",
    "RedisAdapter",
    "RemoteProtocolError",
    "Request",
    "RequestTimeout",
    "Response",
    "Server",
    "Socket",
    "StateRecovery",
    "WebSocket",
    "broadcast",
]

if TYPE_CHECKING:
    from pyserver._frames import FrameError
    from pyserver.adapters.redis import RedisAdapter
    from pyserver.app import App
    from pyserver.engineio import EngineIOServer
    from pyserver.errors import (
        ConnectionClosed,
        ConnectionRefused,
        LocalProtocolError,
        RemoteProtocolError,
    )
    from pyserver.http.types import Headers, Mount, Request, Response
    from pyserver.server import Server
    from pyserver.sio.adapter import RequestTimeout
    from pyserver.sio.socket import Socket
    from pyserver.socketio.packets import PacketTooLarge
    from pyserver.socketio.recovery import StateRecovery
    from pyserver.transports import WebSocket
    from pyserver.ws import broadcast


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pyserver' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
