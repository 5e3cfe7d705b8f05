"""The Trio shell of one accepted WebSocket, over the sans-IO :mod:`pyserver.ws` core.

:class:`WebSocket` (``pyserver.WebSocket``) is made of parts, one module each, in one line
of inheritance (:mod:`.outbox` says why):

* :mod:`.outbox`: the bounded outbox, its one limit, the slow-consumer close;
* :mod:`.writer`: the one writer task (and its idle retirement);
* :mod:`.sending`: **who writes a connection's bytes**: the one rule (``Sender._route``)
  and try-write-first;
* :mod:`.work`: running the work the callbacks returned for a batch of messages (handlers), inline;
* :mod:`.reader`: reading, the inbox, ``serve_messages``;
* :mod:`.reactive`: a connection's side of the reactor;
* :mod:`.timed`: keepalive deadlines and the close handshake's timer;
* :mod:`.connection`: the public API and the lifecycle (``run``).

Beside them: :mod:`.fanout` (one encoded broadcast to many connections, one Rust call for
the writes), :mod:`.reactor` (one task reads every ready connection, Linux),
:mod:`.runtime` (the per-run ticker, idle sweeper and keepalive timer), and
:mod:`.inline` (how the layer above hands handler work, as the return value of the message
callback, to the task that read its message).

Raw routes (``App.websocket``) and Engine.IO's WebSocket transport both run on it.
"""

from pyserver.trio.websocket.connection import WebSocket

__all__ = ["WebSocket"]
