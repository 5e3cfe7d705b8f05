"""What several test modules share: clients, servers and references nobody tests directly.

Test modules import from here (``from helpers.sio_client import RawClient``: pytest's default
"prepend" import mode puts ``tests/`` on ``sys.path``, since ``tests/`` itself is no package),
never from one another, so a test module can be renamed, moved or deleted alone.

* :mod:`helpers.http_client`: an h11 client and a running App, for the HTTP server tests.
* :mod:`helpers.ws_client`: a raw WebSocket client with hand-made frames (independent of the
  codec under test) and a running App.
* :mod:`helpers.eio_client`: a running Engine.IO server and h11/wsproto clients for it.
* :mod:`helpers.sio_client`: a running Socket.IO Server, python-socketio's client and a raw
  Engine.IO-over-WebSocket client.
* :mod:`helpers.framesref`: a naive pure-Python RFC 6455 frame reference for the Rust codec.
* :mod:`helpers.server_thread`: a server in a ``trio.run`` of its own thread, for synchronous
  peers (Node, a browser, sync clients).
* :mod:`helpers.browser`: the ``chromium_browser`` fixture (Playwright's Chromium).
* :mod:`helpers.redis_process`: a real ``redis-server`` and the ``redis_server`` fixture.
* :mod:`helpers.redis_cluster`: several Servers joined by a RedisAdapter, in one ``trio.run``.

A module that defines a fixture is imported by the conftest or the test module that uses it
(``from helpers.browser import chromium_browser``): pytest finds a fixture by its name in the
module or conftest that requests it.
"""
