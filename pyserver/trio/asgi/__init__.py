"""pyserver in the Trio web stack through ASGI 3.

* :mod:`.app`: :class:`ASGIApp`, a ``Server`` (or ``App``) as an ASGI application, for
  ``hypercorn -k trio`` beside a Starlette, FastAPI or Quart-Trio app
  (``ASGIApp(sio, other_asgi_app=app)``, python-socketio's name and signature).
* :mod:`.websocket`: :class:`~.websocket.AsgiWebSocket`, the ``websocket`` scope as a
  ``pyserver.http.WebSocket`` (bounded outbox and writer task, slow consumers closed 1008,
  callback work run by the reading task).
* :mod:`.lifespan`: the ``lifespan`` scope: pyserver's background work (``Server.run``)
  and the other app's lifespan.
* :mod:`.scope`: scopes and messages to and from ``Request`` / ``Response``.
* :mod:`.hosted`: the other way round, an ASGI app served by pyserver's own HTTP server
  (``App(asgi=...)``); :mod:`.streamed`: its HTTP exchanges with streamed bodies.

Imports go one way: ``scope`` <- ``websocket``, ``lifespan``, ``streamed`` <- ``hosted``,
``app``.
"""

from pyserver.trio.asgi.app import ASGIApp

__all__ = ["ASGIApp"]
