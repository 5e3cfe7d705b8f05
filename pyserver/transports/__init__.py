"""Trio shells for the transports (the raw WebSocket here; Engine.IO builds on it)."""

from pyserver.transports.websocket import WebSocket

__all__ = ["WebSocket"]
