"""Blocking I/O for plain Python programs (no Trio, no event loop): the :class:`Emitter`
(:mod:`.emitter`) that a worker process uses to emit to the clients of a cluster, over a
small blocking Redis connection (:mod:`.redis`). What goes on the wire is built by the
sans-IO :mod:`pyserver.redis.emitter`."""
