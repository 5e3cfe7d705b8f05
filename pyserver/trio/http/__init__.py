"""The HTTP side of the shell: the per-connection loop over h11 (:mod:`.server`), static
files and the client bundle (:mod:`.static`), and :class:`~pyserver.trio.http.app.App`, the
application that routes requests, WebSocket endpoints and mounts (Engine.IO). The sans-IO
HTTP types they share are in :mod:`pyserver.http`."""
