"""The Trio shell of one accepted WebSocket, over the sans-IO :mod:`pyserver.ws` core.

* :mod:`.connection`: :class:`WebSocket` (``pyserver.WebSocket``): the reader, the single
  writer and its bounded outbox, the broadcast fan-out, keepalive and closing; the one rule
  of who writes a connection's bytes is stated there.
* :mod:`.reactor`: one task per Trio run that reads every plain-socket WebSocket of the run
  and runs each handler right after the read that brought its message (Linux).
* :mod:`.inline`: how the layer above (Socket.IO) offers handler work to the task that read
  its message, instead of spawning a task per message.

Raw routes (``App.websocket``) and Engine.IO's WebSocket transport both run on it.
"""

from pyserver.trio.websocket.connection import WebSocket

__all__ = ["WebSocket"]
