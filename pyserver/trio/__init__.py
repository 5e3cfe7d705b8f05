"""Everything in pyserver that does I/O: the Trio shell around the sans-IO cores.

A module outside this package never imports trio, touches a socket, reads the clock or draws
randomness (a test holds that rule); a module inside it drives those cores with real sockets,
tasks and time. Its parts:

* :mod:`pyserver.trio.http`: the HTTP/1.1 connection loop (``server``), static files
  (``static``) and the application object :class:`~pyserver.trio.http.app.App`.
* :mod:`pyserver.trio.websocket`: one accepted WebSocket, made of parts (outbox, writer,
  sending: the one rule of who writes, work, reader, reactive, timed, connection), the
  broadcast fan-out (``fanout``), the reactor that reads many sockets in one task of the
  serving call (``reactor``), the per-run ticker, sweeper and keepalive timer (``runtime``)
  and how handler work reaches the reading task (``inline``).
* :mod:`pyserver.trio.engineio`: the Engine.IO server (``server``; ``table``: the sessions;
  the ``polling`` and ``websocket`` transports, upgrades; ``session``) over
  :mod:`pyserver.engineio`'s session core.
* :mod:`pyserver.trio.socketio`: the Socket.IO server, namespaces, sockets and their handler
  queues (``handlers``), clients, broadcasts, adapters (``adapter_base``: the interface) and
  room task nurseries, over :mod:`pyserver.socketio`.
* :mod:`pyserver.trio.client`: the Socket.IO client for Trio (``pyserver.connect``) and the
  test helpers behind ``pyserver.testing``.
* :mod:`pyserver.trio.asgi`: pyserver as an ASGI 3 application (``pyserver.ASGIApp``, under
  ``hypercorn -k trio``) and ASGI applications served by pyserver's App (``App(asgi=...)``).
* :mod:`pyserver.trio.redis`: the Redis adapter, its subscriber connection, and the
  requests and answers between nodes, over :mod:`pyserver.redis`'s wire codecs.
* :mod:`pyserver.trio.timers`: one timer task for the deadlines of many cores.

The package is named after the I/O library it runs on, as websockets names its ``asyncio``
and ``trio`` shells; absolute imports mean ``import trio`` inside it is always the library.
"""
