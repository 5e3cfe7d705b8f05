"""Trio shells for the transports (the raw WebSocket here; Engine.IO builds on it)."""

from pyserver.trio.websocket.connection import WebSocket

__all__ = ["WebSocket"]
